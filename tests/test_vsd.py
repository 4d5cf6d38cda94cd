"""Variational score distillation on a tiny Stable Diffusion saved and reloaded offline (the code path of SD 2.1)."""

import warnings

import pytest
import torch

from minidiff3d.cameras import Cameras
from minidiff3d.guidance import PromptProcessor, ScoreDistillation, VariationalScoreDistillation, VSDConfig, sds_weight
from minidiff3d.priors import load, load_stable_diffusion, tiny_stable_diffusion
from minidiff3d.systems import System, run_config


@pytest.fixture()
def pipe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_sd")
    tiny_stable_diffusion().save_pretrained(folder)
    return load_stable_diffusion(folder, device="cpu", local_files_only=True)


def text(pipe, n=2, prompt="a red duck"):
    return PromptProcessor(pipe, prompt)(torch.zeros(n), torch.zeros(n))


def snapshot(unet):
    """The U-Net's own weights as they are now: each parameter object with a copy of its values.

    By object, not by name: peft's injection renames a wrapped layer's weight to ``...base_layer.weight``."""
    return [(p, p.detach().clone()) for p in unet.parameters()]


def unchanged(weights) -> bool:
    return all(torch.equal(p, saved) for p, saved in weights)


def test_a_fresh_lora_is_the_pretrained_conditional_so_vsd_starts_as_guidance_alone(pipe):
    # B = 0 and a zero camera embedding: ε_LoRA = ε_c, so the first gradient is w (s - 1)(ε_c - ε_u).
    vsd = VariationalScoreDistillation(pipe, guidance_scale=7.5)
    cond, uncond = text(pipe)
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cameras = Cameras.orbit([10.0, 40.0], [0.0, 120.0])
    out = vsd.from_latents(latents, (cond, uncond), generator=torch.Generator().manual_seed(1), cameras=cameras)
    noisy = pipe.scheduler.add_noise(latents, out.noise, out.t)
    with torch.no_grad():
        e_c, e_u = pipe.unet(noisy, out.t, cond).sample, pipe.unet(noisy, out.t, uncond).sample
    torch.testing.assert_close(out.extras["noise_lora"], e_c, rtol=0, atol=1e-5)
    w = sds_weight(pipe.scheduler.alphas_cumprod[out.t]).view(-1, 1, 1, 1)
    torch.testing.assert_close(out.grad, w * 6.5 * (e_c - e_u), rtol=0, atol=1e-3)
    # and the gradient is always w(t) (ε̂_pretrained - ε_LoRA), recomputed from the returned pieces
    torch.testing.assert_close(out.grad, w * (out.noise_pred - out.extras["noise_lora"]), rtol=0, atol=1e-6)


def test_with_adapters_off_the_prior_is_exactly_the_pretrained_one(pipe):
    latents, t = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([100, 700])
    cond, uncond = text(pipe)
    before = ScoreDistillation(pipe, 7.5).noise_prediction(latents, t, cond, uncond)
    vsd = VariationalScoreDistillation(pipe, 7.5)
    vsd.update_from_latents(latents, cond, generator=torch.Generator().manual_seed(0))  # the LoRA is no longer zero
    assert torch.equal(vsd.noise_prediction(latents, t, cond, uncond), before)


