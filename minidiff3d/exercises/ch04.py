"""Chapter 04's exercises: classifier-free guidance, the SDS gradient and its surrogate loss, the
weighting w(t), and choosing a view-dependent prompt."""

from __future__ import annotations

import torch

from ..guidance import guided_noise_prediction, sds_weight
from ..priors.captions import VIEWS, view_name
from . import Exercise, register


def _cfg_reference(noise_cond, noise_uncond, scale):
    return guided_noise_prediction(noise_cond, noise_uncond, scale, "diffusers")


def _cfg_cases(g):
    return [("scale 1 is the conditional prediction", dict(noise_cond=torch.randn(1, 4, 2, 2, generator=g),
                                                           noise_uncond=torch.randn(1, 4, 2, 2, generator=g), scale=1.0)),
            ("scale 0 is the unconditional one", dict(noise_cond=torch.randn(1, 4, 2, 2, generator=g),
                                                      noise_uncond=torch.randn(1, 4, 2, 2, generator=g), scale=0.0)),
            ("DreamFusion's scale", dict(noise_cond=torch.randn(2, 4, 8, 8, generator=g),
                                         noise_uncond=torch.randn(2, 4, 8, 8, generator=g), scale=100.0))]


def _cfg_diagnose(got, expected, kwargs):
    c, u, s = kwargs["noise_cond"], kwargs["noise_uncond"], kwargs["scale"]
    got = torch.as_tensor(got)
    if got.shape == c.shape and torch.allclose(got, guided_noise_prediction(c, u, s, "threestudio"), atol=1e-4):
        return "that is threestudio's form, ε_c + s (ε_c - ε_u); diffusers' (asked for here) starts from ε_u."
    if got.shape == c.shape and torch.allclose(got, c + s * (u - c), atol=1e-4):
        return "the conditional and unconditional predictions are swapped: guidance moves away from ε_u, towards ε_c."
    return "ε̂ = ε_u + s (ε_c - ε_u)."


def _weight_reference(betas, timesteps, weighting):
    return sds_weight(torch.cumprod(1 - betas, 0)[timesteps], weighting)


def _weight_cases(g):
    betas = torch.linspace(1e-4, 0.02, 1000)
    return [("the sds weighting", dict(betas=betas, timesteps=torch.tensor([0, 20, 500, 980]), weighting="sds")),
            ("uniform", dict(betas=betas, timesteps=torch.tensor([3, 700]), weighting="uniform")),
            ("random timesteps", dict(betas=torch.linspace(8.5e-4, 0.012, 1000),
                                      timesteps=torch.randint(0, 1000, (16,), generator=g), weighting="sds"))]


def _weight_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    alphas_cumprod = torch.cumprod(1 - kwargs["betas"], 0)[kwargs["timesteps"]]
    if got.shape == expected.shape and torch.allclose(got, alphas_cumprod, atol=1e-4):
        return "that is ᾱ_t itself; DreamFusion's w(t) is 1 - ᾱ_t = σ_t², the noise variance at t."
    if got.shape == expected.shape and torch.allclose(got, 1 - (1 - kwargs["betas"])[kwargs["timesteps"]], atol=1e-4):
        return "ᾱ_t is the cumulative product of (1 - β) up to t, not 1 - β_t alone."
    return "ᾱ = cumprod(1 - betas); w = 1 - ᾱ[t] for 'sds', ones for 'uniform'."


def _surrogate_reference(latents, grad):
    latents = latents.detach().clone().requires_grad_(True)
    target = (latents - grad).detach()
    loss = 0.5 * (latents - target).pow(2).sum()
    (latents_grad,) = torch.autograd.grad(loss, latents)
    return loss.detach(), latents_grad


def _surrogate_cases(g):
    return [("one latent", dict(latents=torch.randn(1, 4, 2, 2, generator=g), grad=torch.randn(1, 4, 2, 2, generator=g))),
            ("a batch", dict(latents=torch.randn(3, 4, 8, 8, generator=g), grad=0.1 * torch.randn(3, 4, 8, 8, generator=g)))]


def _surrogate_diagnose(got, expected, kwargs):
    if isinstance(got, tuple | list) and len(got) == 2 and torch.as_tensor(got[1]).abs().max() < 1e-8:
        return ("the gradient is zero: without .detach() on the target, (z - (z - g)) = g no longer depends on z. "
                "Detach the target so that only the first z carries gradient.")
    return "target = (latents - grad).detach(); loss = ½ Σ (latents - target)²; its gradient w.r.t. latents is grad."


def _view_reference(elevation, azimuth):
    return torch.tensor([VIEWS.index(v) for v in view_name(elevation, azimuth)])


def _view_cases(g):
    return [("the four sides", dict(elevation=torch.zeros(4), azimuth=torch.tensor([0.0, 90.0, 180.0, 270.0]))),
            ("boundaries and overhead", dict(elevation=torch.tensor([0.0, 0.0, 60.0, 59.0]),
                                             azimuth=torch.tensor([45.0, 135.0, 180.0, 180.0]))),
            ("azimuths past 360 and below 0", dict(elevation=torch.zeros(3), azimuth=torch.tensor([-30.0, 400.0, 530.0]))),
            ("random cameras", dict(elevation=torch.rand(32, generator=g) * 90 - 10, azimuth=torch.rand(32, generator=g) * 360))]


def _view_diagnose(got, expected, kwargs):
    return ("overhead first (elevation ≥ 60), then the angle from the front, |((azimuth + 180) mod 360) - 180|: "
            "≤ 45 front, ≥ 135 back, else side. Indices follow VIEWS = ('front', 'side', 'back', 'overhead').")


register(Exercise("cfg", "04", _cfg_reference, _cfg_cases, ("noise_pred",), _cfg_diagnose))
register(Exercise("sds_weight", "04", _weight_reference, _weight_cases, ("w",), _weight_diagnose))
register(Exercise("sds_surrogate", "04", _surrogate_reference, _surrogate_cases, ("loss", "latents_grad"),
                  _surrogate_diagnose))
register(Exercise("view_index", "04", _view_reference, _view_cases, ("view",), _view_diagnose))
