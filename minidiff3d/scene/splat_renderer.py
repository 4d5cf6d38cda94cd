"""The splatting renderer: 3-D ``Gaussians`` through ``minidiff3d.splatting``, with the ray marcher's ``render`` call.

It returns the marcher's maps, so a system swaps one renderer for the other. Gaussians carry a colour
each and no normal, so every shading mode renders their colours unlit, as DreamGaussian renders; the
splats are composited over black and the system's background part is added where light gets through.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cameras import check_c2w, get_rays
from ..shading import AMBIENT
from ..splatting import BACKENDS, gsplat_rasterization
from ..validation import check_choice


@dataclass
class SplatRendererConfig:
    """``backend``: "torch" (``minidiff3d.splatting``, anywhere) or "gsplat" (gsplat's CUDA rasterizer, when installed
    on a CUDA machine; never needed)."""

    backend: str = "torch"

    def __post_init__(self):
        check_choice("renderer.backend", self.backend, BACKENDS)

    def build(self) -> "SplatRenderer":
        return SplatRenderer(self.backend)


class SplatRenderer:
    """``render(geometry, c2w [B,4,4], height, width, focal, background, ...)`` -> maps ``[B,C,H,W]``: ``rgb``,
    ``opacity`` and ``depth`` (the splats' weighted depth along the camera's axis; 0 where nothing is drawn).
    ``shading``, ``light_dirs``, ``ambient``, ``perturb`` and ``generator`` are taken for the common call and unused."""

    def __init__(self, backend: str = "torch"):
        check_choice("backend", backend, BACKENDS)
        if backend == "gsplat":
            gsplat_rasterization()  # missing: said now, not at the first step
        self.backend = backend

    def render(self, geometry, c2w: torch.Tensor, height: int, width: int, focal: float, background=None,
               shading: str = "albedo", light_dirs: torch.Tensor | None = None, ambient: float = AMBIENT,
               perturb: bool = False, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        c2w = check_c2w("c2w", c2w).reshape(-1, 4, 4)
        black = torch.zeros(3, device=c2w.device)
        maps: dict[str, list] = {"rgb": [], "opacity": [], "depth": []}
        for view in c2w:
            out = geometry.render(view, height, width, focal, black, backend=self.backend)
            behind = torch.ones(height, width, 3, device=c2w.device) if background is None else \
                background(get_rays(view, height, width, focal)[1])
            maps["rgb"].append(out["rgb"] + (1 - out["alpha"])[..., None] * behind)
            maps["opacity"].append(out["alpha"][..., None])
            maps["depth"].append(out["depth"][..., None])
        return {key: torch.stack(values).permute(0, 3, 1, 2) for key, values in maps.items()}


__all__ = ["SplatRenderer", "SplatRendererConfig"]
