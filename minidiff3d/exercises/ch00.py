"""Chapter 00's exercises: an orbit camera, a look-at camera, rays through pixels, and projecting points back."""

from __future__ import annotations

import math

import torch

from ..cameras import get_rays, look_at, orbit_camera, project_points
from . import Exercise, register, repeat


def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return round(lo + (hi - lo) * torch.rand(1, generator=generator).item(), 3)


def _random_orbit(g, elevation=(-60, 60), radius=(2, 4)):
    return orbit_camera(_uniform(g, *elevation), _uniform(g, 0, 360), _uniform(g, *radius))


def _orbit_cases(g):
    edges = [("front", dict(elevation_deg=0.0, azimuth_deg=0.0, radius=1.0)),
             ("left side", dict(elevation_deg=0.0, azimuth_deg=90.0, radius=2.0)),
             ("back, from above", dict(elevation_deg=45.0, azimuth_deg=180.0, radius=3.0)),
             ("from below", dict(elevation_deg=-30.0, azimuth_deg=270.0, radius=2.5))]
    return edges + repeat(8, "random", lambda: dict(elevation_deg=_uniform(g, -80, 80), azimuth_deg=_uniform(g, 0, 360),
                                                    radius=_uniform(g, 1, 5)))


def _orbit_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got, dtype=torch.float32)
    if got.shape != (4, 4):
        return "return the full 4x4 matrix, with [0, 0, 0, 1] as its last row."
    if not torch.allclose(got[:3, 3], expected[:3, 3], atol=1e-4):
        if math.isclose(got[:3, 3].norm().item(), kwargs["radius"], rel_tol=1e-3):
            return ("the centre is at the right distance but in the wrong direction: are the angles in radians, "
                    "and is azimuth measured from +x towards +y?")
        return "column 3 is the camera centre, on the sphere of the given radius around the origin."
    if torch.allclose(got[:3, 2], -expected[:3, 2], atol=1e-4):
        return "column 2 is the camera's +z axis, which points *away* from what the camera sees (it looks down -z)."
    return "columns 0, 1, 2 are the camera's right, up and backward axes in world coordinates."


def _look_at_cases(g):
    z_up = torch.tensor([0.0, 0.0, 1.0])
    edges = [("on the +x axis", dict(eye=torch.tensor([2.0, 0.0, 0.0]), target=torch.zeros(3), up=z_up)),
             ("an off-centre target", dict(eye=torch.tensor([1.0, 2.0, 0.5]), target=torch.tensor([0.2, -0.1, 0.3]), up=z_up)),
             ("an up vector of length 3", dict(eye=torch.tensor([0.0, -3.0, 1.0]), target=torch.zeros(3), up=3 * z_up)),
             ("an up vector tilted towards the camera", dict(eye=torch.tensor([0.0, -3.0, 1.0]), target=torch.zeros(3),
                                                             up=torch.tensor([0.0, -0.8, 1.0]))),
             ("straight down, with y up", dict(eye=torch.tensor([0.0, 0.0, 3.0]), target=torch.zeros(3), up=torch.tensor([0.0, 1.0, 0.0])))]

    def random():
        target = torch.rand(3, generator=g) - 0.5
        # at most 60 degrees of elevation plus a small tilt of up: never parallel to the viewing direction
        return dict(eye=target + _random_orbit(g)[:3, 3], target=target, up=z_up + 0.2 * torch.randn(3, generator=g))

    return edges + repeat(5, "random", random)


def _look_at_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got, dtype=torch.float32)
    if got.shape != (4, 4):
        return "return the full 4x4 matrix, with [0, 0, 0, 1] as its last row."
    right, up, backward, centre = got[:3].T
    if not torch.allclose(centre, expected[:3, 3], atol=1e-4):
        return "column 3 is where the camera is."
    if torch.allclose(backward, -expected[:3, 2], atol=1e-4):
        return "column 2 is the *backward* axis, from the target to the camera: the camera looks down its -z axis."
    if torch.allclose(right, -expected[:3, 0], atol=1e-4):
        return "the right axis points to the left: with right, up and backward as x, y, z the frame must be right-handed."
    if not math.isclose(right.norm().item(), 1.0, rel_tol=1e-3):
        return "normalise the right axis: the viewing direction and `up` are not perpendicular in general."
    given_up = kwargs["up"] / kwargs["up"].norm()
    if torch.allclose(up, given_up, atol=1e-4) and not torch.allclose(up, expected[:3, 1], atol=1e-4):
        return "`up` is only roughly up: recompute the camera's up axis from the other two, so that all three are perpendicular."
    return "columns 0, 1, 2 are the camera's right, up and backward axes (unit and perpendicular), column 3 its centre."


def _rays_cases(g):
    identity = torch.eye(4)
    edges = [("identity camera, odd size", dict(c2w=identity, height=5, width=5, focal=4.0)),
             ("identity camera, wide image", dict(c2w=identity, height=4, width=6, focal=3.0))]
    return edges + repeat(6, "orbit camera", lambda: dict(c2w=_random_orbit(g), height=int(torch.randint(3, 9, (1,), generator=g)),
                                                          width=int(torch.randint(3, 9, (1,), generator=g)), focal=_uniform(g, 3, 10)))


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
        return "rows count downwards in an image, while camera y points up: flip the sign of the vertical offset."
    return "rays go through pixel centres, not corners, and the camera looks down its -z axis."


def _project_cases(g):
    identity = torch.eye(4)
    edges = [("a point on the optical axis", dict(points=torch.tensor([[0.0, 0.0, -2.0]]), c2w=identity, height=32, width=48, focal=40.0)),
             ("points behind the camera", dict(points=torch.tensor([[0.1, 0.2, 1.0], [-0.3, 0.1, 2.0]]), c2w=identity, height=32,
                                               width=48, focal=40.0))]
    return edges + repeat(6, "random camera", lambda: dict(points=torch.rand(6, 3, generator=g) * 1.6 - 0.8, c2w=_random_orbit(g),
                                                           height=32, width=48, focal=40.0))


def _project_diagnose(got, expected, kwargs):
    if not isinstance(got, tuple | list) or len(got) != 2:
        return "return a tuple (pixels [N,2], depth [N])."
    pixels, depth = (torch.as_tensor(x, dtype=torch.float32) for x in got)
    if depth.shape == expected[1].shape and torch.allclose(depth, -expected[1], atol=1e-4):
        return "depth is positive in front of the camera, and the camera looks down its -z axis."
    if pixels.shape == expected[0].shape and torch.allclose(pixels[:, 1], kwargs["height"] - expected[0][:, 1], atol=1e-3):
        return "image rows grow downwards while camera y grows upwards: flip the sign of the vertical offset."
    return "world to camera undoes c2w: first the translation, then the rotation, whose inverse is its transpose."


def _get_rays(c2w, height, width, focal):
    return get_rays(c2w, height, width, focal)


register(Exercise("orbit_camera", "00", orbit_camera, _orbit_cases, diagnose=_orbit_diagnose))
register(Exercise("look_at", "00", look_at, _look_at_cases, ("c2w",), _look_at_diagnose))
register(Exercise("get_rays", "00", _get_rays, _rays_cases, ("origins", "directions"), _rays_diagnose))
register(Exercise("project_points", "00", project_points, _project_cases, ("pixels", "depth"), _project_diagnose, atol=1e-3))
