"""MVDream's parts against hand-computed attention and their defining properties; multi-view SDS in the system."""

import copy
import math

import pytest
import torch
from diffusers.models.attention_processor import Attention

from minidiff3d.cameras import Cameras, orbit_camera
from minidiff3d.guidance import MultiViewDistillation, sds_weight
from minidiff3d.metrics import view_consistency
from minidiff3d.mvdream import (MultiViewAttnProcessor, denoising_loss, guided_noise, joined_views, multiview_unet,
                                port_cameras, relative_cameras, ring_azimuths, sample_views, set_views)
from minidiff3d.priors import tiny_stable_diffusion
from minidiff3d.priors.data import multiview_dataset
from minidiff3d.priors.toy_mvdream import tiny_mvdream
from minidiff3d.systems import SystemConfig, run_config
from minidiff3d.toyworld import make_object, render

SMALL = {"system.render_size": 16, "renderer.n_samples": 16, "geometry.blob_density": 10}


@pytest.fixture(scope="module")
def tiny():
    pipe = tiny_mvdream()
    with torch.no_grad():  # a camera MLP that matters (the shipped start is zero)
        torch.nn.init.normal_(pipe.unet.class_embedding.linear_2.weight, std=0.5)
    return pipe


def unet_inputs(pipe, sets: int = 2, views: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    size = pipe.unet.config.sample_size
    noisy = torch.randn(sets * views, 4, size, size, generator=g)
    t = torch.randint(1000, (sets,), generator=g).repeat_interleave(views)
    text = pipe.encode_prompt(["a red duck"] * (sets * views), "cpu", 1, False)[0]
    cameras = relative_cameras(15.0, ring_azimuths(views).expand(sets, views)).reshape(-1, 16)
    return noisy, t, text, cameras


def by_hand_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) v per head, over all of ``x [B,N,C]``'s tokens, then the output projection."""
    heads = attn.heads
    q, k, v = (f(x).unflatten(-1, (heads, -1)).transpose(1, 2) for f in (attn.to_q, attn.to_k, attn.to_v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
    return attn.to_out[0]((weights @ v).transpose(1, 2).flatten(2))


def test_joint_attention_is_attention_over_all_views_tokens():
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    x = torch.randn(2 * 3, 5, 16)  # 2 sets of 3 views, 5 tokens each
    joint = MultiViewAttnProcessor(3)(attn, x)
    expected = by_hand_attention(attn, x.reshape(2, 15, 16)).reshape(6, 5, 16)
    assert torch.allclose(joint, expected, atol=1e-5)
    per_view = MultiViewAttnProcessor(1)(attn, x)
    assert torch.allclose(per_view, by_hand_attention(attn, x), atol=1e-5)
    context = torch.randn(6, 4, 16)  # cross-attention stays per view whatever the number of views
    assert torch.allclose(MultiViewAttnProcessor(3)(attn, x, context), MultiViewAttnProcessor(1)(attn, x, context))
    with pytest.raises(ValueError, match="whole sets of 4"):
        MultiViewAttnProcessor(4)(attn, x)


def test_a_new_multiview_unet_starts_as_the_text_to_image_unet():
    sd = tiny_stable_diffusion()
    noisy, t, text, cameras = unet_inputs(sd)
    with torch.no_grad():
        before = sd.unet(noisy, t, text).sample
        unet = multiview_unet(sd.unet, 1)  # per-view attention, zero camera MLP: exactly the old model
        assert torch.equal(unet(noisy, t, text, class_labels=cameras).sample, before)
    assert unet.config.class_embed_type == "projection" and joined_views(set_views(unet, 4)) == 4
    with pytest.raises(ValueError, match="class embedding"):
        multiview_unet(_with_classes())
    with pytest.raises(ValueError, match="unet: expected a multi-view U-Net with a camera embedding"):
        set_views(tiny_stable_diffusion().unet, 4)  # a 2-D U-Net would take the cameras and drop them


def _with_classes():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
                                norm_num_groups=4, layers_per_block=1, num_class_embeds=3, sample_size=8)


def test_views_talk_within_a_set_and_never_across_sets(tiny):
    noisy, t, text, cameras = unet_inputs(tiny)
    changed = noisy.clone()
    changed[1] += 1.0  # view 1 of set 0
    run = lambda x: tiny.unet(x, t, text, class_labels=cameras).sample  # noqa: E731
    try:
        with torch.no_grad():
            set_views(tiny.unet, 4)
            a, b = run(noisy), run(changed)
            assert not torch.allclose(a[0], b[0]) and torch.equal(a[4:], b[4:])  # view 0 sees it; set 1 does not
            set_views(tiny.unet, 1)
            c, d = run(noisy), run(changed)
            assert torch.equal(c[0], d[0])  # per view: nothing flows between views
    finally:
        set_views(tiny.unet, 4)


def test_permuting_views_with_their_cameras_permutes_the_output(tiny):
    noisy, t, text, cameras = unet_inputs(tiny, sets=1)
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        set_views(tiny.unet, 4)
        a = tiny.unet(noisy, t, text, class_labels=cameras).sample
        b = tiny.unet(noisy[order], t[order], text[order], class_labels=cameras[order]).sample
    assert torch.allclose(a[order], b, atol=1e-5)


def test_relative_cameras_forget_the_sets_turn():
    azimuths = ring_azimuths(4, 0.0)
    a = relative_cameras(20.0, azimuths)
    b = relative_cameras(20.0, azimuths + 137.0)
    assert a.shape == (4, 16) and torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a[0], orbit_camera(20.0, 0.0, 1.0).reshape(16), atol=1e-6)
    assert torch.allclose(a[2].reshape(4, 4)[:3, 3], torch.tensor([-math.cos(math.radians(20)), 0.0,
                                                                   math.sin(math.radians(20))]), atol=1e-6)
    batched = relative_cameras(torch.tensor([[10.0] * 4, [30.0] * 4]), torch.stack([azimuths, azimuths + 5]))
    assert batched.shape == (2, 4, 16) and torch.allclose(batched[1], relative_cameras(30.0, azimuths), atol=1e-5)
    with pytest.raises(ValueError, match="azimuth"):
        relative_cameras(0.0, torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="elevation"):
        relative_cameras(torch.zeros(3), azimuths)
    with pytest.raises(ValueError, match="elevation"):  # [B] against [B,V] with B == V: sets or views? refused
        relative_cameras(torch.zeros(4), azimuths.expand(4, 4))


