"""DMTet: the tetrahedral grid, the case table and marching tetrahedra, against analytic shapes and PyMCubes."""

import math

import pytest
import torch
import trimesh

from minidiff3d.dmtet import TET_EDGES, TRIANGLE_COUNTS, TRIANGLES, _tet_grid, marching_tetrahedra, tet_grid
from minidiff3d.mesh import extract_mesh, grid_points
from minidiff3d.metrics import chamfer_distance

RESOLUTION = 32  # the chapter's


def test_the_grid_tiles_the_box_without_cracks():
    grid = tet_grid(4)
    a, b, c, d = grid.vertices[grid.tets].unbind(1)
    volumes = torch.linalg.det(torch.stack([b - a, c - a, d - a], -1)) / 6
    assert (volumes > 0).all()
    assert volumes.sum().item() == pytest.approx(8.0, rel=1e-5)  # [-1,1]^3, no overlaps (all positive)
    # Conforming: every triangle is shared by two tetrahedra, or lies on the box's boundary.
    faces = torch.cat([grid.tets[:, [1, 2, 3]], grid.tets[:, [0, 2, 3]], grid.tets[:, [0, 1, 3]], grid.tets[:, [0, 1, 2]]])
    unique, counts = torch.unique(faces.sort(-1).values, dim=0, return_counts=True)
    assert counts.max() == 2
    on_boundary = (grid.vertices[unique].abs() > 1 - 1e-6).all(1).any(-1)  # one coordinate at +-1 for all 3 corners
    assert torch.equal(counts == 1, on_boundary)
    # The cached edges are each tetrahedron's edges.
    local = torch.tensor(TET_EDGES)
    torch.testing.assert_close(grid.edges[grid.tet_edges], grid.tets[:, local].sort(-1).values)


def test_every_case_has_its_triangles_on_the_crossing_edges_facing_out():
    for case in range(16):
        n_inside = bin(case).count("1")
        assert TRIANGLE_COUNTS[case] == {0: 0, 1: 1, 2: 2, 3: 1, 4: 0}[n_inside]
        used = set(TRIANGLES[case][TRIANGLES[case] >= 0].tolist())
        crossing = {n for n, (a, b) in enumerate(TET_EDGES) if (case >> a & 1) != (case >> b & 1)}
        assert used == crossing
    # one tetrahedron, each case: the mesh's signed volume is positive, so its normals point outwards
    grid = tet_grid(1)
    tet = grid.tets[0]
    for case in range(1, 15):
        sdf = torch.ones(len(grid.vertices))
        for k in range(4):
            if case >> k & 1:
                sdf[tet[k]] = -1.0
        single = type(grid)(1, 1.0, grid.vertices, grid.tets[:1], grid.edges, grid.tet_edges[:1])
        vertices, faces = marching_tetrahedra(grid.vertices, sdf, single)
        inside = grid.vertices[tet[[k for k in range(4) if case >> k & 1]]].mean(0)
        a, b, c = vertices[faces].unbind(1)
        normals = torch.linalg.cross(b - a, c - a)
        assert ((normals * (a - inside)).sum(-1) > 0).all(), case


@pytest.mark.parametrize("radius", [0.4, 0.7])
def test_a_sphere_is_watertight_with_its_volume_and_area_within_2_percent(radius):
    grid = tet_grid(RESOLUTION)
    vertices, faces = marching_tetrahedra(grid.vertices, grid.vertices.norm(dim=-1) - radius, grid)
    mesh = trimesh.Trimesh(vertices.numpy(), faces.numpy(), process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and len(mesh.split(only_watertight=False)) == 1
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * radius ** 3, rel=0.02)
    assert mesh.area == pytest.approx(4 * math.pi * radius ** 2, rel=0.02)
    assert (vertices.norm(dim=-1) - radius).abs().max() < 0.1 * grid.cell  # the SDF curves along an edge: a sag


def test_a_torus_matches_pymcubes_on_the_same_field():
    def torus(points):
        ring = torch.stack([points[..., :2].norm(dim=-1) - 0.55, points[..., 2]], -1)
        return ring.norm(dim=-1) - 0.22

    grid = tet_grid(RESOLUTION)
    vertices, faces = marching_tetrahedra(grid.vertices, torus(grid.vertices), grid)
    ours = trimesh.Trimesh(vertices.numpy(), faces.numpy(), process=False)
    assert ours.is_watertight and ours.euler_number == 0  # genus one
    cubes = extract_mesh(torus(grid_points(RESOLUTION + 1)), level=0.0)
    a = torch.as_tensor(trimesh.sample.sample_surface(ours, 4000, seed=0)[0], dtype=torch.float32)
    b = torch.as_tensor(trimesh.sample.sample_surface(cubes, 4000, seed=0)[0], dtype=torch.float32)
    resampled = torch.as_tensor(trimesh.sample.sample_surface(cubes, 4000, seed=1)[0], dtype=torch.float32)
    floor = chamfer_distance(resampled[None], b[None]).item()  # two samplings of one surface differ this much
    assert chamfer_distance(a[None], b[None]).item() < 1.3 * floor
    assert torus(vertices).abs().max() < 0.1 * grid.cell


def test_gradients_reach_the_sdf_and_the_vertices():
    grid = tet_grid(3)
    sdf = (grid.vertices.norm(dim=-1) - 0.7).double().requires_grad_()
    vertices = grid.vertices.double().requires_grad_()

    def mean_vertex(v, s):
        surface, _ = marching_tetrahedra(v, s, grid)
        return surface.square().sum(-1).mean()

    assert torch.autograd.gradcheck(mean_vertex, (vertices, sdf), eps=1e-7, atol=1e-6)
    surface, faces = marching_tetrahedra(vertices, sdf, grid)
    (surface.norm(dim=-1) - 0.3).square().sum().backward()  # pull the surface in: the SDF must rise
    assert sdf.grad.abs().sum() > 0 and vertices.grad.abs().sum() > 0


def test_one_sign_gives_an_empty_mesh_and_bad_input_named_errors():
    grid = tet_grid(2)
    vertices, faces = marching_tetrahedra(grid.vertices, torch.ones(len(grid.vertices)), grid)
    assert vertices.shape == (0, 3) and faces.shape == (0, 3)
    with pytest.raises(ValueError, match="sdf"):
        marching_tetrahedra(grid.vertices, torch.ones(5), grid)
    with pytest.raises(ValueError, match="sdf"):
        marching_tetrahedra(grid.vertices, torch.full((len(grid.vertices),), math.nan), grid)
    with pytest.raises(ValueError, match="resolution"):
        tet_grid(0)


def test_a_callers_change_to_its_grid_cannot_reach_the_next_caller():
    grid = tet_grid(3)
    grid.vertices.mul_(2)
    grid.tets.zero_()
    fresh = tet_grid(3)
    assert fresh.vertices.abs().max() == 1.0 and fresh.tets.max() == 4**3 - 1
    assert _tet_grid.cache_info().hits > 0  # built once, copied for each caller
