"""The text-to-3D scene parts against analytic cases, and the DreamFusion system end to end on a tiny prior."""

import math

import pytest
import torch
import torch.nn.functional as F
import trimesh

from minidiff3d.cameras import focal_from_fov, orbit_camera
from minidiff3d.pipelines import DreamFusion, DreamFusionConfig
from minidiff3d.pipelines.dreamfusion import opacity_entropy
from minidiff3d.priors import tiny_stable_diffusion
from minidiff3d.scene import DensityField, VolumeRenderer, WhiteBackground, shade, sphere_chords
from minidiff3d.toyworld import DEFAULT_RADIUS
from minidiff3d.toyworld.render import LIGHT_DIR


class UniformBall(torch.nn.Module):
    """Density ``sigma`` inside radius ``r``, 0 outside; a constant grey albedo; radial normals."""

    def __init__(self, sigma=2.0, r=0.5):
        super().__init__()
        self.sigma, self.r = sigma, r

    def forward(self, points):
        inside = points.norm(dim=-1) < self.r
        return self.sigma * inside.float(), torch.full_like(points, 0.5)

    def normals(self, points, density):
        return F.normalize(points, dim=-1)


def test_sphere_chords_by_hand():
    origins = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.6, 3.0], [0.0, 2.0, 3.0]])
    directions = torch.tensor([[0.0, 0.0, -1.0]] * 3)
    near, far, hit = sphere_chords(origins, directions, 1.0)
    assert hit.tolist() == [True, True, False]
    assert torch.allclose(near[:2], torch.tensor([2.0, 3 - 0.8]), atol=1e-6)
    assert torch.allclose(far[:2], torch.tensor([4.0, 3 + 0.8]), atol=1e-6)


def test_renderer_matches_beer_lambert_through_a_uniform_ball():
    renderer = VolumeRenderer(UniformBall(sigma=2.0, r=0.5), WhiteBackground(), n_samples=2048)
    c2w = orbit_camera(0.0, 0.0, 2.8)[None]
    out = renderer(c2w, 33, focal_from_fov(40.0, 33), perturb=False)
    centre = out["opacity"][0, 0, 16, 16]  # the centre ray crosses a chord of length 2r
    assert torch.isclose(centre, torch.tensor(1 - math.exp(-2.0 * 1.0)), atol=2e-3)
    assert out["opacity"][0, 0, 0, 0] == 0 and torch.allclose(out["rgb"][0, :, 0, 0], torch.ones(3))  # a corner misses
    # grey albedo over white: rgb = 0.5 opacity + (1 - opacity)
    assert torch.allclose(out["rgb"][0, :, 16, 16], (0.5 * centre + 1 - centre).expand(3), atol=1e-5)


def test_shading_by_hand():
    albedo, normals = torch.tensor([[0.8, 0.4, 0.2]]), torch.tensor([[0.0, 0.0, 1.0]])
    light = torch.tensor([[0.0, 0.6, 0.8]])
    assert torch.equal(shade(albedo, None, None, "albedo"), albedo)
    diffuse = 0.3 + 0.7 * 0.8
    assert torch.allclose(shade(albedo, normals, light, "lambertian"), albedo * diffuse)
    assert torch.allclose(shade(albedo, normals, light, "textureless"), torch.full((1, 3), diffuse))
    assert torch.allclose(shade(albedo, normals, -light, "lambertian"), albedo * 0.3)  # lit from behind: ambient only
    with pytest.raises(ValueError, match="mode"):
        shade(albedo, normals, light, "phong")


def test_density_field_starts_as_a_blob_with_outward_normals():
    field = DensityField()
    points = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 0.9], [1.2, 0.0, 0.0]])
    density, albedo = field(points)
    assert density[0] > density[1] > 1.0 > density[2] and density[3] == 0  # nothing outside the box
    assert albedo.shape == (4, 3) and ((albedo > 0) & (albedo < 1)).all()
    shell = F.normalize(torch.randn(64, 3), dim=-1) * 0.5
    normals = field.normals(shell, field.density(shell))
    assert (normals * F.normalize(shell, dim=-1)).sum(-1).min() > 0.95


