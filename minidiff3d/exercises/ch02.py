"""Chapter 02's exercises: the forward process q(x_t | x_0), the DDPM posterior mean, the Chamfer
distance and 1-NNA. The references are diffusers' scheduler and ``minidiff3d.metrics``."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from ..metrics import chamfer_distance, one_nn_accuracy
from . import Exercise, register

_SCHEDULER = DDPMScheduler(num_train_timesteps=1000)  # linear betas 1e-4 .. 0.02, as DDPM


def _q_sample_reference(x0, noise, t, alphas_cumprod):
    return _SCHEDULER.add_noise(x0, noise, t)


def _schedule_cases(g, with_x_t=False):
    cases = []
    for label, t in [("t = 0", torch.tensor([0, 0])), ("t = T-1", torch.tensor([999, 999])),
                     ("mixed t", torch.randint(0, 1000, (4,), generator=g))]:
        x0 = torch.rand(len(t), 32, 3, generator=g) * 2 - 1
        kwargs = dict(x0=x0, noise=torch.randn(x0.shape, generator=g), t=t, alphas_cumprod=_SCHEDULER.alphas_cumprod.clone())
        if with_x_t:
            kwargs = dict(x0=x0, x_t=torch.randn(x0.shape, generator=g), t=t.clamp(min=1), betas=_SCHEDULER.betas.clone(),
                          alphas_cumprod=_SCHEDULER.alphas_cumprod.clone())
            label = label.replace("t = 0", "t = 1")
        cases.append((label, kwargs))
    return cases


def _q_sample_diagnose(got, expected, kwargs):
    a = kwargs["alphas_cumprod"][kwargs["t"]].view(-1, 1, 1)
    if torch.allclose(torch.as_tensor(got), a * kwargs["x0"] + (1 - a) * kwargs["noise"], atol=1e-4):
        return "the coefficients are square roots: sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε (variances add, standard deviations do not)."
    return "index ᾱ by each sample's own t and reshape it to [B,1,1] so it scales that sample's points."


def posterior_mean(x0, x_t, t, betas, alphas_cumprod):
    """μ̃_t(x_t, x_0) of q(x_{t-1} | x_t, x_0), for ``t ≥ 1`` (``[B]``), clouds ``[B,N,3]``."""
    shape = (-1,) + (1,) * (x0.ndim - 1)
    beta, a_t, a_prev = betas[t].view(shape), alphas_cumprod[t].view(shape), alphas_cumprod[t - 1].view(shape)
    return (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x_t


def _posterior_diagnose(got, expected, kwargs):
    return ("μ̃ = sqrt(ᾱ_{t-1}) β_t / (1 - ᾱ_t) · x_0 + sqrt(α_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · x_t, "
            "with α_t = 1 - β_t and ᾱ_{t-1} taken at t - 1.")


def _chamfer_cases(g):
    return [("the hand example", dict(a=torch.tensor([[[0.0, 0, 0], [1, 0, 0]]]), b=torch.tensor([[[0.0, 0, 0], [0, 2, 0]]]))),
            ("identical clouds", dict(a=(x := torch.rand(2, 20, 3, generator=g)), b=x.clone())),
            ("different sizes", dict(a=torch.rand(3, 30, 3, generator=g), b=torch.rand(3, 50, 3, generator=g)))]


def _chamfer_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one distance per pair of clouds: shape [B]."
    if torch.allclose(got, expected / 2, atol=1e-5) or torch.allclose(got ** 2, expected, atol=1e-4):
        return "use squared distances, average in each direction, then add the two means."
    return "for each point of a the squared distance to its nearest point of b, averaged; plus the same from b to a."


def _nna_cases(g):
    def distances(n_x, n_y, shift):
        points = torch.cat([torch.randn(n_x, 2, generator=g), torch.randn(n_y, 2, generator=g) + shift])
        d = torch.cdist(points, points)
        return dict(d_xx=d[:n_x, :n_x], d_xy=d[:n_x, n_x:], d_yy=d[n_x:, n_x:])

    return [("well separated", distances(6, 6, 50.0)), ("overlapping", distances(10, 8, 0.0)),
            ("partly overlapping", distances(7, 12, 1.5))]


def _nna_diagnose(got, expected, kwargs):
    if float(got) == 1.0 and expected < 1.0:
        return "leave each cloud out of its own search: its distance to itself is 0 (set the diagonal to infinity)."
    return "label each of the X+Y clouds by its nearest *other* cloud; the accuracy is the fraction labelled with its own set."


register(Exercise("q_sample", "02", _q_sample_reference, _schedule_cases, ("x_t",), _q_sample_diagnose))
register(Exercise("posterior_mean", "02", posterior_mean, lambda g: _schedule_cases(g, with_x_t=True), ("mean",),
                  _posterior_diagnose))
register(Exercise("chamfer_distance", "02", chamfer_distance, _chamfer_cases, ("distance",), _chamfer_diagnose))
register(Exercise("one_nn_accuracy", "02", one_nn_accuracy, _nna_cases, ("accuracy",), _nna_diagnose))
