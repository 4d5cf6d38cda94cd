import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from minidiff3d.cameras import Cameras, focal_from_fov, get_rays, intrinsics_from_fov, look_at, orbit_camera, project_points


def test_identity_camera_centre_ray_points_down_minus_z():
    _, directions = get_rays(torch.eye(4), 5, 5, focal=4.0)
    assert torch.allclose(directions[2, 2], torch.tensor([0.0, 0.0, -1.0]))
    _, even = get_rays(torch.eye(4), 4, 6, focal=3.0)  # no pixel at the centre: the four middle rays average to -z
    mean = even[1:3, 2:4].reshape(-1, 3).mean(0)
    assert torch.allclose(mean / mean.norm(), torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)


def test_pixel_rows_count_down_and_columns_right():
    _, d = get_rays(torch.eye(4), 3, 3, focal=1.0, normalize=False)
    # hand-computed: pixel (0, 0) centre is at (0.5, 0.5) -> camera (-1, +1, -1) with focal 1
    assert torch.allclose(d[0, 0], torch.tensor([-1.0, 1.0, -1.0]))
    assert torch.allclose(d[2, 2], torch.tensor([1.0, -1.0, -1.0]))


@pytest.mark.parametrize("elevation,azimuth,radius", [(0, 0, 1), (30, 60, 2.5), (-45, 200, 4), (89.9, 10, 3), (90, 0, 2), (-90, 45, 2)])
def test_orbit_camera_sits_at_radius_and_looks_at_origin(elevation, azimuth, radius):
    c2w = orbit_camera(elevation, azimuth, radius)
    centre, view = c2w[:3, 3], -c2w[:3, 2]
    assert math.isclose(centre.norm().item(), radius, rel_tol=1e-6)
    assert torch.allclose(view, -centre / radius, atol=1e-6)
    rotation = c2w[:3, :3]
    assert torch.allclose(rotation.T @ rotation, torch.eye(3), atol=1e-6)
    assert math.isclose(torch.linalg.det(rotation).item(), 1.0, rel_tol=1e-6)
    assert torch.equal(c2w[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_orbit_camera_azimuth_zero_is_plus_x_and_up_is_z():
    c2w = orbit_camera(0.0, 0.0, 2.0)
    assert torch.allclose(c2w[:3, 3], torch.tensor([2.0, 0.0, 0.0]))
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    assert torch.allclose(orbit_camera(0.0, 90.0, 2.0)[:3, 3], torch.tensor([0.0, 2.0, 0.0]), atol=1e-6)


def test_orbit_camera_batches_and_agrees_with_look_at():
    batch = orbit_camera([10.0, 40.0], [30.0, 250.0], 3.0)
    assert batch.shape == (2, 4, 4)
    for c2w in batch:
        assert torch.allclose(look_at(c2w[:3, 3]), c2w, atol=1e-5)


@settings(max_examples=50, deadline=None)
@given(elevation=st.floats(-85.0, 85.0), azimuth=st.floats(-720.0, 720.0), radius=st.floats(0.1, 10.0))
def test_look_at_from_the_orbit_cameras_eye_gives_the_orbit_camera(elevation, azimuth, radius):
    # Away from the poles, where a z-up look-at has no defined right axis and the orbit camera does.
    c2w = orbit_camera(elevation, azimuth, radius)
    torch.testing.assert_close(look_at(c2w[:3, 3]), c2w, rtol=0, atol=1e-5 * max(radius, 1.0))


def test_focal_and_intrinsics_hand_computed():
    assert math.isclose(focal_from_fov(90.0, 64), 32.0, rel_tol=1e-9)
    K = intrinsics_from_fov(90.0, 48, 64)
    assert torch.allclose(K, torch.tensor([[32.0, 0, 32], [0, 32.0, 24], [0, 0, 1]]))


def test_get_rays_batched_shapes():
    origins, directions = get_rays(orbit_camera([0.0, 10.0, 20.0], 0.0), 4, 5, 3.0)
    assert origins.shape == directions.shape == (3, 4, 5, 3)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(3, 4, 5))


def test_projecting_a_ray_returns_its_pixel():
    c2w = orbit_camera(25.0, 40.0, 3.0)
    origins, directions = get_rays(c2w, 6, 8, focal=7.0)
    points = (origins + 2.5 * directions).reshape(-1, 3)
    pixels, depth = project_points(points, c2w, 6, 8, 7.0)
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(8.0), indexing="ij")
    assert torch.allclose(pixels, torch.stack([cols + 0.5, rows + 0.5], -1).reshape(-1, 2), atol=1e-4)
    assert (depth > 0).all()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: get_rays(torch.eye(3), 4, 4, 2.0), r"c2w: expected shape \[..., 4, 4\], got \[3, 3\]"),
        (lambda: get_rays(torch.eye(4), 0, 4, 2.0), "height: expected a positive integer, got 0"),
        (lambda: get_rays(torch.eye(4), 4, 4, -1.0), "focal: expected a finite positive number"),
        (lambda: get_rays(torch.full((4, 4), float("nan")), 4, 4, 1.0), "c2w: expected finite values"),
        (lambda: focal_from_fov(180.0, 64), "fov_deg: expected a field of view below 180"),
        (lambda: orbit_camera(0.0, 0.0, -1.0), "radius: expected positive values"),
        (lambda: orbit_camera([[0.0]], 0.0), "elevation_deg: expected a number or a 1-D sequence"),
        (lambda: look_at((0, 0, 2), up=(0, 0, 1)), "up: expected a vector not parallel"),
        (lambda: project_points(torch.zeros(5, 2), torch.eye(4), 4, 4, 1.0), r"points: expected shape \[N, 3\], got \[5, 2\]"),
    ],
)
def test_bad_input_names_argument_expected_and_actual(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


@pytest.mark.parametrize("call", [lambda: orbit_camera([0.0, 10.0, 20.0], [0.0, 90.0]),
                                  lambda: Cameras.orbit([0.0, 10.0, 20.0], [0.0, 90.0])])
def test_angles_of_different_lengths_are_named_with_their_shapes(call):
    with pytest.raises(ValueError, match=r"elevation.*azimuth.*: expected shapes that broadcast \(numbers, or sequences "
                                         r"of one length\), got elevation\w* \[3\], azimuth\w* \[2\]"):
        call()
