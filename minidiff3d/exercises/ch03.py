"""Chapter 03's exercises: signed distance functions of primitives, and one step of template
deformation. (The marching-cubes index-to-world map is chapter 01's ``index_to_world``.)"""

from __future__ import annotations

import torch

from ..deform import uniform_laplacian
from ..metrics import chamfer_distance
from ..toyworld import sdf
from . import Exercise, register


def _points(g, n=64):
    return torch.rand(n, 3, generator=g) * 2.4 - 1.2


def _box_reference(points, half_size):
    return sdf.box(points, half_size)


def _box_cases(g):
    return [("the centre and a face", dict(points=torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [1.0, 0, 0]]), half_size=(0.5, 0.3, 0.2))),
            ("a corner region", dict(points=torch.tensor([[1.0, 1.0, 1.0]]), half_size=(0.5, 0.5, 0.5))),
            ("random points", dict(points=_points(g), half_size=(0.6, 0.4, 0.8)))]


def _box_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    inside = expected < 0
    if inside.any() and torch.allclose(got[~inside], expected[~inside], atol=1e-4):
        return "outside is right; inside, the distance is the largest (least negative) of q = |p| - half_size."
    if inside.any() and torch.allclose(got[inside], expected[inside], atol=1e-4):
        return "inside is right; outside, take the length of q clamped at 0, so corners measure to the corner."
    return "with q = |p| - half_size: |max(q, 0)| + min(max(q_x, q_y, q_z), 0)."


def _torus_reference(points, major, minor):
    return sdf.torus(points, major, minor)


def _torus_cases(g):
    return [("on the ring", dict(points=torch.tensor([[0.6, 0.0, 0.0], [0.0, 0.6, 0.0]]), major=0.6, minor=0.2)),
            ("the centre of the hole", dict(points=torch.tensor([[0.0, 0.0, 0.0]]), major=0.6, minor=0.2)),
            ("random points", dict(points=_points(g), major=0.5, minor=0.15))]


def _torus_diagnose(got, expected, kwargs):
    return "measure in the plane through the z axis: (distance from the z axis - major, z), then its length minus minor."


def deformation_step(vertices, edges, target, lr, w_laplacian):
    """One gradient step on ``chamfer(vertices, target) + w_laplacian * mean |L x|^2``."""
    vertices = vertices.detach().clone().requires_grad_(True)
    loss = chamfer_distance(vertices[None], target[None])[0] + w_laplacian * uniform_laplacian(vertices, edges).square().sum(-1).mean()
    loss.backward()
    return (vertices - lr * vertices.grad).detach()


def _step_cases(g):
    square = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    ring = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0]])
    return [("no regulariser", dict(vertices=square, edges=ring, target=square + 0.1, lr=0.5, w_laplacian=0.0)),
            ("regulariser only pulls", dict(vertices=square, edges=ring, target=square, lr=0.1, w_laplacian=1.0)),
            ("random", dict(vertices=torch.rand(6, 3, generator=g), edges=torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0]]),
                            target=torch.rand(20, 3, generator=g), lr=0.05, w_laplacian=0.5))]


def _step_diagnose(got, expected, kwargs):
    return ("build the loss with autograd (requires_grad on a copy of the vertices), call backward, and return "
            "vertices - lr * grad; the Laplacian term is the mean over vertices of |L x|^2.")


register(Exercise("box_sdf", "03", _box_reference, _box_cases, ("sdf",), _box_diagnose))
register(Exercise("torus_sdf", "03", _torus_reference, _torus_cases, ("sdf",), _torus_diagnose))
register(Exercise("deformation_step", "03", deformation_step, _step_cases, ("vertices",), _step_diagnose))