@pytest.fixture(scope="module")
def tiny_pipe():
    pipe = tiny_stable_diffusion()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_dreamfusion_runs_renders_and_exports_a_mesh(tiny_pipe, tmp_path):
    config = DreamFusionConfig(steps=4, render_size=16, n_samples=16, albedo_steps=2,
                               shading_probs={"textureless": 1.0}, lambda_opaque=0.05)
    run = DreamFusion(tiny_pipe, "a red duck", config)
    before = [p.detach().clone() for p in run.geometry.parameters()]
    history = run.fit(show_progress=False)
    assert history["step"] == [1, 2, 3, 4] and history["shading"] == ["albedo", "albedo", "textureless", "textureless"]
    assert any(not torch.equal(a, b) for a, b in zip(before, run.geometry.parameters()))  # SDS moved the field
    views = run.render([0.0, 20.0], [0.0, 90.0], size=24)
    assert views["rgb"].shape == (2, 3, 24, 24) and views["opacity"].shape == (2, 1, 24, 24)
    assert run.turntable(3, size=16).shape == (3, 3, 16, 16)
    mesh = run.export_mesh(tmp_path / "duck.glb", resolution=32, threshold=1.0)
    loaded = trimesh.load(tmp_path / "duck.glb", force="mesh")
    assert len(loaded.faces) == len(mesh.faces) > 0 and mesh.visual.vertex_colors.shape[1] == 4


def test_exported_mesh_drops_haze_specks_and_keeps_the_parts(tiny_pipe, monkeypatch):
    run = DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(steps=1, render_size=16, n_samples=16))

    def balls(*centres_radii):
        def density(points):
            inside = torch.zeros(len(points), dtype=torch.bool)
            for centre, radius in centres_radii:
                inside |= (points - torch.tensor(centre)).norm(dim=-1) < radius
            return 10.0 * inside.float()
        return density

    pieces = lambda **kw: len(run.export_mesh(resolution=40, **kw).split(only_watertight=False))
    monkeypatch.setattr(run.geometry, "density", balls(((0.0, 0.0, 0.0), 0.5), ((0.75, 0.75, 0.0), 0.1)))
    assert pieces() == 1 and pieces(min_piece=0.0) == 2  # the speck has about 4 % of the body's faces
    monkeypatch.setattr(run.geometry, "density", balls(((0.0, 0.0, -0.3), 0.45), ((0.0, 0.0, 0.55), 0.25)))
    assert pieces() == 2  # a head apart from its body is a part, and stays
    with pytest.raises(ValueError, match="min_piece"):
        run.export_mesh(min_piece=1.5)


def test_opacity_entropy_is_bernoullis_and_pushes_haze_to_either_side():
    opacity = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.8, 1.0], requires_grad=True)
    expected = torch.distributions.Bernoulli(probs=opacity.detach().clamp(1e-5, 1 - 1e-5)).entropy()
    entropy = opacity_entropy(opacity)
    torch.testing.assert_close(entropy, expected)
    assert entropy[3].item() == pytest.approx(math.log(2)) and entropy[[0, 5]].max() < 1e-3
    entropy.sum().backward()
    slope = opacity.grad
    assert torch.isfinite(slope).all()  # an empty or opaque ray must not send an infinite gradient
    assert (slope[1:3] > 0).all() and slope[4] < 0 and abs(slope[3]) < 1e-6  # descent: below 1/2 to 0, above to 1


def test_dreamfusion_lights_every_render_by_default(tiny_pipe):
    # Toy SD never saw an unlit object, so the defaults never show it one.
    run = DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(render_size=16, n_samples=16))
    shadings = run.fit(12, show_progress=False)["shading"]
    assert "albedo" not in shadings and {"lambertian", "textureless"} <= set(shadings)


