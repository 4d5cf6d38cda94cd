"""Data derived from toy-world objects: multi-view datasets, SDF grids, meshes and point clouds.

Everything is deterministic from its arguments. Multi-view datasets are cached on disk
under ``$MINIDIFF3D_CACHE`` (default ``~/.cache/minidiff3d``), keyed by their arguments and
``TOYWORLD_VERSION``, which changes whenever an object or the renderer changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import trimesh

from ..cameras import focal_from_fov, intrinsics, orbit_camera
from ..mesh import extract_mesh, grid_points
from ..validation import check_choice, check_positive_int
from .objects import CATEGORIES, COLORS, ToyObject, make_object

_COLOR_NAMES = tuple(COLORS)
from .render import DEFAULT_FOV_DEG, DEFAULT_RADIUS, render

TOYWORLD_VERSION = 2


@dataclass
class MultiViewData:
    """Posed views of one scene. Images are ``[N,H,W,3]`` in [0,1], as a NeRF consumes them.

    ``c2ws [N,4,4]`` are OpenGL camera-to-world matrices, ``K [3,3]`` the shared intrinsics,
    ``elevations``/``azimuths`` ``[N]`` in degrees, of each camera centre about the origin (``load_blender`` computes
    them from the matrices).
    """

    images: torch.Tensor
    alphas: torch.Tensor
    c2ws: torch.Tensor
    K: torch.Tensor
    elevations: torch.Tensor
    azimuths: torch.Tensor
    captions: list[str]
    depths: torch.Tensor | None = None  # ray distance, 0 on the background; None when unknown

    @property
    def focal(self) -> float:
        return float(self.K[0, 0])

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, indices) -> MultiViewData:
        """The views at ``indices`` (a list, slice or index tensor)."""
        if isinstance(indices, list | tuple):
            indices = torch.as_tensor(indices, dtype=torch.long)
        captions = [self.captions[i] for i in torch.arange(len(self))[indices].tolist()]
        per_view = {
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[indices]
            for f in fields(self)
            if f.name not in ("K", "captions")
        }
        return MultiViewData(K=self.K, captions=captions, **per_view)


def cache_dir() -> Path:
    return Path(os.environ.get("MINIDIFF3D_CACHE", Path.home() / ".cache" / "minidiff3d"))


def _orbit_angles(n_views: int, elevation_range, azimuths: str, seed: int):
    generator = torch.Generator().manual_seed(seed)
    lo, hi = elevation_range
    if not -90 <= lo <= hi <= 90:
        raise ValueError(f"elevation_range: expected -90 <= lo <= hi <= 90 degrees, got {elevation_range!r}")
    elevation = lo + (hi - lo) * torch.rand(n_views, generator=generator)
    if azimuths == "uniform":  # evenly spaced from a random start
        azimuth = (torch.rand(1, generator=generator) * 360 + torch.arange(n_views) * 360 / n_views) % 360
    else:
        azimuth = torch.rand(n_views, generator=generator) * 360
    return elevation, azimuth


def render_views(
    obj: ToyObject,
    n_views: int,
    height: int = 64,
    width: int = 64,
    fov_deg: float = DEFAULT_FOV_DEG,
    radius: float = DEFAULT_RADIUS,
    elevation_range=(-10.0, 50.0),
    azimuths: str = "uniform",
    seed: int = 0,
    antialias: int = 2,
    cache: bool = True,
) -> MultiViewData:
    """Render ``n_views`` orbit views of ``obj`` (all cameras look at the origin).

    ``azimuths="uniform"`` spaces them evenly from a random start, ``"random"`` draws them;
    elevations are drawn uniformly from ``elevation_range`` (degrees). The same arguments
    always give the same data, read back from the cache after the first call.
    """
    n_views = check_positive_int("n_views", n_views)
    check_choice("azimuths", azimuths, ("uniform", "random"))
    key = dict(
        category=obj.category, color=obj.color, object_seed=obj.seed, n_views=n_views, height=height, width=width,
        fov_deg=fov_deg, radius=radius, elevation_range=list(elevation_range), azimuths=azimuths, seed=seed,
        antialias=antialias,
    )

    def build() -> dict:
        elevation, azimuth = _orbit_angles(n_views, elevation_range, azimuths, seed)
        c2ws = orbit_camera(elevation, azimuth, radius)
        views = [render(obj, c2w, height, width, fov_deg, antialias=antialias) for c2w in c2ws]
        return dict(
            images=torch.stack([v["image"] for v in views]),
            alphas=torch.stack([v["alpha"] for v in views]),
            c2ws=c2ws,
            K=intrinsics(focal_from_fov(fov_deg, width), height, width),
            elevations=elevation,
            azimuths=azimuth,
            captions=[obj.caption] * n_views,
            depths=torch.stack([v["depth"] for v in views]),
        )

    return MultiViewData(**_cached("views", key, build, cache))


def _cached(kind: str, key: dict, build, cache: bool = True) -> dict:
    """``build()`` (a dict of tensors and lists), stored under the cache folder ``kind`` by ``key`` and the version."""
    key = {"version": TOYWORLD_VERSION, **key}
    path = cache_dir() / kind / (hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".pt")
    if cache and path.exists():
        return torch.load(path, weights_only=True)
    value = build()
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(value, tmp)
        tmp.replace(path)  # atomic, so a crash never leaves a half-written cache entry
    return value


def sdf_grid(obj: ToyObject, resolution: int = 32, truncation: float | None = None) -> torch.Tensor:
    """Signed distances ``[1,R,R,R]`` on the course's grid over [-1,1]^3, axis k being coordinate k.

    ``truncation`` clamps them to [-truncation, truncation] (a TSDF), which keeps a diffusion
    model's targets in a fixed range and its capacity near the surface.
    """
    values = obj.sdf(grid_points(resolution).reshape(-1, 3)).reshape(1, resolution, resolution, resolution)
    if truncation is not None:
        if truncation <= 0:
            raise ValueError(f"truncation: expected a positive distance or None, got {truncation!r}")
        values = values.clamp(-truncation, truncation)
    return values


def object_mesh(obj: ToyObject, resolution: int = 64) -> trimesh.Trimesh:
    """A watertight mesh of ``obj`` by marching cubes on its SDF grid, vertex colours from its albedo."""
    mesh = extract_mesh(sdf_grid(obj, resolution)[0], level=0.0)
    albedo = obj.albedo(torch.as_tensor(mesh.vertices, dtype=torch.float32))
    mesh.visual.vertex_colors = (albedo.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return mesh


def surface_points(obj: ToyObject, n_points: int, seed: int = 0, resolution: int = 64) -> torch.Tensor:
    """``[N,3]`` points uniform over the surface of ``obj``.

    Points are drawn by area on the marching-cubes mesh, then projected onto the exact
    surface along the SDF's gradient, which removes the mesh's faceting error.
    """
    n_points = check_positive_int("n_points", n_points)
    mesh = extract_mesh(sdf_grid(obj, resolution)[0], level=0.0)
    samples, _ = trimesh.sample.sample_surface(mesh, n_points, seed=seed)
    points = torch.as_tensor(samples, dtype=torch.float32)
    for _ in range(2):
        points = points - obj.sdf(points)[:, None] * obj.normals(points)
    return points



def _shape_dataset(kind: str, n_per_category: int, categories, first_seed: int, key: dict, make, cache: bool):
    """``make(obj) -> tensor`` for every shape, stacked, with class indices; cached by ``key``."""
    n_per_category = check_positive_int("n_per_category", n_per_category)
    for category in categories:
        check_choice("categories", category, CATEGORIES)
    key = dict(key, layout="data+labels", n_per_category=n_per_category, categories=list(categories), first_seed=first_seed)

    def build() -> dict:
        items, labels = [], []
        for label, category in enumerate(categories):
            for seed in range(first_seed, first_seed + n_per_category):
                items.append(make(make_object(category, _COLOR_NAMES[seed % len(_COLOR_NAMES)], seed)))
                labels.append(label)
        return dict(data=torch.stack(items), labels=torch.tensor(labels))

    data = _cached(kind, key, build, cache)
    return data["data"], data["labels"]


def point_cloud_dataset(n_per_category: int, n_points: int = 1024, categories=CATEGORIES, first_seed: int = 0,
                        cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface point clouds ``[M,N,3]`` and their class indices ``[M]`` (into ``categories``).

    Shapes of each category use object seeds ``first_seed, first_seed + 1, ...``, so disjoint seed
    ranges give disjoint training and held-out sets. Every toy object lies in the unit ball, so
    the clouds are already inside [-1,1]^3, at their true relative sizes.
    """
    n_points = check_positive_int("n_points", n_points)
    return _shape_dataset("point_clouds", n_per_category, categories, first_seed, dict(n_points=n_points),
                          lambda obj: surface_points(obj, n_points, seed=obj.seed), cache)


def sdf_dataset(n_per_category: int, resolution: int = 32, truncation: float | None = 0.1, categories=CATEGORIES,
                first_seed: int = 0, cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """SDF grids ``[M,1,R,R,R]`` (see ``sdf_grid``; truncated to ±``truncation``) and class indices ``[M]``.

    Seeds work as in ``point_cloud_dataset``.
    """
    resolution = check_positive_int("resolution", resolution)
    return _shape_dataset("sdf_grids", n_per_category, categories, first_seed, dict(resolution=resolution, truncation=truncation),
                          lambda obj: sdf_grid(obj, resolution, truncation), cache)
