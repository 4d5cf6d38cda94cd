"""The text-to-3D system of parts end to end on a tiny prior, its presets and configs, and the scene parts."""

import copy
import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
import trimesh

from minidiff3d.cameras import Cameras, orbit_camera
from minidiff3d.config import override, parse_assignment, to_dict
from minidiff3d.marcher import RayMarcher, SolidBackground
from minidiff3d.priors import tiny_stable_diffusion
from minidiff3d.scene import DensityField, Material, MaterialConfig
from minidiff3d.shading import LIGHT_DIR
from minidiff3d.systems import PRESETS, RunConfig, System, load_run_config, opacity_entropy, run_config
from minidiff3d.toyworld import DEFAULT_RADIUS


@pytest.fixture(scope="module")
def tiny_pipe():
    pipe = tiny_stable_diffusion()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def small(prompt="a red duck", **overrides) -> RunConfig:
    return run_config("dreamfusion", prompt, {"system.render_size": 16, "renderer.n_samples": 16, **overrides})


def test_density_field_starts_as_a_blob():
    field = DensityField()
    points = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 0.9], [1.2, 0.0, 0.0]])
    out = field(points)
    density = out["density"]
    assert density[0] > density[1] > 1.0 > density[2] and density[3] == 0  # nothing outside the box
    assert out["rgb"].shape == (4, 3) and ((out["rgb"] > 0) & (out["rgb"] < 1)).all()


def test_system_runs_renders_and_exports_a_mesh(tiny_pipe, tmp_path):
    config = small(**{"system.steps": 4, "material.albedo_steps": 2, "material.shading_probs": {"textureless": 1.0},
                      "system.lambda_opaque": 0.05})
    run = System.from_config(config, tiny_pipe)
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


def test_a_part_can_be_swapped_without_editing_the_system(tiny_pipe):
    # The system takes its parts: here a renderer with more samples and a black background, built by hand.
    config = small(**{"system.steps": 2})
    built = System.from_config(config, tiny_pipe)
    swapped = System(built.geometry, built.material, SolidBackground((0.0, 0.0, 0.0)), RayMarcher(24, radius=1.0),
                     built.guidance, built.prompt, config.system)
    swapped.fit(show_progress=False)
    corner = swapped.render(10.0, 0.0, size=16)["rgb"][0, :, 0, 0]
    assert torch.equal(corner, torch.zeros(3))  # the corner ray misses the object and sees the new background


class CountingGuidance:
    """The guidance interface, recording what the system hands it."""

    def __init__(self):
        self.calls = []

    def loss(self, images, cameras, conditions, progress=0.0, generator=None):
        self.calls.append(("loss", images.shape, len(cameras), sorted(conditions), progress))
        return dataclasses.make_dataclass("Out", ["loss", "t"])(images.mean() * 0, torch.zeros(len(images)))

    def update(self, images, cameras, conditions, progress=0.0, generator=None):
        self.calls.append(("update", images.requires_grad))
        return {"lora_loss": 1.5}


def test_the_system_calls_the_guidance_interface_and_its_update_hook(tiny_pipe):
    built = System.from_config(small(**{"system.steps": 3, "system.batch_size": 2}), tiny_pipe)
    guidance = CountingGuidance()
    run = System(built.geometry, built.material, built.background, built.renderer, guidance, built.prompt, built.config)
    infos = []
    run.fit(callback=lambda r, info: infos.append(info), show_progress=False)
    assert guidance.calls[0] == ("loss", (2, 3, 16, 16), 2, ["text"], 0.0)
    assert guidance.calls[1] == ("update", False)  # the update sees detached renders
    assert [c[4] for c in guidance.calls if c[0] == "loss"] == [0.0, 0.5, 1.0]
    assert infos[0]["lora_loss"] == 1.5


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


def test_exported_mesh_drops_haze_specks_and_keeps_the_parts(tiny_pipe, monkeypatch):
    run = System.from_config(small(**{"system.steps": 1}), tiny_pipe)

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


def test_the_dreamfusion_preset_lights_every_render(tiny_pipe):
    # Toy SD never saw an unlit object, so the preset never shows it one.
    shadings = System.from_config(small(), tiny_pipe).fit(12, show_progress=False)["shading"]
    assert "albedo" not in shadings and {"lambertian", "textureless"} <= set(shadings)


