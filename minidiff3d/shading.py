"""Shading, as DreamFusion shades: albedo, lambertian, or textureless; and the course's one light.

- ``albedo``: the field's colour, unlit. Cheap, but a flat shape painted with shadows also
  looks right to the prior.
- ``lambertian``: ``albedo · (a + (1 - a) max(0, n·l))`` under a light ``l`` drawn at random
  (``random_light_dirs``: around the camera, as DreamFusion does, or around a fixed light).
- ``textureless``: the same with a white albedo. Only geometry can make such a render look like
  the prompt, so it stops the model from painting 3-D detail onto a flat surface.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .validation import check_choice

SHADINGS = ("albedo", "lambertian", "textureless")
# The toy world's light, the only one its priors ever saw: fixed in the world, mostly from above
# so that no side of an object is in the dark, with this much ambient light.
LIGHT_DIR = (0.3, 0.4, 1.0)
AMBIENT = 0.45


def shade(albedo: torch.Tensor, normals: torch.Tensor | None, light_dirs: torch.Tensor | None, mode: str,
          ambient: float = AMBIENT) -> torch.Tensor:
    """Colours ``[...,3]`` from ``albedo [...,3]``, unit ``normals [...,3]`` and unit ``light_dirs [...,3]`` (towards the light)."""
    check_choice("mode", mode, SHADINGS)
    if mode == "albedo":
        return albedo
    diffuse = ambient + (1 - ambient) * (normals * light_dirs).sum(-1, keepdim=True).clamp(min=0)
    return diffuse * (albedo if mode == "lambertian" else torch.ones_like(albedo))


def random_light_dirs(centers: torch.Tensor, spread: float = 0.5, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """Unit directions ``[B,3]`` towards a light near each of ``centers [B,3]``: the direction plus Gaussian noise.

    DreamFusion centres the light on the camera, so the visible surface is mostly lit; a prior
    that only ever saw one fixed light (toy SD) is better served by centring on that light.
    """
    noise = torch.randn(centers.shape, generator=generator).to(centers)
    return F.normalize(F.normalize(centers, dim=-1) + spread * noise, dim=-1)
