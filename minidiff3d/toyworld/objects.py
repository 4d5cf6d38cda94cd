"""The toy world's objects: procedural categories with exact SDFs, colours and captions.

Every object fits inside the unit ball, so it lives in [-1,1]^3 and is fully in frame from
any orbit camera of the default radius and field of view. Objects with a front (snowman,
mug, duck) face +x, which is azimuth 0; a seed varies their proportions and turns them by
at most ``MAX_YAW`` degrees, so the front stays recognisable.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from ..validation import check_choice, check_tensor
from . import sdf

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.15, 0.15),
    "orange": (0.95, 0.55, 0.10),
    "yellow": (0.92, 0.82, 0.12),
    "green": (0.20, 0.65, 0.25),
    "blue": (0.15, 0.35, 0.85),
    "purple": (0.55, 0.25, 0.75),
    "pink": (0.95, 0.50, 0.70),
    "brown": (0.55, 0.35, 0.20),
}
ACCENT = (0.18, 0.18, 0.20)  # noses, beaks, handles and roofs: dark on every colour
STEM = (0.90, 0.85, 0.72)  # a mushroom's stem
MAX_YAW = 15.0


@dataclass(frozen=True)
class Part:
    """One coloured piece of an object: an SDF over points ``[...,3]`` in the object's frame."""

    sdf: Callable[[torch.Tensor], torch.Tensor]
    rgb: tuple[float, float, float]