def test_the_lora_learns_the_renders_and_the_frozen_prior_stays_bit_identical():
    # Toy SD, not the tiny random U-Net: a LoRA on a random network's attention has too little to work with.
    pipe = load("toy-sd", device="cpu")
    frozen = snapshot(pipe.unet)
    vsd = VariationalScoreDistillation(pipe, 7.5, lora_lr=1e-2)
    lora_before = [p.detach().clone() for p in vsd.lora_parameters]
    cond, _ = text(pipe, 4)
    renders = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)).expand(4, -1, -1, -1)  # one "scene"
    cameras = Cameras.orbit([10.0, 10.0, 40.0, 40.0], [0.0, 90.0, 180.0, 270.0])
    probe = torch.Generator().manual_seed(1)  # a fixed set of (t, noise) to measure the LoRA's diffusion loss on
    t, noise = torch.randint(100, 900, (4,), generator=probe), torch.randn(renders.shape, generator=probe)
    noisy = pipe.scheduler.add_noise(renders, noise, t)

    def probe_loss():
        with torch.no_grad():
            return (vsd.lora_prediction(noisy, t, cond, vsd.camera_condition(cameras, 4)) - noise).pow(2).mean().item()

    before = probe_loss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        vsd.update_from_latents(renders, cond, cameras, generator)
    assert probe_loss() < 0.8 * before, (probe_loss(), before)
    assert any(not torch.equal(a, b) for a, b in zip(lora_before, vsd.lora_parameters))
    assert unchanged(frozen)  # the prior's weights, bit for bit
    assert all(p.grad is None and p.requires_grad for p, _ in frozen)  # no gradient reached them; flags given back


def test_the_camera_conditions_the_lora_and_is_dropped_as_asked(pipe):
    vsd = VariationalScoreDistillation(pipe, 7.5, lora_lr=1e-2, camera_dropout=0.0)
    cond, _ = text(pipe, 2)
    cameras = Cameras.orbit([10.0, 60.0], [0.0, 180.0])
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        vsd.update_from_latents(torch.randn(2, 4, 16, 16, generator=generator), cond, cameras, generator)
    noisy, t = torch.randn(1, 4, 16, 16, generator=generator).expand(2, -1, -1, -1), torch.tensor([500, 500])
    with torch.no_grad():
        by_camera = vsd.lora_prediction(noisy, t, cond, vsd.camera_condition(cameras, 2))
    assert not torch.allclose(by_camera[0], by_camera[1], atol=1e-5)  # same input, two cameras, two answers
    assert vsd.camera_condition(cameras, 2).shape == (2, 16)
    assert torch.equal(vsd.camera_condition(cameras, 2, generator, dropout=1.0), torch.zeros(2, 16))
    assert torch.equal(vsd.camera_condition(None, 3), torch.zeros(3, 16))


def test_close_gives_the_unet_back_module_for_module(pipe):
    keys = list(pipe.unet.state_dict())
    latents, t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([300])
    cond, _ = text(pipe, 1)
    with torch.no_grad():
        before = pipe.unet(latents, t, cond).sample
    with VariationalScoreDistillation(pipe, 7.5) as vsd:
        vsd.update_from_latents(latents, cond, generator=torch.Generator().manual_seed(0))
        assert list(pipe.unet.state_dict()) != keys  # the adapter is in while the run lasts
    assert list(pipe.unet.state_dict()) == keys and pipe.unet.class_embedding is None
    assert all(p.requires_grad for p in pipe.unet.parameters())  # as trainable as it was lent
    with torch.no_grad():
        assert torch.equal(pipe.unet(latents, t, cond).sample, before)
    with pytest.raises(RuntimeError, match="closed"):
        vsd.update_from_latents(latents, cond)


@pytest.mark.parametrize("switched_on", [True, False])
def test_the_callers_own_lora_is_part_of_the_prior_and_stays_as_it_was(pipe, switched_on):
    from peft import LoraConfig

    pipe.unet.add_adapter(LoraConfig(r=4, target_modules=["to_q", "to_v"], init_lora_weights=False), "mine")
    if not switched_on:
        pipe.unet.disable_adapters()
    mine = [p for name, p in pipe.unet.named_parameters() if ".mine." in name]
    for p in mine:
        p.requires_grad_(False)  # the caller froze its adapter: VSD's passes must not train it
    latents, t = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([300, 600])
    cond, _ = text(pipe)

    def unet_now():
        with torch.no_grad():
            return pipe.unet(latents, t, cond).sample

    before = unet_now()
    vsd = VariationalScoreDistillation(pipe, 7.5)
    assert torch.equal(unet_now(), before)
    # a fresh LoRA (B = 0, zero camera embedding) is the prior, the caller's adapter included when it is on
    torch.testing.assert_close(vsd.lora_prediction(latents, t, cond, vsd.camera_condition(None, 2)), before,
                               rtol=0, atol=1e-5)
    vsd.from_latents(latents, text(pipe), generator=torch.Generator().manual_seed(1))
    vsd.update_from_latents(latents, cond, generator=torch.Generator().manual_seed(0))
    assert torch.equal(unet_now(), before)
    assert mine and not any(p.requires_grad or p.grad is not None for p in mine)
    vsd.close()
    assert torch.equal(unet_now(), before) and set(pipe.unet.peft_config) == {"mine"}
    assert pipe.unet.active_adapters() == ["mine"] and not any(p.requires_grad for p in mine)


