"""The 3-D U-Net for SDF grids: time conditioning that is live, real skips, save and load."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from minidiff3d.diffusion import SDFUNet3D, sample, train_denoiser


def small_unet(randomise=True):
    torch.manual_seed(0)
    model = SDFUNet3D(base_channels=8, channel_mults=(1, 2), num_classes=3)
    if randomise:  # the output convolution starts at zero; give it weights so outputs differ
        nn.init.normal_(model.output.weight, std=0.1)
    return model.eval()


def test_output_changes_with_the_timestep_and_the_class():
    model, x = small_unet(), torch.randn(2, 1, 8, 8, 8)
    out = lambda t, y: model(x, torch.tensor([t, t]), torch.tensor([y, y])).sample
    assert out(5, 0).shape == x.shape
    assert (out(5, 0) - out(800, 0)).abs().mean() > 1e-4
    assert (out(5, 0) - out(5, 2)).abs().mean() > 1e-4


def test_every_block_is_conditioned_on_the_timestep():
    model, x = small_unet(), torch.randn(1, 1, 8, 8, 8)
    seen = []
    for block in [*model.encoder, model.middle, *model.decoder]:
        block.film.register_forward_hook(lambda module, inputs, output: seen.append(output.detach().clone()))
    model(x, 5)
    early = seen[:]
    seen.clear()
    model(x, 900)
    assert len(early) == 4 and all((a - b).abs().max() > 1e-4 for a, b in zip(early, seen))


def test_skips_concatenate_encoder_features_with_matching_channels():
    model = SDFUNet3D(base_channels=8, channel_mults=(1, 2, 4), num_classes=2)
    assert [b.conv1.in_channels for b in model.decoder] == [16 + 16, 8 + 8]  # upsampled + skip
    assert [u.out_channels for u in model.up] == [16, 8]


def test_untrained_unet_predicts_zero_and_save_load_round_trips(tmp_path):
    assert small_unet(randomise=False)(torch.randn(1, 1, 8, 8, 8), 3).sample.abs().max() == 0
    model, x = small_unet(), torch.randn(2, 1, 8, 8, 8)
    model.save_pretrained(tmp_path)
    loaded = SDFUNet3D.from_pretrained(tmp_path).eval()
    assert tuple(loaded.config.channel_mults) == (1, 2)
    torch.testing.assert_close(loaded(x, 9, torch.tensor([0, 1])).sample, model(x, 9, torch.tensor([0, 1])).sample, rtol=0, atol=0)


@pytest.mark.parametrize(
    "shape,message",
    [((1, 1, 8, 8, 4), r"sample: expected shape \[B, 1, R, R, R\] with R=8 .*, got \[1, 1, 8, 8, 4\]"),
     ((1, 2, 8, 8, 8), r"sample: expected shape \[B, 1, R, R, R\]"),
     ((1, 1, 7, 7, 7), "sample: expected a resolution divisible by 2, got 7")],
)
def test_bad_grids_are_named(shape, message):
    with pytest.raises(ValueError, match=message):
        small_unet()(torch.randn(shape), 1)


def test_trains_and_samples_with_the_shared_loop():
    data = torch.randn(4, 1, 8, 8, 8).clamp(-0.1, 0.1)
    scheduler = DDPMScheduler(num_train_timesteps=50)
    result = train_denoiser(small_unet(randomise=False), data, scheduler, torch.tensor([0, 1, 2, 0]), steps=6, batch_size=2,
                            log_every=3, ema_decay=None, show_progress=False)
    assert result.history["step"] == [3, 6]
    grids = sample(result.model, DDIMScheduler(num_train_timesteps=50), (2, 1, 8, 8, 8), torch.tensor([0, 1]), 2.0, 4,
                   torch.Generator().manual_seed(0))
    assert grids.shape == (2, 1, 8, 8, 8) and torch.isfinite(grids).all()


def test_patchified_unet_runs_at_a_lower_resolution_and_maps_back():
    torch.manual_seed(0)
    model = SDFUNet3D(base_channels=8, channel_mults=(1, 2), num_classes=3, patch_size=2).eval()
    nn.init.normal_(model.output.weight, std=0.1)
    sizes = []
    model.encoder[0].register_forward_hook(lambda module, inputs, output: sizes.append(tuple(output.shape[-3:])))
    x = torch.randn(2, 1, 16, 16, 16)
    out = model(x, torch.tensor([3, 700]), torch.tensor([0, 2])).sample
    assert out.shape == x.shape and sizes == [(8, 8, 8)]
    assert (out[0] - model(x, torch.tensor([700, 700]), torch.tensor([0, 2])).sample[0]).abs().mean() > 1e-4
    with pytest.raises(ValueError, match="sample: expected a resolution divisible by 4, got 6"):
        model(torch.randn(1, 1, 6, 6, 6), 3)


def test_encode_and_decode_sdf_centre_the_band_and_invert_inside_it():
    model = SDFUNet3D(base_channels=8, channel_mults=(1, 2), truncation=0.2, offset=0.85)
    sdf = torch.linspace(-0.3, 0.3, 8**3).reshape(1, 1, 8, 8, 8)
    values = model.encode_sdf(sdf)
    assert values.max().item() == pytest.approx(1 - 0.85) and values.min().item() == pytest.approx(-1.85)
    torch.testing.assert_close(model.decode_sdf(values), sdf.clamp(-0.2, 0.2))
