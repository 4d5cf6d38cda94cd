"""Chapter 06's exercises: the rasterizer's edge functions and perspective-correct barycentrics, and marching
tetrahedra's case index and edge crossings, each checked against the function the package itself uses."""

from __future__ import annotations

import torch

from ..dmtet import case_index, edge_crossings
from ..raster import edge_functions, perspective_correct
from . import Exercise, register, repeat


def _count(g, low, high):
    return int(torch.randint(low, high, (1,), generator=g))


# 1. The edge function

def _edge_cases(g):
    triangle = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])

    def at(tri, points):
        return dict(tri=tri.expand(len(points), 3, 2).clone(), p=torch.tensor(points))

    edges = [("points inside the triangle", at(triangle, [[1.0, 1.0], [0.5, 2.0]])),
             ("points outside, one beyond each edge", at(triangle, [[-1.0, 1.0], [1.0, -1.0], [3.0, 3.0]])),
             ("the corners themselves", at(triangle, triangle.tolist())),
             ("the other winding", at(triangle[[0, 2, 1]], [[1.0, 1.0], [5.0, 5.0]])),
             ("a degenerate (collinear) triangle", at(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), [[1.0, 0.0]]))]

    def random():
        n = _count(g, 1, 6)
        return dict(tri=torch.randn(n, 3, 2, generator=g) * 8, p=torch.randn(n, 2, generator=g) * 8)

    return edges + repeat(4, "random triangles", random)


def _edge_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one weight per corner for each point: [..., 3], the shape of tri without its last axis."
    if torch.allclose(got, -expected, atol=1e-4):
        return "the sign is flipped: take (end - start) x (p - start), start and end the edge opposite each corner."
    for shift in (1, 2):
        if torch.allclose(got, expected.roll(shift, -1), atol=1e-4):
            return "the weights are in the wrong order: weight k belongs to corner k, from the edge opposite it."
    if torch.allclose(got * expected.sum(-1, keepdim=True), expected, atol=1e-4):
        return "leave them unnormalised (twice the signed areas): normalising divides by zero on a degenerate triangle."
    return "for corner k, the 2-D cross product of the opposite edge (from corner k+1 to k+2) with the point minus k+1."


# 2. Perspective-correct barycentrics

def _perspective_cases(g):
    def case(weights, w):
        return dict(screen_weights=torch.as_tensor(weights, dtype=torch.float32), w=torch.as_tensor(w, dtype=torch.float32))

    edges = [("a triangle facing the camera: w equal at its corners", case([[0.2, 0.3, 0.5]], [[2.0, 2.0, 2.0]])),
             ("a slanted triangle, one corner far away", case([[1 / 3, 1 / 3, 1 / 3]], [[1.0, 1.0, 10.0]])),
             ("at a corner", case([[1.0, 0.0, 0.0]], [[3.0, 1.0, 2.0]])),
             ("unnormalised screen weights (the edge functions themselves)", case([[2.0, 6.0, 4.0]], [[1.5, 2.5, 4.0]])),
             ("a batch of pixels", case([[0.5, 0.5, 0.0], [0.1, 0.1, 0.8]], [[1.0, 4.0, 2.0], [2.0, 2.0, 8.0]]))]
    return edges + repeat(4, "random", lambda: case(torch.rand(_count(g, 1, 6), 3, generator=g) + 0.01,
                                                     torch.rand(1, 3, generator=g) * 5 + 0.5))


def _perspective_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    weights, w = kwargs["screen_weights"], kwargs["w"].expand_as(kwargs["screen_weights"])
    if got.shape != expected.shape:
        return "one barycentric per corner: the shape of screen_weights, [..., 3]."
    if torch.allclose(got, weights / weights.sum(-1, keepdim=True), atol=1e-4):
        return "these are the screen-space weights, normalised: a slanted triangle needs each divided by its corner's w first."
    if torch.allclose(got, weights * w / (weights * w).sum(-1, keepdim=True), atol=1e-4):
        return "multiply by 1/w, not by w: the far corner (large w) covers fewer pixels per unit of the triangle."
    if torch.allclose(got, weights / w, atol=1e-4):
        return "renormalise after dividing by w, so that the three weights sum to 1."
    return "divide each screen weight by its corner's w, then divide by the sum of the three."


