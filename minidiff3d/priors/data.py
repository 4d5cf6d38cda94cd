"""Captioned multi-view renders of the toy world: what toy CLIP and toy SD are trained on."""

from __future__ import annotations

import torch

from ..toyworld import CATEGORIES, COLORS, ELEVATION_RANGE, make_object, render_views
from ..validation import check_positive_int
from .captions import view_name, with_view

HELD_OUT_SEED = 10_000  # object seeds from here on are never trained on


def caption_dataset(object_seeds=range(4), views_per_object: int = 24, size: int = 64, categories=CATEGORIES,
                    colors=tuple(COLORS), elevation_range=ELEVATION_RANGE, cache: bool = True) -> dict:
    """Random orbit views of every (category, colour, seed) object, each with its captions.

    Returns a dict:
        ``images [M,3,H,W]`` in [0,1] on white; ``elevations``, ``azimuths`` ``[M]`` in degrees;
        ``captions``: "a red duck, side view" (M strings); ``object_captions``: "a red duck";
        ``views``: "side"; ``categories``, ``colors``: per image.
    Object seed ``s`` also seeds the cameras, so the same arguments always give the same data
    (read back from the toy world's cache after the first call).
    """
    views_per_object, size = check_positive_int("views_per_object", views_per_object), check_positive_int("size", size)
    images, elevations, azimuths, meta = [], [], [], []
    for category in categories:
        for color in colors:
            for seed in object_seeds:
                obj = make_object(category, color, seed)
                data = render_views(obj, views_per_object, size, size, elevation_range=elevation_range,
                                    azimuths="random", seed=seed, cache=cache)
                images.append(data.images.permute(0, 3, 1, 2))
                elevations.append(data.elevations)
                azimuths.append(data.azimuths)
                meta += [(obj.caption, category, color)] * views_per_object
    elevations, azimuths = torch.cat(elevations), torch.cat(azimuths)
    views = view_name(elevations, azimuths)
    return {
        "images": torch.cat(images),
        "elevations": elevations,
        "azimuths": azimuths,
        "captions": [with_view(caption, view) for (caption, _, _), view in zip(meta, views)],
        "object_captions": [caption for caption, _, _ in meta],
        "views": views,
        "categories": [category for _, category, _ in meta],
        "colors": [color for _, _, color in meta],
    }
