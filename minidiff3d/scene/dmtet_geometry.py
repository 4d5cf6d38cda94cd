"""Magic3D's fine-stage geometry: a DMTet surface (SDF and deformation on a tetrahedral grid), coloured by a field.

The surface is ``dmtet.marching_tetrahedra`` of learnable per-vertex signed distances on a grid whose
vertices may each move by up to ``deform_scale`` of a cell. Its colour is a field queried at surface
points: Magic3D keeps the coarse stage's hash-grid network for it, and so do we (only its albedo is read).

It starts from the coarse stage's density ``σ``: the surface is cut where ``σ = iso_level``, and the signed
distance is estimated to first order as ``(iso_level - σ) / |∇σ|`` (negative inside, where the density is
higher), clamped to two cells: only the sign matters far from the surface, and near it the estimate puts the
first mesh where marching cubes on the coarse field would. As chapter 04's export does, grid vertices that the
outside cannot reach (the field's hollow interior, and pinholes up to two cells wide in its shell) count as inside
(``mesh.enclosed_cells``): a density field only needs a shell to look solid, and a 32-cell grid samples a thin
shell with gaps that would become tunnels through the mesh. Specks of haze below ``min_piece`` of the largest
piece count as outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import trimesh
from torch import nn

from ..dmtet import marching_tetrahedra, tet_grid
from ..mesh import enclosed_cells, small_pieces
from ..validation import check_non_negative, check_non_negative_int, check_positive, check_positive_int


@dataclass
class DMTetConfig:
    """The fine stage's geometry: grid ``resolution`` (cells per axis), the coarse density's ``iso_level`` that
    the first surface follows, how far a vertex may move, in cells, and the
    widest gaps in the coarse shell that are sealed (about ``2 * seal_gaps`` cells; 0: none).

    The level is 2, not chapter 04's export level 5: a DreamFusion field is soft, and a mesh cut at 5 misses
    parts that its volume renders show as opaque (a moderate density looks solid through a long path). Over
    the silhouettes of four views (opacity > 0.5 against coverage), level 2 matched best of 1, 2, 3 and 5 on
    the two fields tried (IoU 0.98 and 0.86; 0.79 and 0.72 at 5)."""

    resolution: int = 32
    iso_level: float = 2.0
    deform_scale: float = 0.25
    seal_gaps: int = 1

    def __post_init__(self):
        check_positive_int("fine.geometry.resolution", self.resolution)
        check_positive("fine.geometry.iso_level", self.iso_level)
        check_non_negative("fine.geometry.deform_scale", self.deform_scale)
        check_non_negative_int("fine.geometry.seal_gaps", self.seal_gaps)

    def build(self, coarse: nn.Module) -> "DMTetGeometry":
        """The fine geometry from the coarse stage's field (a ``DensityField``), whose network is its colour."""
        return DMTetGeometry.from_density(coarse, self.resolution, self.iso_level, self.deform_scale, self.seal_gaps)


@torch.no_grad()
def sdf_from_density(density_fn, points: torch.Tensor, iso_level: float, cell: float, chunk: int = 65536) -> torch.Tensor:
    """``[N]`` signed distances estimated at ``points [N,3]``: ``(iso_level - σ) / |∇σ|``, clamped to ±2 ``cell``.

    The gradient is by central differences of half a cell, so it sees the field at the grid's scale."""
    h = cell / 2
    offsets = torch.cat([torch.eye(3), -torch.eye(3)]).to(points) * h
    out = []
    for part in points.split(chunk):
        density = density_fn(part)
        around = density_fn((part[:, None] + offsets).reshape(-1, 3)).reshape(-1, 6)
        gradient = (around[:, :3] - around[:, 3:]) / (2 * h)
        out.append(((iso_level - density) / gradient.norm(dim=-1).clamp(min=1e-6)).clamp(-2 * cell, 2 * cell))
    return torch.cat(out)


class DMTetGeometry(nn.Module):
    """``mesh()`` gives ``(vertices [M,3], faces [K,3])``, differentiable in the parameters ``sdf [N]`` and
    ``deformation [N,3]``; ``forward(points [N,3])`` is the colour field's contract output (``"rgb"`` is read)."""

    def __init__(self, sdf: torch.Tensor, color_field: nn.Module, resolution: int, bound: float = 1.0,
                 deform_scale: float = 0.25):
        super().__init__()
        self.grid = tet_grid(resolution, bound)
        if sdf.shape != (len(self.grid.vertices),):
            raise ValueError(f"sdf: expected one value per grid vertex, [{len(self.grid.vertices)}], got {list(sdf.shape)}")
        self.sdf = nn.Parameter(sdf.clone().float())
        self.deformation = nn.Parameter(torch.zeros(len(sdf), 3))
        self.color_field, self.deform_scale = color_field, deform_scale
        self.register_buffer("grid_vertices", self.grid.vertices.clone(), persistent=False)

    @classmethod
    def from_density(cls, field: nn.Module, resolution: int = 32, iso_level: float = 2.0, deform_scale: float = 0.25,
                     seal_gaps: int = 1, min_piece: float = 0.05):
        grid = tet_grid(resolution, getattr(field, "bound", 1.0))
        device = next(field.parameters()).device
        points = grid.vertices.to(device)
        sdf = sdf_from_density(field.density, points, iso_level, grid.cell).cpu()
        side = resolution + 1  # the grid's vertices are a side^3 lattice, x slowest (tet_grid)
        lattice = (sdf < 0).reshape(side, side, side).numpy()  # sigma > iso_level: the sign is the density's
        enclosed = enclosed_cells(lattice, seal_gaps)
        specks = small_pieces(lattice | enclosed, min_piece)
        sdf[torch.from_numpy(enclosed & ~specks).reshape(-1)] = -grid.cell  # inside, about a cell deep
        sdf[torch.from_numpy(specks).reshape(-1)] = grid.cell  # haze: outside
        return cls(sdf, field, resolution, grid.bound, deform_scale).to(device)

    def vertices(self) -> torch.Tensor:
        """The deformed grid ``[N,3]``: each vertex within ``deform_scale`` cells of where it started (tanh)."""
        return self.grid_vertices + self.deform_scale * self.grid.cell * torch.tanh(self.deformation)

    def mesh(self) -> tuple[torch.Tensor, torch.Tensor]:
        return marching_tetrahedra(self.vertices(), self.sdf, self.grid)

    def forward(self, points: torch.Tensor, directions: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.color_field(points, directions)

    @torch.no_grad()
    def to_trimesh(self) -> trimesh.Trimesh:
        vertices, faces = self.mesh()
        return trimesh.Trimesh(vertices.cpu().numpy(), faces.cpu().numpy(), process=False)
