"""The one ray marcher against analytic cases: chords, Beer-Lambert, shading, normals, hierarchy, occupancy."""

import math

import pytest
import torch
import torch.nn.functional as F

from minidiff3d.cameras import focal_from_fov, orbit_camera
from minidiff3d.marcher import (MarcherConfig, OccupancyGrid, RayMarcher, SolidBackground, finite_difference_normals,
                                sphere_chords)
from minidiff3d.shading import AMBIENT, shade


class UniformBall(torch.nn.Module):
    """Density ``sigma`` inside radius ``r`` (a smooth edge, so finite differences see a radial gradient), grey albedo."""

    def __init__(self, sigma=2.0, r=0.5, sharpness=400.0):
        super().__init__()
        self.sigma, self.r, self.sharpness = sigma, r, sharpness

    def density(self, points):
        return self.sigma * torch.sigmoid((self.r - points.norm(dim=-1)) * self.sharpness)

    def forward(self, points, directions=None):
        return {"density": self.density(points), "rgb": torch.full_like(points, 0.5)}


def test_sphere_chords_by_hand():
    origins = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.6, 3.0], [0.0, 2.0, 3.0]])
    directions = torch.tensor([[0.0, 0.0, -1.0]] * 3)
    near, far, hit = sphere_chords(origins, directions, 1.0)
    assert hit.tolist() == [True, True, False]
    assert torch.allclose(near[:2], torch.tensor([2.0, 3 - 0.8]), atol=1e-6)
    assert torch.allclose(far[:2], torch.tensor([4.0, 3 + 0.8]), atol=1e-6)
    # a ray whose line crosses the sphere behind its origin misses; one starting inside hits from 0
    near, far, hit = sphere_chords(torch.tensor([[2.8, 0.0, 0.0], [0.5, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]] * 2), 1.0)
    assert hit.tolist() == [False, True] and near[1] == 0 and torch.isclose(far[1], torch.tensor(0.5))