def test_dreamfusion_decays_the_learning_rate_along_a_cosine(tiny_pipe):
    def rates(**kw):
        run = DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(steps=5, render_size=16, n_samples=16, lr=1e-2, **kw))
        seen = []
        run.fit(callback=lambda r, info: seen.append(r.optimizer.param_groups[0]["lr"]), show_progress=False)
        return seen

    # 1e-3 + 4.5e-3 (1 + cos(pi k / 4)) by hand, for k = 0..4
    assert rates(lr_end=1e-3) == pytest.approx([1e-2, 8.682e-3, 5.5e-3, 2.318e-3, 1e-3], rel=1e-4)
    assert rates(lr_end=None) == [1e-2] * 5
    with pytest.raises(ValueError, match="config.lr_end"):
        DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(lr_end=0.0))


def test_dreamfusion_rejects_a_bad_config(tiny_pipe):
    with pytest.raises(ValueError, match="shading_probs"):
        DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(shading_probs={"albedo": 0.5}))
    with pytest.raises(ValueError, match="background"):
        DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(background="black"))


@pytest.mark.parametrize("field,value", [
    ("steps", 0), ("render_size", -1), ("n_samples", 2.5), ("batch_size", 0), ("grid_levels", 0), ("grid_finest", 8),
    ("albedo_steps", -1), ("seed", -1), ("lr", 0.0), ("radius", float("nan")), ("blob_radius", 0.0),
    ("guidance_scale", float("nan")), ("guidance_scale", -1.0), ("blob_density", -1.0), ("lambda_orient", -0.1),
    ("lambda_sparsity", float("inf")), ("lambda_opaque", -1.0), ("lr_end", -1e-3), ("t_range", (1.0, 1.0)),
    ("t_range_end", (0.5, 0.2)), ("elevation_range", (-100.0, 80.0)), ("fov_deg", 180.0), ("ambient", 1.5),
    ("weighting", "snr"), ("light", "sun"), ("background", "black"), ("shading_probs", {"phong": 1.0}),
])
def test_dreamfusion_config_names_a_bad_field_when_built(field, value):
    with pytest.raises(ValueError, match=f"config.{field}: expected"):
        DreamFusionConfig(**{field: value})


def test_dreamfusion_render_names_a_bad_shading(tiny_pipe):
    run = DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(render_size=16, n_samples=16))
    with pytest.raises(ValueError, match="shading: expected one of"):
        run.render(10.0, 0.0, size=8, shading="phong")


def test_dreamfusion_is_a_function_of_its_seed_and_leaves_the_global_rng_alone(tiny_pipe):
    def run(seed, callback=None):
        dream = DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(steps=3, render_size=16, n_samples=16, seed=seed))
        history = dream.fit(callback=callback, show_progress=False)
        return history["loss"], [p.detach().clone() for p in dream.renderer.parameters()]

    state = torch.random.get_rng_state()
    losses, weights = run(0)
    assert torch.equal(torch.random.get_rng_state(), state)
    # A callback that draws global random numbers changes nothing: the run draws only from its own generator.
    for other_losses, other_weights in (run(0), run(0, callback=lambda r, info: torch.rand(1))):
        assert other_losses == losses
        assert all(torch.equal(a, b) for a, b in zip(other_weights, weights))
    assert run(1)[0] != losses


def test_dreamfusion_light_follows_the_config(tiny_pipe):
    c2w = orbit_camera(torch.tensor([10.0, 60.0]), torch.tensor([0.0, 90.0]), DEFAULT_RADIUS)
    world = DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(light="world"))
    camera = DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(light="camera"))
    assert torch.allclose(world.light_centers(c2w), torch.tensor([LIGHT_DIR, LIGHT_DIR]))
    assert torch.equal(camera.light_centers(c2w), c2w[:, :3, 3])
    # Same field (same seed), different light: the shaded renders differ, the albedo ones do not.
    assert torch.equal(world.render(10.0, 90.0, size=16)["rgb"], camera.render(10.0, 90.0, size=16)["rgb"])
    assert not torch.allclose(world.render(10.0, 90.0, 16, "textureless")["rgb"],
                              camera.render(10.0, 90.0, 16, "textureless")["rgb"])
    with pytest.raises(ValueError, match="config.light"):
        DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(light="sun"))
    with pytest.raises(ValueError, match="ambient"):
        DreamFusion(tiny_pipe, "a red duck", DreamFusionConfig(ambient=1.5))
