"""Chapter 01's exercises: compositing weights, positional encoding, inverse-CDF sampling,
one hash-grid level, and the marching-cubes index-to-world map."""

from __future__ import annotations

import torch

from ..fields import PositionalEncoding, interpolate_level
from ..mesh import index_to_world
from ..render import sample_pdf, volume_render
from . import Exercise, register, repeat


def _weights_reference(sigmas, z_vals):
    return volume_render(sigmas, torch.zeros(*sigmas.shape, 3), z_vals)["weights"]


def _weights_cases(g):
    z = torch.linspace(1.0, 3.0, 8).expand(3, 8).contiguous()
    edges = [("empty rays", dict(sigmas=torch.zeros(3, 8), z_vals=z)),
             ("one opaque sample", dict(sigmas=torch.tensor([[0, 0, 1e3, 0, 0, 0, 0, 0.0]]), z_vals=z[:1])),
             ("a single sample per ray", dict(sigmas=torch.tensor([[0.5], [2.0]]), z_vals=torch.tensor([[1.0], [2.0]])))]
    return edges + repeat(5, "random", lambda: dict(sigmas=torch.rand(4, 16, generator=g) * 5,
                                                    z_vals=torch.sort(torch.rand(4, 16, generator=g) * 3 + 1, -1).values))


def _weights_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one weight per sample: the output has the shape of sigmas."
    if torch.allclose(got[..., 0], expected[..., 0], atol=1e-4):
        return ("the first weights are right: the light reaching a sample is what every sample *before* it let through "
                "(not itself), and the last spacing is open-ended.")
    return "a weight is the sample's opacity times the light that reaches it; the first sample sees all the light."


def _encoding_reference(x, num_freqs):
    return PositionalEncoding(x.shape[-1], num_freqs)(x)


def _encoding_cases(g):
    edges = [("one point", dict(x=torch.tensor([[0.25, -0.5, 1.0]]), num_freqs=2)),
             ("no frequencies", dict(x=torch.rand(3, 3, generator=g), num_freqs=0)),
             ("one frequency", dict(x=torch.rand(3, 3, generator=g), num_freqs=1)),
             ("NeRF's 10 frequencies", dict(x=torch.rand(5, 3, generator=g) * 2 - 1, num_freqs=10)),
             ("2-D input", dict(x=torch.rand(4, 2, generator=g), num_freqs=4)),
             ("1-D input", dict(x=torch.rand(6, 1, generator=g), num_freqs=3))]
    return edges + repeat(2, "random", lambda: dict(x=torch.randn(7, 3, generator=g), num_freqs=int(torch.randint(1, 8, (1,), generator=g))))


def _encoding_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return f"the width is D (1 + 2L) = {expected.shape[-1]}: the input itself, then a sine and a cosine per frequency and coordinate."
    if torch.allclose(got[..., : kwargs["x"].shape[-1]], kwargs["x"]):
        return "the order is x, then for each frequency 2^k π: sin of all coordinates, then cos of all coordinates."
    return "the input comes first, unchanged; the frequencies double from one to the next, starting at π."


def _pdf_reference(bins, weights, n_samples):
    return sample_pdf(bins, weights, n_samples, deterministic=True)


def _pdf_cases(g):
    bins = torch.linspace(0, 1, 5)[None]
    edges = [("uniform weights", dict(bins=torch.linspace(2, 6, 9)[None], weights=torch.ones(1, 8), n_samples=9)),
             ("one bin", dict(bins=bins, weights=torch.tensor([[0.0, 1.0, 0.0, 0.0]]), n_samples=5)),
             ("all weight in the last bin", dict(bins=bins, weights=torch.tensor([[0.0, 0.0, 0.0, 1.0]]), n_samples=5)),
             ("an empty ray", dict(bins=bins, weights=torch.zeros(1, 4), n_samples=7))]
    return edges + repeat(4, "random", lambda: dict(bins=torch.sort(torch.rand(3, 13, generator=g) * 4, -1).values,
                                                    weights=torch.rand(3, 12, generator=g), n_samples=16))


