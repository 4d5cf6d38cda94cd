"""Zero-1-to-3's parts against hand-computed values and their defining properties, and the real-weights layout."""

import json
import math

import pytest
import torch

from minidiff3d.priors.toy_zero123 import tiny_zero123
from minidiff3d.toyworld import make_object
from minidiff3d.zero123 import (CCProjection, ViewConditionedUNet, Zero123, image_scores, novel_view_set, relative_camera,
                                score_novel_views, widen_conv_in)


@pytest.fixture(scope="module")
def tiny():
    return tiny_zero123()


def test_relative_camera_by_hand():
    # a quarter turn to the left at the same height, and a move 30° up
    assert torch.allclose(relative_camera(0, 0, 0, 90), torch.tensor([[0.0, 1.0, 0.0, 0.0]]), atol=1e-6)
    assert torch.allclose(relative_camera(0, 10, 30, 10, 2.0, 2.5), torch.tensor([[-math.pi / 6, 0.0, 1.0, 0.5]]),
                          atol=1e-6)
    # periodic: a turn of 350° is a turn of -10°, which azimuth/180 would put at the far end of its range
    assert torch.allclose(relative_camera(15, 0, 15, 350), relative_camera(15, 0, 15, -10), atol=1e-6)
    assert torch.allclose(relative_camera(15, 200, 15, 20), relative_camera(15, 0, 15, 180), atol=1e-6)
    batch = relative_camera(torch.tensor([0.0, 10.0]), 0.0, 20.0, torch.tensor([30.0, 60.0]))
    assert batch.shape == (2, 4)
    assert torch.allclose(batch[1], relative_camera(10, 0, 20, 60)[0])


def test_relative_camera_rejects_bad_angles():
    with pytest.raises(ValueError, match="azimuth_out"):
        relative_camera(0, 0, 0, float("nan"))
    with pytest.raises(ValueError, match="sequences of one length"):
        relative_camera(torch.zeros(2), 0, 0, torch.zeros(3))


def test_widened_unet_starts_as_the_text_to_image_unet(tiny):
    from minidiff3d.priors import tiny_stable_diffusion

    unet = tiny_stable_diffusion().unet
    wide = widen_conv_in(unet)
    assert wide.config.in_channels == 8 and unet.config.in_channels == 4
    g = torch.Generator().manual_seed(0)
    noisy, image, tokens = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 16, 16, generator=g), \
        torch.randn(2, 1, 32, generator=g)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        expected = unet(noisy, t, encoder_hidden_states=tokens).sample
        got = wide(torch.cat([noisy, image], 1), t, encoder_hidden_states=tokens).sample
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_unet_whose_config_took_the_default_channels_still_widens(tmp_path):
    # A saved config without "in_channels" loads with it listed under "_use_default_values", which from_config would
    # apply over the widened value.
    from minidiff3d.priors import tiny_stable_diffusion

    unet = tiny_stable_diffusion().unet
    unet.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["in_channels"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    reloaded = type(unet).from_pretrained(tmp_path)
    assert "in_channels" in reloaded.config.get("_use_default_values", [])
    assert widen_conv_in(reloaded).conv_in.weight.shape[1] == 8


def test_identity_projection_passes_the_embedding_and_ignores_the_camera():
    projection = CCProjection(12 + 4, 12).identity_init()
    embeds = torch.randn(3, 12)
    with torch.no_grad():
        out = projection(torch.cat([embeds, torch.randn(3, 4)], -1))
    assert torch.allclose(out, embeds)


def test_dropped_rows_see_all_zero_conditions(tiny):
    denoiser = tiny.denoiser
    g = torch.Generator().manual_seed(1)
    noisy, image, embeds, camera = (torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 16, 16, generator=g),
                                    torch.randn(2, 24, generator=g), torch.randn(2, 4, generator=g))
    t = torch.tensor([100, 100])
    with torch.no_grad():
        mixed = denoiser(noisy, t, image, embeds, camera, drop=torch.tensor([True, False]))
        zeros = tiny.unet(torch.cat([noisy, torch.zeros_like(image)], 1), t,
                          encoder_hidden_states=torch.zeros(2, 1, tiny.unet.config.cross_attention_dim)).sample
        kept = denoiser(noisy, t, image, embeds, camera)
    assert torch.allclose(mixed[0], zeros[0], atol=1e-5) and torch.allclose(mixed[1], kept[1], atol=1e-5)
    assert not torch.allclose(mixed[0], kept[0], atol=1e-3)  # the conditions did matter


def test_guidance_is_unconditional_plus_scaled_difference(tiny):
    g = torch.Generator().manual_seed(2)
    noisy, image, embeds, camera = (torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 4, 16, 16, generator=g),
                                    torch.randn(1, 24, generator=g), torch.randn(1, 4, generator=g))
    t = torch.tensor([300])
    with torch.no_grad():
        cond = tiny.denoiser(noisy, t, image, embeds, camera)
        uncond = tiny.denoiser(noisy, t, image, embeds, camera, drop=torch.tensor([True]))
        assert torch.allclose(tiny.guided_noise(noisy, t, image, embeds, camera, 1.0), cond, atol=1e-5)
        assert torch.allclose(tiny.guided_noise(noisy, t, image, embeds, camera, 4.0), uncond + 4 * (cond - uncond),
                              atol=1e-5)
        assert torch.allclose(tiny.guided_noise(noisy, t, image, embeds, camera, 4.0, cfg="threestudio"),
                              cond + 4 * (cond - uncond), atol=1e-5)
    with pytest.raises(ValueError, match="guidance_scale"):
        tiny.guided_noise(noisy, t, image, embeds, camera, -1.0)
    with pytest.raises(ValueError, match="cfg"):
        tiny.guided_noise(noisy, t, image, embeds, camera, 3.0, cfg="dreamfusion")


