"""Chapter 07's exercises: Zero-1-to-3's relative camera, its two conditions as the U-Net takes them, the
zero-initialised input channels it is fine-tuned from, and One-2-3-45's ring of views, each checked against
the function the package itself uses."""

from __future__ import annotations

import math

import torch

from ..systems.one2345 import ring_angles
from ..zero123 import denoiser_inputs, relative_camera, widen_input_channels
from . import Exercise, register, repeat


def _count(g, low, high):
    return int(torch.randint(low, high, (1,), generator=g))


# 1. The relative camera

def _camera_cases(g):
    def case(el_in, az_in, el_out, az_out):
        return dict(elevation_in=torch.as_tensor(el_in, dtype=torch.float32),
                    azimuth_in=torch.as_tensor(az_in, dtype=torch.float32),
                    elevation_out=torch.as_tensor(el_out, dtype=torch.float32),
                    azimuth_out=torch.as_tensor(az_out, dtype=torch.float32))

    edges = [("no move at all", case([15.0], [0.0], [15.0], [0.0])),
             ("a quarter turn to the left", case([0.0], [0.0], [0.0], [90.0])),
             ("up by 30 degrees", case([0.0], [20.0], [30.0], [20.0])),
             ("past 360 degrees: 350 is -10", case([15.0, 15.0], [0.0, 0.0], [15.0, 15.0], [350.0, -10.0])),
             ("from behind to the front", case([40.0], [180.0], [-10.0], [0.0]))]

    def random():
        n = _count(g, 1, 6)
        el = lambda: torch.rand(n, generator=g) * 90 - 10
        az = lambda: torch.rand(n, generator=g) * 720 - 360
        return case(el(), az(), el(), az())

    return edges + repeat(4, "random", random)


def _camera_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one row [Δpolar, sin Δazimuth, cos Δazimuth, Δradius] per camera: [B,4]."
    if torch.allclose(got[:, 0], -expected[:, 0], atol=1e-4) and expected[:, 0].abs().max() > 1e-3:
        return "Δpolar has the wrong sign: the polar angle is measured down from +z, so it is 90° minus the elevation."
    if torch.allclose(got[:, 0], expected[:, 0] * 180 / math.pi, atol=1e-3) and expected[:, 0].abs().max() > 1e-3:
        return "Δpolar is in degrees: the model was trained on radians."
    turn = (kwargs["azimuth_out"] - kwargs["azimuth_in"]).reshape(-1)
    if got.shape[0] == len(turn) and torch.allclose(got[:, 1], turn / 180, atol=1e-4) and turn.abs().max() > 1e-3:
        return "Δazimuth/180 is the source chapter's encoding, and it is not periodic (350° and -10° land far apart): " \
               "use its sine and cosine."
    if torch.allclose(got[:, 1:3], expected[:, [2, 1]], atol=1e-4):
        return "sine and cosine are swapped: the sine comes first."
    return "turn the azimuth difference into radians before its sine and cosine; that makes 350° and -10° the same."


# 2. The two conditions

def _inputs_cases(g):
    def case(batch, size, dim, width, drop):
        projection = torch.nn.Linear(dim + 4, width)
        with torch.no_grad():
            projection.weight.copy_(torch.randn(width, dim + 4, generator=g) * 0.3)
            projection.bias.copy_(torch.randn(width, generator=g) * 0.3)
        return dict(noisy_latents=torch.randn(batch, 4, size, size, generator=g),
                    image_latents=torch.randn(batch, 4, size, size, generator=g),
                    image_embeds=torch.randn(batch, dim, generator=g), camera=torch.randn(batch, 4, generator=g),
                    projection=projection, drop=None if drop is None else torch.as_tensor(drop))

    edges = [("one row, no dropping", case(1, 4, 6, 5, None)),
             ("every row dropped: the unconditional input", case(2, 4, 6, 5, [True, True])),
             ("one row of two dropped", case(2, 3, 8, 8, [False, True])),
             ("nothing dropped, as a mask", case(3, 2, 4, 7, [False, False, False]))]

    def random():
        batch = _count(g, 1, 4)
        drop = (torch.rand(batch, generator=g) > 0.5).tolist() if torch.rand(1, generator=g) > 0.3 else None
        return case(batch, _count(g, 2, 6), _count(g, 2, 9), _count(g, 2, 9), drop)

    return edges + repeat(5, "random", random)


