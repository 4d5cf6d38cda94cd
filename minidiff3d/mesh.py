"""From a sampled field to a mesh: marching cubes (PyMCubes) into ``trimesh``, and export.

Grid convention (the course's): ``grid[i, j, k]`` is the field at
``(x_i, y_j, z_k)`` with ``x = linspace(lo, hi, R)`` on every axis, so index ``i`` maps to
``lo + i * (hi - lo) / (R - 1)``. Dividing by ``R`` instead of ``R - 1`` shrinks every mesh
by a factor ``(R - 1) / R``: a classic off-by-one.
"""

from __future__ import annotations

from pathlib import Path

import mcubes
import numpy as np
import torch
import trimesh
from scipy import ndimage

from .validation import check_choice, check_positive_int, check_tensor

EXPORT_FORMATS = (".obj", ".ply", ".glb", ".stl", ".off")


def grid_points(resolution: int, bounds=(-1.0, 1.0)) -> torch.Tensor:
    """The course's grid ``[R,R,R,3]``: entry ``[i,j,k]`` is ``(x_i, y_j, z_k)`` over ``linspace(lo, hi, R)``."""
    axis = torch.linspace(bounds[0], bounds[1], check_positive_int("resolution", resolution))
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)


def index_to_world(indices: torch.Tensor, resolution: int, bounds=(-1.0, 1.0)) -> torch.Tensor:
    """Map (fractional) grid indices ``[...,3]`` to world coordinates."""
    lo, hi = bounds
    return lo + indices * (hi - lo) / (resolution - 1)


def extract_mesh(grid, level: float = 0.0, bounds=(-1.0, 1.0), inside: str = "below",
                 fill_interior: bool = False, seal_gaps: int = 1) -> trimesh.Trimesh:
    """Marching cubes on ``grid [R,R,R]`` at ``level``, as a mesh in world coordinates.

    ``inside="below"`` suits signed distances (negative inside); use ``"above"`` for
    densities. Faces wind so that normals point outwards. The grid is padded with an
    outside value first, so a shape that touches the grid's edge still gives a closed mesh.

    ``fill_interior`` counts as inside every region that the outside cannot reach: a NeRF
    only needs a dense shell to look right, and its interior is often a patchwork of low
    density that would otherwise become hundreds of inner surfaces. Through-holes (a mug's handle)
    stay open, because the outside reaches them. A young NeRF's shell has pinholes,
    so gaps up to about ``2 * seal_gaps`` voxels wide are sealed (a morphological closing)
    before the outside is flood-filled; the surface itself is still cut from the raw values.
    """
    grid = check_tensor("grid", torch.as_tensor(grid, dtype=torch.float32), shape=["R", "R", "R"])
    check_choice("inside", inside, ("below", "above"))
    lo, hi = (float(b) for b in bounds)
    if not hi > lo:
        raise ValueError(f"bounds: expected (lo, hi) with lo < hi, got {bounds!r}")
    # PyMCubes treats values above the level as inside; flip signed distances to match.
    field = grid.double().numpy() if inside == "above" else -grid.double().numpy()
    iso = level if inside == "above" else -level
    if not (field.min() < iso < field.max()):
        raise ValueError(
            f"grid: no surface at level {level}: the values range over [{grid.min().item():.4g}, {grid.max().item():.4g}]"
        )
    if fill_interior:
        field = np.where(enclosed_cells(field > iso, seal_gaps), max(field.max(), iso + 1.0), field)
    padded = np.pad(field, 1, constant_values=min(field.min(), iso) - 1.0)
    vertices, faces = mcubes.marching_cubes(padded, iso)
    world = index_to_world(torch.from_numpy(vertices - 1.0), grid.shape[0], (lo, hi)).numpy()
    # No vertex merging: PyMCubes already shares vertices, and merging near-duplicates can pinch the surface.
    return trimesh.Trimesh(world, faces.astype(np.int64), process=False)


def enclosed_cells(solid: np.ndarray, seal_gaps: int = 1) -> np.ndarray:
    """The empty cells of a boolean grid ``solid [R,R,R]`` that the outside cannot reach: beyond the grid's edge is
    outside, and gaps in the solid up to about ``2 * seal_gaps`` cells wide are sealed first (a morphological
    closing). Sealed gaps count as enclosed too: they are pinholes in a shell, to be filled with it."""
    padded = np.pad(np.asarray(solid, dtype=bool), 1, constant_values=False)
    sealed = ndimage.binary_closing(padded, iterations=seal_gaps) if seal_gaps > 0 else padded
    components, _ = ndimage.label(~sealed)  # empty regions, 6-connected; the padding's is the outside
    return (~padded & (components != components[0, 0, 0]))[1:-1, 1:-1, 1:-1]


def small_pieces(solid: np.ndarray, min_piece: float) -> np.ndarray:
    """The cells of ``solid [R,R,R]`` (bool) in connected pieces (26-connected) with fewer cells than ``min_piece``
    times the largest piece's: specks of haze, as ``systems.coloured_mesh`` drops them from a mesh."""
    labels, count = ndimage.label(np.asarray(solid, dtype=bool), structure=np.ones((3, 3, 3)))
    if count == 0:
        return np.zeros_like(labels, dtype=bool)
    sizes = np.bincount(labels.reshape(-1))[1:]
    return np.isin(labels, 1 + np.flatnonzero(sizes < min_piece * sizes.max()))


def meshes_from_sdf_grids(grids, level: float = 0.0, bounds=(-1.0, 1.0), **options) -> list[trimesh.Trimesh | None]:
    """``extract_mesh`` for each signed-distance grid of ``grids [B,1,R,R,R]``; ``None`` where a grid has no surface.

    A generative model can sample a grid that is all inside or all outside; that is a failed
    sample to count, not an error. ``options`` go to ``extract_mesh``.
    """
    grids = check_tensor("grids", torch.as_tensor(grids), shape=["B", 1, "R", "R", "R"], floating=True)
    # the same test extract_mesh makes, asked first instead of matching its error message
    return [extract_mesh(grid, level, bounds, **options) if grid.min() < level < grid.max() else None
            for grid in grids[:, 0].detach().cpu()]


def rgba(colors) -> np.ndarray:
    """Vertex colours ``[V,3]`` in [0,1] (array or tensor) as a mesh stores them: ``[V,4]`` uint8, opaque."""
    rgb = (np.clip(np.asarray(colors, dtype=np.float64), 0, 1) * 255).round()
    return np.concatenate([rgb, np.full((len(rgb), 1), 255)], 1).astype(np.uint8)


def mesh_tensors(mesh: trimesh.Trimesh) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A vertex-coloured mesh as the rasterizer takes it: ``vertices [V,3]``, ``faces [F,3]`` and ``colors [V,3]`` in
    [0,1]."""
    return (torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32),
            torch.as_tensor(np.asarray(mesh.faces), dtype=torch.long),
            torch.as_tensor(mesh.visual.vertex_colors[:, :3] / 255.0, dtype=torch.float32))


def export_mesh(mesh: trimesh.Trimesh, path) -> Path:
    """Write ``mesh`` as .obj, .ply, .glb, .stl or .off (chosen by the suffix); returns the path."""
    path = Path(path)
    check_choice("path suffix", path.suffix.lower(), EXPORT_FORMATS)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return path