def _pdf_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one row of n_samples positions per ray."
    if not torch.isfinite(got).all():
        return "an empty ray has no weight at all: the small constant added to every weight keeps its pdf defined."
    return ("the quantiles are evenly spaced from 0 to 1, both included; each belongs to the bin whose cdf interval "
            "contains it, and moves through that bin as far as it is through the interval.")


def _level_cases(g):
    cases = []
    for resolution, table_size, dense in [(1, 8, True), (2, 27, True), (3, 64, True), (4, 125, True),
                                          (7, 128, False), (16, 512, False), (32, 1024, False), (64, 256, False)]:
        points = torch.rand(10, 3, generator=g)
        points[0] = torch.tensor([0.0, 0.0, 0.0])
        points[1] = torch.tensor([1.0, 1.0, 1.0])  # the far corner still needs a cell
        cases.append((f"{'dense' if dense else 'hashed'} level, resolution {resolution}",
                      dict(unit_points=points, table=torch.randn(table_size, 2, generator=g), resolution=resolution, dense=dense)))
    return cases


def _level_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape == expected.shape and torch.allclose(got[1:], expected[1:], atol=1e-4):
        return "the point (1, 1, 1) lies on the far face: clamp the cell index to resolution - 1."
    if not kwargs["dense"]:
        return ("hashed slots: the products wrap around as uint32 arithmetic does; emulate that with a mask before each XOR, "
                "and only then reduce modulo the table size.")
    return ("dense slots: a level has one more corner than cells per axis, which sets the strides; a corner's weight "
            "is largest when the point is nearest to it.")


def _index_cases(g):
    edges = [("corners", dict(indices=torch.tensor([[0.0, 0, 0], [31, 31, 31]]), resolution=32, bounds=(-1.0, 1.0))),
             ("the smallest grid", dict(indices=torch.tensor([[0.0, 1, 0.5]]), resolution=2, bounds=(-1.0, 1.0))),
             ("fractional", dict(indices=torch.rand(6, 3, generator=g) * 15, resolution=16, bounds=(-1.0, 1.0))),
             ("other bounds", dict(indices=torch.rand(6, 3, generator=g) * 63, resolution=64, bounds=(-0.5, 2.0))),
             ("a batch of meshes", dict(indices=torch.rand(2, 5, 3, generator=g) * 31, resolution=32, bounds=(-1.0, 1.0)))]

    def random():
        resolution, lo = int(torch.randint(3, 65, (1,), generator=g)), round(-2 * torch.rand(1, generator=g).item(), 3)
        return dict(indices=torch.rand(8, 3, generator=g) * (resolution - 1), resolution=resolution, bounds=(lo, lo + 2.5))

    return edges + repeat(3, "random", random)


def _index_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    r, (lo, hi) = kwargs["resolution"], kwargs["bounds"]
    if got.shape == expected.shape and torch.allclose(got, lo + kwargs["indices"] * (hi - lo) / r, atol=1e-5):
        return "R samples span R - 1 intervals, not R."
    return "index 0 lands on lo and index R - 1 on hi, and the map is linear in between."


register(Exercise("compositing_weights", "01", _weights_reference, _weights_cases, ("weights",), _weights_diagnose))
register(Exercise("positional_encoding", "01", _encoding_reference, _encoding_cases, ("encoding",), _encoding_diagnose))
register(Exercise("sample_pdf", "01", _pdf_reference, _pdf_cases, ("samples",), _pdf_diagnose, atol=1e-3))
register(Exercise("hash_grid_level", "01", interpolate_level, _level_cases, ("features",), _level_diagnose))
register(Exercise("index_to_world", "01", index_to_world, _index_cases, ("world",), _index_diagnose))