def _inputs_diagnose(got, expected, kwargs):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "return two things: the U-Net's sample [B,8,h,w] and the tokens [B,1,C]."
    sample, tokens = (torch.as_tensor(x) for x in got)
    if sample.shape != expected[0].shape:
        if sample.shape[1] == 4:
            return "the input view's latent goes on the channels too: cat([noisy, image], dim=1) has 8."
        return "the sample is [B,8,h,w]: the noisy latent first, then the input view's, on dim 1."
    if torch.allclose(sample, torch.cat([kwargs["image_latents"], kwargs["noisy_latents"]], 1)):
        return "the noisy latent comes first, the input view's second (the order the weights were trained with)."
    if tokens.shape != expected[1].shape:
        return "one token per row: project [embedding, camera] to [B,C], then add the token axis: [B,1,C]."
    if kwargs["drop"] is not None and kwargs["drop"].any():
        return ("dropped rows get both conditions zeroed: the input view's latent and the projected token "
                "(zero the token after the projection, not its input: the bias would survive).")
    return "join the embedding and the camera on the last axis, then the projection."


# 3. Zero-initialised input channels

def _widen_cases(g):
    edges = [("a 1x1 convolution", dict(weight=torch.randn(3, 4, 1, 1, generator=g))),
             ("a 3x3 convolution, as conv_in is", dict(weight=torch.randn(8, 4, 3, 3, generator=g))),
             ("one input channel", dict(weight=torch.randn(2, 1, 3, 3, generator=g)))]
    return edges + repeat(6, "random", lambda: dict(weight=torch.randn(_count(g, 1, 9), _count(g, 1, 5), 3, 3,
                                                                      generator=g)))


def _widen_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "twice the input channels, dim 1: [O,2I,k,k]; the output channels stay."
    if torch.allclose(got, torch.cat([kwargs["weight"], kwargs["weight"]], 1)):
        return "copying the filters doubles the old channels' effect once the new ones hold a latent: zeros instead."
    if torch.allclose(got[:, :kwargs["weight"].shape[1]], torch.zeros_like(kwargs["weight"])):
        return "the old filters first, the zeros second: the noisy latent keeps the first channels."
    return "concatenate the weight with zeros of its own shape on dim 1."


# 4. One-2-3-45's ring

def _ring_cases(g):
    def case(el, az, n, elevations):
        return dict(elevation=float(el), azimuth=float(az), n_azimuths=n, elevations=tuple(float(e) for e in elevations))

    edges = [("the default ring: 8 turns at the input's height and at 50", case(15, 0, 8, (15, 50))),
             ("the input not on any row: nothing to leave out", case(20, 30, 4, (0, 45))),
             ("one row, four turns", case(15, 90, 4, (15,))),
             ("an input from behind", case(0, 180, 6, (0, 30, 60)))]

    def random():
        rows = torch.randint(-10, 80, (_count(g, 1, 4),), generator=g).tolist()
        el = rows[0] if torch.rand(1, generator=g) > 0.3 else 5
        return case(el, float(torch.rand(1, generator=g) * 360), _count(g, 1, 9), rows)

    return edges + repeat(5, "random", random)


def _ring_diagnose(got, expected, kwargs):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "return two tensors: the elevations [V] and the azimuths [V]."
    elevation, azimuth = (torch.as_tensor(x, dtype=torch.float32) for x in got)
    if len(elevation) == len(expected[0]) + 1:
        return "leave out the input's own camera (the input's elevation at turn 0): the input itself stands there."
    if len(elevation) != len(expected[0]):
        return "one view per (elevation row, turn): n_azimuths turns on every row, minus the input's own camera."
    if torch.allclose(azimuth - kwargs["azimuth"], expected[1], atol=1e-3) and kwargs["azimuth"] != 0:
        return "the turns start from the input's azimuth: add it."
    return "rows in the order given, and on each row the turns 0, 360/n, 2*360/n, ... from the input's azimuth."


register(Exercise("relative_camera", "07", relative_camera, _camera_cases, ("camera",), _camera_diagnose))
register(Exercise("denoiser_inputs", "07", denoiser_inputs, _inputs_cases, ("sample", "tokens"), _inputs_diagnose))
register(Exercise("widen_input_channels", "07", widen_input_channels, _widen_cases, ("weight",), _widen_diagnose))
register(Exercise("ring_angles", "07", ring_angles, _ring_cases, ("elevation", "azimuth"), _ring_diagnose))
