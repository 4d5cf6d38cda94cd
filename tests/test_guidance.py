"""Score distillation and prompts, on a tiny Stable Diffusion pipeline built from configs, saved and reloaded
exactly as real weights would be (the same code path as SD 2.1)."""

import pytest
import torch
from diffusers import DDPMScheduler

from minidiff3d.diffusion import classifier_free_guidance
from minidiff3d.guidance import PromptProcessor, ScoreDistillation, epsilon_from_output, sds_weight
from minidiff3d.priors import load_stable_diffusion, tiny_stable_diffusion


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_sd")
    tiny_stable_diffusion().save_pretrained(folder)
    return load_stable_diffusion(folder, device="cpu", local_files_only=True)


def test_sds_loss_gradient_with_respect_to_latents_is_the_returned_gradient(pipe):
    sds = ScoreDistillation(pipe, guidance_scale=20.0)
    prompts = PromptProcessor(pipe, "a red duck")
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    conditions = {"text": prompts(torch.tensor([10.0, 70.0]), torch.tensor([0.0, 180.0]))}
    out = sds.loss(images, None, conditions, generator=torch.Generator().manual_seed(0))
    out.latents.retain_grad()
    out.loss.backward()
    assert torch.allclose(out.latents.grad, out.grad, atol=1e-6)
    assert images.grad is not None and images.grad.abs().sum() > 0  # it reaches the renders through the VAE encoder
    # The gradient is w(t) (ε̂ - ε), recomputed here from the returned pieces.
    w = 1 - pipe.scheduler.alphas_cumprod[out.t].view(-1, 1, 1, 1)
    assert torch.allclose(out.grad, w * (out.noise_pred - out.noise), atol=1e-6)


def test_sds_noise_prediction_is_the_cfg_combination_of_two_unet_passes(pipe):
    sds = ScoreDistillation(pipe, guidance_scale=7.5)
    cond, uncond = PromptProcessor(pipe, "a blue cube")(torch.zeros(1), torch.zeros(1))
    noisy, t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    with torch.no_grad():
        e_c, e_u = pipe.unet(noisy, t, cond).sample, pipe.unet(noisy, t, uncond).sample
    # One batched pass and two single ones differ by float rounding (~1e-5), which the scale
    # multiplies; a wrong CFG form would be off by a whole (ε_c - ε_u), far above the tolerance.
    assert (e_c - e_u).abs().max() > 1e-2
    tolerance = dict(rtol=0, atol=1e-3)
    torch.testing.assert_close(sds.noise_prediction(noisy, t, cond, uncond), e_u + 7.5 * (e_c - e_u), **tolerance)
    threestudio = ScoreDistillation(pipe, guidance_scale=6.5, cfg="threestudio")
    torch.testing.assert_close(threestudio.noise_prediction(noisy, t, cond, uncond), e_u + 7.5 * (e_c - e_u), **tolerance)


def test_sds_noises_by_the_variance_preserving_process_whatever_sampler_the_pipeline_has(tmp_path):
    from diffusers import EulerDiscreteScheduler

    tiny_stable_diffusion().save_pretrained(tmp_path)
    euler = load_stable_diffusion(tmp_path, device="cpu", local_files_only=True)
    euler.scheduler = EulerDiscreteScheduler.from_config(euler.scheduler.config)  # add_noise: z + σ_t ε
    sds = ScoreDistillation(euler, guidance_scale=7.5, t_range=(0.97, 0.98))
    cond, uncond = PromptProcessor(euler, "a blue cube")(torch.zeros(2), torch.zeros(2))
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    out = sds.from_latents(latents, (cond, uncond), generator=torch.Generator().manual_seed(1))
    a = euler.scheduler.alphas_cumprod[out.t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * out.noise
    torch.testing.assert_close(out.noise_pred, sds.noise_prediction(noisy, out.t, cond, uncond), rtol=0, atol=1e-4)


def test_guidance_forms_and_weights_by_hand():
    c, u = torch.tensor([2.0]), torch.tensor([1.0])
    assert classifier_free_guidance(c, u, 3.0) == 4.0  # 1 + 3 (2 - 1)
    assert classifier_free_guidance(c, u, 3.0, "threestudio") == 5.0  # 2 + 3 (2 - 1)
    a = torch.tensor([0.9, 0.1])
    assert torch.allclose(sds_weight(a), torch.tensor([0.1, 0.9]))
    assert torch.equal(sds_weight(a, "uniform"), torch.ones(2))
    with pytest.raises(ValueError, match="form"):
        classifier_free_guidance(c, u, 3.0, "imagen")


def test_epsilon_from_a_v_prediction_recovers_the_noise():
    scheduler = DDPMScheduler(prediction_type="v_prediction")
    x0, noise, t = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8), torch.tensor([10, 500, 990])
    noisy, v = scheduler.add_noise(x0, noise, t), scheduler.get_velocity(x0, noise, t)
    assert torch.allclose(epsilon_from_output(scheduler, v, noisy, t), noise, atol=1e-4)
    assert epsilon_from_output(DDPMScheduler(), noise, noisy, t) is noise


