import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from minidiff3d.render import sample_pdf, stratified_samples, volume_render


def test_constant_density_over_length_gives_analytic_alpha():
    sigma, length = 1.7, 0.8
    z = torch.linspace(0.0, length, 201)
    sigmas = torch.full((201,), sigma)
    sigmas[-1] = 0.0  # nothing beyond the segment
    out = volume_render(sigmas, torch.ones(201, 3), z)
    assert math.isclose(out["opacity"].item(), 1 - math.exp(-sigma * length), rel_tol=1e-5)


def test_single_opaque_sample_and_exclusive_transmittance():
    z = torch.tensor([1.0, 2.0, 3.0])
    sigmas = torch.tensor([0.0, 100.0, 5.0])
    colors = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    out = volume_render(sigmas, colors, z)
    assert torch.allclose(out["weights"], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)  # the first sample is unoccluded: T_1 = 1
    assert torch.allclose(out["rgb"], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    assert math.isclose(out["depth"].item(), 2.0, rel_tol=1e-5)


def test_opacity_never_exceeds_one_and_empty_ray_shows_background():
    g = torch.Generator().manual_seed(0)
    z = stratified_samples(0.5, 4.0, 64, shape=(32,), generator=g)
    out = volume_render(torch.rand(32, 64, generator=g) * 1e4, torch.rand(32, 64, 3, generator=g), z, background=(0.2, 0.3, 0.4))
    assert (out["opacity"] <= 1 + 1e-6).all() and torch.isfinite(out["rgb"]).all()
    empty = volume_render(torch.zeros(4, 16), torch.rand(4, 16, 3), torch.linspace(0, 1, 16).expand(4, 16), background=(0.2, 0.3, 0.4))
    assert torch.allclose(empty["rgb"], torch.tensor([0.2, 0.3, 0.4]).expand(4, 3))
    assert (empty["opacity"] == 0).all()


def test_ray_norm_scales_the_spacing():
    z = torch.linspace(0, 1, 50)
    sigmas = torch.full((50,), 2.0)
    sigmas[-1] = 0
    plain = volume_render(sigmas, torch.ones(50, 3), z)
    scaled = volume_render(sigmas, torch.ones(50, 3), z, ray_norms=torch.tensor(1.5))
    assert math.isclose(scaled["opacity"].item(), 1 - math.exp(-2.0 * 1.5), rel_tol=1e-5)
    assert scaled["opacity"] > plain["opacity"]


def test_stratified_samples_stay_in_their_bins():
    z = stratified_samples(1.0, 3.0, 8, shape=(100,), generator=torch.Generator().manual_seed(1))
    edges = torch.linspace(1.0, 3.0, 9)
    assert ((z >= edges[:-1]) & (z <= edges[1:])).all()
    assert torch.allclose(stratified_samples(1.0, 3.0, 4, perturb=False), torch.tensor([1.25, 1.75, 2.25, 2.75]))


def test_uniform_weights_deterministic_give_evenly_spaced_samples():
    bins = torch.linspace(2.0, 6.0, 9)
    samples = sample_pdf(bins, torch.ones(8), 17, deterministic=True)
    assert torch.allclose(samples, torch.linspace(2.0, 6.0, 17), atol=1e-3)


def test_one_hot_weights_keep_samples_in_that_bin():
    bins = torch.linspace(0.0, 1.0, 11).expand(5, 11)
    weights = torch.zeros(5, 10)
    weights[:, 6] = 1.0
    samples = sample_pdf(bins, weights, 64, generator=torch.Generator().manual_seed(0))
    inside = ((samples >= 0.6) & (samples <= 0.7)).float().mean()
    assert inside > 0.99  # the 1e-5 floor on empty bins leaves a tiny chance elsewhere


def _ray(draw, sizes=st.integers(1, 16)):
    """Densities and non-decreasing sample positions of one random ray, as tensors ``[S]``."""
    n = draw(sizes)
    sigmas = draw(st.lists(st.floats(0.0, 50.0), min_size=n, max_size=n))
    gaps = draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))
    return torch.tensor(sigmas), torch.tensor(gaps).cumsum(0)


@settings(max_examples=50, deadline=None)
@given(data=st.data(), scale=st.floats(1.0, 100.0))
def test_opacity_is_at_most_one_and_grows_with_density(data, scale):
    sigmas, z = _ray(data.draw)
    colors = torch.rand(len(z), 3)
    opacity = volume_render(sigmas, colors, z)["opacity"]
    assert 0.0 <= opacity <= 1.0 + 1e-6
    assert volume_render(sigmas * scale, colors, z)["opacity"] >= opacity - 1e-6


@settings(max_examples=40, deadline=None)
@given(widths=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=12), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_sample_pdf_follows_its_cdf(widths, data, seed):
    bins = torch.cat([torch.zeros(1), torch.tensor(widths).cumsum(0)])
    weights = torch.tensor(data.draw(st.lists(st.floats(0.0, 10.0), min_size=len(widths), max_size=len(widths))))
    pdf = (weights + 1e-5) / (weights + 1e-5).sum()  # sample_pdf's floor keeps empty rays sampling
    cdf = pdf.cumsum(0)[:-1]  # at the inner edges
    below = lambda samples: (samples[:, None] < bins[None, 1:-1]).float().mean(0)
    n = 20000
    drawn = sample_pdf(bins, weights, n, generator=torch.Generator().manual_seed(seed))
    assert (drawn >= bins[0]).all() and (drawn <= bins[-1]).all()
    assert (below(drawn) - cdf).abs().max() < 0.02  # over 5 standard deviations of a fraction of 20000
    assert torch.equal(sample_pdf(bins, weights, n, generator=torch.Generator().manual_seed(seed)), drawn)
    quantiles = sample_pdf(bins, weights, 101, deterministic=True)  # at the CDF's levels 0, 0.01, ..., 1
    assert (quantiles.diff() >= 0).all() and (below(quantiles) - cdf).abs().max() <= 1 / 100 + 1e-4


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: volume_render(torch.ones(4, 8), torch.ones(4, 7, 3), torch.ones(4, 8).cumsum(-1)), r"colors: expected shape \[4, S, 3\] with S=8"),
        (lambda: volume_render(torch.ones(3, 8), torch.ones(4, 8, 3), torch.ones(4, 8).cumsum(-1)), r"sigmas: expected shape \[4, S\]"),
        (lambda: volume_render(torch.full((8,), float("nan")), torch.ones(8, 3), torch.arange(8.0)), "sigmas: expected finite values"),
        (lambda: volume_render(-torch.ones(8), torch.ones(8, 3), torch.arange(8.0)), "sigmas: expected non-negative"),
        (lambda: volume_render(torch.ones(8), torch.ones(8, 3), torch.arange(8.0).flip(0)), "z_vals: expected non-decreasing"),
        (lambda: sample_pdf(torch.linspace(0, 1, 9), torch.ones(9), 4), r"weights: expected shape \[8\]"),
        (lambda: stratified_samples(2.0, 1.0, 4), "near, far: expected near < far"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
