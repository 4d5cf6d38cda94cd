"""Neural fields: encodings of 3-D points and the networks that map them to density and colour.

* ``PositionalEncoding``: NeRF's sines and cosines, which let an MLP fit high frequencies.
* ``HashGridEncoding``: Instant-NGP's multiresolution hash grid, in pure PyTorch.
* ``NeRF``: the paper's MLP. ``HashGridNeRF``: a hash grid with a small MLP.

The field contract, the same for every field of the course (these, the text-to-3D
``scene.DensityField``, and later ones): ``field(points [N,3], directions [N,3] or None)``
returns ``{"density": [N] ≥ 0, "rgb": [N,3] in [0,1]}``, and ``field.density(points [N,3])``
returns the density ``[N]`` alone, for what needs no colour (occupancy grids, normals, meshes).
A field whose colour ignores the view direction accepts ``None``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_non_negative_int, check_positive_int, check_tensor

# tiny-cuda-nn's coherent prime hash: the first prime is 1, so neighbouring cells along x
# land in neighbouring slots, which keeps memory access coherent.
HASH_PRIMES = (1, 2654435761, 805459861)


class PositionalEncoding(nn.Module):
    """``γ(x) = (x, sin(2^0 π x), cos(2^0 π x), ..., sin(2^{L-1} π x), cos(2^{L-1} π x))``, per coordinate.

    ``[...,in_dim] -> [...,out_dim]`` with ``out_dim = in_dim (include_input + 2 L)``: 63 for
    3-D points with 10 frequencies, 27 for directions with 4.
    """

    def __init__(self, in_dim: int, num_freqs: int, include_input: bool = True):
        super().__init__()
        self.in_dim, self.include_input = check_positive_int("in_dim", in_dim), include_input
        self.num_freqs = num_freqs = check_non_negative_int("num_freqs", num_freqs)
        self.register_buffer("freqs", (2.0 ** torch.arange(num_freqs)) * math.pi, persistent=False)
        self.out_dim = in_dim * (int(include_input) + 2 * num_freqs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_tensor("x", x, shape=["...", self.in_dim], floating=True)
        scaled = x[..., None, :] * self.freqs[:, None]  # [..., L, in_dim]
        sin_cos = torch.cat([scaled.sin(), scaled.cos()], -1).flatten(-2)  # per frequency: sines, then cosines
        return torch.cat([x, sin_cos], -1) if self.include_input else sin_cos


def spatial_hash(ijk: torch.Tensor, table_size: int) -> torch.Tensor:
    """Instant-NGP's hash of integer grid corners ``[...,3]`` into ``[0, table_size)``.

    ``(i * 1) XOR (j * 2654435761) XOR (k * 805459861)`` in uint32 arithmetic (products wrap
    modulo 2^32), then modulo ``table_size``. int64 holds the products exactly, so masking to
    32 bits reproduces the uint32 overflow.
    """
    ijk = check_tensor("ijk", ijk, shape=["...", 3])
    if ijk.is_floating_point():
        raise TypeError(f"ijk: expected an integer tensor, got dtype {ijk.dtype}")
    ijk = ijk.long()
    mask = 0xFFFFFFFF
    h = (ijk[..., 0] * HASH_PRIMES[0]) & mask
    h = h ^ ((ijk[..., 1] * HASH_PRIMES[1]) & mask)
    h = h ^ ((ijk[..., 2] * HASH_PRIMES[2]) & mask)
    return h % check_positive_int("table_size", table_size)


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding (Müller et al. 2022): ``[N,3]`` in ``bounds`` -> ``[N, L*F]``.

    Level ``l`` is a grid of resolution ``N_l = floor(N_min * b^l)``, with the growth factor
    ``b = exp((ln N_max - ln N_min) / (L - 1))``. Each level trilinearly interpolates F-dim
    features stored at its cell corners. A level whose ``(N_l + 1)^3`` corners fit in the table
    is indexed densely (one slot per corner, no collisions); finer levels share a table of
    ``2^log2_table_size`` slots through ``spatial_hash``, and gradient descent sorts out collisions.
    """

    def __init__(self, n_levels: int = 16, n_features: int = 2, log2_table_size: int = 19, base_resolution: int = 16,
                 finest_resolution: int = 512, bounds=(-1.0, 1.0)):
        super().__init__()
        self.n_levels = check_positive_int("n_levels", n_levels)
        self.n_features = check_positive_int("n_features", n_features)
        self.table_size = 2 ** check_positive_int("log2_table_size", log2_table_size)
        base_resolution = check_positive_int("base_resolution", base_resolution)  # the growth factor takes its log
        if check_positive_int("finest_resolution", finest_resolution) < base_resolution:
            raise ValueError(f"finest_resolution: expected ≥ base_resolution={base_resolution}, got {finest_resolution}")
        self.growth = math.exp((math.log(finest_resolution) - math.log(base_resolution)) / max(n_levels - 1, 1))
        # Instant-NGP's floor(N_min b^l); float rounding can leave the finest a cell under finest_resolution (255 for 256).
        self.resolutions = [int(math.floor(base_resolution * self.growth**level)) for level in range(n_levels)]
        self.dense = [(r + 1) ** 3 <= self.table_size for r in self.resolutions]
        sizes = [(r + 1) ** 3 if dense else self.table_size for r, dense in zip(self.resolutions, self.dense)]
        # Tiny uniform init (as Instant-NGP): features start near zero, so the MLP starts smooth.
        self.tables = nn.ParameterList([nn.Parameter(torch.empty(size, n_features).uniform_(-1e-4, 1e-4)) for size in sizes])
        lo, hi = bounds
        if not math.isfinite(lo) or not math.isfinite(hi) or lo >= hi:
            raise ValueError(f"bounds: expected finite (low, high) with low < high, got {bounds!r}")
        self.bounds = (float(lo), float(hi))
        self.out_dim = n_levels * n_features

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        points = check_tensor("points", points, shape=["N", 3], floating=True)
        lo, hi = self.bounds
        unit = ((points - lo) / (hi - lo)).clamp(0, 1)  # [N,3] in the unit cube
        levels = zip(self.tables, self.resolutions, self.dense)
        return torch.cat([interpolate_level(unit, table, resolution, dense) for table, resolution, dense in levels], -1)


