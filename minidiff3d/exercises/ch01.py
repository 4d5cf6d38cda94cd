"""Chapter 01's exercises: compositing weights, positional encoding, inverse-CDF sampling,
one hash-grid level, and the marching-cubes index-to-world map."""

from __future__ import annotations

import torch

from ..fields import PositionalEncoding, interpolate_level
from ..mesh import index_to_world
from ..render import sample_pdf, volume_render
from . import Exercise, register


def _weights_reference(sigmas, z_vals):
    return volume_render(sigmas, torch.zeros(*sigmas.shape, 3), z_vals)["weights"]


def _weights_cases(g):
    z = torch.linspace(1.0, 3.0, 8).expand(3, 8).contiguous()
    cases = [("empty rays", dict(sigmas=torch.zeros(3, 8), z_vals=z)),
             ("one opaque sample", dict(sigmas=torch.tensor([[0, 0, 1e3, 0, 0, 0, 0, 0.0]]), z_vals=z[:1]))]
    for i in range(3):
        z = torch.sort(torch.rand(4, 16, generator=g) * 3 + 1, -1).values
        cases.append((f"random {i}", dict(sigmas=torch.rand(4, 16, generator=g) * 5, z_vals=z)))
    return cases


def _weights_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one weight per sample: the output has the shape of sigmas."
    if torch.allclose(got[..., 0], 1 - torch.exp(-kwargs["sigmas"][..., 0] * (kwargs["z_vals"][..., 1] - kwargs["z_vals"][..., 0])), atol=1e-4):
        return "the first weights are right: check the transmittance (exclusive: T_i multiplies (1 - α_j) for j < i only) and the last δ = 1e10."
    return "w_i = α_i T_i with α_i = 1 - exp(-σ_i δ_i), δ_i = z_{i+1} - z_i, and T_1 = 1 (transmittance is an exclusive product)."


def _encoding_reference(x, num_freqs):
    return PositionalEncoding(x.shape[-1], num_freqs)(x)


def _encoding_cases(g):
    return [("one point", dict(x=torch.tensor([[0.25, -0.5, 1.0]]), num_freqs=2)),
            ("no frequencies", dict(x=torch.rand(3, 3, generator=g), num_freqs=0)),
            ("NeRF's 10 frequencies", dict(x=torch.rand(5, 3, generator=g) * 2 - 1, num_freqs=10)),
            ("2-D input", dict(x=torch.rand(4, 2, generator=g), num_freqs=4))]


def _encoding_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return f"the width is D (1 + 2L) = {expected.shape[-1]}: the input itself, then a sine and a cosine per frequency and coordinate."
    if torch.allclose(got[..., : kwargs["x"].shape[-1]], kwargs["x"]):
        return "the order is x, then for each frequency 2^k π: sin of all coordinates, then cos of all coordinates."
    return "start with the input itself, then use frequencies 2^k π for k = 0 .. L-1."


def _pdf_reference(bins, weights, n_samples):
    return sample_pdf(bins, weights, n_samples, deterministic=True)


def _pdf_cases(g):
    cases = [("uniform weights", dict(bins=torch.linspace(2, 6, 9)[None], weights=torch.ones(1, 8), n_samples=9)),
             ("one bin", dict(bins=torch.linspace(0, 1, 5)[None], weights=torch.tensor([[0.0, 1.0, 0.0, 0.0]]), n_samples=5))]
    for i in range(3):
        bins = torch.sort(torch.rand(3, 13, generator=g) * 4, -1).values
        cases.append((f"random {i}", dict(bins=bins, weights=torch.rand(3, 12, generator=g), n_samples=16)))
    return cases


def _pdf_diagnose(got, expected, kwargs):
    return ("add 1e-5 to the weights, normalise them into a pdf, build the cdf with a leading 0, take quantiles "
            "u = linspace(0, 1, n), find each u's bin with searchsorted(right=True) and interpolate linearly inside it.")


def _level_cases(g):
    cases = []
    for i, (resolution, table_size, dense) in enumerate([(3, 64, True), (7, 128, False), (16, 512, False)]):
        table = torch.randn(table_size, 2, generator=g)
        points = torch.rand(10, 3, generator=g)
        points[0] = torch.tensor([0.0, 0.0, 0.0])
        points[1] = torch.tensor([1.0, 1.0, 1.0])  # the far corner still needs a cell
        cases.append((f"{'dense' if dense else 'hashed'} level, resolution {resolution}",
                      dict(unit_points=points, table=table, resolution=resolution, dense=dense)))
    return cases


def _level_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape == expected.shape and torch.allclose(got[1:], expected[1:], atol=1e-4):
        return "the point (1, 1, 1) lies on the far face: clamp the cell index to resolution - 1."
    if not kwargs["dense"]:
        return "hashed slots: (i * 1) ^ (j * 2654435761) ^ (k * 805459861), each product taken mod 2^32, then mod the table size."
    return "dense slots: i + s j + s^2 k with s = resolution + 1; weights: the product over axes of frac or (1 - frac)."


def _index_cases(g):
    return [("corners", dict(indices=torch.tensor([[0.0, 0, 0], [31, 31, 31]]), resolution=32, bounds=(-1.0, 1.0))),
            ("fractional", dict(indices=torch.rand(6, 3, generator=g) * 15, resolution=16, bounds=(-1.0, 1.0))),
            ("other bounds", dict(indices=torch.rand(6, 3, generator=g) * 63, resolution=64, bounds=(-0.5, 2.0)))]


def _index_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    r, (lo, hi) = kwargs["resolution"], kwargs["bounds"]
    if got.shape == expected.shape and torch.allclose(got, lo + kwargs["indices"] * (hi - lo) / r, atol=1e-5):
        return "R samples span R - 1 intervals: divide by resolution - 1, not resolution."
    return "index i maps to lo + i (hi - lo) / (R - 1)."


register(Exercise("compositing_weights", "01", _weights_reference, _weights_cases, ("weights",), _weights_diagnose))
register(Exercise("positional_encoding", "01", _encoding_reference, _encoding_cases, ("encoding",), _encoding_diagnose))
register(Exercise("sample_pdf", "01", _pdf_reference, _pdf_cases, ("samples",), _pdf_diagnose, atol=1e-3))
register(Exercise("hash_grid_level", "01", interpolate_level, _level_cases, ("features",), _level_diagnose))
register(Exercise("index_to_world", "01", index_to_world, _index_cases, ("world",), _index_diagnose))