def test_guidance_is_unconditional_plus_scaled_difference_with_the_cameras_kept(tiny):
    noisy, t, text, cameras = unet_inputs(tiny)
    uncond = tiny.encode_prompt([""] * len(noisy), "cpu", 1, False)[0]
    with torch.no_grad():
        set_views(tiny.unet, 4)
        eps_c = tiny.unet(noisy, t, text, class_labels=cameras).sample
        eps_u = tiny.unet(noisy, t, uncond, class_labels=cameras).sample
        got = guided_noise(tiny, noisy, t, text, uncond, cameras, 4, 5.0)
    assert torch.allclose(got, eps_u + 5.0 * (eps_c - eps_u), atol=1e-4)
    with pytest.raises(ValueError, match="cameras"):
        guided_noise(tiny, noisy, t, text, uncond, cameras[:3], 4, 5.0)


def test_sampling_shapes_determinism_and_bad_input(tiny):
    a = sample_views(tiny, ["a red duck", "a blue cube"], num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    b = sample_views(tiny, ["a red duck", "a blue cube"], num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 4, 3, 32, 32) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    with pytest.raises(ValueError, match="prompts"):
        sample_views(tiny, "a red duck")


def test_multiview_sds_draws_one_timestep_per_set_and_reaches_every_render(tiny):
    guidance = MultiViewDistillation(tiny, num_views=4, guidance_scale=7.5)
    cameras = Cameras.orbit(torch.full((8,), 15.0), torch.cat([ring_azimuths(4, 10.0), ring_azimuths(4, 200.0)]))
    images = torch.rand(8, 3, 16, 16, requires_grad=True)
    text = tiny.encode_prompt(["a red duck"] * 8, "cpu", 1, True, [""] * 8)
    out = guidance.loss(images, cameras, {"text": text}, generator=torch.Generator().manual_seed(0))
    assert len(set(out.t[:4].tolist())) == 1 and len(set(out.t[4:].tolist())) == 1
    noisy = tiny.scheduler.add_noise(out.latents.detach(), out.noise, out.t)  # the noised set, rebuilt by hand
    set_cameras = relative_cameras(15.0, cameras.azimuth.reshape(2, 4)).reshape(8, 16)
    with torch.no_grad():
        expected = guided_noise(tiny, noisy, out.t, text[0], text[1], set_cameras, 4, 7.5)
    w = sds_weight(guidance.alphas_cumprod[out.t]).view(-1, 1, 1, 1)
    assert torch.allclose(out.grad, w * (expected - out.noise), atol=1e-5)
    out.loss.backward()
    assert all(images.grad[i].abs().sum() > 0 for i in range(8))
    with pytest.raises(ValueError, match="whole sets of 4"):
        guidance.loss(images[:6], cameras[:6], {"text": (text[0][:6], text[1][:6])})
    with pytest.raises(ValueError, match="cameras: expected one per image"):
        guidance.loss(images[:4], cameras, {"text": (text[0][:4], text[1][:4])})
    with pytest.raises(TypeError, match="multi-view"):
        MultiViewDistillation(tiny_stable_diffusion())


def test_cameras_come_in_sets_and_single_views_draw_as_before():
    from minidiff3d.systems import System

    run = run_config("mvdream", "a red duck", {**SMALL, "system.steps": 2}).build(tiny_mvdream())
    cameras = run.sample_cameras(8)
    assert torch.equal(cameras.elevation[:4], cameras.elevation[:1].expand(4))
    turns = (cameras.azimuth[1:4] - cameras.azimuth[:3]) % 360
    assert torch.allclose(turns, torch.full((3,), 90.0), atol=1e-4)
    run.fit(show_progress=False)
    assert run.step_count == 2 and all(math.isfinite(x) for x in run.history["loss"])

    single = run_config("dreamfusion", "a red duck", SMALL).build(tiny_stable_diffusion())
    assert isinstance(single, System)
    g = torch.Generator().manual_seed(0)
    drawn = single.sample_cameras(3)
    lo, hi = single.config.elevation_range
    assert torch.equal(drawn.elevation, lo + (hi - lo) * torch.rand(3, generator=g))  # exactly the draws of before
    assert torch.equal(drawn.azimuth, 360 * torch.rand(3, generator=g))
    with pytest.raises(ValueError, match="system.batch_size: expected whole sets"):
        SystemConfig(batch_size=6, views_per_set=4)
    with pytest.raises(ValueError, match="n: expected whole sets"):
        run.sample_cameras(6)
    with pytest.raises(ValueError, match="system.views_per_set: expected the guidance's sets"):
        run_config("mvdream", "a red duck", {"system.views_per_set": 2})


def test_multiview_sets_share_an_elevation_and_turn_by_quarter_circles():
    data = multiview_dataset(range(2), 2, captions=["a red duck", "a pink mug"], size=16)
    assert data["images"].shape == (8, 4, 3, 16, 16) and len(data["object_captions"]) == 8
    turns = (data["azimuths"][:, 1:] - data["azimuths"][:, :-1]) % 360
    assert torch.allclose(turns, torch.full_like(turns, 90.0), atol=1e-3)
    assert len(set(data["elevations"].tolist())) == 8  # every set its own cameras
    again = multiview_dataset(range(2), 2, captions=["a red duck", "a pink mug"], size=16)
    assert torch.equal(again["images"], data["images"])
    with pytest.raises(ValueError, match="captions"):
        multiview_dataset(range(1), 1, captions=["a tartan giraffe"], size=16)


def test_view_consistency_recognises_the_toy_worlds_own_sets_whatever_their_turn():
    duck = make_object("duck", "yellow", 10_000)

    def ring(start):
        return torch.stack([render(duck, orbit_camera(15.0, a, 2.8), 64, 64, antialias=2)["image"].permute(2, 0, 1)
                            for a in ring_azimuths(4, start).tolist()])

    azimuths = ring_azimuths(4)
    sets = torch.stack([ring(0.0), ring(90.0), ring(0.0)[:1].expand(4, -1, -1, -1)])
    scores = [view_consistency(s[None], ["a yellow duck"], 15.0, azimuths) for s in sets]
    assert scores[0] >= 0.75 and scores[1] >= 0.75 and scores[2] == 0.25  # four fronts: one view can be right
    assert view_consistency(sets, ["a yellow duck"] * 3, 15.0, azimuths) == pytest.approx(sum(scores) / 3)
    with pytest.raises(ValueError, match="views"):
        view_consistency(sets, ["a yellow duck"] * 2, 15.0, azimuths)
    with pytest.raises(ValueError, match="azimuths"):
        view_consistency(sets, ["a yellow duck"] * 3, 15.0, azimuths[:3])
    with pytest.raises(ValueError, match="evenly around"):
        view_consistency(sets, ["a yellow duck"] * 3, 15.0, torch.tensor([0.0, 90.0, 180.0, 200.0]))


def test_the_guidance_tells_the_prior_its_own_convention_of_cameras(tiny):
    azimuths = ring_azimuths(4, 30.0)
    cameras = Cameras.orbit(torch.full((4,), 20.0), azimuths)
    relative = MultiViewDistillation(tiny).set_cameras(cameras)
    world = MultiViewDistillation(tiny, camera_convention="mvdream").set_cameras(cameras)
    assert torch.allclose(relative, relative_cameras(20.0, azimuths), atol=1e-6)
    assert torch.allclose(world, port_cameras(20.0, azimuths), atol=1e-6) and not torch.allclose(world, relative, atol=1e-3)
    with pytest.raises(ValueError, match="camera_convention"):
        MultiViewDistillation(tiny, camera_convention="blender")


def test_v_prediction_priors_are_guided_in_epsilon(tiny):
    from diffusers import DDIMScheduler

    noisy, t, text, cameras = unet_inputs(tiny)
    uncond = tiny.encode_prompt([""] * len(noisy), "cpu", 1, False)[0]
    v_pipe = copy.copy(tiny)
    v_pipe.scheduler = DDIMScheduler.from_config(tiny.scheduler.config, prediction_type="v_prediction")
    with torch.no_grad():
        set_views(tiny.unet, 4)
        v_c = tiny.unet(noisy, t, text, class_labels=cameras).sample
        v_u = tiny.unet(noisy, t, uncond, class_labels=cameras).sample
        got = guided_noise(v_pipe, noisy, t, text, uncond, cameras, 4, 3.0)
    a = v_pipe.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    eps = lambda v: a.sqrt() * v + (1 - a).sqrt() * noisy  # noqa: E731  (v = √ᾱ ε - √(1-ᾱ) x0, by hand)
    assert torch.allclose(got, eps(v_u) + 3.0 * (eps(v_c) - eps(v_u)), atol=1e-4)


def test_cli_runs_multiview_sds_on_a_checkpoint_in_the_released_layout(tmp_path):
    import json

    from minidiff3d import cli
    from minidiff3d.mvdream_port import save_tiny_port_checkpoint

    folder = save_tiny_port_checkpoint(tmp_path / "port")
    out = tmp_path / "duck"
    code = cli.main(["generate", "a yellow duck", "--method", "mvdream", "--out", str(out), "--pretrained", str(folder),
                     "--device", "cpu", "--set", "system.steps=2", "system.render_size=16", "renderer.n_samples=16",
                     "geometry.blob_density=10"])
    assert code == 0
    record = json.loads((out / "run.json").read_text())  # the released weights get their own cameras unasked
    assert record["status"] == "complete" and record["config"]["guidance"]["camera_convention"] == "mvdream"
    assert record["config"]["system"]["views_per_set"] == 4 and (out / "mesh.glb").exists()


def test_denoising_loss_is_the_training_loss_and_sees_an_ablated_camera(tiny):
    images = torch.rand(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cameras = relative_cameras(15.0, ring_azimuths(4).expand(2, 4))
    losses = denoising_loss(tiny, images, ["a red duck", "a blue cone"], cameras, timesteps=(100, 700), seed=3)
    with torch.no_grad():  # by hand: encode, noise, one pass with joint attention, MSE
        latents = tiny.vae.encode(images.flatten(0, 1) * 2 - 1).latent_dist.mode() * tiny.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(3))
        text = tiny.encode_prompt(["a red duck"] * 4 + ["a blue cone"] * 4, "cpu", 1, False)[0]
        set_views(tiny.unet, 4)
        t = torch.full((8,), 700)
        out = tiny.unet(tiny.scheduler.add_noise(latents, noise, t), t, text, class_labels=cameras.reshape(8, 16)).sample
    assert set(losses) == {100, 700} and math.isclose(losses[700], (out - noise).pow(2).mean().item(), rel_tol=1e-5)
    zeroed = denoising_loss(tiny, images, ["a red duck", "a blue cone"], torch.zeros_like(cameras), timesteps=(700,), seed=3)
    assert zeroed[700] != losses[700]  # this camera MLP is not zero: taking the cameras away changes the loss
    start = multiview_unet(tiny_stable_diffusion().unet)  # a zero camera MLP ignores its cameras exactly
    pipe = copy.copy(tiny)
    pipe.unet = start
    a, b = (denoising_loss(pipe, images, ["a red duck", "a blue cone"], c, timesteps=(700,)) for c in (cameras, 0 * cameras))
    assert a == b
    with pytest.raises(ValueError, match="captions"):
        denoising_loss(tiny, images, ["a red duck"], cameras)
