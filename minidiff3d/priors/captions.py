"""Toy-world captions with DreamFusion's view-dependent suffixes, and the vocabulary they use.

A 2-D prior sees one image and one caption; it cannot know from "a red duck" alone which side of
the duck to draw, so a 3-D object optimised against it tends to grow a face on every side (the
Janus problem). DreamFusion appends the view to the prompt. We train our priors on captions
that carry it, named from the camera's elevation and azimuth (azimuth 0 is the object's front):

    elevation >= 60°                 -> ", overhead view"
    azimuth within 45° of 0          -> ", front view"
    azimuth within 45° of 180        -> ", back view"
    otherwise                        -> ", side view"

The thresholds are threestudio's defaults (front ±45°, back ±45°, overhead above 60°).
"""

from __future__ import annotations

import torch

from ..toyworld import CATEGORIES, COLORS, make_object
from ..validation import check_choice

VIEWS: tuple[str, ...] = ("front", "side", "back", "overhead")
OVERHEAD_ELEVATION = 60.0
FRONT_HALF_WIDTH = 45.0
BACK_HALF_WIDTH = 45.0


def view_name(elevation_deg, azimuth_deg) -> list[str]:
    """The view word for each camera: ``elevation_deg``, ``azimuth_deg`` are ``[B]`` (or scalars) in degrees."""
    elevation = torch.as_tensor(elevation_deg, dtype=torch.float32).reshape(-1)
    azimuth = torch.as_tensor(azimuth_deg, dtype=torch.float32).reshape(-1)
    if elevation.shape != azimuth.shape:
        raise ValueError(f"elevation_deg, azimuth_deg: expected the same number of cameras, "
                         f"got {elevation.numel()} and {azimuth.numel()}")
    if not (torch.isfinite(elevation).all() and torch.isfinite(azimuth).all()):
        raise ValueError("elevation_deg, azimuth_deg: expected finite angles, got NaN or inf")
    off_front = (azimuth + 180.0) % 360.0 - 180.0  # signed angle from the front, in [-180, 180)
    names = []
    for e, a in zip(elevation.tolist(), off_front.abs().tolist()):
        if e >= OVERHEAD_ELEVATION:
            names.append("overhead")
        elif a <= FRONT_HALF_WIDTH:
            names.append("front")
        elif a >= 180.0 - BACK_HALF_WIDTH:
            names.append("back")
        else:
            names.append("side")
    return names


def with_view(caption: str, view: str | None) -> str:
    """``"a red duck"`` -> ``"a red duck, back view"``; ``view=None`` leaves the caption as it is."""
    if view is None:
        return caption
    check_choice("view", view, VIEWS)
    return f"{caption}, {view} view"


def object_captions(categories=CATEGORIES, colors=tuple(COLORS)) -> list[str]:
    """Every "a <colour> <category>" caption, in category-major order."""
    return [make_object(category, color).caption for category in categories for color in colors]


def vocabulary() -> list[str]:
    """Every word (and the comma) that a toy caption can hold."""
    words = ["a", "an", ",", "view", *COLORS, *CATEGORIES, *VIEWS]
    return list(dict.fromkeys(words))
