"""Chapter 03's exercises: signed distance functions of primitives, the gradient of an SDF grid, a mesh's
Euler characteristic and boundary, and one step of template deformation."""

from __future__ import annotations

import torch
import trimesh

from ..deform import uniform_laplacian
from ..mesh import extract_mesh
from ..metrics import chamfer_distance
from ..toyworld import grid_points, make_object, sdf, sdf_grid
from . import Exercise, register, repeat


def _points(g, n=64):
    return torch.rand(n, 3, generator=g) * 2.4 - 1.2


def _box_reference(points, half_size):
    return sdf.box(points, half_size)


def _box_cases(g):
    edges = [("the centre and a face", dict(points=torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [1.0, 0, 0]]), half_size=(0.5, 0.3, 0.2))),
             ("a corner region", dict(points=torch.tensor([[1.0, 1.0, 1.0]]), half_size=(0.5, 0.5, 0.5))),
             ("beside an edge", dict(points=torch.tensor([[0.8, 0.7, 0.0], [0.8, 0.0, -0.7]]), half_size=(0.5, 0.5, 0.5))),
             ("a thin plate", dict(points=_points(g), half_size=(0.8, 0.8, 0.02))),
             ("random points", dict(points=_points(g), half_size=(0.6, 0.4, 0.8)))]
    return edges + repeat(3, "random box", lambda: dict(points=_points(g),
                                                        half_size=tuple((0.1 + 0.7 * torch.rand(3, generator=g)).tolist())))


def _box_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one distance per point: shape [N]."
    inside = expected < 0
    if inside.any() and torch.allclose(got[~inside], expected[~inside], atol=1e-4):
        return "outside is right; inside, the nearest point of the surface is on the nearest face."
    if inside.any() and torch.allclose(got[inside], expected[inside], atol=1e-4):
        return "inside is right; outside, a point beside an edge or a corner is nearest to that edge or corner, not to a face's plane."
    return "by symmetry, work with |p| in the positive octant, and compare each coordinate with its half-size."


def _torus_reference(points, major, minor):
    return sdf.torus(points, major, minor)


def _torus_cases(g):
    edges = [("on the ring", dict(points=torch.tensor([[0.6, 0.0, 0.0], [0.0, 0.6, 0.0]]), major=0.6, minor=0.2)),
             ("the centre of the hole", dict(points=torch.tensor([[0.0, 0.0, 0.0]]), major=0.6, minor=0.2)),
             ("on the axis, above the hole", dict(points=torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, -1.0]]), major=0.6, minor=0.2)),
             ("a thin ring", dict(points=_points(g), major=0.8, minor=0.02)),
             ("random points", dict(points=_points(g), major=0.5, minor=0.15))]
    return edges + repeat(3, "random torus", lambda: dict(points=_points(g), major=round(0.3 + 0.5 * torch.rand(1, generator=g).item(), 3),
                                                          minor=round(0.05 + 0.2 * torch.rand(1, generator=g).item(), 3)))


def _torus_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one distance per point: shape [N]."
    points, major, minor = kwargs["points"], kwargs["major"], kwargs["minor"]
    if torch.allclose(got, torch.stack([points.norm(dim=-1) - major, points[:, 2]], -1).norm(dim=-1) - minor, atol=1e-4):
        return "the distance from the z axis involves x and y only."
    return "reduce it to 2-D: in the half-plane through the z axis and the point, the tube's cross-section is a disc."


def _gradient_reference(grid, bounds):
    spacing = (bounds[1] - bounds[0]) / (grid.shape[0] - 1)
    return torch.stack(torch.gradient(grid, spacing=spacing), -1)[1:-1, 1:-1, 1:-1]


