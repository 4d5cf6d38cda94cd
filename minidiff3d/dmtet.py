"""DMTet (Shen et al. 2021): a signed distance on the vertices of a tetrahedral grid, deformable, meshed by
marching tetrahedra, differentiably in both.

* **The grid.** A cube grid of ``resolution`` cells per axis, each cube cut into 6 tetrahedra around its
  main diagonal (Kuhn's subdivision). Every cube is cut the same way, so neighbouring cubes' faces
  match and the tetrahedra tile the box without cracks. Its unique edges are found once per resolution
  and cached: marching needs them every step, and ``torch.unique`` over every tetrahedron's edges each
  step is the slowest part of the usual implementation on a CPU.
* **Marching tetrahedra.** A tetrahedron whose corners' signs differ holds one triangle (one corner
  apart from the others) or two (two and two). Each surface vertex sits on a grid edge where the SDF
  changes sign, at the zero of its linear interpolation, ``p = a + s_a / (s_a - s_b) (b - a)``: a smooth
  function of the SDF values and of the (deformed) corner positions, which is what lets gradients from
  a rendered image reach both. Unlike marching cubes, the 16 cases have no ambiguity.

Convention: negative inside, as every SDF of the course; triangles wind counter-clockwise seen from
outside, so their normals point out.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import torch

from .validation import check_positive, check_positive_int, check_tensor

TET_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))  # a tetrahedron's local edges, in this order


@dataclass(frozen=True)
class TetGrid:
    """``vertices [N,3]`` over ``[-bound, bound]^3``; ``tets [T,4]`` (positively oriented); ``edges [E,2]`` and
    ``tet_edges [T,6]``, the index into ``edges`` of each tetrahedron's local edge ``TET_EDGES[k]``."""

    resolution: int
    bound: float
    vertices: torch.Tensor
    tets: torch.Tensor
    edges: torch.Tensor
    tet_edges: torch.Tensor

    @property
    def cell(self) -> float:
        return 2 * self.bound / self.resolution


def tet_grid(resolution: int, bound: float = 1.0) -> TetGrid:
    """The grid of ``resolution^3`` cubes, 6 tetrahedra each, over ``[-bound, bound]^3``: built once per size, and
    each caller gets its own tensors, so an in-place change cannot reach the next caller's grid."""
    grid = _tet_grid(check_positive_int("resolution", resolution), check_positive("bound", bound))
    return TetGrid(grid.resolution, grid.bound, *(t.clone() for t in (grid.vertices, grid.tets, grid.edges, grid.tet_edges)))