_CORNERS = torch.tensor([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)])  # the 8 corners of a cell


def interpolate_level(unit_points: torch.Tensor, table: torch.Tensor, resolution: int, dense: bool = False) -> torch.Tensor:
    """One level of the hash grid: features ``[N,F]`` at points ``[N,3]`` in [0,1]^3 from ``table [T,F]``.

    The level has ``resolution`` cells, so ``resolution + 1`` corners, per axis. A dense level
    stores corner ``(i,j,k)`` at slot ``i + s j + s^2 k`` with ``s = resolution + 1``; a hashed
    one at ``spatial_hash(ijk, T)``. Features are interpolated trilinearly from the 8 corners.
    """
    if dense:
        # Slot i + s j + s^2 k is voxel (k, j, i) of an [s,s,s] volume: torch's trilinear grid_sample
        # reads it with the same weights as gathering the 8 corners (below), about 3x faster on a CPU.
        stride = resolution + 1
        if table.shape[0] != stride**3:
            raise ValueError(f"table: expected (resolution + 1)^3 = {stride**3} rows for a dense level, got {table.shape[0]}")
        volume = table.t().reshape(1, table.shape[1], stride, stride, stride)
        grid = (unit_points * 2 - 1).reshape(1, -1, 1, 1, 3)  # (x, y, z) in [-1, 1] index (i, j, k)
        return F.grid_sample(volume, grid, align_corners=True).reshape(table.shape[1], -1).t()
    scaled = unit_points * resolution
    base = scaled.floor().clamp(max=resolution - 1)  # so the far face still has a cell
    frac = scaled - base  # [N,3]
    slots = spatial_hash(base.long()[:, None, :] + _CORNERS.to(unit_points.device), table.shape[0])  # [N,8]
    # The trilinear weight of corner (a,b,c) is wx[a] wy[b] wz[c], with w[0] = 1 - frac and w[1] = frac:
    # an outer product of the three axes, flattened in _CORNERS' order (x slowest).
    w = torch.stack([1 - frac, frac], -1)  # [N,3,2]
    weights = (w[:, 0, :, None, None] * w[:, 1, None, :, None] * w[:, 2, None, None, :]).reshape(-1, 8)
    # index_select, not table[slots]: its backward is a plain index_add, several times faster on a CPU
    features = table.index_select(0, slots.reshape(-1)).reshape(*slots.shape, -1)  # [N,8,F]
    return (weights[..., None] * features).sum(1)



