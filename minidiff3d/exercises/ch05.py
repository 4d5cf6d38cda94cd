"""Chapter 05's exercises: the VSD gradient, the LoRA's camera condition, a LoRA layer, and the LoRA's training target."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from ..guidance import sds_weight
from ..priors.toy_sd import SD_SCHEDULE
from . import Exercise, register, repeat

_ALPHAS_CUMPROD = DDIMScheduler.from_config(SD_SCHEDULE).alphas_cumprod  # toy SD's, as Stable Diffusion's


def _batch(g, low=1, high=5):
    return int(torch.randint(low, high, (1,), generator=g))


def _latents(g, batch):
    size = int(torch.randint(2, 9, (1,), generator=g))
    return torch.randn(batch, 4, size, size, generator=g)


# 1. The VSD gradient

def vsd_gradient(noise_pretrained, noise_lora, t, alphas_cumprod, weighting):
    """``w(t) (ε̂_pretrained - ε_LoRA)`` ``[B,4,h,w]``, as ``VariationalScoreDistillation.from_latents`` computes it."""
    return sds_weight(alphas_cumprod[t], weighting).view(-1, 1, 1, 1) * (noise_pretrained - noise_lora)


def _vsd_cases(g):
    def case(t, weighting="sds"):
        pretrained = _latents(g, len(t))
        return dict(noise_pretrained=pretrained, noise_lora=torch.randn(pretrained.shape, generator=g), t=t,
                    alphas_cumprod=_ALPHAS_CUMPROD.clone(), weighting=weighting)

    edges = [("small t, where w(t) is small", case(torch.tensor([20]))),
             ("large t", case(torch.tensor([979]))),
             ("both ends in one batch", case(torch.tensor([0, 999]))),
             ("uniform weighting", case(torch.tensor([300, 700]), "uniform")),
             ("a batch of 4 at its own t each", case(torch.tensor([50, 400, 600, 950])))]
    return edges + repeat(4, "random", lambda: case(torch.randint(0, 1000, (_batch(g),), generator=g),
                                                    ("sds", "uniform")[_batch(g, 0, 2)]))


def _vsd_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one gradient per latent: the shape of the noise estimates, [B,4,h,w]."
    if torch.allclose(got, -expected, rtol=1e-4, atol=1e-4):
        return "the sign is flipped: the pretrained score pulls, the LoRA's (the renders' own) is what is subtracted."
    w = sds_weight(kwargs["alphas_cumprod"][kwargs["t"]], kwargs["weighting"]).view(-1, 1, 1, 1)
    if torch.allclose(got * w, expected, rtol=1e-4, atol=1e-4):
        return "weight each sample by w(t) at its own timestep, as SDS does."
    return "VSD is SDS with one term changed: where SDS subtracts the injected noise, VSD subtracts the LoRA's estimate."


# 2. The LoRA's camera condition

def camera_condition(c2w, keep):
    """``[B,16]``: each camera-to-world matrix ``c2w [B,4,4]`` flattened row by row, zeroed where ``keep [B]`` is False."""
    return c2w.reshape(len(c2w), 16) * keep[:, None].to(c2w)


def _camera_cases(g):
    from ..cameras import orbit_camera

    def case(n, keep=None):
        c2w = orbit_camera(torch.rand(n, generator=g) * 90 - 10, torch.rand(n, generator=g) * 360).reshape(n, 4, 4)
        return dict(c2w=c2w, keep=torch.rand(n, generator=g) > 0.3 if keep is None else keep)

    edges = [("one camera, kept", case(1, torch.tensor([True]))),
             ("one camera, dropped", case(1, torch.tensor([False]))),
             ("all dropped", case(3, torch.zeros(3, dtype=torch.bool))),
             ("all kept", case(4, torch.ones(4, dtype=torch.bool))),
             ("a camera straight overhead", dict(c2w=orbit_camera(90.0, 0.0)[None], keep=torch.tensor([True])))]
    return edges + repeat(4, "random batch", lambda: case(_batch(g, 2, 9)))


def _camera_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one row of 16 numbers per camera: [B,16]."
    if torch.allclose(got, kwargs["c2w"].transpose(1, 2).reshape(len(got), 16) * kwargs["keep"][:, None], atol=1e-5):
        return "row by row: reshape the matrix as it is stored, without transposing it."
    if torch.allclose(got, kwargs["c2w"].reshape(len(got), 16) * (~kwargs["keep"])[:, None], atol=1e-5):
        return "the dropped cameras are the ones where keep is False; they become zeros, the kept ones stay."
    return "flatten each matrix, then zero the whole row of each dropped camera."


# 3. A LoRA layer

def lora_linear(x, weight, bias, lora_A, lora_B, alpha):
    """A linear layer with a LoRA: ``x Wᵀ + b + (α / r) x Aᵀ Bᵀ`` for ``x [N,in]``, ``W [out,in]``, ``A [r,in]``, ``B [out,r]``."""
    rank = lora_A.shape[0]
    return x @ weight.T + bias + (alpha / rank) * (x @ lora_A.T) @ lora_B.T


def _lora_cases(g):
    def case(n, d_in, d_out, rank, alpha=None, zero_b=False):
        lora_B = torch.zeros(d_out, rank) if zero_b else torch.randn(d_out, rank, generator=g)
        return dict(x=torch.randn(n, d_in, generator=g), weight=torch.randn(d_out, d_in, generator=g) / d_in**0.5,
                    bias=torch.randn(d_out, generator=g), lora_A=torch.randn(rank, d_in, generator=g) / d_in**0.5,
                    lora_B=lora_B, alpha=float(rank if alpha is None else alpha))

    edges = [("B = 0, as peft starts it: the layer is the pretrained one", case(3, 8, 6, 4, zero_b=True)),
             ("rank 1", case(2, 5, 5, 1)),
             ("alpha twice the rank", case(4, 6, 3, 2, alpha=4)),
             ("alpha = 1 with rank 8", case(5, 16, 8, 8, alpha=1)),
             ("one input", case(1, 4, 4, 2))]
    return edges + repeat(4, "random", lambda: case(_batch(g, 1, 6), _batch(g, 2, 12), _batch(g, 2, 12), _batch(g, 1, 5),
                                                     alpha=_batch(g, 1, 9)))


def _lora_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    x, w, b, A, B, alpha = (kwargs[k] for k in ("x", "weight", "bias", "lora_A", "lora_B", "alpha"))
    if got.shape != expected.shape:
        return "the output has the pretrained layer's shape, [N, out]."
    base = x @ w.T + b
    if torch.allclose(got, base + (x @ A.T) @ B.T, atol=1e-4):
        return "scale the low-rank update by alpha / r, where r is A's number of rows."
    if torch.allclose(got, base, atol=1e-4):
        return "the low-rank path is missing: x goes through A (down to r), then B (back up), and is added."
    return "the pretrained layer's output, plus the low-rank path x Aᵀ Bᵀ scaled by alpha / r."


# 4. The LoRA's training target

def lora_target(latents, noise, t, alphas_cumprod, prediction_type):
    """What the LoRA learns to predict for ``z_t = √ᾱ z + √(1-ᾱ) ε``: ``ε`` (epsilon) or ``v = √ᾱ ε - √(1-ᾱ) z`` (v_prediction)."""
    if prediction_type == "epsilon":
        return noise
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * noise - (1 - a).sqrt() * latents


def _target_cases(g):
    def case(t, kind):
        latents = _latents(g, len(t))
        return dict(latents=latents, noise=torch.randn(latents.shape, generator=g), t=t, alphas_cumprod=_ALPHAS_CUMPROD.clone(),
                    prediction_type=kind)

    edges = [("epsilon: the noise itself", case(torch.tensor([500]), "epsilon")),
             ("v at small t: mostly the noise", case(torch.tensor([5]), "v_prediction")),
             ("v at large t: mostly minus the clean latents", case(torch.tensor([995]), "v_prediction")),
             ("v, a batch at its own t each", case(torch.tensor([10, 300, 700, 990]), "v_prediction")),
             ("epsilon, a batch", case(torch.tensor([0, 999]), "epsilon"))]
    return edges + repeat(4, "random", lambda: case(torch.randint(0, 1000, (_batch(g),), generator=g),
                                                    ("epsilon", "v_prediction")[_batch(g, 0, 2)]))


def _target_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one target per latent: [B,4,h,w]."
    if kwargs["prediction_type"] == "v_prediction":
        a = kwargs["alphas_cumprod"][kwargs["t"]].view(-1, 1, 1, 1)
        if torch.allclose(got, kwargs["noise"], atol=1e-4):
            return "a v-prediction model (SD 2.1 at 768) is not trained on ε: its target mixes the noise and the clean latents."
        if torch.allclose(got, (1 - a).sqrt() * kwargs["noise"] - a.sqrt() * kwargs["latents"], atol=1e-4):
            return "the two weights are swapped: at small t (ᾱ near 1) v is mostly the noise."
        if torch.allclose(got, -expected, atol=1e-4):
            return "the sign is flipped: v = √ᾱ ε - √(1-ᾱ) z, so at large t it points away from the clean latents."
    return "the LoRA is trained as its prior was: on the scheduler's prediction type (diffusers' get_velocity for v)."


register(Exercise("vsd_gradient", "05", vsd_gradient, _vsd_cases, ("grad",), _vsd_diagnose))
register(Exercise("camera_condition", "05", camera_condition, _camera_cases, ("camera",), _camera_diagnose))
register(Exercise("lora_linear", "05", lora_linear, _lora_cases, ("output",), _lora_diagnose))
register(Exercise("lora_target", "05", lora_target, _target_cases, ("target",), _target_diagnose))
