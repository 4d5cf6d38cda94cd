"""The point-cloud denoiser, the training loop and sampling with diffusers' schedulers."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from minidiff3d.diffusion import (PointCloudTransformer, check_max_weight, epsilon_loss_weights, guided_noise, sample, train_denoiser,
                                  training_target, weighted_mse)
from minidiff3d.priors.toy_sd import SD_SCHEDULE


def random_model(seed=0, **kwargs):
    """A small model with every weight random, including the zero-initialised gates and output."""
    torch.manual_seed(seed)
    model = PointCloudTransformer(num_classes=3, hidden_dim=32, num_layers=2, num_heads=2, num_inducing=8, **kwargs)
    for p in model.parameters():
        nn.init.normal_(p, std=0.1)
    return model.eval()


def test_untrained_model_predicts_zero_noise():
    model = PointCloudTransformer(num_classes=3, hidden_dim=32, num_layers=2, num_heads=2, num_inducing=8)
    assert model(torch.randn(2, 16, 3), 10).sample.abs().max() == 0


def test_timestep_and_class_really_condition_the_output():
    model, x = random_model(), torch.randn(2, 64, 3)
    out = lambda t, y: model(x, torch.tensor([t, t]), torch.tensor([y, y])).sample
    assert (out(10, 0) - out(900, 0)).abs().mean() > 1e-3
    assert (out(10, 0) - out(10, 1)).abs().mean() > 1e-3
    assert (out(10, 0) - model(x, 10, None).sample).abs().mean() > 1e-3  # the null class differs too


def test_permuting_points_permutes_predictions():
    model, x = random_model(), torch.randn(1, 50, 3)
    perm = torch.randperm(50)
    torch.testing.assert_close(model(x[:, perm], 5).sample, model(x, 5).sample[:, perm], rtol=1e-4, atol=1e-5)


def test_save_then_load_gives_identical_outputs(tmp_path):
    model, x = random_model(), torch.randn(2, 32, 3)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = PointCloudTransformer.from_pretrained(tmp_path).eval()
    assert loaded.config.hidden_dim == 32
    torch.testing.assert_close(loaded(x, 7, torch.tensor([1, 2])).sample, model(x, 7, torch.tensor([1, 2])).sample, rtol=0, atol=0)


def test_coordinate_scale_round_trips_and_is_saved(tmp_path):
    model, points = random_model(coordinate_scale=3.0), torch.rand(2, 8, 3) * 2 - 1
    torch.testing.assert_close(model.encode_points(points), 3.0 * points)
    torch.testing.assert_close(model.decode_points(model.encode_points(points)), points)
    model.save_pretrained(tmp_path)
    assert PointCloudTransformer.from_pretrained(tmp_path).config.coordinate_scale == 3.0
    with pytest.raises(ValueError, match="coordinate_scale"):
        PointCloudTransformer(coordinate_scale=0.0)


@pytest.mark.parametrize(
    "args,message",
    [
        ((torch.randn(2, 16, 2), 3), r"sample: expected shape \[B, N, 3\], got \[2, 16, 2\]"),
        ((torch.randn(2, 16, 3), torch.tensor([1, 2, 3])), r"timestep: expected shape \[2\], got \[3\]"),
        ((torch.randn(2, 16, 3), 3, torch.tensor([0, 7])), r"class_labels: expected integers in \[0, 3\]"),
        ((torch.full((1, 4, 3), float("nan")), 3), "sample: expected finite values"),
    ],
)
def test_bad_input_is_named(args, message):
    with pytest.raises(ValueError, match=message):
        random_model()(*args)


def test_guidance_scale_interpolates_between_unconditional_and_conditional():
    model, x, y = random_model(), torch.randn(2, 16, 3), torch.tensor([0, 2])
    cond, uncond = model(x, 50, y).sample, model(x, 50, None).sample
    torch.testing.assert_close(guided_noise(model, x, 50, y, 1.0), cond)
    torch.testing.assert_close(guided_noise(model, x, 50, y, 0.0), uncond, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(guided_noise(model, x, 50, y, 3.0), uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_guidance_takes_a_timestep_per_row():
    model, x, y, t = random_model(), torch.randn(2, 16, 3), torch.tensor([0, 2]), torch.tensor([10, 900])
    rows = [guided_noise(model, x[i:i + 1], int(t[i]), y[i:i + 1], 3.0) for i in range(2)]
    torch.testing.assert_close(guided_noise(model, x, t, y, 3.0), torch.cat(rows), rtol=1e-4, atol=1e-5)


def test_ddim_sampling_is_reproducible_and_ddpm_is_stochastic():
    model = random_model()
    ddim = DDIMScheduler(num_train_timesteps=100)
    run = lambda scheduler, seed: sample(model, scheduler, (2, 16, 3), torch.tensor([0, 1]), 2.0, 10, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(run(ddim, 0), run(ddim, 0), rtol=0, atol=0)
    assert (run(ddim, 0) - run(ddim, 1)).abs().max() > 1e-3
    ddpm = DDPMScheduler(num_train_timesteps=100)
    torch.testing.assert_close(run(ddpm, 0), run(ddpm, 0), rtol=0, atol=0)
    assert (run(ddpm, 0) - run(ddpm, 1)).abs().max() > 1e-3


@pytest.mark.parametrize("scale", [float("nan"), -1.0])
def test_sample_names_a_bad_guidance_scale(scale):
    with pytest.raises(ValueError, match="guidance_scale: expected a finite non-negative number"):
        sample(random_model(), DDIMScheduler(num_train_timesteps=100), (1, 8, 3), torch.tensor([0]), scale, 2)


def test_training_lowers_the_loss_and_resumes_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    data = torch.randn(8, 32, 3) * 0.3
    labels = torch.arange(8) % 3
    scheduler = DDPMScheduler(num_train_timesteps=100)
    model = PointCloudTransformer(num_classes=3, hidden_dim=32, num_layers=2, num_heads=2, num_inducing=8)
    first = train_denoiser(model, data, scheduler, labels, steps=40, batch_size=8, lr=3e-3, log_every=10,
                           checkpoint_dir=tmp_path, checkpoint_every=20, show_progress=False)
    assert first.history["step"] == [10, 20, 30, 40]
    assert first.history["loss"][-1] < first.history["loss"][0]
    fresh = PointCloudTransformer(num_classes=3, hidden_dim=32, num_layers=2, num_heads=2, num_inducing=8)
    resumed = train_denoiser(fresh, data, scheduler, labels, steps=50, batch_size=8, lr=3e-3, log_every=10,
                             checkpoint_dir=tmp_path, show_progress=False)
    assert resumed.history["step"] == [10, 20, 30, 40, 50]


def test_training_rejects_bad_arguments():
    model, scheduler = random_model(), DDPMScheduler(num_train_timesteps=10)
    with pytest.raises(ValueError, match=r"labels: expected shape \[4\], got \[3\]"):
        train_denoiser(model, torch.randn(4, 8, 3), scheduler, torch.arange(3), steps=1)
    with pytest.raises(ValueError, match="cond_dropout: expected a probability"):
        train_denoiser(model, torch.randn(4, 8, 3), scheduler, cond_dropout=1.5, steps=1)
    with pytest.raises(ValueError, match="lr_schedule: expected one of"):
        train_denoiser(model, torch.randn(4, 8, 3), scheduler, lr_schedule="linear", steps=1)


def test_cosine_schedule_decays_the_learning_rate_to_zero_at_the_last_step():
    model, scheduler = random_model(), DDPMScheduler(num_train_timesteps=10)
    run = train_denoiser(model, torch.randn(8, 8, 3), scheduler, steps=4, batch_size=4, lr=0.01, log_every=1,
                         lr_schedule="cosine", ema_decay=None, show_progress=False)
    assert run.history["lr"] == pytest.approx([0.01, 0.01 * (1 + 0.5**0.5) / 2, 0.005, 0.01 * (1 - 0.5**0.5) / 2])


def test_exercise_posterior_mean_matches_diffusers_ddpm_step():
    from minidiff3d.exercises.ch02 import posterior_mean

    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type="sample", clip_sample=False)
    x0, x_t = torch.randn(1, 16, 3), torch.randn(1, 16, 3)
    t = 500
    # DDPM's step adds sqrt(β̃_t) z with z from the generator: rebuild z and take it off again.
    stepped = scheduler.step(x0, t, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    a_t, a_prev, beta = scheduler.alphas_cumprod[t], scheduler.alphas_cumprod[t - 1], scheduler.betas[t]
    mean = stepped - ((1 - a_prev) / (1 - a_t) * beta).sqrt() * z
    ours = posterior_mean(x0, x_t, torch.tensor([t]), scheduler.betas, scheduler.alphas_cumprod)
    torch.testing.assert_close(ours, mean, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_training_target_follows_the_prediction_type(prediction_type):
    scheduler = DDPMScheduler(num_train_timesteps=100, prediction_type=prediction_type, rescale_betas_zero_snr=True)
    x0, noise, t = torch.randn(3, 5, 3), torch.randn(3, 5, 3), torch.tensor([0, 50, 99])
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1)
    by_hand = {"epsilon": noise, "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * x0, "sample": x0}[prediction_type]
    torch.testing.assert_close(training_target(scheduler, x0, noise, t), by_hand)
    assert a[-1].item() == 0.0  # zero terminal SNR: at t = T nothing of x0 is left, so only v (or x0) can be learnt


def test_epsilon_loss_weights_are_capped_inverse_alpha_bar():
    scheduler = DDPMScheduler.from_config(SD_SCHEDULE)
    alpha_bar = scheduler.alphas_cumprod
    assert torch.equal(epsilon_loss_weights(scheduler), torch.ones(1000))  # plain ε-loss
    capped = epsilon_loss_weights(scheduler, 20.0)
    assert capped.max() == 20.0 and torch.allclose(capped[:700], 1 / alpha_bar[:700])  # 1/ᾱ passes 20 near t = 765
    snr = alpha_bar / (1 - alpha_bar)
    assert torch.allclose(epsilon_loss_weights(scheduler, 1e9), (snr + 1) / snr)  # v-prediction's weight on ε
    for bad in (0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_weight"):
            epsilon_loss_weights(scheduler, bad)
        with pytest.raises(ValueError, match="--max-weight: expected a finite number of at least 1"):
            check_max_weight(bad, "--max-weight")  # as the training scripts check their flag


def test_weighted_mse_by_hand():
    predicted = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    target = torch.zeros(2, 2)
    # per-sample errors 1 and 2, weights 1 and 3: (1·1 + 3·2) / 4
    assert weighted_mse(predicted, target, torch.tensor([1.0, 3.0])).item() == pytest.approx(7 / 4)
    assert weighted_mse(predicted, target, torch.ones(2)).item() == pytest.approx(1.5)  # plain MSE
    with pytest.raises(ValueError, match="weights"):
        weighted_mse(predicted, target, torch.ones(3))
    with pytest.raises(ValueError, match="target"):
        weighted_mse(predicted, torch.zeros(2, 3), torch.ones(2))
    for bad in (torch.zeros(2), torch.tensor([1.0, -1.0])):  # a zero total would be a NaN loss
        with pytest.raises(ValueError, match="weights: expected non-negative"):
            weighted_mse(predicted, target, bad)