class NeRF(nn.Module):
    """The NeRF MLP (Mildenhall et al. 2020).

    ``num_layers`` ReLU layers of width ``hidden_dim`` read γ(x); the encoded input is joined
    again to the input of layer ``skip_layer`` (default index 4, after the 4th layer's activation; the paper joins it
    after the 5th layer's, ``skip_layer=5``, as nerf-pytorch's ``skips=[4]`` does). Density comes
    from the trunk alone; colour also reads γ(d), so it can depend on the viewing direction.
    """

    def __init__(self, hidden_dim: int = 256, num_layers: int = 8, skip_layer: int | None = 4, pos_freqs: int = 10,
                 dir_freqs: int = 4):
        super().__init__()
        if skip_layer is not None and not 0 < skip_layer < num_layers:
            raise ValueError(f"skip_layer: expected None or an index in 1..{num_layers - 1}, got {skip_layer!r}")
        self.skip_layer = skip_layer
        self.pos_encoding = PositionalEncoding(3, pos_freqs)
        self.dir_encoding = PositionalEncoding(3, dir_freqs)
        in_dims = [self.pos_encoding.out_dim] + [hidden_dim] * (num_layers - 1)
        if skip_layer is not None:
            in_dims[skip_layer] += self.pos_encoding.out_dim
        self.trunk = nn.ModuleList([nn.Linear(d, hidden_dim) for d in in_dims])
        self.sigma_head = nn.Linear(hidden_dim, 1)
        self.feature = nn.Linear(hidden_dim, hidden_dim)
        self.color_head = nn.Sequential(nn.Linear(hidden_dim + self.dir_encoding.out_dim, hidden_dim // 2), nn.ReLU(),
                                        nn.Linear(hidden_dim // 2, 3), nn.Sigmoid())

    def _trunk(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(density [N], trunk features [N,hidden_dim])``."""
        encoded = self.pos_encoding(check_tensor("points", positions, shape=["N", 3], floating=True))
        h = encoded
        for index, layer in enumerate(self.trunk):
            if index == self.skip_layer:
                h = torch.cat([h, encoded], -1)
            h = torch.relu(layer(h))
        return torch.relu(self.sigma_head(h))[..., 0], h

    def density(self, positions: torch.Tensor) -> torch.Tensor:
        return self._trunk(positions)[0]

    def forward(self, positions: torch.Tensor, directions: torch.Tensor) -> dict[str, torch.Tensor]:
        directions = check_tensor("directions", directions, shape=[len(positions), 3], floating=True)
        density, h = self._trunk(positions)
        return {"density": density, "rgb": self.color_head(torch.cat([self.feature(h), self.dir_encoding(directions)], -1))}


class HashGridNeRF(nn.Module):
    """A hash-grid field (Instant-NGP): encoding -> 1-hidden-layer density MLP -> colour MLP.

    Density is ``10 softplus(o - 4)`` of the first output ``o``: softplus keeps gradients alive in
    empty space, and the shift starts the whole volume nearly transparent (σ ≈ 0.18), so that
    on a white background the fit does not settle for white fog. The other ``geo_features``
    outputs and γ(d) feed the colour MLP.
    """

    def __init__(self, encoding: HashGridEncoding | None = None, hidden_dim: int = 64, geo_features: int = 15,
                 dir_freqs: int = 4, bound: float = 1.0):
        super().__init__()
        # The default encoding is sized for a CPU: 12 levels from 16 to 256 cells, 2^17 slots each.
        self.encoding = encoding or HashGridEncoding(n_levels=12, log2_table_size=17, base_resolution=16,
                                                     finest_resolution=256, bounds=(-bound, bound))
        self.dir_encoding = PositionalEncoding(3, dir_freqs)
        self.density_mlp = nn.Sequential(nn.Linear(self.encoding.out_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1 + geo_features))
        self.color_mlp = nn.Sequential(nn.Linear(geo_features + self.dir_encoding.out_dim, hidden_dim), nn.ReLU(),
                                       nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 3), nn.Sigmoid())

    def _trunk(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(density [N], geometry features [N,G])``."""
        out = self.density_mlp(self.encoding(positions))
        return nn.functional.softplus(out[:, 0] - 4.0) * 10.0, out[:, 1:]

    def density(self, positions: torch.Tensor) -> torch.Tensor:
        return self._trunk(positions)[0]

    def forward(self, positions: torch.Tensor, directions: torch.Tensor) -> dict[str, torch.Tensor]:
        directions = check_tensor("directions", directions, shape=[positions.shape[0], 3], floating=True)
        density, geometry = self._trunk(positions)
        return {"density": density, "rgb": self.color_mlp(torch.cat([geometry, self.dir_encoding(directions)], -1))}
