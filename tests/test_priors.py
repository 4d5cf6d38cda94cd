"""The toy priors' building blocks: captions, tokenizer, CLIP wrapper and loss, R-precision, and the shipped files."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPTokenizer

from minidiff3d import assets
from minidiff3d.metrics import r_precision
from minidiff3d.priors import VIEWS, build_tokenizer, load, object_captions, view_name, vocabulary, with_view
from minidiff3d.priors.toy_clip import build_toy_clip, contrastive_loss, matches


def test_view_names_follow_the_documented_thresholds():
    elevation = [0, 0, 0, 0, 0, 0, 59.9, 60, 0]
    azimuth = [0, 45, 45.1, 134.9, 135, 180, 180, 180, -45]
    assert view_name(elevation, azimuth) == ["front", "front", "side", "side", "back", "back", "back", "overhead", "front"]
    assert view_name(10, 315 + 360) == ["front"]  # azimuths wrap
    assert with_view("a red duck", "back") == "a red duck, back view"
    with pytest.raises(ValueError, match="elevation_deg, azimuth_deg"):
        view_name([0, 0], [0])
    with pytest.raises(ValueError, match="finite"):
        view_name([float("nan")], [0])
    with pytest.raises(ValueError, match="view"):
        with_view("a red duck", "left")


def test_tokenizer_spells_each_toy_word_as_one_token_and_round_trips(tmp_path):
    tokenizer = build_tokenizer()
    for word in vocabulary():
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    ids = tokenizer("an orange mushroom, overhead view").input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "<|startoftext|>", "an</w>", "orange</w>", "mushroom</w>", ",</w>", "overhead</w>", "view</w>", "<|endoftext|>"]
    unknown = tokenizer("a zebra", add_special_tokens=False).input_ids  # falls back to byte symbols, never <unk>
    assert "".join(tokenizer.convert_ids_to_tokens(unknown)).replace("</w>", " ").split() == ["a", "zebra"]
    tokenizer.save_pretrained(tmp_path)
    reloaded = CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert reloaded("a red duck, back view").input_ids == tokenizer("a red duck, back view").input_ids
    assert reloaded.model_max_length == tokenizer.model_max_length == 16


def test_clip_pixel_values_match_the_image_processor():
    clip = build_toy_clip(build_tokenizer())
    images = torch.rand(2, 3, 64, 64)
    reference = clip.processor([np.asarray(im.permute(1, 2, 0) * 255, dtype=np.uint8) for im in images],
                               return_tensors="pt").pixel_values
    quantised = torch.tensor(np.asarray(images * 255, dtype=np.uint8)).float() / 255
    assert torch.allclose(clip.pixel_values(quantised), reference, atol=1e-4)
    with pytest.raises(ValueError, match=r"images: expected values in \[0, 1\]"):
        clip.pixel_values(images * 2 - 1)


def test_contrastive_loss_with_unique_pairs_is_clips_symmetric_cross_entropy():
    logits = torch.randn(5, 5)
    expected = (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5))) / 2
    assert torch.allclose(contrastive_loss(logits, torch.eye(5, dtype=torch.bool)), expected)


def test_matches_lets_a_caption_without_view_match_every_view():
    objects, views = torch.tensor([0, 0, 1]), torch.tensor([0, 2, 0])
    m = matches(torch.tensor([0, 0, 1]), torch.tensor([-1, 2, 0]), objects, views)
    assert m.tolist() == [[True, True, False], [False, True, False], [False, False, True]]


class FakeCLIP:
    """Embeds image b as one-hot row b of ``image_codes`` and text k as one-hot k: similarity is a lookup."""

    def __init__(self, best_text_per_image):
        self.best = best_text_per_image

    def embed_texts(self, texts):
        return torch.eye(len(texts))

    def embed_images(self, images):
        return F.one_hot(self.best[: len(images)], 3).float()

    def similarity(self, images, texts):
        return self.embed_images(images) @ self.embed_texts(texts).T


def test_r_precision_counts_images_whose_caption_ranks_first():
    candidates = ["a red duck", "a blue cube", "a green cone"]
    clip = FakeCLIP(torch.tensor([0, 1, 1, 2]))
    captions = ["a red duck", "a blue cube", "a green cone", "a green cone"]
    assert r_precision(torch.rand(4, 3, 8, 8), captions, candidates, clip) == 0.75
    with pytest.raises(ValueError, match="captions: expected each to be one of the candidates"):
        r_precision(torch.rand(4, 3, 8, 8), ["a pink mug"] * 4, candidates, clip)
    with pytest.raises(ValueError, match="captions: expected one per image"):
        r_precision(torch.rand(4, 3, 8, 8), captions[:3], candidates, clip)


def test_every_shipped_weight_file_matches_its_card_and_manifest():
    entries = assets.manifest()
    for name, entry in entries.items():
        path = assets.HERE / entry["file"]
        assert assets.sha256(path) == entry["sha256"], name
        folders = [p for p in path.parents if assets.HERE in p.parents]  # the asset's own folders, not the package's
        card = next((p / "README.md" for p in folders if (p / "README.md").exists()), None)
        if card is not None:
            assert entry["sha256"] in card.read_text(), f"{name}: its card does not list sha256 {entry['sha256']}"


def test_shipped_model_weights_are_stored_in_fp16():
    # Read from the files themselves: loading upcasts to fp32, so a model could never tell.
    from safetensors import safe_open

    models = {name: entry for name, entry in assets.manifest().items() if "(fp16)" in entry["description"]}
    assert {"toy-sd/unet", "toy-sd/vae", "toy-sd/text_encoder", "toy-clip", "toy-zero123/unet",
            "toy-zero123/cc_projection"} <= set(models)
    for name, entry in models.items():
        with safe_open(assets.HERE / entry["file"], framework="pt") as weights:
            dtypes = {weights.get_slice(key).get_dtype() for key in weights.keys()}
        assert dtypes == {"F16"}, f"{name}: stored as {sorted(dtypes)}"


@pytest.mark.parametrize("name", ["toy-sd", "toy-clip", "toy-zero123"])
def test_shipped_priors_load_offline(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prior = load(name, device="cpu")
    if name == "toy-zero123":  # toy SD's VAE and toy CLIP's image tower under the shipped U-Net and projection
        assert prior.unet.config.in_channels == 8 and prior.unet.dtype == torch.float32
        assert prior.cc_projection.config.in_channel == prior.image_encoder.config.projection_dim + 4
        assert prior.vae.config.scaling_factor == load("toy-sd", device="cpu").vae.config.scaling_factor
        embeds, latents = prior.encode_image(torch.ones(1, 3, 64, 64))
        assert embeds.shape == (1, 128) and latents.shape == (1, 4, 16, 16)
    elif name == "toy-clip":
        scores = prior.similarity(torch.ones(1, 3, 64, 64), object_captions()[:4])
        assert scores.shape == (1, 4) and torch.isfinite(scores).all()
    else:
        assert prior.unet.dtype == torch.float32 and prior.vae.config.scaling_factor != 0.18215
        assert json.loads((assets.HERE / "toy_sd" / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
        assert all(w in prior.tokenizer.get_vocab() for w in ("duck</w>", "overhead</w>"))
    with pytest.raises(ValueError, match="name"):
        load("sd-2.1")


def test_saturation_and_diversity_by_hand():
    from minidiff3d.metrics import clip_diversity, saturation

    grey, red = torch.full((1, 3, 4, 4), 0.5), torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    assert saturation(grey) == 0.0 and saturation(red) == 1.0
    assert saturation(torch.cat([grey, red])) == 0.5
    same = FakeCLIP(torch.tensor([0, 0, 0]))
    assert clip_diversity(torch.rand(3, 3, 8, 8), same) == 0.0
    assert clip_diversity(torch.rand(3, 3, 8, 8), FakeCLIP(torch.tensor([0, 1, 2]))) == 1.0  # orthogonal embeddings
    with pytest.raises(ValueError, match="at least 2"):
        clip_diversity(torch.rand(1, 3, 8, 8), same)


def test_laplacian_energy_by_hand():
    from minidiff3d.metrics import laplacian_energy

    y, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    bowl = (0.01 * (x ** 2 + y ** 2)).expand(1, 3, 8, 8)  # grey: luma = value; its Laplacian is 0.01 (2 + 2) everywhere
    assert laplacian_energy(bowl) == pytest.approx(0.04 ** 2, rel=1e-5)
    assert laplacian_energy(torch.full((2, 3, 8, 8), 0.3)) == 0.0 and laplacian_energy(0.5 * (x / 7).expand(1, 3, 8, 8)) < 1e-12
    edge = (x >= 4).float().expand(1, 3, 8, 8)
    blurred = torch.nn.functional.avg_pool2d(edge, 3, 1, 1, count_include_pad=False)
    assert laplacian_energy(blurred) < laplacian_energy(edge)  # sharpness: blur lowers it
    with pytest.raises(ValueError, match="at least 3x3"):
        laplacian_energy(torch.zeros(1, 3, 2, 8))


def test_janus_rate_counts_back_views_taken_for_the_front():
    from minidiff3d.metrics import janus_rate

    # FakeCLIP embeds image b as one-hot of its entry; texts are front, side, back in that order.
    assert janus_rate(torch.rand(4, 3, 8, 8), "a red duck", FakeCLIP(torch.tensor([0, 2, 2, 0]))) == 0.5


def test_augment_is_the_identity_without_zoom_or_shift_and_pads_with_white():
    from minidiff3d.priors.toy_clip import augment

    images = torch.rand(2, 3, 16, 16)
    assert torch.allclose(augment(images, max_zoom=0.0, max_shift=0.0), images, atol=1e-5)
    zoomed_out = augment(torch.zeros(64, 3, 16, 16), max_zoom=0.15, max_shift=0.0)
    corners = zoomed_out[..., 0, 0]
    assert corners.max() == 1.0 and corners.min() == 0.0  # zooming out shows white at the edge; zooming in does not


def test_loading_a_prior_shows_no_progress_bars_and_leaves_the_libraries_settings(capfd):
    # A notebook stores a loader's bars as widgets frozen at 0 %; the loaders silence them, and only while loading.
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    from minidiff3d.priors import load

    load("toy-sd", device="cpu")
    load("toy-clip", device="cpu")
    captured = capfd.readouterr()
    assert "Loading" not in captured.err + captured.out
    assert diffusers_logging.is_progress_bar_enabled() and transformers_logging.is_progress_bar_enabled()
