"""Captioned multi-view renders of the toy world: what toy CLIP and toy SD are trained on."""

from __future__ import annotations

import torch

from ..toyworld import CATEGORIES, COLORS, ELEVATION_RANGE, make_object, render_views
from ..validation import check_positive_int
from .captions import object_captions, view_name, with_view

HELD_OUT_SEED = 10_000  # object seeds from here on are never trained on
# Never seen by toy-mvdream as multi-view sets (toy SD knew them as single images): chapter 04's eight prompts
MULTIVIEW_HELD_OUT = ("a yellow duck", "a red torus", "a blue cube", "a green cone", "an orange mushroom",
                      "a purple snowman", "a pink mug", "a brown house")


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


def multiview_dataset(object_seeds=range(4), sets_per_object: int = 2, views: int = 4, size: int = 64,
                      captions=None, elevation_range=ELEVATION_RANGE, cache: bool = True) -> dict:
    """Sets of ``views`` renders of one object, evenly spaced in azimuth from a random start and all at one random
    elevation (MVDream's training sets): ``sets_per_object`` sets of every object of ``captions`` ("a red duck", ...;
    default all) and seed.

    Returns ``images [S,V,3,H,W]`` in [0,1] on white, ``elevations [S]`` and ``azimuths [S,V]`` in degrees, and
    ``object_captions`` (S strings). Deterministic from the seeds, and cached like ``caption_dataset``.
    """
    views, size = check_positive_int("views", views), check_positive_int("size", size)
    sets_per_object = check_positive_int("sets_per_object", sets_per_object)
    if sets_per_object >= 1000:  # the set's seed below keeps 3 digits for it
        raise ValueError(f"sets_per_object: expected fewer than 1000, got {sets_per_object}")
    known = set(object_captions())
    wanted = known if captions is None else set(captions)
    if not wanted or wanted - known:
        raise ValueError(f"captions: expected toy-world captions such as 'a red duck', got {sorted(wanted - known)[:5] or []}")
    images, elevations, azimuths, names = [], [], [], []
    for i, (category, color) in enumerate((category, color) for category in CATEGORIES for color in COLORS):
        for seed in object_seeds:
            obj = make_object(category, color, seed)
            if obj.caption not in wanted:
                continue
            for k in range(sets_per_object):
                set_seed = seed * 1_000_000 + i * 1000 + k  # cameras differ from object to object, and set to set
                draw = torch.rand((), generator=torch.Generator().manual_seed(set_seed)).item()
                elevation = elevation_range[0] + (elevation_range[1] - elevation_range[0]) * draw
                # a range of one value: every view of the set at this elevation, azimuths evenly spaced
                data = render_views(obj, views, size, size, elevation_range=(elevation, elevation), azimuths="uniform",
                                    seed=set_seed, cache=cache)
                images.append(data.images.permute(0, 3, 1, 2))
                elevations.append(elevation)
                azimuths.append(data.azimuths)
                names.append(obj.caption)
    if not images:
        raise ValueError(f"object_seeds: expected at least one seed, got {list(object_seeds)}")
    return {"images": torch.stack(images), "elevations": torch.tensor(elevations), "azimuths": torch.stack(azimuths),
            "object_captions": names}