def test_a_ray_pointing_away_from_the_sphere_shows_the_background():
    marcher = RayMarcher(n_samples=8, radius=1.0)
    out = marcher(UniformBall(sigma=2.0, r=0.5), torch.tensor([[2.8, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]),
                  SolidBackground())
    assert out["opacity"].item() == 0 and torch.allclose(out["rgb"], torch.ones(1, 3))


@pytest.mark.parametrize("bounds", [dict(radius=1.0), dict(near=1.8, far=3.8)], ids=["sphere chords", "near/far"])
def test_marcher_matches_beer_lambert_through_a_uniform_ball(bounds):
    marcher = RayMarcher(n_samples=2048, **bounds)
    c2w = orbit_camera(0.0, 0.0, 2.8)[None]
    out = marcher.render(UniformBall(sigma=2.0, r=0.5), c2w, 33, 33, focal_from_fov(40.0, 33), SolidBackground())
    centre = out["opacity"][0, 0, 16, 16]  # the centre ray crosses a chord of length 2r
    assert torch.isclose(centre, torch.tensor(1 - math.exp(-2.0 * 1.0)), atol=2e-3)
    assert out["opacity"][0, 0, 0, 0] < 1e-6 and torch.allclose(out["rgb"][0, :, 0, 0], torch.ones(3))  # a corner misses
    # grey albedo over white: rgb = 0.5 opacity + (1 - opacity)
    assert torch.allclose(out["rgb"][0, :, 16, 16], (0.5 * centre + 1 - centre).expand(3), atol=1e-5)
    assert torch.isclose(out["depth"][0, 0, 16, 16] / centre, torch.tensor(2.8 - 0.5 + 0.5 - 1 / (math.exp(2) - 1)),
                         atol=1e-2)  # the expected depth of first absorption, given absorption in the ball


def test_a_missed_chord_costs_nothing_and_shows_the_background():
    calls = []

    class Counting(UniformBall):
        def forward(self, points, directions=None):
            calls.append(len(points))
            return super().forward(points, directions)

    origins = torch.tensor([[0.0, 2.0, 3.0], [0.0, 0.0, 3.0]])
    directions = torch.tensor([[0.0, 0.0, -1.0]] * 2)
    out = RayMarcher(8, radius=1.0)(Counting(), origins, directions, SolidBackground((0.2, 0.4, 0.6)), perturb=False)
    assert calls == [8]  # only the ray that hits the sphere is sampled
    assert torch.equal(out["rgb"][0], torch.tensor([0.2, 0.4, 0.6])) and out["opacity"][0] == 0 and out["depth"][0] == 0


def test_shading_by_hand():
    albedo, normals = torch.tensor([[0.8, 0.4, 0.2]]), torch.tensor([[0.0, 0.0, 1.0]])
    light = torch.tensor([[0.0, 0.6, 0.8]])
    assert torch.equal(shade(albedo, None, None, "albedo"), albedo)
    diffuse = 0.3 + 0.7 * 0.8
    assert torch.allclose(shade(albedo, normals, light, "lambertian", ambient=0.3), albedo * diffuse)
    assert torch.allclose(shade(albedo, normals, light, "textureless", ambient=0.3), torch.full((1, 3), diffuse))
    assert torch.allclose(shade(albedo, normals, -light, "lambertian"), albedo * AMBIENT)  # from behind: ambient only
    with pytest.raises(ValueError, match="mode"):
        shade(albedo, normals, light, "phong")


def test_the_toy_world_is_lit_as_the_course_shades():
    # One light for the whole course: a toy-world render is shading.shade's lambertian under LIGHT_DIR and AMBIENT.
    from minidiff3d.shading import LIGHT_DIR
    from minidiff3d.toyworld import make_object, render

    sphere = make_object("sphere", "red", 0)
    out = render(sphere, orbit_camera(20.0, 40.0, 2.8), 24, 24, antialias=1)
    hit = out["alpha"] == 1
    light = F.normalize(torch.tensor(LIGHT_DIR), dim=0).expand(int(hit.sum()), 3)
    albedo = sphere.albedo(torch.zeros(1, 3)).expand(int(hit.sum()), 3)
    expected = shade(albedo, out["normals"][hit], light, "lambertian", AMBIENT)
    assert torch.allclose(out["image"][hit], expected.clamp(0, 1), atol=1e-5)


def test_finite_difference_normals_of_a_ball_point_outwards():
    ball = UniformBall(r=0.5)
    shell = F.normalize(torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), dim=-1) * 0.5
    normals = finite_difference_normals(ball.density, shell, ball.density(shell), eps=1e-3)
    assert (normals * F.normalize(shell, dim=-1)).sum(-1).min() > 0.99


def test_textureless_ball_lit_from_the_camera_is_brightest_at_its_centre_and_faces_the_viewer():
    marcher = RayMarcher(256, radius=1.0)
    c2w = orbit_camera(0.0, 0.0, 2.8)[None]
    towards_camera = F.normalize(c2w[:, :3, 3], dim=-1)
    out = marcher.render(UniformBall(sigma=50.0, sharpness=40.0), c2w, 33, 33, focal_from_fov(40.0, 33), SolidBackground(),
                         "textureless", towards_camera)
    # Head-on, n·l = 1: the full light; nearer the silhouette, n·l falls towards the ambient.
    assert out["rgb"][0, 0, 16, 16] == pytest.approx(1.0, abs=2e-2) and out["rgb"][0, 0, 16, 16] > out["rgb"][0, 0, 16, 22]
    normal = out["normal"][0, :, 16, 16]
    assert torch.allclose(normal / normal.norm(), towards_camera[0], atol=2e-2)
    assert out["orientation"].item() < 1e-3  # no visible normal faces away from the viewer


