"""The training scripts' losses (toy-zero123's view pairs, toy-mvdream's view sets) against the weighted ε error by hand.

Every latent is zero, so a model's noisy input is √(1-ᾱ_t) ε: a stand-in that predicts zeros shows what ε and t
each sample got, and the loss must be Σ w_t e / Σ w_t with e = mean ε² and w_t = min(1/ᾱ_t, max_weight).
"""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler

from minidiff3d.mvdream import CAMERA_WIDTH
from minidiff3d.priors.toy_mvdream import tiny_mvdream
from minidiff3d.priors.toy_sd import SD_SCHEDULE

SCHEDULER = DDPMScheduler.from_config(SD_SCHEDULE)


def training_script(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected_loss(noisy: torch.Tensor, t: torch.Tensor, max_weight: float) -> torch.Tensor:
    alpha_bar = SCHEDULER.alphas_cumprod[t]
    errors = (noisy.flatten(1) ** 2).mean(1) / (1 - alpha_bar)  # mean ε², since noisy = √(1-ᾱ) ε
    weights = torch.minimum(1 / alpha_bar, torch.tensor(max_weight))
    return (weights * errors).sum() / weights.sum()


@pytest.mark.parametrize("max_weight", [1.0, 20.0])
def test_zero123_pair_loss_weights_each_view(max_weight):
    script = training_script("train_toy_zero123")
    n = 64
    seen = {}

    def model(noisy, t, image_latents, image_embeds, camera, drop):
        seen.update(noisy=noisy, t=t)
        return torch.zeros_like(noisy)

    loss_fn = script.pair_loss(torch.zeros(n, 4, 2, 2), torch.zeros(n, 8), torch.zeros(n), torch.zeros(n), 4, 1.0,
                               SCHEDULER, max_weight)
    torch.manual_seed(0)
    loss = loss_fn(model, (torch.arange(n),))
    assert torch.allclose(loss, expected_loss(seen["noisy"], seen["t"], max_weight), rtol=1e-5)
    if max_weight == 1.0:  # plain ε-loss: the plain mean
        assert torch.allclose(loss, ((seen["noisy"].flatten(1) ** 2).mean(1)
                                     / (1 - SCHEDULER.alphas_cumprod[seen["t"]])).mean(), rtol=1e-5)


class ZeroModel(torch.nn.Module):
    """Predicts zeros, and keeps what it was given."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the loss asks the model for its device
        self.seen = {}

    def forward(self, noisy, t, text, class_labels):
        self.seen = dict(noisy=noisy, t=t, cameras=class_labels)
        return SimpleNamespace(sample=torch.zeros_like(noisy))


@pytest.mark.parametrize("single_share", [0.0, 1.0])
def test_mvdream_set_loss_weights_each_view_and_shares_t_within_a_set(single_share):
    script = training_script("train_toy_mvdream")
    n_sets, views, texts = 6, 4, 3
    sets = dict(latents=torch.zeros(n_sets, views, 4, 2, 2), text=torch.arange(n_sets) % texts,
                cameras=torch.randn(n_sets, views, CAMERA_WIDTH))
    single = dict(latents=torch.zeros(10, 4, 2, 2), text=torch.arange(10) % texts)
    model = ZeroModel()
    loss_fn = script.set_loss(tiny_mvdream().unet, sets, single, torch.zeros(texts + 1, 2, 8), SCHEDULER, single_share,
                              20.0)
    torch.manual_seed(0)
    loss = loss_fn(model, (torch.arange(n_sets),))
    t = model.seen["t"]
    assert len(t) == n_sets * views
    assert torch.allclose(loss, expected_loss(model.seen["noisy"], t, 20.0), rtol=1e-5)
    if single_share == 0.0:  # one t per set of views, and each view's own camera
        assert (t.view(n_sets, views) == t.view(n_sets, views)[:, :1]).all()
        assert torch.equal(model.seen["cameras"], sets["cameras"].flatten(0, 1))
    else:  # single images: per-view attention and zero cameras
        assert not model.seen["cameras"].any()


def test_training_losses_refuse_a_weight_below_one():
    with pytest.raises(ValueError, match="max_weight"):
        training_script("train_toy_zero123").pair_loss(torch.zeros(4, 4, 2, 2), torch.zeros(4, 8), torch.zeros(4),
                                                       torch.zeros(4), 2, 1.0, SCHEDULER, 0.5)


@pytest.mark.parametrize("same_view", [0.0, 1.0])
def test_zero123_pairs_a_share_of_views_with_themselves(same_view):
    """With ``same_view`` 1 every input is the target itself, a turn of 0 (camera [0, 0, 1, 0]); with 0 the input is
    a random view of the same object (4 views an object: the latents below hold the view's index)."""
    script = training_script("train_toy_zero123")
    n, views = 64, 4
    latents = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 4, 2, 2)
    azimuths = torch.arange(n, dtype=torch.float32) * 7.0  # every view of an object at its own azimuth
    seen = {}

    def model(noisy, t, image_latents, image_embeds, camera, drop):
        seen.update(source=image_latents[:, 0, 0, 0].long(), camera=camera)
        return torch.zeros_like(noisy)

    loss_fn = script.pair_loss(latents, torch.zeros(n, 8), torch.zeros(n), azimuths, views, 1.0, SCHEDULER, 20.0,
                               same_view)
    torch.manual_seed(0)
    loss_fn(model, (torch.arange(n),))
    target = torch.arange(n)
    assert (seen["source"] // views == target // views).all()  # always a view of the target's own object
    same = seen["source"] == target
    turn_zero = torch.tensor([0.0, 0.0, 1.0, 0.0])
    assert torch.allclose(seen["camera"][same], turn_zero.expand(int(same.sum()), 4), atol=1e-6)
    assert same.all() if same_view == 1.0 else same.float().mean() < 0.5  # by chance, 1 in 4


def test_zero123_pair_loss_refuses_a_share_outside_0_1():
    with pytest.raises(ValueError, match="same_view"):
        training_script("train_toy_zero123").pair_loss(torch.zeros(4, 4, 2, 2), torch.zeros(4, 8), torch.zeros(4),
                                                       torch.zeros(4), 2, 1.0, SCHEDULER, 20.0, 1.5)