@functools.lru_cache(maxsize=8)
def _tet_grid(r: int, bound: float) -> TetGrid:
    axis = torch.linspace(-bound, bound, r + 1)
    vertices = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    # Corner (dx, dy, dz) of the cube at (i, j, k) is vertex (i+dx) (r+1)^2 + (j+dy) (r+1) + (k+dz).
    i, j, k = (c.reshape(-1) for c in torch.meshgrid(*(torch.arange(r),) * 3, indexing="ij"))
    base = (i * (r + 1) + j) * (r + 1) + k  # [C] the (0,0,0) corner
    steps = torch.tensor([(r + 1) ** 2, r + 1, 1])
    tets = []
    for order in itertools.permutations(range(3)):  # a monotone path from corner 000 to 111 along the axes
        path, offset = [base], torch.zeros_like(base)
        for axis_index in order:
            offset = offset + steps[axis_index]
            path.append(base + offset)
        tets.append(torch.stack(path, -1))
    tets = torch.cat(tets)  # [6C,4]
    a, b, c, d = vertices[tets].unbind(1)
    negative = torch.linalg.det(torch.stack([b - a, c - a, d - a], -1)) < 0
    tets[negative] = tets[negative][:, [0, 2, 1, 3]]  # swap two corners: every tetrahedron positive
    local = torch.tensor(TET_EDGES)
    pairs = tets[:, local].reshape(-1, 2).sort(-1).values  # [6T,2]
    keys, inverse = torch.unique(pairs[:, 0] * len(vertices) + pairs[:, 1], return_inverse=True)  # 1-D: fast
    edges = torch.stack([keys // len(vertices), keys % len(vertices)], -1)
    return TetGrid(r, bound, vertices, tets, edges, inverse.reshape(-1, 6))


def _case_table() -> tuple[torch.Tensor, torch.Tensor]:
    """``(triangles [16,2,3], counts [16])``: for each inside-pattern (bit k: corner k inside), its triangles as
    local edge indices (-1: none), wound so that normals point from the inside corners to the outside ones.

    Derived on a reference tetrahedron rather than typed in: an affine map of positive determinant keeps
    which side a normal points to, so the winding found here holds for every positive tetrahedron.
    """
    corners = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    midpoints = torch.stack([(corners[a] + corners[b]) / 2 for a, b in TET_EDGES])
    triangles, counts = torch.full((16, 2, 3), -1), torch.zeros(16, dtype=torch.long)
    edge_of = {frozenset(e): n for n, e in enumerate(TET_EDGES)}
    for case in range(1, 15):
        inside = [bool(case >> k & 1) for k in range(4)]
        ins = [k for k in range(4) if inside[k]]
        outs = [k for k in range(4) if not inside[k]]
        if len(ins) == 2:  # a quad: around its cycle, consecutive edges share a corner
            (a, b), (c, d) = ins, outs
            cycle = [edge_of[frozenset(p)] for p in ((a, c), (b, c), (b, d), (a, d))]
            polygons = [cycle[:3], [cycle[0], cycle[2], cycle[3]]]
        else:
            lone = (ins if len(ins) == 1 else outs)[0]
            polygons = [[edge_of[frozenset((lone, other))] for other in range(4) if other != lone]]
        outward = corners[outs].mean(0) - corners[ins].mean(0)
        for n, polygon in enumerate(polygons):
            p0, p1, p2 = midpoints[polygon]
            if torch.linalg.cross(p1 - p0, p2 - p0) @ outward < 0:
                polygon = [polygon[0], polygon[2], polygon[1]]
            triangles[case, n] = torch.tensor(polygon)
        counts[case] = len(polygons)
    return triangles, counts


TRIANGLES, TRIANGLE_COUNTS = _case_table()


def case_index(corner_sdf: torch.Tensor) -> torch.Tensor:
    """``[T]`` the case of each tetrahedron from its corners' ``corner_sdf [T,4]``: bit i is set when corner i is
    inside (SDF < 0; zero counts as outside), so 0 and 15 are the uncut tetrahedra."""
    return ((corner_sdf < 0).long() << torch.arange(4, device=corner_sdf.device)).sum(-1)


def edge_crossings(start: torch.Tensor, end: torch.Tensor, sdf_start: torch.Tensor, sdf_end: torch.Tensor) -> torch.Tensor:
    """``[E,3]`` where the SDF, linear along each edge from ``start [E,3]`` to ``end [E,3]``, is zero, given its
    values ``sdf_start``, ``sdf_end [E]`` of opposite signs (so the denominator is never 0)."""
    weight = (sdf_start / (sdf_start - sdf_end))[:, None]
    return start + weight * (end - start)


def marching_tetrahedra(vertices: torch.Tensor, sdf: torch.Tensor, grid: TetGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """The zero level set of ``sdf [N]`` on ``grid``'s tetrahedra with corners at ``vertices [N,3]``.

    Returns ``(surface_vertices [M,3], faces [K,3])``, differentiable in ``vertices`` and ``sdf``; empty
    (``[0,3]``) where the SDF has one sign everywhere. A zero value counts as outside.
    """
    n = len(grid.vertices)
    vertices = check_tensor("vertices", vertices, shape=[n, 3], floating=True)
    sdf = check_tensor("sdf", sdf, shape=[n], floating=True)
    device = vertices.device
    edges, tets, tet_edges = grid.edges.to(device), grid.tets.to(device), grid.tet_edges.to(device)
    inside = sdf < 0
    crossing = inside[edges[:, 0]] != inside[edges[:, 1]]  # [E]
    vertex_of_edge = torch.cumsum(crossing.long(), 0) - 1  # the surface vertex on each crossing edge
    a, b = edges[crossing].unbind(-1)
    surface = edge_crossings(vertices[a], vertices[b], sdf[a], sdf[b])
    case = case_index(sdf[tets])  # [T]
    count = TRIANGLE_COUNTS.to(device)[case]
    cut = count > 0
    local = TRIANGLES.to(device)[case[cut]]  # [T',2,3]
    global_edges = tet_edges[cut].gather(1, local.clamp(min=0).reshape(len(local), 6)).reshape(local.shape)
    faces = vertex_of_edge[global_edges][local[:, :, 0] >= 0]  # [K,3]
    return surface, faces


__all__ = ["TET_EDGES", "TRIANGLES", "TRIANGLE_COUNTS", "TetGrid", "case_index", "edge_crossings", "marching_tetrahedra",
           "tet_grid"]
