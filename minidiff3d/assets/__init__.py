"""Files shipped inside the package, each listed in ``manifest.json`` with its sha256.

Today that is the toy world's reference renders: a fresh install re-renders the same views
and compares, which proves the toy world (and so every dataset and prior trained on it) is
the one the course was built with. Trained priors join the manifest as they land.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file

HERE = Path(__file__).parent
MANIFEST = HERE / "manifest.json"


def manifest() -> dict[str, dict]:
    """Every shipped asset: name -> {"file", "sha256", "description", ...}."""
    return json.loads(MANIFEST.read_text())


def asset_path(name: str) -> Path:
    entries = manifest()
    if name not in entries:
        raise ValueError(f"name: expected one of {sorted(entries)}, got {name!r}")
    return HERE / entries[name]["file"]


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify() -> dict[str, bool]:
    """name -> whether the file is present and its sha256 matches the manifest."""
    return {name: (HERE / e["file"]).exists() and sha256(HERE / e["file"]) == e["sha256"] for name, e in manifest().items()}


def load_toyworld_reference() -> dict:
    """The reference renders: ``images [N,H,W,3]`` in [0,1], ``c2ws [N,4,4]`` and each view's object."""
    entry = manifest()["toyworld-reference"]
    tensors = load_file(asset_path("toyworld-reference"))
    return {
        "images": tensors["images"].float() / 255,
        "c2ws": tensors["c2ws"],
        "objects": entry["objects"],  # [category, color, seed] per view
        "fov_deg": entry["fov_deg"],
    }


def register(name: str, weights, description: str, **details) -> str:
    """Enter (or replace) ``weights`` (a file under this folder) in the manifest as ``name``; returns its sha256."""
    weights = Path(weights).resolve()
    digest = sha256(weights)
    entries = manifest()
    entries[name] = {"file": str(weights.relative_to(HERE.resolve())), "sha256": digest, "description": description,
                     **details}
    MANIFEST.write_text(json.dumps(entries, indent=2) + "\n")
    return digest
