"""Template deformation: the regularisers against hand cases, and fits to known shapes."""

import math

import numpy as np
import pytest
import torch

from minidiff3d.deform import Template, fit_template, normal_consistency, sample_surface, uniform_laplacian
from minidiff3d.toyworld import make_object, surface_points


def test_laplacian_hand_computed_and_radial_on_a_sphere():
    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 3]])
    edges = torch.tensor([[0, 1], [0, 2], [0, 3]])
    lap = uniform_laplacian(vertices, edges)
    torch.testing.assert_close(lap[0], -torch.tensor([1.0, 1, 3]) / 3)  # minus the neighbours' mean
    torch.testing.assert_close(lap[3], torch.tensor([0.0, 0, 3]))  # its only neighbour is the origin
    icosahedron = Template.icosphere(0, radius=1.0)  # every vertex alike: the Laplacian is purely radial
    lap = uniform_laplacian(icosahedron.vertices, icosahedron.edges)
    cosine = torch.nn.functional.cosine_similarity(lap, icosahedron.vertices, dim=-1)
    assert cosine.min() > 0.9999


def test_normal_consistency_is_zero_when_flat_and_grows_with_a_fold():
    faces, pairs = torch.tensor([[0, 1, 2], [0, 2, 3]]), torch.tensor([[0, 1]])
    flat = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    assert normal_consistency(flat, faces, pairs).item() == pytest.approx(0.0, abs=1e-6)
    folded = flat.clone()
    folded[3, 2] = 1.0  # lift one corner: the second face's normal becomes (1, -1, 1) / sqrt(3)
    assert normal_consistency(folded, faces, pairs).item() == pytest.approx(1 - 1 / math.sqrt(3), abs=1e-5)


def test_surface_samples_lie_on_the_mesh_and_carry_gradients():
    sphere = Template.icosphere(2, radius=1.0)
    vertices = sphere.vertices.clone().requires_grad_()
    points = sample_surface(vertices, sphere.faces, 500, torch.Generator().manual_seed(0))
    assert points.norm(dim=-1).max() <= 1.0 + 1e-5 and points.norm(dim=-1).min() > 0.9  # inside the chords
    points.sum().backward()
    assert vertices.grad.abs().sum() > 0


def test_fit_to_a_bigger_sphere_reaches_its_radius():
    g = torch.Generator().manual_seed(0)
    target = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1) * 0.8
    result = fit_template(target, Template.icosphere(2), steps=150, lr=0.01)
    radii = np.linalg.norm(result.mesh.vertices, axis=1)
    assert abs(radii.mean() - 0.8) < 0.02 and radii.std() < 0.02
    assert result.history["chamfer"][-1] < 0.05 * result.history["chamfer"][0]
    assert result.mesh.is_watertight  # the topology of the sphere survives


def test_fit_to_a_toy_cube_lowers_chamfer_and_keeps_the_surface_smooth():
    target = surface_points(make_object("cube", "red", 0), 2000)
    result = fit_template(target, Template.icosphere(3), steps=200)
    assert result.history["chamfer"][-1] < 0.2 * result.history["chamfer"][0]
    assert result.history["normal"][-1] < 0.1


def test_bad_target_is_named():
    with pytest.raises(ValueError, match=r"target: expected shape \[N, 3\], got \[10, 2\]"):
        fit_template(torch.rand(10, 2))


def test_mesh_connectivity_matches_trimesh():
    from minidiff3d.deform import mesh_connectivity

    sphere = Template.icosphere(2)
    edges, pairs = mesh_connectivity(sphere.faces, len(sphere.vertices))
    as_set = lambda rows: {tuple(sorted(r)) for r in rows.tolist()}
    assert as_set(edges) == as_set(sphere.edges) and len(edges) == len(sphere.edges)
    assert as_set(pairs) == as_set(sphere.face_pairs) and len(pairs) == len(sphere.face_pairs)


def test_the_laplacian_keeps_the_vertices_dtype():
    vertices, edges = torch.rand(5, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([[0, 1], [1, 2], [2, 0]])
    double = uniform_laplacian(vertices.double(), edges)
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), uniform_laplacian(vertices, edges))
