"""DreamGaussian's two stages: the Gaussians' density grid and mesh, SDEdit against diffusers' img2img pipeline,
the densifying system, and the whole run on a tiny prior."""

import copy
import math

import pytest
import torch
import trimesh
from diffusers import StableDiffusionImg2ImgPipeline

from minidiff3d.guidance import SDSConfig
from minidiff3d.mesh import grid_points
from minidiff3d.priors import tiny_stable_diffusion
from minidiff3d.scene.gaussians import LR_SCALES, Gaussians, GaussiansConfig
from minidiff3d.systems import DensifyConfig, DreamGaussian, GaussianSystem, fit_parallel, gaussians_mesh, run_config


@pytest.fixture(scope="module")
def tiny_pipe():
    pipe = tiny_stable_diffusion()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def small(prompt="a red duck", **overrides):
    return run_config("dreamgaussian", prompt, {"system.render_size": 16, "geometry.count": 300, "texture.resolution": 24,
                                                "texture.azimuths": 4, "texture.elevations": [15.0],
                                                "texture.render_size": 16, "texture.steps": 20, **overrides})


def random_gaussians(count, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = Gaussians.in_ball(count, radius=0.5, scale=0.08, opacity=0.6, generator=g)
    with torch.no_grad():
        model.log_scales.add_(0.3 * torch.randn(count, 3, generator=g))
        model.quaternions.normal_(generator=g)
        model.color_logits.normal_(generator=g)
    return model


# Stage 2's field: the Gaussians on a grid.

def test_the_density_grid_is_the_sum_of_the_gaussians_at_every_grid_point():
    model, resolution = random_gaussians(40), 12
    density, color = model.density_grid(resolution, cutoff=8.0, max_pairs=500)  # small chunks, nothing cut off
    points = grid_points(resolution).reshape(-1, 1, 3)
    with torch.no_grad():
        w, x, y, z = model.rotations.unbind(-1)  # the rotation matrix of a unit quaternion, by hand
        r = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                         2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                         2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)
        local = torch.einsum("gji,pgj->pgi", r, points - model.means)  # the offset in each Gaussian's own axes
        weight = model.opacities * torch.exp(-0.5 * (local / model.scales).pow(2).sum(-1))  # [P, G]
        expected_density = weight.sum(-1)
        expected_color = (weight @ model.colors) / expected_density[:, None]
    assert torch.allclose(density.reshape(-1), expected_density, atol=1e-5)
    seen = expected_density > 1e-3
    assert torch.allclose(color.reshape(-1, 3)[seen], expected_color[seen], atol=1e-4)


def test_the_cutoff_drops_only_the_far_tails():
    model = random_gaussians(40, seed=1)
    exact, _ = model.density_grid(16, cutoff=8.0)
    cut, _ = model.density_grid(16, cutoff=3.0)
    assert (cut <= exact + 1e-6).all() and (exact - cut).max() < 0.6 * math.exp(-4.5) * 40


def test_the_mesh_is_the_largest_watertight_piece_coloured_by_its_gaussians():
    means = torch.tensor([[-0.4, 0.0, 0.0], [0.5, 0.0, 0.0]])
    model = Gaussians(means, torch.log(torch.tensor([[0.15] * 3, [0.06] * 3])), torch.tensor([[1.0, 0, 0, 0]] * 2),
                      torch.logit(torch.tensor([0.9, 0.9])), torch.logit(torch.tensor([[0.8, 0.2, 0.1], [0.1, 0.1, 0.9]])))
    mesh = gaussians_mesh(model, resolution=48, level=0.3)
    assert mesh.metadata["pieces"] == 2 and mesh.is_watertight and len(mesh.split(only_watertight=False)) == 1
    centre = mesh.vertices.mean(0)
    assert abs(centre[0] + 0.4) < 0.03 and abs(centre[1]) < 0.03  # the big red one was kept
    # its surface is where 0.9 exp(-r²/2σ²) = 0.3: r = σ √(2 ln 3)
    radius = torch.as_tensor(mesh.vertices - centre).norm(dim=-1)
    assert abs(radius.mean().item() - 0.15 * math.sqrt(2 * math.log(3))) < 0.02
    assert (abs(mesh.visual.vertex_colors[:, :3] / 255.0 - [0.8, 0.2, 0.1]) < 0.02).all()