def test_hierarchical_samples_sharpen_a_thin_shell():
    class Shell(torch.nn.Module):  # all the density in a 0.02-thick shell: stratified samples mostly miss it
        def density(self, points):
            return 200.0 * ((points.norm(dim=-1) - 0.5).abs() < 0.01).float()

        def forward(self, points, directions=None):
            return {"density": self.density(points), "rgb": torch.full_like(points, 0.5)}

    origins, directions = torch.tensor([[0.0, 0.0, 3.0]]).expand(64, 3), torch.tensor([[0.0, 0.0, -1.0]]).expand(64, 3)
    exact = 1 - math.exp(-200.0 * 0.02)  # each of the two crossings; the first hides most of the second
    errors = {}
    for n_fine in (0, 64):
        generator = torch.Generator().manual_seed(0)
        out = RayMarcher(16, n_fine, near=2.0, far=4.0)(Shell(), origins, directions, generator=generator)
        errors[n_fine] = (out["opacity"] - (1 - (1 - exact) ** 2)).abs().mean().item()
    assert errors[64] < errors[0] / 3, errors


def test_occupancy_grid_skips_empty_samples_without_changing_the_image():
    ball, calls = UniformBall(sigma=5.0), []

    class Counting(torch.nn.Module):
        def density(self, points):
            return ball.density(points)

        def forward(self, points, directions=None):
            calls.append(len(points))
            return ball(points, directions)

    grid, generator = OccupancyGrid(resolution=16), torch.Generator().manual_seed(0)
    for _ in range(30):  # one random point per cell each time: a cell the ball only grazes needs a few to be seen
        grid.update(ball.density, generator)
    c2w, focal = orbit_camera(10.0, 30.0, 2.8)[None], focal_from_fov(40.0, 17)
    plain = RayMarcher(64, near=1.8, far=3.8).render(Counting(), c2w, 17, 17, focal, SolidBackground())
    skipped = RayMarcher(64, near=1.8, far=3.8, occupancy=grid).render(Counting(), c2w, 17, 17, focal, SolidBackground())
    assert calls[1] < calls[0] / 4
    # The grid sees each cell at a few random points, so a cell the surface only grazes can be missed: a few
    # silhouette pixels differ by some percent (Instant-NGP's approximation too); the image as a whole does not.
    assert (plain["rgb"] - skipped["rgb"]).abs().mean() < 1e-3 and (plain["rgb"] - skipped["rgb"]).abs().max() < 0.1


@pytest.mark.parametrize("kwargs,message", [
    (dict(), "near, far, radius: expected near and far, or radius alone"),
    (dict(near=1.0, far=2.0, radius=1.0), "near, far, radius: expected near and far, or radius alone"),
    (dict(near=1.0), "near, far, radius"),
    (dict(near=2.0, far=1.0), "near, far: expected near < far"),
    (dict(radius=-1.0), "radius: expected a finite positive number"),
    (dict(radius=1.0, n_samples=0), "n_samples: expected a positive integer"),
    (dict(radius=1.0, n_fine=-1), "n_fine: expected a non-negative integer"),
])
def test_marcher_names_a_bad_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RayMarcher(**kwargs)


def test_marcher_names_bad_rays_and_lights():
    marcher, ball = RayMarcher(8, radius=1.0), UniformBall()
    with pytest.raises(ValueError, match=r"directions: expected shape \[R, 3\]"):
        marcher(ball, torch.zeros(4, 3), torch.zeros(3, 3))
    with pytest.raises(TypeError, match="light_dirs: expected a torch.Tensor"):
        marcher(ball, torch.zeros(4, 3), torch.zeros(4, 3), shading="lambertian")
    with pytest.raises(ValueError, match="shading: expected one of"):
        marcher(ball, torch.zeros(4, 3), torch.zeros(4, 3), shading="phong")
    with pytest.raises(ValueError, match=r"c2w: expected a batch \[B,4,4\]"):
        marcher.render(ball, torch.eye(4), 4, 4, 4.0)
    with pytest.raises(ValueError, match="renderer.n_samples"):
        MarcherConfig(n_samples=0)
