"""Files shipped inside the package, each listed in ``manifest.json`` with its sha256.

The toy world's reference renders (a fresh install re-renders the same views and compares, which
proves the toy world, and so every dataset and prior trained on it, is the one the course was
built with) and the trained priors' weights. Loaders reach them through ``asset_path`` and
``checked_folder``, which check each file against its sha256, so a damaged or swapped file fails
loudly instead of loading wrong weights.
"""

from __future__ import annotations

import functools
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
    """The file of manifest entry ``name``, once its sha256 matches the manifest's."""
    entries = manifest()
    if name not in entries:
        raise ValueError(f"name: expected one of {sorted(entries)}, got {name!r}")
    return _checked(entries[name])


def checked_folder(folder: str) -> Path:
    """``HERE / folder``, once every manifest file in it matches its sha256."""
    for entry in manifest().values():
        if Path(entry["file"]).parts[0] == folder:
            _checked(entry)
    return HERE / folder


def _checked(entry: dict) -> Path:
    path = HERE / entry["file"]
    stat = path.stat()
    actual = _sha256_once(path, stat.st_size, stat.st_mtime_ns)
    if actual != entry["sha256"]:
        raise ValueError(f"{path}: expected sha256 {entry['sha256']} (from {MANIFEST}), got {actual}; "
                         "the file is damaged or not the one shipped: reinstall minidiff3d, or retrain and register it")
    return path


@functools.cache
def _sha256_once(path: Path, size: int, mtime_ns: int) -> str:
    """Once per process per file version (size and mtime are part of the key), so loading stays fast."""
    return sha256(path)


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