def test_vsd_refuses_a_camera_count_other_than_the_latents(pipe):
    vsd = VariationalScoreDistillation(pipe, 7.5)
    cond, uncond = text(pipe, 3)
    latents, one = torch.randn(3, 4, 16, 16), Cameras.orbit([10.0], [0.0])
    with pytest.raises(ValueError, match=r"cameras: expected 3, one per latent, got 1"):
        vsd.from_latents(latents, (cond, uncond), cameras=one)
    with pytest.raises(ValueError, match=r"cameras: expected 3, one per latent, got 1"):
        vsd.update_from_latents(latents, cond, one)
    vsd.close()


def test_two_vsd_runs_on_one_pipeline_keep_their_own_loras(pipe):
    first = VariationalScoreDistillation(pipe, 7.5, lora_lr=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # peft's "multiple adapters" warning is expected here, not shown
        second = VariationalScoreDistillation(pipe, 7.5)
    cond, _ = text(pipe, 1)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    second_before = [p.detach().clone() for p in second.lora_parameters]
    first.update_from_latents(latents, cond, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(second_before, second.lora_parameters))  # first's step moved only its own
    second.close()
    first.update_from_latents(latents, cond, generator=torch.Generator().manual_seed(0))  # still works
    first.close()


@pytest.mark.parametrize("first_to_close", [0, 1])
def test_two_vsd_runs_closed_in_either_order_leave_the_prior_as_it_was(pipe, first_to_close):
    keys = list(pipe.unet.state_dict())
    latents, t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([300])
    cond, _ = text(pipe, 1)
    with torch.no_grad():
        before = pipe.unet(latents, t, cond).sample
    runs = [VariationalScoreDistillation(pipe, 7.5, lora_lr=1e-1) for _ in range(2)]
    for run in runs:
        run.update_from_latents(latents, cond, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs[first_to_close].close()
    survivor = runs[1 - first_to_close]
    survivor.update_from_latents(latents, cond, generator=torch.Generator().manual_seed(0))  # its LoRA is still there
    with torch.no_grad():
        assert torch.equal(pipe.unet(latents, t, cond).sample, before)  # and switched off outside its passes
        assert not torch.allclose(survivor.lora_prediction(latents, t, cond, survivor.camera_condition(None, 1)), before)
    survivor.close()
    assert list(pipe.unet.state_dict()) == keys


def test_the_vsd_preset_runs_and_its_update_is_logged(pipe):
    config = run_config("vsd", "a red duck", {"system.steps": 3, "system.render_size": 16, "renderer.n_samples": 16})
    assert isinstance(config.guidance, VSDConfig) and config.guidance.guidance_scale == 7.5
    frozen = snapshot(pipe.unet)
    run = System.from_config(config, pipe)
    infos = []
    history = run.fit(callback=lambda r, info: infos.append(info), show_progress=False)
    assert len(infos) == 3 and all(info["lora_loss"] > 0 for info in infos)
    assert history["lora_loss"] == [info["lora_loss"] for info in infos] and history["step"] == [1, 2, 3]
    assert unchanged(frozen)
    run.close()
    assert run.render(10.0, 0.0, size=16)["rgb"].shape == (1, 3, 16, 16)  # the scene outlives the LoRA


def test_a_vsd_run_is_a_function_of_its_seed_whatever_the_global_rng_held(pipe):
    config = run_config("vsd", "a red duck", {"system.steps": 2, "system.render_size": 16, "renderer.n_samples": 16})

    def run(global_seed):
        torch.manual_seed(global_seed)
        with System.from_config(config, pipe) as system:
            start = [p.detach().clone() for p in system.guidance.lora_parameters]
            start += [p.detach().clone() for p in system.guidance.camera_embedding.parameters()]
            return start, system.fit(show_progress=False)["loss"]

    (weights, losses), (other_weights, other_losses) = run(1), run(2)
    assert all(torch.equal(a, b) for a, b in zip(weights, other_weights, strict=True))
    assert losses == other_losses


def test_a_system_in_a_with_block_takes_its_lora_out_on_leaving(pipe):
    keys = list(pipe.unet.state_dict())
    with System.from_config(run_config("vsd", "a red duck", {"system.render_size": 16}), pipe) as run:
        assert list(pipe.unet.state_dict()) != keys
    assert run.guidance.closed and list(pipe.unet.state_dict()) == keys


@pytest.mark.parametrize("overrides,message", [
    ({"guidance.lora_rank": 0}, "guidance.lora_rank: expected a positive integer"),
    ({"guidance.lora_lr": -1.0}, "guidance.lora_lr: expected a finite positive number"),
    ({"guidance.camera_dropout": 1.5}, "guidance.camera_dropout"),
    ({"guidance.lora_t_range": [0.5, 0.2]}, "guidance.lora_t_range"),
])
def test_vsd_config_names_a_bad_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        run_config("vsd", "a red duck", overrides)


# Chapter 05's exercise references against independent implementations.

def test_exercise_vsd_gradient_is_the_package_vsd(pipe):
    from minidiff3d.exercises import ch05

    vsd = VariationalScoreDistillation(pipe, 7.5)
    out = vsd.from_latents(torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)), text(pipe),
                           generator=torch.Generator().manual_seed(1), cameras=Cameras.orbit([10.0, 20.0], [0.0, 90.0]))
    expected = ch05.vsd_gradient(out.noise_pred, out.extras["noise_lora"], out.t, pipe.scheduler.alphas_cumprod, "sds")
    torch.testing.assert_close(out.grad, expected, rtol=0, atol=1e-6)
    cameras = Cameras.orbit([10.0, 60.0, 30.0], [0.0, 180.0, 45.0])
    torch.testing.assert_close(vsd.camera_condition(cameras, 3), ch05.camera_condition(cameras.c2w, torch.ones(3, dtype=torch.bool)))


