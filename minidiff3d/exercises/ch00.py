"""Chapter 00's exercises: an orbit camera, rays through pixels, and projecting points back."""

from __future__ import annotations

import torch

from ..cameras import get_rays, orbit_camera, project_points
from . import Exercise, register


def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return round(lo + (hi - lo) * torch.rand(1, generator=generator).item(), 3)


def _orbit_cases(g):
    edges = [("front", dict(elevation_deg=0.0, azimuth_deg=0.0, radius=1.0)),
             ("left side", dict(elevation_deg=0.0, azimuth_deg=90.0, radius=2.0)),
             ("back, from above", dict(elevation_deg=45.0, azimuth_deg=180.0, radius=3.0)),
             ("from below", dict(elevation_deg=-30.0, azimuth_deg=270.0, radius=2.5))]
    random = [(f"random {i}", dict(elevation_deg=_uniform(g, -80, 80), azimuth_deg=_uniform(g, 0, 360),
                                   radius=_uniform(g, 1, 5))) for i in range(8)]
    return edges + random


def _orbit_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got, dtype=torch.float32)
    if got.shape != (4, 4):
        return "return the full 4x4 matrix, with [0, 0, 0, 1] as its last row."
    if not torch.allclose(got[:3, 3], expected[:3, 3], atol=1e-4):
        return "the camera centre (column 3) should be radius * (cos e cos a, cos e sin a, sin e), angles in radians."
    if torch.allclose(got[:3, 2], -expected[:3, 2], atol=1e-4):
        return "column 2 is the camera's +z axis, which points *away* from what the camera sees (it looks down -z)."
    return "columns 0, 1, 2 are the camera's right, up and backward axes in world coordinates."


def _rays_cases(g):
    identity = torch.eye(4)
    edges = [("identity camera, odd size", dict(c2w=identity, height=5, width=5, focal=4.0)),
             ("identity camera, wide image", dict(c2w=identity, height=4, width=6, focal=3.0))]
    random = [(f"orbit camera {i}", dict(c2w=orbit_camera(_uniform(g, -60, 60), _uniform(g, 0, 360), _uniform(g, 2, 4)),
                                          height=int(torch.randint(3, 9, (1,), generator=g)),
                                          width=int(torch.randint(3, 9, (1,), generator=g)), focal=_uniform(g, 3, 10)))
              for i in range(4)]
    return edges + random


def _rays_diagnose(got, expected, kwargs):
    if not isinstance(got, tuple | list) or len(got) != 2:
        return "return a tuple (origins, directions)."
    origins, directions = (torch.as_tensor(x, dtype=torch.float32) for x in got)
    if directions.shape != expected[1].shape:
        return "both outputs are [H, W, 3]: one ray per pixel, rows first."
    if not torch.allclose(origins, expected[0], atol=1e-4):
        return "every ray starts at the camera centre, c2w[:3, 3]."
    _, unnormalised = get_rays(kwargs["c2w"], kwargs["height"], kwargs["width"], kwargs["focal"], normalize=False)
    if torch.allclose(directions, unnormalised, atol=1e-4):
        return "the directions are right but not unit length: divide by their norm."
    if torch.allclose(directions, expected[1].flip(0), atol=1e-4):
        return "rows count downwards in an image, while camera y points up: y = -(i + 0.5 - H/2) / focal."
    return "rays go through pixel centres (i + 0.5, j + 0.5), and the camera looks down its -z axis."


def _project_cases(g):
    cases = []
    for i in range(5):
        c2w = orbit_camera(_uniform(g, -60, 60), _uniform(g, 0, 360), _uniform(g, 2, 4))
        points = torch.rand(6, 3, generator=g) * 1.6 - 0.8
        cases.append((f"random camera {i}", dict(points=points, c2w=c2w, height=32, width=48, focal=40.0)))
    return cases


def _project_diagnose(got, expected, kwargs):
    if not isinstance(got, tuple | list) or len(got) != 2:
        return "return a tuple (pixels [N,2], depth [N])."
    pixels, depth = (torch.as_tensor(x, dtype=torch.float32) for x in got)
    if depth.shape == expected[1].shape and torch.allclose(depth, -expected[1], atol=1e-4):
        return "depth is positive in front of the camera, which looks down its -z axis: depth = -z_camera."
    if pixels.shape == expected[0].shape and torch.allclose(pixels[:, 1], kwargs["height"] - expected[0][:, 1], atol=1e-3):
        return "image rows grow downwards while camera y grows upwards: row = H/2 - focal * y / depth."
    return "world to camera is the inverse of c2w: R^T (p - t), with R = c2w[:3, :3] and t = c2w[:3, 3]."


def _get_rays(c2w, height, width, focal):
    return get_rays(c2w, height, width, focal)


register(Exercise("orbit_camera", "00", orbit_camera, _orbit_cases, diagnose=_orbit_diagnose))
register(Exercise("get_rays", "00", _get_rays, _rays_cases, ("origins", "directions"), _rays_diagnose))
register(Exercise("project_points", "00", project_points, _project_cases, ("pixels", "depth"), _project_diagnose, atol=1e-3))
