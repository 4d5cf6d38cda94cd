"""Chapter 02's exercises: the forward process q(x_t | x_0), the DDPM posterior mean, the Chamfer
distance and 1-NNA. The references are diffusers' scheduler and ``minidiff3d.metrics``."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from ..metrics import chamfer_distance, one_nn_accuracy
from . import Exercise, register, repeat

_SCHEDULER = DDPMScheduler(num_train_timesteps=1000)  # linear betas 1e-4 .. 0.02, as DDPM


def _q_sample_reference(x0, noise, t, alphas_cumprod):
    return _SCHEDULER.add_noise(x0, noise, t)


def _schedule_cases(g, with_x_t=False):
    first = 1 if with_x_t else 0  # the posterior needs a step before t

    def case(t, n_points=32):
        x0 = torch.rand(len(t), n_points, 3, generator=g) * 2 - 1
        other = torch.randn(x0.shape, generator=g)
        given = dict(x_t=other, betas=_SCHEDULER.betas.clone()) if with_x_t else dict(noise=other)
        return dict(x0=x0, **given, t=t, alphas_cumprod=_SCHEDULER.alphas_cumprod.clone())

    def randint(lo, hi, n=1):
        return torch.randint(lo, hi, (n,), generator=g)

    edges = [(f"t = {first}", case(torch.tensor([first, first]))), ("t = T-1", case(torch.tensor([999, 999]))),
             ("one cloud of one point", case(torch.tensor([500]), n_points=1))]
    return edges + repeat(5, "mixed t", lambda: case(randint(first, 1000, int(randint(1, 6))), n_points=int(randint(1, 65))))


def _q_sample_diagnose(got, expected, kwargs):
    got, a = torch.as_tensor(got), kwargs["alphas_cumprod"][kwargs["t"]].view(-1, 1, 1)
    if got.shape != expected.shape:
        return "one noisy point per point: the output has the shape of x0."
    if torch.allclose(got, a * kwargs["x0"] + (1 - a) * kwargs["noise"], atol=1e-4):
        return "the coefficients are square roots: variances add, standard deviations do not."
    return "index ᾱ by each sample's own t and reshape it to [B,1,1] so it scales that sample's points."


def posterior_mean(x0, x_t, t, betas, alphas_cumprod):
    """μ̃_t(x_t, x_0) of q(x_{t-1} | x_t, x_0), for ``t ≥ 1`` (``[B]``), clouds ``[B,N,3]``."""
    shape = (-1,) + (1,) * (x0.ndim - 1)
    beta, a_t, a_prev = betas[t].view(shape), alphas_cumprod[t].view(shape), alphas_cumprod[t - 1].view(shape)
    return (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x_t


def _posterior_diagnose(got, expected, kwargs):
    if torch.as_tensor(got).shape != expected.shape:
        return "one mean per point: the output has the shape of x0."
    return ("the mean is a weighted sum of x_0 and x_t, its coefficients read from the schedule at t and at t - 1; "
            "α_t is one step's 1 - β_t, not the cumulative ᾱ_t.")


def _chamfer_cases(g):
    x = torch.rand(2, 20, 3, generator=g)
    edges = [("the hand example", dict(a=torch.tensor([[[0.0, 0, 0], [1, 0, 0]]]), b=torch.tensor([[[0.0, 0, 0], [0, 2, 0]]]))),
             ("identical clouds", dict(a=x, b=x.clone())),
             ("one point each", dict(a=torch.tensor([[[0.0, 0, 0]]]), b=torch.tensor([[[1.0, 2, 2]]]))),
             ("a shifted copy", dict(a=x, b=x + torch.tensor([0.3, 0.0, 0.0]))),
             ("different sizes", dict(a=torch.rand(3, 30, 3, generator=g), b=torch.rand(3, 50, 3, generator=g)))]

    def random():
        n, m = torch.randint(1, 40, (2,), generator=g).tolist()
        return dict(a=torch.randn(2, n, 3, generator=g), b=torch.randn(2, m, 3, generator=g))

    return edges + repeat(3, "random", random)


def _chamfer_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one distance per pair of clouds: shape [B]."
    if torch.allclose(got, expected / 2, atol=1e-5) or torch.allclose(got ** 2, expected, atol=1e-4):
        return "the distances are squared, and each direction is averaged over its own cloud before the two are added."
    return "Chamfer looks both ways: from every point of a to the nearest point of b, and from every point of b to a."


def _nna_cases(g):
    def distances(n_x, n_y, shift):
        points = torch.cat([torch.randn(n_x, 2, generator=g), torch.randn(n_y, 2, generator=g) + shift])
        d = torch.cdist(points, points)
        return dict(d_xx=d[:n_x, :n_x], d_xy=d[:n_x, n_x:], d_yy=d[n_x:, n_x:])

    edges = [("well separated", distances(6, 6, 50.0)), ("overlapping", distances(10, 8, 0.0)),
             ("one cloud in each set", distances(1, 1, 0.0)), ("partly overlapping", distances(7, 12, 1.5))]

    def random():
        n_x, n_y = torch.randint(2, 15, (2,), generator=g).tolist()
        return distances(n_x, n_y, 3 * torch.rand(1, generator=g).item())

    return edges + repeat(4, "random", random)


def _nna_diagnose(got, expected, kwargs):
    if float(got) == 1.0 and expected < 1.0:
        return "leave each cloud out of its own search: its distance to itself is 0 (set the diagonal to infinity)."
    return "label each of the X+Y clouds by its nearest *other* cloud; the accuracy is the fraction labelled with its own set."


register(Exercise("q_sample", "02", _q_sample_reference, _schedule_cases, ("x_t",), _q_sample_diagnose))
register(Exercise("posterior_mean", "02", posterior_mean, lambda g: _schedule_cases(g, with_x_t=True), ("mean",),
                  _posterior_diagnose))
register(Exercise("chamfer_distance", "02", chamfer_distance, _chamfer_cases, ("distance",), _chamfer_diagnose))
register(Exercise("one_nn_accuracy", "02", one_nn_accuracy, _nna_cases, ("accuracy",), _nna_diagnose))