def test_mismatched_parts_are_named(tiny):
    with pytest.raises(ValueError, match="unet: expected twice"):
        ViewConditionedUNet(widen_conv_in(widen_conv_in(tiny.unet)), tiny.cc_projection)
    with pytest.raises(ValueError, match="cc_projection"):
        ViewConditionedUNet(tiny.unet, CCProjection(28, 7))


def test_sampling_shapes_determinism_and_bad_input(tiny):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    camera = relative_camera(15, 0, 15, torch.tensor([30.0, 180.0]))
    a = tiny(images, camera, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    b = tiny(images, camera, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 3, 32, 32) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    with pytest.raises(ValueError, match="camera"):
        tiny(images, camera[:1], num_inference_steps=2)
    with pytest.raises(ValueError, match="images"):
        tiny(torch.rand(2, 3, 16, 16), camera, num_inference_steps=2)


def test_real_checkpoint_layout_round_trips(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["cc_projection"] == ["pipeline_zero1to3", "CCProjection"]
    for part in ("vae", "image_encoder", "unet", "cc_projection", "scheduler", "feature_extractor"):
        assert (tmp_path / part).is_dir()
    loaded = Zero123.from_pretrained(tmp_path, device="cpu", local_files_only=True)
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    camera = relative_camera(0, 0, 0, 90)
    expected = tiny(images, camera, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    got = loaded(images, camera, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(got, expected, atol=1e-5)
    assert loaded.unet.config.in_channels == 8 and loaded.image_mean == tiny.image_mean


def test_baselines_and_scores():
    objects = [make_object("duck", "yellow", 0), make_object("sphere", "red", 1)]
    views = novel_view_set(objects, turns=(0.0, 180.0), size=32)
    assert views["inputs"].shape == (2, 3, 32, 32) and torch.equal(views["truths"][0.0], views["inputs"])
    same = image_scores(views["inputs"], views["truths"][0.0])
    assert same["psnr"] == math.inf and same["ssim"] == pytest.approx(1.0)
    turned = image_scores(views["inputs"], views["truths"][180.0])
    assert 5 < turned["psnr"] < 60 and turned["ssim"] < 1
    with pytest.raises(ValueError, match="images"):
        image_scores(views["inputs"][:1], views["inputs"])


def test_score_table_holds_the_baselines_and_the_vae_ceiling(tiny):
    views = novel_view_set([make_object("cube", "blue", 2), make_object("mug", "red", 3)], turns=(0.0, 90.0), size=32)
    table = score_novel_views(tiny, views, num_inference_steps=2)
    assert set(table[90.0]) == {"zero123", "copy", "mirror", "vae"} and table["samples"][90.0].shape == (2, 3, 32, 32)
    assert table[0.0]["copy"]["psnr"] == math.inf
    truth = views["truths"][90.0]
    with torch.no_grad():  # the round trip by hand: the VAE's mode, decoded, from [-1, 1] back to [0, 1]
        by_hand = (tiny.vae.decode(tiny.vae.encode(truth * 2 - 1).latent_dist.mode()).sample + 1) / 2
    assert torch.allclose(tiny.round_trip(truth), by_hand.clamp(0, 1), atol=1e-6)
    assert table[90.0]["vae"] == pytest.approx(image_scores(by_hand.clamp(0, 1), truth))



def test_denoised_guess_of_an_oracle_is_the_round_trip_and_the_unconditional_branch_drops_the_input(tiny, monkeypatch):
    g = torch.Generator().manual_seed(5)
    images, truths = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    camera = relative_camera(15, 0, 15, torch.tensor([0.0, 90.0]))
    scale = tiny.vae.config.scaling_factor
    clean = tiny.encode_image(truths)[1] * scale
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    a = tiny.scheduler.alphas_cumprod[900].item()
    noisy = a ** 0.5 * clean + (1 - a) ** 0.5 * noise  # z_t by hand
    with torch.no_grad():  # the unconditional branch by hand: every condition dropped, ẑ0 from ε̂, decoded
        eps = tiny.denoiser(noisy, torch.tensor([900, 900]), *tiny.encode_image(images)[::-1], camera,
                            drop=torch.tensor([True, True]))
        by_hand = tiny._decode((noisy - (1 - a) ** 0.5 * eps) / a ** 0.5 / scale)
    unconditional = tiny.denoised_guess(images, truths, camera, 900, 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(unconditional, by_hand, atol=1e-4)
    # a denoiser that knows the noise recovers the truth's latent exactly: its guess is the VAE's round trip
    monkeypatch.setattr(tiny, "guided_noise", lambda noisy, *args: noise)
    oracle = tiny.denoised_guess(images, truths, camera, 900, 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(oracle, tiny.round_trip(truths), atol=1e-4)


@pytest.mark.parametrize("timestep", [-1, 1000, 500.0, True])
def test_denoised_guess_names_a_bad_timestep(tiny, timestep):
    images = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="timestep: expected an integer in"):
        tiny.denoised_guess(images, images, relative_camera(15, 0, 15, 90.0), timestep)


def test_denoised_guess_names_truths_of_another_shape(tiny):
    with pytest.raises(ValueError, match="truths"):
        tiny.denoised_guess(torch.rand(2, 3, 32, 32), torch.rand(1, 3, 32, 32), relative_camera(15, 0, 15, 90.0), 500)


def test_denoised_guess_names_images_that_are_not_a_tensor(tiny):
    with pytest.raises(TypeError, match="images: expected a torch.Tensor"):
        tiny.denoised_guess([[0.5]], torch.rand(1, 3, 32, 32), relative_camera(15, 0, 15, 90.0), 500)