def test_the_learning_rate_decays_along_a_cosine(tiny_pipe):
    def rates(lr_end):
        run = System.from_config(small(**{"system.steps": 5, "system.lr": 1e-2, "system.lr_end": lr_end}), tiny_pipe)
        seen = []
        run.fit(callback=lambda r, info: seen.append(r.optimizer.param_groups[0]["lr"]), show_progress=False)
        return seen

    # 1e-3 + 4.5e-3 (1 + cos(pi k / 4)) by hand, for k = 0..4
    assert rates(1e-3) == pytest.approx([1e-2, 8.682e-3, 5.5e-3, 2.318e-3, 1e-3], rel=1e-4)
    assert rates(None) == [1e-2] * 5


def test_a_run_is_a_function_of_its_seed_and_leaves_the_global_rng_alone(tiny_pipe):
    def run(seed, callback=None):
        system = System.from_config(small(**{"system.steps": 3, "system.seed": seed}), tiny_pipe)
        history = system.fit(callback=callback, show_progress=False)
        return history["loss"], [p.detach().clone() for p in system.geometry.parameters()]

    state = torch.random.get_rng_state()
    losses, weights = run(0)
    assert torch.equal(torch.random.get_rng_state(), state)
    # A callback that draws global random numbers changes nothing: the run draws only from its own generator.
    for other_losses, other_weights in (run(0), run(0, callback=lambda r, info: torch.rand(1))):
        assert other_losses == losses
        assert all(torch.equal(a, b) for a, b in zip(other_weights, weights))
    assert run(1)[0] != losses


def test_the_light_follows_the_material():
    c2w = orbit_camera(torch.tensor([10.0, 60.0]), torch.tensor([0.0, 90.0]), DEFAULT_RADIUS)
    world, camera = Material(MaterialConfig(light="world")), Material(MaterialConfig(light="camera"))
    assert torch.allclose(world.light_dirs(c2w), F.normalize(torch.tensor([LIGHT_DIR, LIGHT_DIR]), dim=-1))
    assert torch.allclose(camera.light_dirs(c2w), F.normalize(c2w[:, :3, 3], dim=-1))
    jittered = world.light_dirs(c2w, torch.Generator().manual_seed(0))
    assert torch.allclose(jittered.norm(dim=-1), torch.ones(2)) and not torch.allclose(jittered, world.light_dirs(c2w))


def test_render_names_a_bad_shading(tiny_pipe):
    with pytest.raises(ValueError, match="shading: expected one of"):
        System.from_config(small(), tiny_pipe).render(10.0, 0.0, size=8, shading="phong")


def test_fit_images_fits_the_field_to_given_views(tiny_pipe):
    run = System.from_config(small(**{"system.steps": 30}), tiny_pipe)
    cameras = Cameras.orbit([15.0, 15.0], [0.0, 180.0], DEFAULT_RADIUS)
    targets = torch.zeros(2, 3, 16, 16) + torch.tensor([0.9, 0.1, 0.1])[:, None, None]  # all red
    losses = run.fit_images(targets, cameras)
    assert len(losses) == 30 and losses[-1] < 0.7 * losses[0]
    with pytest.raises(ValueError, match=r"images: expected shape \[2, 3, None, None\]|images: expected shape"):
        run.fit_images(targets[:1], cameras)


# Configs and presets.

def test_every_preset_builds_and_round_trips_through_json():
    for method, preset in PRESETS.items():
        config = run_config(method, "a red duck")
        assert isinstance(preset.description, str) and preset.description
        assert config.method == method and config.prompt.text == "a red duck"
        assert load_run_config(json.loads(json.dumps(to_dict(config)))) == config


def test_the_dreamfusion_preset_is_chapter_04s_config():
    config = run_config("dreamfusion", "a red duck")
    assert (config.system.steps, config.system.lr, config.system.lr_end, config.system.render_size) == (600, 1e-2, 1e-3, 32)
    assert (config.guidance.guidance_scale, config.guidance.t_range, config.guidance.t_range_end) == (7.5, (0.02, 0.98), (0.02, 0.6))
    assert config.system.elevation_range == (-10.0, 80.0) and config.renderer.n_samples == 32
    assert config.material.shading_probs == {"lambertian": 0.7, "textureless": 0.3} and config.material.ambient == 0.45