def _gradient_cases(g):
    def field(resolution, bounds, f):
        return dict(grid=f(grid_points(resolution, bounds)), bounds=bounds)

    def sphere(p):
        return p.norm(dim=-1) - 0.6

    edges = [("the smallest grid", dict(grid=torch.randn(3, 3, 3, generator=g), bounds=(-1.0, 1.0))),
             ("a linear field", field(6, (-1.0, 1.0), lambda p: p @ torch.tensor([1.0, -2.0, 0.5]))),
             ("a sphere", field(16, (-1.0, 1.0), sphere)),
             ("a sphere on other bounds", field(12, (-0.5, 2.0), lambda p: (p - 0.75).norm(dim=-1) - 0.8)),
             ("a truncated sphere", field(16, (-1.0, 1.0), lambda p: sphere(p).clamp(-0.2, 0.2))),
             ("a toy-world mug", dict(grid=sdf_grid(make_object("mug", "red", 0), 20)[0], bounds=(-1.0, 1.0)))]

    def random():
        resolution = int(torch.randint(3, 12, (1,), generator=g))
        return dict(grid=torch.randn(resolution, resolution, resolution, generator=g), bounds=(-1.0, 1.0))

    return edges + repeat(3, "random grid", random)


def _gradient_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "only the interior voxels have a neighbour on both sides along every axis, and each gets 3 components."
    resolution, (lo, hi) = kwargs["grid"].shape[0], kwargs["bounds"]
    for factor, hint in [(2.0, "a central difference spans two voxels, not one."),
                         ((resolution - 1) / resolution, "the voxel size: R samples over [lo, hi] span R - 1 intervals, not R."),
                         ((hi - lo) / (resolution - 1), "divide by the spacing in world units: the gradient of an exact SDF has length 1.")]:
        if torch.allclose(got, factor * expected, atol=1e-4):
            return hint
    if torch.allclose(got.flip(-1), expected, atol=1e-4):
        return "component c is the derivative along axis c: grid[i, j, k] is f at (x_i, y_j, z_k)."
    return "a central difference compares the two neighbours on either side of a voxel."


def _topology_reference(vertices, faces):
    mesh = trimesh.Trimesh(vertices.numpy(), faces.numpy(), process=False)
    return mesh.euler_number, len(trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1))


def _topology_cases(g):
    def case(mesh):
        return dict(vertices=torch.as_tensor(mesh.vertices, dtype=torch.float32), faces=torch.as_tensor(mesh.faces, dtype=torch.long))

    def triangles(faces, n_vertices):
        return trimesh.Trimesh(torch.rand(n_vertices, 3, generator=g).numpy(), faces, process=False)

    tetrahedron = [[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]]
    holed_sphere = trimesh.creation.icosphere(1)
    holed_sphere = trimesh.Trimesh(holed_sphere.vertices, holed_sphere.faces[1:], process=False)
    torus = trimesh.creation.torus(0.6, 0.2, major_sections=8, minor_sections=6)

    def relabelled():
        """A known mesh with its vertices renumbered, its faces shuffled and some of them turned the other way."""
        mesh = (holed_sphere, torus)[int(torch.randint(2, (1,), generator=g))]
        order = torch.randperm(len(mesh.vertices), generator=g)
        faces = torch.argsort(order)[torch.as_tensor(mesh.faces)][torch.randperm(len(mesh.faces), generator=g)]
        flip = torch.rand(len(faces), generator=g) < 0.3
        faces[flip] = faces[flip].flip(-1)
        return dict(vertices=torch.as_tensor(mesh.vertices, dtype=torch.float32)[order], faces=faces)

    return [("one triangle", case(triangles([[0, 1, 2]], 3))),
            ("a square of two triangles", case(triangles([[0, 1, 2], [0, 2, 3]], 4))),
            ("a tetrahedron", case(triangles(tetrahedron, 4))),
            ("a tetrahedron without its last face", case(triangles(tetrahedron[:3], 4))),
            ("a tetrahedron and an unused vertex", case(triangles(tetrahedron, 5))),
            ("two tetrahedra", case(triangles(tetrahedron + [[i + 4 for i in face] for face in tetrahedron], 8))),
            ("a torus", case(torus)),
            ("a sphere with a hole", case(holed_sphere)),
            ("the toy mug at 24³: genus 1", case(extract_mesh(sdf_grid(make_object("mug", "red", 0), 24)[0]))),
            ("the toy mug at 16³: a broken handle, two pieces", case(extract_mesh(sdf_grid(make_object("mug", "red", 0), 16)[0])))
            ] + repeat(2, "relabelled", relabelled)


