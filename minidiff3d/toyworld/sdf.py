"""Exact signed distance functions of the toy world's primitives (negative inside).

Points are ``[...,3]`` tensors and distances ``[...]``. Rotationally symmetric shapes are
2-D profiles in (radius, height) *revolved* about an axis, and prisms are 2-D profiles
*extruded* along one; both keep a 2-D SDF exact in 3-D, which is what lets a sphere tracer
take full-length steps. Unions (``min``) stay exact outside, which is all a tracer needs.
"""

from __future__ import annotations

import math

import torch


def sphere(p: torch.Tensor, radius: float) -> torch.Tensor:
    return p.norm(dim=-1) - radius


def box(p: torch.Tensor, half_size, rounding: float = 0.0) -> torch.Tensor:
    """A box of half-extents ``half_size`` (3 numbers), its edges rounded by ``rounding``."""
    q = p.abs() - (torch.as_tensor(half_size, dtype=p.dtype) - rounding)
    outside = q.clamp(min=0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0)
    return outside + inside - rounding


def torus(p: torch.Tensor, major: float, minor: float) -> torch.Tensor:
    """A ring around the z axis: tube of radius ``minor`` at distance ``major`` from the axis."""
    ring = torch.stack([p[..., :2].norm(dim=-1) - major, p[..., 2]], -1)
    return ring.norm(dim=-1) - minor


def capsule(p: torch.Tensor, a, b, radius: float) -> torch.Tensor:
    """All points within ``radius`` of the segment from ``a`` to ``b``."""
    a, b = torch.as_tensor(a, dtype=p.dtype), torch.as_tensor(b, dtype=p.dtype)
    ab, ap = b - a, p - a
    s = ((ap @ ab) / (ab @ ab)).clamp(0, 1)
    return (ap - s[..., None] * ab).norm(dim=-1) - radius


def _segment_distance(q: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ab, aq = b - a, q - a
    s = ((aq @ ab) / (ab @ ab)).clamp(0, 1)
    return (aq - s[..., None] * ab).norm(dim=-1)


def polygon2d(q: torch.Tensor, vertices) -> torch.Tensor:
    """Exact SDF of a convex polygon (vertices counter-clockwise) at 2-D points ``[...,2]``."""
    v = torch.as_tensor(vertices, dtype=q.dtype)
    edges = list(zip(v, v.roll(-1, 0)))
    distance = torch.stack([_segment_distance(q, a, b) for a, b in edges]).min(0).values
    # Inside a convex CCW polygon every edge has the point on its left.
    inside = torch.stack([(b - a)[0] * (q[..., 1] - a[1]) - (b - a)[1] * (q[..., 0] - a[0]) > 0 for a, b in edges]).all(0)
    return torch.where(inside, -distance, distance)


def dome2d(q: torch.Tensor, radius: float, cut: float) -> torch.Tensor:
    """Exact SDF of the part of a disc of ``radius`` above the line y = ``cut``, at ``[...,2]``.

    Revolved, it is a sphere's cap (a mushroom's top). Its boundary is an arc and a chord:
    the distance is the smaller of the two, the sign is negative inside.
    """
    rim_x = math.sqrt(radius**2 - cut**2)
    x, y = q[..., 0].abs(), q[..., 1]
    on_arc_side = y * rim_x >= cut * x  # direction from the centre passes through the arc
    to_arc = torch.where(on_arc_side, (q.norm(dim=-1) - radius).abs(), torch.hypot(x - rim_x, y - cut))
    to_chord = torch.hypot((x - rim_x).clamp(min=0), y - cut)
    inside = (q.norm(dim=-1) < radius) & (y > cut)
    distance = torch.minimum(to_arc, to_chord)
    return torch.where(inside, -distance, distance)


def revolve(p: torch.Tensor, profile, axis: int = 2) -> torch.Tensor:
    """Revolve a 2-D SDF ``profile(q [...,2])`` about a coordinate axis.

    The profile's x is the distance from the axis and its y the coordinate along it; the
    profile must be symmetric in x, so that it is exact for the x >= 0 half that is used.
    """
    others = [k for k in range(3) if k != axis]
    q = torch.stack([p[..., others].norm(dim=-1), p[..., axis]], -1)
    return profile(q)


def extrude(p: torch.Tensor, profile, half_length: float, axis: int = 1) -> torch.Tensor:
    """Extrude a 2-D SDF over the two other coordinates along ``axis``, ``half_length`` each way."""
    others = [k for k in range(3) if k != axis]
    w = torch.stack([profile(p[..., others]), p[..., axis].abs() - half_length], -1)
    return w.max(dim=-1).values.clamp(max=0) + w.clamp(min=0).norm(dim=-1)


def rotate_z(p: torch.Tensor, degrees: float) -> torch.Tensor:
    """Points in the frame of an object yawed by ``degrees`` about z (inverse rotation)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return torch.stack([c * p[..., 0] + s * p[..., 1], -s * p[..., 0] + c * p[..., 1], p[..., 2]], -1)
