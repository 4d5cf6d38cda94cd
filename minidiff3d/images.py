"""The course's two image layouts, and the only two functions that convert between them.

* **channels first, ``[B,3,H,W]``** (or ``[3,H,W]``): what PyTorch models take, so every renderer
  of the text-to-3D systems, every guidance, and every turntable speaks it (the design's convention).
* **channels last, ``[N,H,W,3]``** (or ``[H,W,3]``): what photographs, matplotlib and PIL use, so
  the toy world's renders, the multi-view datasets, ``NeRFResult.render`` and ``plotting.image_grid``
  speak it.

Both in [0,1]. Converting at a boundary is explicit, by name, never guessed from the shape.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .validation import check_positive_int, check_tensor


def _check(name: str, images: torch.Tensor, channel_axis: int) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4) or images.shape[channel_axis] not in (1, 3, 4):
        layout = "[...,3,H,W]" if channel_axis == -3 else "[...,H,W,3]"
        got = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name}: expected images {layout} (3 or 4 dimensions, 1, 3 or 4 channels), got {got}")
    return images


def to_channels_last(images: torch.Tensor) -> torch.Tensor:
    """``[B,C,H,W] -> [B,H,W,C]`` (or ``[C,H,W] -> [H,W,C]``): from a model's layout to a photograph's."""
    return _check("images", images, -3).movedim(-3, -1)


def to_channels_first(images: torch.Tensor) -> torch.Tensor:
    """``[B,H,W,C] -> [B,C,H,W]`` (or ``[H,W,C] -> [C,H,W]``): from a photograph's layout to a model's."""
    return _check("images", images, -1).movedim(-1, -3)


def save_gif(frames: torch.Tensor, path, fps: int = 12, scale: int = 1) -> Path:
    """Write frames ``[F,3,H,W]`` in [0,1] (a turntable's) as a looping GIF, each pixel repeated ``scale`` times;
    returns the path."""
    from PIL import Image

    frames = to_channels_last(check_tensor("frames", torch.as_tensor(frames), shape=["F", 3, None, None]))
    scale = check_positive_int("scale", scale)
    array = (frames.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy().repeat(scale, 1).repeat(scale, 2)
    images = [Image.fromarray(frame) for frame in array]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / check_positive_int("fps", fps)),
                   loop=0)
    return Path(path)


def load_image(path, size: int) -> torch.Tensor:
    """An image file as ``[3,size,size]`` in [0,1]: transparent pixels composited on white (the toy world's
    background), then resized (area-averaged, or bicubic when enlarging)."""
    import numpy as np
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image: expected an image file, got {str(path)!r} (no such file)")
    picture = Image.open(path).convert("RGBA")
    white = Image.new("RGBA", picture.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, picture).convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((check_positive_int("size", size),) * 2,
                         Image.Resampling.BOX if rgb.size[0] > size else Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float() / 255
