"""The Blender/NeRF-synthetic scene format: ``transforms_<split>.json`` plus RGBA PNGs.

The JSON holds ``camera_angle_x`` (horizontal field of view, radians) and one frame per
image with its ``file_path`` (often without the ``.png``) and a 4x4 OpenGL camera-to-world
``transform_matrix``: the course's own convention, so matrices pass through unchanged.
PNGs keep straight (not premultiplied) colour with the object's coverage in alpha; the
loader composites them on a background of your choice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..cameras import focal_from_fov, intrinsics
from ..validation import check_positive_int, check_tensor
from .data import MultiViewData


def _background(value) -> torch.Tensor:
    bg = check_tensor("background", torch.as_tensor(value, dtype=torch.float32), shape=[3])
    if (bg < 0).any() or (bg > 1).any():
        raise ValueError(f"background: expected 3 values in [0,1], got {bg.tolist()}")
    return bg


def write_blender(data: MultiViewData, folder, split: str = "train", background=(1.0, 1.0, 1.0)) -> Path:
    """Write ``data`` as ``folder/transforms_<split>.json`` and ``folder/<split>/r_<i>.png``.

    ``background`` is the colour the images were composited on; it is removed again so the
    PNGs carry straight colour and alpha, as Blender writes them.
    """
    folder = Path(folder)
    (folder / split).mkdir(parents=True, exist_ok=True)
    bg = _background(background)
    if abs(data.K[0, 2] - data.width / 2) > 1e-4 or abs(data.K[1, 2] - data.height / 2) > 1e-4:
        raise ValueError("data.K: the Blender format assumes a centred principal point")
    frames = []
    for i, (image, alpha, c2w) in enumerate(zip(data.images, data.alphas, data.c2ws)):
        a = alpha[..., None]
        straight = torch.where(a > 0, (image - (1 - a) * bg) / a.clamp(min=1e-8), torch.zeros_like(image))
        rgba = torch.cat([straight.clamp(0, 1), a], -1)
        Image.fromarray((rgba * 255).round().to(torch.uint8).numpy(), "RGBA").save(folder / split / f"r_{i}.png")
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
    camera_angle_x = 2 * math.atan(0.5 * data.width / data.focal)
    meta = {"camera_angle_x": camera_angle_x, "caption": data.captions[0] if data.captions else "", "frames": frames}
    path = folder / f"transforms_{split}.json"
    path.write_text(json.dumps(meta, indent=2))
    return path


def load_blender(folder, split: str = "train", background=(1.0, 1.0, 1.0), size: int | None = None) -> MultiViewData:
    """Load a Blender-format scene (a toy scene written above, or a real nerf_synthetic one).

    Args:
        background: RGB in [0,1] that transparent pixels are composited on.
        size: resize every image to ``size x size`` (area averaging on premultiplied colour,
            so edges do not pick up a dark fringe); the focal length follows.

    Returns ``MultiViewData`` with elevations/azimuths computed from the camera centres.
    """
    folder = Path(folder)
    path = folder / f"transforms_{split}.json"
    if not path.exists():
        raise FileNotFoundError(f"folder: expected {path.name} in {folder}, found none")
    meta = json.loads(path.read_text())
    if not meta.get("frames"):
        raise ValueError(f"folder: {path} lists no frames")
    bg = _background(background)
    rgbas, c2ws = [], []
    for frame in meta["frames"]:
        file = folder / frame["file_path"]
        file = file if file.suffix else file.with_suffix(".png")
        rgba = torch.from_numpy(np.asarray(Image.open(file).convert("RGBA"), dtype=np.float32) / 255.0)
        rgbas.append(rgba)
        c2ws.append(torch.tensor(frame["transform_matrix"], dtype=torch.float32))
    rgba = torch.stack(rgbas)  # [N,H,W,4]
    premultiplied = torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
    if size is not None:
        size = check_positive_int("size", size)
        premultiplied = F.interpolate(premultiplied.permute(0, 3, 1, 2), size=(size, size), mode="area").permute(0, 2, 3, 1)
    alphas = premultiplied[..., 3]
    images = premultiplied[..., :3] + (1 - alphas[..., None]) * bg
    height, width = images.shape[1:3]
    c2ws = torch.stack(c2ws)
    centres = c2ws[:, :3, 3]
    caption = meta.get("caption") or folder.name
    return MultiViewData(
        images=images,
        alphas=alphas,
        c2ws=c2ws,
        K=intrinsics(focal_from_fov(math.degrees(meta["camera_angle_x"]), width), height, width),
        elevations=torch.rad2deg(torch.asin(centres[:, 2] / centres.norm(dim=-1))),
        azimuths=torch.rad2deg(torch.atan2(centres[:, 1], centres[:, 0])) % 360,
        captions=[caption] * len(c2ws),
    )