def _topology_diagnose(got, expected, kwargs):
    if not isinstance(got, tuple | list) or len(got) != 2:
        return "return a tuple (euler_characteristic, boundary_edges)."
    vertices, faces = kwargs["vertices"], kwargs["faces"]
    unused = len(vertices) - len(faces.unique())
    directed = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).unique(dim=0)
    euler = int(got[0])
    if euler == expected[0]:
        return "a boundary edge belongs to one face only; inside a closed surface every edge belongs to two."
    if unused and euler == expected[0] + unused:
        return "a vertex that no face uses is not part of the surface: count only the vertices the faces use."
    if euler == len(faces.unique()) - len(directed) + len(faces):
        return "neighbouring faces run along their shared edge in opposite directions: (a, b) and (b, a) are one edge."
    return "count every vertex, edge and face of the surface once each."


def deformation_step(vertices, edges, target, lr, w_laplacian):
    """One gradient step on ``chamfer(vertices, target) + w_laplacian * mean |L x|^2``."""
    vertices = vertices.detach().clone().requires_grad_(True)
    loss = chamfer_distance(vertices[None], target[None])[0] + w_laplacian * uniform_laplacian(vertices, edges).square().sum(-1).mean()
    loss.backward()
    return (vertices - lr * vertices.grad).detach()


def _step_cases(g):
    square = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])

    def ring(n):
        return torch.stack([torch.arange(n), (torch.arange(n) + 1) % n], -1)

    def random():
        n = int(torch.randint(3, 10, (1,), generator=g))
        return dict(vertices=torch.rand(n, 3, generator=g), edges=ring(n), target=torch.rand(20, 3, generator=g),
                    lr=round(0.2 * torch.rand(1, generator=g).item(), 3), w_laplacian=round(torch.rand(1, generator=g).item(), 3))

    edges = [("no regulariser", dict(vertices=square, edges=ring(4), target=square + 0.1, lr=0.5, w_laplacian=0.0)),
             ("regulariser only pulls", dict(vertices=square, edges=ring(4), target=square, lr=0.1, w_laplacian=1.0)),
             ("one edge", dict(vertices=square[:2], edges=ring(2)[:1], target=square, lr=0.1, w_laplacian=0.5))]
    return edges + repeat(5, "random", random)


def _step_diagnose(got, expected, kwargs):
    got, vertices = torch.as_tensor(got), kwargs["vertices"]
    if got.shape != expected.shape:
        return "return the moved vertices: the shape of vertices."
    if torch.allclose(got, 2 * vertices - expected, atol=1e-4):
        return "a descent step goes against the gradient."
    if kwargs["w_laplacian"] == 0:
        return "the Chamfer part is wrong: let autograd differentiate it, from a copy of the vertices that requires grad."
    return ("the Laplacian part is wrong: each edge makes its two ends neighbours of each other, and the term "
            "averages over the vertices.")


register(Exercise("box_sdf", "03", _box_reference, _box_cases, ("sdf",), _box_diagnose))
register(Exercise("torus_sdf", "03", _torus_reference, _torus_cases, ("sdf",), _torus_diagnose))
register(Exercise("sdf_gradient", "03", _gradient_reference, _gradient_cases, ("gradient",), _gradient_diagnose))
register(Exercise("mesh_topology", "03", _topology_reference, _topology_cases, ("euler_characteristic", "boundary_edges"),
                  _topology_diagnose))
register(Exercise("deformation_step", "03", deformation_step, _step_cases, ("vertices",), _step_diagnose))
