"""Render the toy world's reference views into minidiff3d/assets and record them in the manifest.

Run it only when the toy world changes on purpose (and bump TOYWORLD_VERSION then):
    .venv/bin/python scripts/make_reference_renders.py
"""

import json

import torch
from safetensors.torch import save_file

from minidiff3d.assets import HERE, MANIFEST, sha256
from minidiff3d.cameras import orbit_camera
from minidiff3d.toyworld import CATEGORIES, COLORS, DEFAULT_FOV_DEG, render
from minidiff3d.toyworld.objects import make_object

SIZE = 32
objects, images, c2ws = [], [], []
for i, category in enumerate(CATEGORIES):
    color = list(COLORS)[i % len(COLORS)]
    for elevation, azimuth in [(20.0, 0.0), (35.0, 135.0)]:
        c2w = orbit_camera(elevation, azimuth)
        images.append(render(make_object(category, color, seed=i), c2w, SIZE, SIZE)["image"])
        c2ws.append(c2w)
        objects.append([category, color, i])

path = HERE / "toyworld_reference.safetensors"
images = (torch.stack(images) * 255).round().to(torch.uint8)
save_file({"images": images, "c2ws": torch.stack(c2ws)}, path)
entries = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
entries["toyworld-reference"] = {
    "file": path.name,
    "sha256": sha256(path),
    "description": f"{len(objects)} sphere-traced {SIZE}x{SIZE} views, two per category, as uint8",
    "fov_deg": DEFAULT_FOV_DEG,
    "objects": objects,
}
MANIFEST.write_text(json.dumps(entries, indent=2) + "\n")
print(f"wrote {path} ({path.stat().st_size} bytes)")