def test_overrides_by_dotted_key_and_nested_dict_agree():
    base = run_config("dreamfusion", "a red duck")
    dotted = override(base, {"guidance.guidance_scale": 15, "system.elevation_range": [0, 60]})
    nested = override(base, {"guidance": {"guidance_scale": 15.0}, "system": {"elevation_range": (0.0, 60.0)}})
    assert dotted == nested and dotted.guidance.guidance_scale == 15.0 and dotted.system.elevation_range == (0.0, 60.0)
    assert base.guidance.guidance_scale == 7.5  # the original is untouched


@pytest.mark.parametrize("overrides,message", [
    ({"system.stepz": 1}, "system.stepz: unknown key; expected one of system.steps, "),
    ({"sistem.steps": 1}, "sistem: unknown key; expected one of method, system, "),
    ({"system.steps": 1.5}, "system.steps: expected int, got 1.5"),
    ({"system.steps": True}, "system.steps: expected int, got True"),
    ({"guidance.guidance_scale": "high"}, "guidance.guidance_scale: expected float, got 'high'"),
    ({"background.kind": "blue"}, "background.kind: expected one of 'solid', 'learned', got 'blue'"),
    ({"system.elevation_range": [0, 1, 2]}, r"system.elevation_range: expected a list of 2"),
    ({"system.lr_end": "none"}, "system.lr_end: expected float or null, got 'none'"),
    ({"system": 3}, "system: expected a group of keys"),
    ({"system.steps": 0}, "system.steps: expected a positive integer, got 0"),
    ({"guidance.t_range": [1.0, 1.0]}, r"guidance.t_range: expected min < 1"),
    ({"material.shading_probs": {"phong": 1.0}}, "material.shading_probs: expected probabilities"),
    ({"geometry.grid_finest": 8}, "geometry.grid_finest: expected ≥ 16"),
    ({"system.fov_deg": 180.0}, "system.fov_deg: expected a field of view below 180"),
])
def test_a_bad_override_is_named_with_what_was_expected(overrides, message):
    with pytest.raises(ValueError, match=message):
        run_config("dreamfusion", "a red duck", overrides)


def test_an_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="method: expected one of \\['dreamfusion'"):
        run_config("dreamfusoin", "a red duck")
    with pytest.raises(ValueError, match="config: expected a dict with a 'method' key"):
        load_run_config({"system": {}})


def test_parse_assignment_reads_json_values_and_keeps_strings():
    assert parse_assignment("guidance.guidance_scale=15") == ("guidance.guidance_scale", 15)
    assert parse_assignment("system.lr_end=null") == ("system.lr_end", None)
    assert parse_assignment("system.elevation_range=[0, 60]") == ("system.elevation_range", [0, 60])
    assert parse_assignment("prompt.negative=blurry") == ("prompt.negative", "blurry")
    with pytest.raises(ValueError, match="--set: expected KEY=VALUE"):
        parse_assignment("guidance.guidance_scale")


def test_a_saved_state_is_a_snapshot_that_two_runs_can_continue_apart(tiny_pipe):
    config = small(**{"system.steps": 4})
    first = config.build(tiny_pipe)
    first.fit(2, show_progress=False)
    state, logged = first.state_dict(), list(first.history["step"])
    second = config.build(tiny_pipe)
    second.load_state_dict(state)
    second.fit(3, show_progress=False)  # steps 3 to 5
    first.fit(1, show_progress=False)  # step 3
    assert state["history"]["step"] == logged  # the log as saved, not as either run went on
    assert len(logged) == 2 and first.history["step"] == logged + [3] and second.history["step"] == logged + [3, 4, 5]


def test_fit_by_default_takes_the_steps_that_remain_so_a_resumed_run_ends_where_a_whole_one_does(tiny_pipe):
    config = small(**{"system.steps": 5})
    whole = config.build(tiny_pipe)
    whole.fit(show_progress=False)
    part = config.build(tiny_pipe)
    part.fit(2, show_progress=False)
    resumed = config.build(tiny_pipe)
    resumed.load_state_dict(copy.deepcopy(part.state_dict()))
    resumed.fit(show_progress=False)
    assert resumed.history["step"] == whole.history["step"] == [1, 2, 3, 4, 5]
    a, b = whole.geometry.state_dict(), resumed.geometry.state_dict()
    assert all(torch.allclose(a[k], b[k]) for k in a)
    assert whole.fit(show_progress=False)["step"] == [1, 2, 3, 4, 5]  # nothing remains: no step taken
    with pytest.raises(ValueError, match="steps"):
        whole.fit(0, show_progress=False)