@dataclass(frozen=True)
class ToyObject:
    """A toy-world object. ``sdf`` and ``albedo`` take world points ``[...,3]``."""

    category: str
    color: str
    seed: int
    yaw_deg: float
    parts: tuple[Part, ...]
    inner_point: tuple[float, float, float]  # the centre of the main part (in a torus's tube, not its hole)

    @property
    def caption(self) -> str:
        article = "an" if self.color[0] in "aeiou" else "a"
        return f"{article} {self.color} {self.category}"

    @property
    def has_front(self) -> bool:
        return self.category in ASYMMETRIC

    def _part_distances(self, points: torch.Tensor) -> torch.Tensor:
        points = check_tensor("points", points, shape=["...", 3], floating=True)
        local = sdf.rotate_z(points, self.yaw_deg)
        return torch.stack([part.sdf(local) for part in self.parts], -1)

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance ``[...]`` at ``points [...,3]``: negative inside, exact outside."""
        return self._part_distances(points).min(-1).values

    def normals(self, points: torch.Tensor, h: float = 1e-3) -> torch.Tensor:
        """Unit outward normals ``[...,3]``: the SDF's gradient by central differences on a tetrahedron.

        Finite differences stay defined on creases and apexes, where autograd of a norm gives NaN.
        """
        corners = torch.tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=points.dtype, device=points.device)
        gradient = self.sdf(points[..., None, :] + h * corners) @ corners
        return gradient / gradient.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """Colour ``[...,3]`` of the part nearest to each point."""
        nearest = self._part_distances(points).argmin(-1)
        palette = torch.tensor([part.rgb for part in self.parts], dtype=points.dtype, device=points.device)
        return palette[nearest]


def _revolved(profile_fn, centre=(0.0, 0.0, 0.0), axis=2):
    centre = torch.tensor(centre)
    return lambda p: sdf.revolve(p - centre.to(p), profile_fn, axis)


def _sphere(rng: random.Random, rgb):
    return [Part(partial(sdf.sphere, radius=rng.uniform(0.55, 0.8)), rgb)]


def _cube(rng, rgb):
    half = rng.uniform(0.40, 0.52)
    return [Part(partial(sdf.box, half_size=(half, half, half), rounding=0.05), rgb)]


def _torus(rng, rgb):
    return [Part(partial(sdf.torus, major=rng.uniform(0.50, 0.62), minor=rng.uniform(0.15, 0.24)), rgb)]


def _cylinder(rng, rgb):
    r, h = rng.uniform(0.35, 0.5), rng.uniform(0.45, 0.62)
    return [Part(_revolved(partial(sdf.polygon2d, vertices=[(-r, -h), (r, -h), (r, h), (-r, h)])), rgb)]


def _cone(rng, rgb):
    r, h = rng.uniform(0.45, 0.6), rng.uniform(0.5, 0.65)
    return [Part(_revolved(partial(sdf.polygon2d, vertices=[(-r, -h), (r, -h), (0.0, h)])), rgb)]


def _mushroom(rng, rgb):
    stem_r, cap_r = rng.uniform(0.14, 0.22), rng.uniform(0.5, 0.62)
    stem = partial(sdf.polygon2d, vertices=[(-stem_r, -0.65), (stem_r, -0.65), (stem_r, 0.05), (-stem_r, 0.05)])
    cut = 0.25 * cap_r  # the cap's flat underside sits at z = 0
    cap = partial(sdf.dome2d, radius=cap_r, cut=cut)
    return [Part(_revolved(stem), STEM), Part(_revolved(cap, centre=(0.0, 0.0, -cut)), rgb)]


def _house(rng, rgb):
    half, wall = rng.uniform(0.38, 0.46), rng.uniform(0.28, 0.36)
    body = partial(sdf.box, half_size=(half, half, wall))
    ridge = rng.uniform(0.35, 0.45)
    roof_profile = partial(sdf.polygon2d, vertices=[(-half - 0.06, 0.0), (half + 0.06, 0.0), (0.0, ridge)])
    roof = lambda p: sdf.extrude(p - p.new_tensor([0.0, 0.0, wall - 0.2]), roof_profile, half + 0.04, axis=1)
    body_at = lambda p: body(p - p.new_tensor([0.0, 0.0, -0.2]))
    return [Part(body_at, rgb), Part(roof, ACCENT)]


def _snowman(rng, rgb):
    low_r, head_r = rng.uniform(0.36, 0.44), rng.uniform(0.24, 0.3)
    low_z = -0.3
    head_z = low_z + low_r + 0.7 * head_r
    nose_len = rng.uniform(0.22, 0.3)
    # The nose is a cone revolved about the x axis, pointing to +x from inside the head.
    nose_profile = partial(sdf.polygon2d, vertices=[(-0.07, 0.0), (0.07, 0.0), (0.0, nose_len)])
    return [
        Part(lambda p: sdf.sphere(p - p.new_tensor([0.0, 0.0, low_z]), low_r), rgb),
        Part(lambda p: sdf.sphere(p - p.new_tensor([0.0, 0.0, head_z]), head_r), rgb),
        Part(_revolved(nose_profile, centre=(head_r - 0.04, 0.0, head_z), axis=0), ACCENT),
    ]


def _mug(rng, rgb):
    r, h = rng.uniform(0.34, 0.42), rng.uniform(0.4, 0.5)
    body = partial(sdf.polygon2d, vertices=[(-r, -h), (r, -h), (r, h), (-r, h)])
    ring_major = rng.uniform(0.2, 0.25)
    # The handle is a torus whose axis is y, centred on the body's front wall at +x.
    handle = lambda p: sdf.torus((p - p.new_tensor([r, 0.0, 0.0]))[..., [0, 2, 1]], ring_major, 0.06)
    return [Part(_revolved(body), rgb), Part(handle, ACCENT)]


def _duck(rng, rgb):
    body_r, head_r = rng.uniform(0.26, 0.32), rng.uniform(0.18, 0.22)
    head = (0.28, 0.0, 0.05 + body_r)
    beak_len = rng.uniform(0.14, 0.2)
    return [
        Part(partial(sdf.capsule, a=(-0.35, 0.0, -0.15), b=(0.12, 0.0, -0.15), radius=body_r), rgb),
        Part(lambda p: sdf.sphere(p - p.new_tensor(head), head_r), rgb),
        Part(
            partial(sdf.capsule, a=(head[0] + 0.6 * head_r, 0.0, head[2] - 0.03),
                    b=(head[0] + head_r + beak_len, 0.0, head[2] - 0.05), radius=0.055),
            ACCENT,
        ),
    ]


_BUILDERS = {
    "sphere": _sphere,
    "cube": _cube,
    "torus": _torus,
    "cylinder": _cylinder,
    "cone": _cone,
    "mushroom": _mushroom,
    "house": _house,
    "snowman": _snowman,
    "mug": _mug,
    "duck": _duck,
}
CATEGORIES: tuple[str, ...] = tuple(_BUILDERS)
# A point inside every seed's shape. The origin, except for the torus, whose centre is its hole.
_INNER_POINTS = {"torus": (0.56, 0.0, 0.0)}
ASYMMETRIC: tuple[str, ...] = ("snowman", "mug", "duck")  # a clear front at azimuth 0
TWO_PART: tuple[str, ...] = ("mushroom", "house", "snowman", "mug", "duck")


def make_object(category: str, color: str, seed: int = 0) -> ToyObject:
    """A toy object, e.g. ``make_object("torus", "red", seed=3)``; its caption is "a red torus".

    The seed sets the proportions and a small yaw; the colour never changes the shape.
    """
    check_choice("category", category, CATEGORIES)
    check_choice("color", color, tuple(COLORS))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    rng = random.Random(f"{category}:{seed}")  # str seeds hash with SHA-512: stable across runs
    yaw = rng.uniform(-MAX_YAW, MAX_YAW)
    parts = _BUILDERS[category](rng, COLORS[color])
    inner = sdf.rotate_z(torch.tensor(_INNER_POINTS.get(category, (0.0, 0.0, 0.0))), -yaw)
    return ToyObject(category, color, seed, yaw, tuple(parts), tuple(inner.tolist()))
