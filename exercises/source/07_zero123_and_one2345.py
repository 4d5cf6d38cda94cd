# %% [markdown]
# # Exercises 07 · Zero-1-to-3 and One-2-3-45
#
# Replace each `raise NotImplementedError` with your code and run the check cell below it: the
# checker compares your function with `minidiff3d`'s on random and edge cases and says what differs.
# Each is a piece of how a 2-D diffusion model learns to see an object from a new side, and how
# One-2-3-45 asks it for the views it needs.

# %%
import math

import torch

from minidiff3d.exercises import check

# %% [markdown]
# ## 1. The relative camera
#
# Zero-1-to-3 is told how the camera moved from the input view to the view it should draw, as four
# numbers: the change in *polar* angle (measured down from the $+z$ axis, so $\theta = 90° - $ elevation),
# the sine and the cosine of the change in azimuth, and the change in distance:
# $[\Delta\theta,\ \sin\Delta\phi,\ \cos\Delta\phi,\ \Delta r]$, angles in radians. A sine and a cosine, not
# $\Delta\phi/180$, because a turn of 350° and a turn of −10° are the same turn.
# Write `relative_camera(elevation_in, azimuth_in, elevation_out, azimuth_out) -> [B,4]`, inputs in degrees
# (`[B]` each), and $\Delta r = 0$ (the toy world's cameras keep one distance).

# %%
def relative_camera(elevation_in, azimuth_in, elevation_out, azimuth_out):
    # BEGIN SOLUTION
    turn = torch.deg2rad(azimuth_out - azimuth_in)
    d_polar = torch.deg2rad((90 - elevation_out) - (90 - elevation_in))
    return torch.stack([d_polar, torch.sin(turn), torch.cos(turn), torch.zeros_like(turn)], -1)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("relative_camera", relative_camera)

# %% [markdown]
# ## 2. The two conditions, as the U-Net takes them
#
# The input view reaches the U-Net twice. Its VAE latent is concatenated with the noisy latent on the
# channels, so the first convolution sees 8 channels, noisy first; this carries the input's pixels.
# Its CLIP image embedding, joined with the relative camera and passed through a linear `projection`
# (772 → 768 in the real model), is the one token the cross-attention attends to; this carries what the
# object is, and where to look from. For classifier-free guidance, rows where `drop` is true get the
# unconditional input: the latent *and the projected token* set to zero.
# Write `denoiser_inputs(noisy_latents [B,4,h,w], image_latents [B,4,h,w], image_embeds [B,D], camera [B,4],
# projection, drop [B] or None) -> (sample [B,8,h,w], tokens [B,1,C])`.

# %%
def denoiser_inputs(noisy_latents, image_latents, image_embeds, camera, projection, drop=None):
    # BEGIN SOLUTION
    tokens = projection(torch.cat([image_embeds, camera], -1))[:, None]
    if drop is not None:
        keep = (~drop).float()
        tokens = tokens * keep[:, None, None]
        image_latents = image_latents * keep[:, None, None, None]
    return torch.cat([noisy_latents, image_latents], 1), tokens
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("denoiser_inputs", denoiser_inputs)

# %% [markdown]
# ## 3. Four new input channels, set to zero
#
# Zero-1-to-3 does not train its U-Net from scratch: it starts from Stable Diffusion's, whose first
# convolution takes 4 channels. The 4 new ones get zero weights, so at the first step the widened U-Net
# computes exactly what the old one did, whatever the input view's latent holds, and fine-tuning only has
# to learn how to use it. Write `widen_input_channels(weight [O,I,k,k]) -> [O,2I,k,k]`.

# %%
def widen_input_channels(weight):
    # BEGIN SOLUTION
    return torch.cat([weight, torch.zeros_like(weight)], 1)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("widen_input_channels", widen_input_channels)

# %% [markdown]
# ## 4. One-2-3-45's ring of views
#
# One-2-3-45 asks the view-conditioned model for the views it needs all at once: `n_azimuths` evenly
# spaced turns, starting from the input's azimuth, on each of a few `elevations`. The input's own camera
# (its elevation, turn 0) is left out: the input itself stands there.
# Write `ring_angles(elevation, azimuth, n_azimuths, elevations) -> (elevation [V], azimuth [V])`, rows in
# the order given, turns in increasing order on each row, degrees throughout.

# %%
def ring_angles(elevation, azimuth, n_azimuths, elevations):
    # BEGIN SOLUTION
    rows, turns = [], []
    for row in elevations:
        for k in range(n_azimuths):
            if row == elevation and k == 0:
                continue
            rows.append(row)
            turns.append(azimuth + k * 360.0 / n_azimuths)
    return torch.tensor(rows), torch.tensor(turns)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("ring_angles", ring_angles)