# 3. Marching tetrahedra's case index

def _case_cases(g):
    def case(values):
        return dict(corner_sdf=torch.as_tensor(values, dtype=torch.float32))

    edges = [("all outside, all inside", case([[1.0, 2.0, 0.5, 3.0], [-1.0, -2.0, -0.5, -3.0]])),
             ("one corner inside, each in turn", case(torch.eye(4) * -2 + 1)),
             ("two inside, two out", case([[-1.0, -1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0]])),
             ("a zero value counts as outside", case([[0.0, -1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])),
             ("three inside", case([[-1.0, -1.0, -1.0, 1.0]]))]
    return edges + repeat(4, "random", lambda: case(torch.randn(_count(g, 2, 12), 4, generator=g)))


def _case_diagnose(got, expected, kwargs):
    got, sdf = torch.as_tensor(got), kwargs["corner_sdf"]
    if got.shape != expected.shape:
        return "one case per tetrahedron: [T], from its 4 corners."
    if torch.equal(got.long(), 15 - expected):
        return "inside is where the SDF is negative (the course's convention), so all-negative is case 15."
    if torch.equal(got.long(), ((sdf <= 0).long() << torch.arange(4)).sum(-1)):
        return "a corner exactly at zero counts as outside (SDF < 0 is inside), as the package decides it."
    if torch.equal(got.long(), ((sdf < 0).long() << torch.arange(3, -1, -1)).sum(-1)):
        return "the bits are reversed: corner i sets bit i (value 2**i), so corner 0 alone is case 1."
    return "bit i of the case is set when corner i is inside (SDF < 0): the sum of 2**i over the inside corners."


# 4. Where the surface crosses an edge

def _crossing_cases(g):
    def case(start, end, s_start, s_end):
        return dict(start=torch.as_tensor(start, dtype=torch.float32), end=torch.as_tensor(end, dtype=torch.float32),
                    sdf_start=torch.as_tensor(s_start, dtype=torch.float32), sdf_end=torch.as_tensor(s_end, dtype=torch.float32))

    def random():
        n = _count(g, 1, 8)
        magnitude = torch.rand(2, n, generator=g) + 0.01
        sign = torch.where(torch.rand(n, generator=g) > 0.5, 1.0, -1.0)
        return case(torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g), sign * magnitude[0], -sign * magnitude[1])

    edges = [("equal and opposite values: the midpoint", case([[0.0, 0, 0]], [[1.0, 0, 0]], [-0.5], [0.5])),
             ("the start just inside", case([[0.0, 0, 0]], [[0.0, 2, 0]], [-0.01], [0.99])),
             ("the end just outside", case([[1.0, 1, 1]], [[0.0, 0, 0]], [0.9], [-0.1])),
             ("a zero at the start", case([[0.3, 0.2, 0.1]], [[1.0, 1, 1]], [0.0], [-1.0])),
             ("several edges at once", case([[0.0, 0, 0], [1.0, 0, 0]], [[0.0, 0, 1], [1.0, 1, 0]], [-1.0, 3.0], [3.0, -1.0]))]
    return edges + repeat(4, "random", random)


def _crossing_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    start, end, s_a, s_b = (kwargs[k] for k in ("start", "end", "sdf_start", "sdf_end"))
    if got.shape != expected.shape:
        return "one point per edge: [E,3]."
    if torch.allclose(got, (start + end) / 2, atol=1e-4):
        return "the midpoint ignores the values: the zero of the linear interpolation moves towards the smaller |SDF|."
    if torch.allclose(got, start + (s_b / (s_b - s_a))[:, None] * (end - start), atol=1e-4):
        return "the fraction is measured from the wrong end: the zero lies s_start / (s_start - s_end) of the way from start."
    return "the SDF is linear along the edge: solve s_start + x (s_end - s_start) = 0 for x, and go x of the way."


register(Exercise("edge_functions", "06", edge_functions, _edge_cases, ("weights",), _edge_diagnose))
register(Exercise("perspective_correct", "06", perspective_correct, _perspective_cases, ("barycentrics",),
                  _perspective_diagnose))
register(Exercise("case_index", "06", case_index, _case_cases, ("case",), _case_diagnose))
register(Exercise("edge_crossings", "06", edge_crossings, _crossing_cases, ("points",), _crossing_diagnose))