def test_timestep_range_and_its_annealing(pipe):
    sds = ScoreDistillation(pipe, t_range=(0.02, 0.98), t_range_end=(0.02, 0.5))
    assert sds.timestep_bounds(0.0) == (20, 979)
    assert sds.timestep_bounds(1.0) == (20, 499)
    assert sds.timestep_bounds(0.5) == (20, 739)
    out = sds.loss(torch.rand(8, 3, 32, 32), None, {"text": PromptProcessor(pipe, "a red duck")(torch.zeros(8), torch.zeros(8))},
                   progress=1.0)
    assert out.t.min() >= 20 and out.t.max() <= 499
    with pytest.raises(ValueError, match="t_range"):
        ScoreDistillation(pipe, t_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="progress"):
        sds.timestep_bounds(1.5)


def test_sds_rejects_bad_renders_and_mismatched_embeddings(pipe):
    sds = ScoreDistillation(pipe)
    embeddings = PromptProcessor(pipe, "a red duck")(torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"images: expected values in \[0, 1\]"):
        sds.loss(torch.rand(2, 3, 32, 32) * 2 - 1, None, {"text": embeddings})
    with pytest.raises(ValueError, match="text_embeddings"):
        sds.loss(torch.rand(3, 3, 32, 32), None, {"text": embeddings})
    with pytest.raises(ValueError, match="latents"):
        sds.from_latents(torch.randn(2, 3, 16, 16), embeddings)
    with pytest.raises(ValueError, match="images"):
        sds.loss(torch.full((2, 3, 32, 32), float("nan")), None, {"text": embeddings})
    with pytest.raises(ValueError, match="grad_clip"):
        ScoreDistillation(pipe, grad_clip=-1.0)