def test_exercise_lora_linear_is_peft_lora():
    from peft import LoraConfig, inject_adapter_in_model

    from minidiff3d.exercises import ch05

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5))
    inject_adapter_in_model(LoraConfig(r=3, lora_alpha=6, target_modules=["0"], init_lora_weights="gaussian"), model)
    layer = model[0]
    torch.nn.init.normal_(layer.lora_B["default"].weight)  # peft's B starts at zero; make the path count
    x = torch.randn(4, 6)
    expected = ch05.lora_linear(x, layer.base_layer.weight, layer.base_layer.bias, layer.lora_A["default"].weight,
                                layer.lora_B["default"].weight, 6.0)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_exercise_lora_target_is_diffusers_velocity():
    from diffusers import DDPMScheduler

    from minidiff3d.exercises import ch05

    scheduler = DDPMScheduler(prediction_type="v_prediction")
    latents, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = torch.tensor([5, 500, 995])
    torch.testing.assert_close(ch05.lora_target(latents, noise, t, scheduler.alphas_cumprod, "v_prediction"),
                               scheduler.get_velocity(latents, noise, t), rtol=1e-5, atol=1e-5)
    assert torch.equal(ch05.lora_target(latents, noise, t, scheduler.alphas_cumprod, "epsilon"), noise)
