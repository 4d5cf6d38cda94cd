"""A 3-D U-Net denoiser for SDF grids: ``ε_θ(x_t [B,C,R,R,R], t, class) -> ε̂ [B,C,R,R,R]``.

The source chapter's ``UNet3D`` builds a time embedding and never uses it, so its model cannot
tell a nearly clean grid from pure noise. Here every residual block receives the timestep (plus
the class) through **adaptive group norm**: after its second normalisation the features are
scaled and shifted by ``(1 + γ(c), β(c))`` computed from the conditioning vector ``c``, as in
the improved-DDPM U-Net. Skips are real concatenations: a decoder block takes the upsampled
features *and* the encoder features of the same resolution, and its channel count is their sum.

3-D convolutions are costly on a CPU, and most of the cost sits at full resolution. With
``patch_size = p`` the grid is first cut into p³ patches by a strided convolution (as DiT
patchifies an image) and the U-Net runs at ``R / p``; a transposed convolution maps back. At
32³ with ``p = 2`` a training step is about 11× cheaper (``benchmarks/sdf_unet.py``), and a
truncated SDF, flat away from its thin surface band, loses little.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from ..validation import check_tensor
from .conditioning import TimeClassEmbedding


@dataclass
class SDFUNetOutput(BaseOutput):
    sample: torch.Tensor  # [B,C,R,R,R] predicted noise


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock3D(nn.Module):
    """Two 3×3×3 convolutions with a residual path; the conditioning modulates the second norm."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(in_channels), nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * out_channels)
        self.norm2, self.conv2 = _norm(out_channels), nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x [B,Cin,D,H,W]``, ``cond [B,cond_dim]`` -> ``[B,Cout,D,H,W]``."""
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(nn.functional.silu(h))


class SDFUNet3D(ModelMixin, ConfigMixin):
    """Noise predictor for grids ``[B,C,R,R,R]`` with ``R`` divisible by ``patch_size * 2^(len(channel_mults) - 1)``.

    ``channel_mults`` sets one resolution level each: a residual block, then a strided
    convolution down (none after the last). The decoder mirrors it with concatenated skips.
    Saves and loads like any diffusers model; ``class_labels=None`` is the null class.

    ``truncation`` and ``offset`` are not used by the network: they record how signed distances
    map to the values it models, ``v = clamp(d, ±truncation) / truncation - offset`` (see
    ``encode_sdf``/``decode_sdf``). The offset centres the data: a TSDF grid is mostly far-field
    +1, and a denoiser whose normalisation layers discard the grid's mean can only copy the mean
    of its noisy input, so sampling from zero-mean noise never reaches a mean near 1.
    """

    @register_to_config
    def __init__(self, in_channels: int = 1, base_channels: int = 32, channel_mults: tuple[int, ...] = (1, 2, 4),
                 num_classes: int = 10, patch_size: int = 1, truncation: float = 1.0,
                 offset: float = 0.0):
        super().__init__()
        widths = [base_channels * m for m in channel_mults]
        cond_dim = 4 * base_channels
        self.conditioning = TimeClassEmbedding(num_classes, base_channels, cond_dim)
        if patch_size == 1:
            self.input = nn.Conv3d(in_channels, widths[0], 3, padding=1)
            self.output = nn.Conv3d(widths[0], in_channels, 3, padding=1)
        else:
            self.input = nn.Conv3d(in_channels, widths[0], patch_size, stride=patch_size)
            self.output = nn.ConvTranspose3d(widths[0], in_channels, patch_size, stride=patch_size)
        self.encoder = nn.ModuleList(ResBlock3D(c_in, c_out, cond_dim) for c_in, c_out in zip(widths[:1] + widths[:-1], widths))
        self.down = nn.ModuleList(nn.Conv3d(c, c, 3, stride=2, padding=1) for c in widths[:-1])
        self.middle = ResBlock3D(widths[-1], widths[-1], cond_dim)
        self.up = nn.ModuleList(nn.ConvTranspose3d(c_deep, c_skip, 2, stride=2) for c_deep, c_skip in zip(widths[:0:-1], widths[-2::-1]))
        # each decoder block sees the upsampled features and the encoder's skip: c_skip + c_skip channels
        self.decoder = nn.ModuleList(ResBlock3D(2 * c, c, cond_dim) for c in widths[-2::-1])
        self.norm_out = _norm(widths[0])
        nn.init.zeros_(self.output.weight)  # the untrained model predicts zero noise
        nn.init.zeros_(self.output.bias)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def encode_sdf(self, sdf: torch.Tensor) -> torch.Tensor:
        """Signed distances ``[B,1,R,R,R]`` -> the centred, truncated values the model denoises."""
        band = self.config.truncation
        return sdf.clamp(-band, band) / band - self.config.offset

    def decode_sdf(self, values: torch.Tensor) -> torch.Tensor:
        """The inverse of ``encode_sdf`` inside the band: model values -> signed distances."""
        return (values + self.config.offset) * self.config.truncation

    def forward(self, sample: torch.Tensor, timestep, class_labels: torch.Tensor | None = None,
                return_dict: bool = True) -> SDFUNetOutput | tuple:
        """``sample [B,C,R,R,R]``, ``timestep`` (int, ``[]`` or ``[B]``), ``class_labels [B]`` long or None."""
        factor = self.config.patch_size * 2 ** (len(self.config.channel_mults) - 1)
        sample = check_tensor("sample", sample, shape=["B", self.config.in_channels, "R", "R", "R"], floating=True)
        batch, resolution = sample.shape[0], sample.shape[-1]
        if resolution % factor:
            raise ValueError(f"sample: expected a resolution divisible by {factor}, got {resolution}")
        cond = self.conditioning(timestep, class_labels, batch, sample.dtype, sample.device)
        h, skips = self.input(sample), []
        for level, block in enumerate(self.encoder):
            h = block(h, cond)
            if level < len(self.down):
                skips.append(h)
                h = self.down[level](h)
        h = self.middle(h, cond)
        for up, block in zip(self.up, self.decoder):
            h = block(torch.cat([up(h), skips.pop()], dim=1), cond)
        noise = self.output(nn.functional.silu(self.norm_out(h)))
        return SDFUNetOutput(sample=noise) if return_dict else (noise,)