@pytest.mark.parametrize("kwargs,message", [
    (dict(guidance_scale=float("nan")), "guidance_scale: expected a finite non-negative number, got nan"),
    (dict(guidance_scale=-1.0), "guidance_scale: expected a finite non-negative number, got -1.0"),
    (dict(t_range=(1.0, 1.0)), r"t_range: expected min < 1"),  # its lowest t would index past alphas_cumprod
    (dict(t_range_end=(1.0, 1.0)), r"t_range_end: expected min < 1"),
    (dict(t_range=(0.2, 1.5)), r"t_range: expected \(min, max\) with 0.0 <= min <= max <= 1.0, got \(0.2, 1.5\)"),
])
def test_sds_names_a_bad_setting(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScoreDistillation(pipe, **kwargs)


def test_sds_leaves_the_callers_pipeline_as_it_was_lent(pipe):
    # The prior stays frozen during the step without SDS switching off the caller's flags for good.
    modules = (pipe.unet, pipe.vae, pipe.text_encoder)
    flags = [[p.requires_grad for p in m.parameters()] for m in modules]
    assert all(all(f) for f in flags)  # a freshly loaded pipeline is trainable
    sds = ScoreDistillation(pipe, guidance_scale=7.5)
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    sds.loss(images, None, {"text": PromptProcessor(pipe, "a red duck")(torch.zeros(1), torch.zeros(1))}).loss.backward()
    assert [[p.requires_grad for p in m.parameters()] for m in modules] == flags
    assert all(p.grad is None for m in modules for p in m.parameters())  # no gradient reached the prior's weights
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_sds_reads_the_text_condition_by_name(pipe):
    with pytest.raises(ValueError, match=r"conditions: expected a dict with 'text'.*got \['image'\]"):
        ScoreDistillation(pipe).loss(torch.rand(1, 3, 32, 32), None, {"image": torch.rand(1, 3, 32, 32)})


def test_sds_draws_every_random_number_from_its_generator(pipe):
    sds = ScoreDistillation(pipe)
    images, embeddings = torch.rand(2, 3, 32, 32), PromptProcessor(pipe, "a red duck")(torch.zeros(2), torch.zeros(2))
    run = lambda: sds.loss(images, None, {"text": embeddings}, generator=torch.Generator().manual_seed(0)).grad
    first = run()
    torch.rand(1)  # the VAE's posterior sample too: a global draw between runs changes nothing
    torch.testing.assert_close(run(), first, rtol=0, atol=0)


def test_prompt_processor_encodes_each_view_once_and_picks_by_camera(pipe):
    prompts = PromptProcessor(pipe, "a red duck")
    assert prompts.text([0, 0, 70], [0, 180, 0]) == ["a red duck, front view", "a red duck, back view",
                                                      "a red duck, overhead view"]
    cond, uncond = prompts([0, 0], [180, 90])
    expected, _ = pipe.encode_prompt(["a red duck, back view"], "cpu", 1, False)
    assert torch.allclose(cond[0], expected[0], atol=1e-6)
    assert not torch.allclose(cond[0], cond[1])
    blank, _ = pipe.encode_prompt([""], "cpu", 1, False)
    assert torch.allclose(uncond, blank.expand_as(uncond), atol=1e-6)
    plain = PromptProcessor(pipe, "a red duck", view_dependent=False)
    assert plain.text([0, 70], [180, 0]) == ["a red duck", "a red duck"]
    with pytest.raises(ValueError, match="prompt"):
        PromptProcessor(pipe, "  ")


def test_distill_image_moves_the_pixels_and_stays_in_range(pipe):
    from minidiff3d.guidance import distill_image

    sds = ScoreDistillation(pipe, guidance_scale=10.0)
    image, losses = distill_image(sds, PromptProcessor(pipe, "a red duck")(torch.zeros(1), torch.zeros(1)), steps=3)
    assert image.shape == (1, 3, 32, 32) and len(losses) == 3
    assert 0 <= image.min() and image.max() <= 1 and not torch.allclose(image, torch.full_like(image, 0.5))


def test_train_denoiser_conditions_a_unet_on_rows_of_label_embeddings(pipe):
    from minidiff3d.diffusion import train_denoiser

    calls = []
    unet = tiny_stable_diffusion().unet  # its own, so that training it leaves the shared fixture as it was

    class Recording(torch.nn.Module):  # the tiny U-Net, recording what it is conditioned on
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, x, t, condition):
            calls.append(condition.detach().clone())
            return self.unet(x, t, condition)

    table = torch.randn(3, 4, 32)  # two captions and the empty one (row 2)
    latents, labels = torch.randn(8, 4, 16, 16), torch.tensor([0, 1] * 4)
    run = train_denoiser(Recording(), latents, DDPMScheduler(), labels, steps=4, batch_size=4, cond_dropout=0.5,
                         label_embeddings=table, null_label=2, ema_decay=None, show_progress=False)
    assert len(run.history["loss"]) == 1 and all(c.shape == (4, 4, 32) for c in calls)
    seen = {row for c in calls for row in range(3) for item in c if torch.equal(item, table[row])}
    assert seen == {0, 1, 2}  # both captions, and the empty one swapped in by the dropout
    with pytest.raises(ValueError, match="labels: expected indices into the 3 label_embeddings"):
        train_denoiser(Recording(), latents, DDPMScheduler(), labels + 2, steps=1, label_embeddings=table, null_label=2)
    with pytest.raises(ValueError, match="null_label"):
        train_denoiser(Recording(), latents, DDPMScheduler(), labels, steps=1, label_embeddings=table)
