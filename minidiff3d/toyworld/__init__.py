"""The toy world: procedural objects with exact SDFs, a sphere tracer, and the data every chapter trains on."""

from .blender import load_blender, write_blender
from .data import MultiViewData, grid_points, object_mesh, point_cloud_dataset, render_views, sdf_dataset, sdf_grid, surface_points
from .objects import ASYMMETRIC, CATEGORIES, COLORS, TWO_PART, ToyObject, make_object
from .render import DEFAULT_FOV_DEG, DEFAULT_RADIUS, ELEVATION_RANGE, render

__all__ = [
    "ASYMMETRIC", "CATEGORIES", "COLORS", "DEFAULT_FOV_DEG", "DEFAULT_RADIUS", "ELEVATION_RANGE", "MultiViewData", "TWO_PART",
    "ToyObject", "grid_points", "load_blender", "make_object", "object_mesh", "point_cloud_dataset", "render", "render_views",
    "sdf_dataset", "sdf_grid", "surface_points", "write_blender",
]