# SDEdit.

@pytest.mark.parametrize("strength,steps", [(0.5, 10), (0.75, 10), (0.33, 20)])  # strength·steps whole, and not
def test_refine_is_diffusers_img2img_with_the_same_noise(tiny_pipe, strength, steps):
    guidance = SDSConfig(guidance_scale=5.0).build(tiny_pipe)
    cond, uncond = tiny_pipe.encode_prompt(["a red duck", "a blue cone"], "cpu", 1, True, ["", ""])
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ours = guidance.refine(images, {"text": (cond, uncond)}, strength=strength, num_inference_steps=steps,
                           generator=torch.Generator().manual_seed(7))
    img2img = StableDiffusionImg2ImgPipeline(**tiny_pipe.components)
    theirs = img2img(prompt_embeds=cond, negative_prompt_embeds=uncond, image=images, strength=strength,
                     num_inference_steps=steps, guidance_scale=5.0, generator=torch.Generator().manual_seed(7),
                     output_type="pt").images
    assert ours.shape == (2, 3, 32, 32) and torch.allclose(ours, theirs, atol=1e-4)


def test_refine_at_strength_zero_is_the_vaes_round_trip(tiny_pipe):
    guidance = SDSConfig().build(tiny_pipe)
    cond, uncond = tiny_pipe.encode_prompt(["a red duck"], "cpu", 1, True, [""])
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = guidance.refine(images, {"text": (cond, uncond)}, strength=0.0, generator=torch.Generator().manual_seed(2))
    latents = guidance.encode(images, torch.Generator().manual_seed(2))
    by_hand = (tiny_pipe.vae.decode(latents / tiny_pipe.vae.config.scaling_factor).sample + 1) / 2
    assert torch.allclose(out, by_hand.clamp(0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="strength"):
        guidance.refine(images, {"text": (cond, uncond)}, strength=1.5)


# Stage 1: the system on Gaussians.

def test_each_kind_of_gaussian_parameter_gets_its_own_rate_which_the_schedule_scales(tiny_pipe):
    run = small(**{"system.lr": 0.02, "system.lr_end": 0.002, "system.steps": 3}).build(tiny_pipe).gaussians
    rates = {id(p): group["lr"] for group in run.optimizer.param_groups for p in group["params"]}
    assert all(math.isclose(rates[id(getattr(run.geometry, name))], 0.02 * scale) for name, scale in LR_SCALES.items())
    run.schedule_learning_rate(1.0)
    rates = {id(p): group["lr"] for group in run.optimizer.param_groups for p in group["params"]}
    assert math.isclose(rates[id(run.geometry.opacity_logits)], 0.002 * LR_SCALES["opacity_logits"])
    with pytest.raises(ValueError, match="geometry.lr_scales"):
        GaussiansConfig(lr_scales={"means": 1.0})


def test_the_system_densifies_on_schedule_and_logs_the_count(tiny_pipe):
    config = small(**{"system.steps": 4, "densify.every": 2, "densify.start": 2, "densify.stop": 2,
                      "densify.grad_threshold": 1e-12, "densify.min_opacity": 0.0})
    run = config.build(tiny_pipe).gaussians
    assert isinstance(run, GaussianSystem)
    history = run.fit(show_progress=False)
    # every Gaussian that the renders touched passed the threshold after update 2: cloned (all start small)
    assert history["gaussians"][0] == 300 and history["gaussians"][1] > 300
    assert history["gaussians"][1] == history["gaussians"][3]  # only once: stop=2
    assert all(len(p) == history["gaussians"][3] for group in run.optimizer.param_groups for p in group["params"])


def test_a_densified_run_continues_exactly_from_its_state(tiny_pipe):
    config = small(**{"system.steps": 6, "densify.every": 2, "densify.start": 2, "densify.grad_threshold": 1e-12})
    first = config.build(tiny_pipe).gaussians
    first.fit(3, show_progress=False)
    state = copy.deepcopy(first.state_dict())  # as saved to disk: the live tensors move on
    first.fit(2, show_progress=False)
    second = config.build(tiny_pipe).gaussians
    second.load_state_dict(state)
    assert len(second.geometry) == state["geometry"]["means"].shape[0] != 300
    second.fit(2, show_progress=False)
    assert torch.equal(first.geometry.means, second.geometry.means)
    assert first.history["loss"] == second.history["loss"]


def test_a_run_resumed_between_two_densifications_densifies_as_the_uninterrupted_one(tiny_pipe):
    # A threshold that some Gaussians pass and some do not: the statistics gathered before the interruption count.
    config = small(**{"system.steps": 6, "densify.every": 4, "densify.start": 4, "densify.grad_threshold": 0.01})
    whole = config.build(tiny_pipe).gaussians
    whole.fit(show_progress=False)
    first = config.build(tiny_pipe).gaussians
    first.fit(3, show_progress=False)
    resumed = config.build(tiny_pipe).gaussians
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    resumed.fit(3, show_progress=False)
    assert 300 < whole.history["gaussians"][-1] < 600  # some densified, not all
    assert resumed.history["gaussians"] == whole.history["gaussians"]
    assert resumed.history["loss"] == whole.history["loss"]
    older = copy.deepcopy(first.state_dict())
    del older["densify_statistics"]  # a checkpoint written before they were saved still loads, the statistics at zero
    late = config.build(tiny_pipe).gaussians
    late.load_state_dict(older)
    assert late.geometry.grad_sum.abs().sum() == 0 and len(late.geometry.seen) == len(late.geometry)


def test_bad_densification_settings_are_named():
    with pytest.raises(ValueError, match="densify.every"):
        DensifyConfig(every=0)
    with pytest.raises(ValueError, match="densify.min_opacity"):
        DensifyConfig(min_opacity=2.0)
    with pytest.raises(ValueError, match=r"densify.stop: expected at least densify.start \(300\), got 100"):
        DensifyConfig(start=300, stop=100)


# The whole run.

def test_dreamgaussian_runs_both_stages_and_writes_a_glb_in_one_watertight_piece(tiny_pipe, tmp_path):
    config = small(**{"system.steps": 3, "geometry.scale": 0.1, "geometry.opacity": 0.5, "texture.level": 0.3})
    run = config.build(tiny_pipe)
    assert isinstance(run, DreamGaussian)
    history = run.fit(show_progress=False)
    assert history["step"] == [1, 2, 3] and run.mesh is not None
    losses = run.texture_history["loss"]
    assert len(losses) == 20 and losses[-1] < losses[0]  # the texture fit went down
    mesh = run.export_mesh(tmp_path / "object.glb")
    loaded = trimesh.load(tmp_path / "object.glb", force="mesh")
    assert len(loaded.faces) == len(mesh.faces) > 0 and mesh.is_watertight
    assert len(mesh.split(only_watertight=False)) == 1
    views = run.render_mesh([15.0, 15.0], [0.0, 90.0], size=20)
    assert views.shape == (2, 3, 20, 20) and run.render(15.0, 0.0, size=20)["rgb"].shape == (1, 3, 20, 20)


def test_render_mesh_before_stage_two_says_so(tiny_pipe):
    with pytest.raises(ValueError, match="stage 2"):
        small(**{"system.steps": 2}).build(tiny_pipe).render_mesh(15.0, 0.0)


def test_a_finished_run_hands_its_mesh_on_through_its_state_and_fit_parallel(tiny_pipe):
    config = small(**{"system.steps": 2, "geometry.scale": 0.1, "geometry.opacity": 0.5, "texture.level": 0.3})
    run = config.build(tiny_pipe)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a worker's setting, so that the run below and the worker's agree to the bit
    try:
        run.fit(show_progress=False)
    finally:
        torch.set_num_threads(threads)
    again = config.build(tiny_pipe)
    again.load_state_dict(copy.deepcopy(run.state_dict()))
    assert again.mesh is not None and again.texture_history == run.texture_history
    assert torch.equal(again.render_mesh(15.0, 40.0, size=16), run.render_mesh(15.0, 40.0, size=16))
    fitted = fit_parallel([config, small(**{"system.steps": 2, "system.seed": 1, "geometry.scale": 0.1,
                                            "geometry.opacity": 0.5, "texture.level": 0.3})], tiny_pipe, workers=2)
    assert torch.allclose(fitted[0].render_mesh(15.0, 40.0, size=16), run.render_mesh(15.0, 40.0, size=16), atol=1e-5)
    assert fitted[1].mesh is not None and fitted[1].texture_history["loss"]
