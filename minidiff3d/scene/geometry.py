"""Geometry for text-to-3D: a hash-grid density field with an albedo, started from a density blob.

SDS gives a weak, noisy signal; an empty or uniformly foggy volume gives it nothing to grab.
DreamFusion therefore adds a fixed density bias at the centre so that optimisation starts from
a ball. We use Magic3D's form, ``τ(x) = λ (1 - ‖x‖ / r)``: positive inside radius ``r``, and
strongly negative outside, so that empty space starts clear rather than foggy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..fields import HashGridEncoding
from ..validation import check_non_negative, check_positive, check_positive_int, check_tensor

GRID_BASE_RESOLUTION = 16  # the hash grid's coarsest level


@dataclass
class DensityFieldConfig:
    """A ``DensityField``: its hash grid, its MLP and its initial blob. Defaults are sized for toy SD on a CPU."""

    grid_levels: int = 8  # hash-grid levels, from 16 cells to grid_finest
    grid_finest: int = 32  # cells finer than a 32x32 render resolves only add grain to the albedo and normals
    log2_table_size: int = 15
    hidden_dim: int = 32
    blob_density: float = 5.0  # weak enough that SDS can carve a cone's flat base out of the ball
    blob_radius: float = 0.5
    bound: float = 1.0

    def __post_init__(self):
        for name in ("grid_levels", "log2_table_size", "hidden_dim"):
            check_positive_int(f"geometry.{name}", getattr(self, name))
        if check_positive_int("geometry.grid_finest", self.grid_finest) < GRID_BASE_RESOLUTION:
            raise ValueError(f"geometry.grid_finest: expected ≥ {GRID_BASE_RESOLUTION} (the grid's coarsest level), "
                             f"got {self.grid_finest!r}")
        check_non_negative("geometry.blob_density", self.blob_density)
        check_positive("geometry.blob_radius", self.blob_radius)
        check_positive("geometry.bound", self.bound)

    def build(self) -> "DensityField":
        """A fresh field; its initial weights come from torch's global RNG (seed it around the call)."""
        encoding = HashGridEncoding(n_levels=self.grid_levels, log2_table_size=self.log2_table_size,
                                    base_resolution=GRID_BASE_RESOLUTION, finest_resolution=self.grid_finest,
                                    bounds=(-self.bound, self.bound))
        return DensityField(encoding, self.hidden_dim, self.blob_density, self.blob_radius, self.bound)


class DensityField(nn.Module):
    """Points ``[N,3]`` in ``[-bound, bound]^3`` -> ``{"density": [N] (softplus, ≥ 0), "rgb": albedo [N,3] in [0,1]}``.

    Args:
        encoding: the hash grid (default: 8 levels from 16 to 128 cells, 2^15 slots; sized for a CPU).
        hidden_dim: width of the one-hidden-layer MLP that reads the encoding.
        blob_density, blob_radius: λ and r of the initial density bias.
    """

    def __init__(self, encoding: HashGridEncoding | None = None, hidden_dim: int = 32, blob_density: float = 10.0,
                 blob_radius: float = 0.5, bound: float = 1.0):
        super().__init__()
        self.bound = check_positive("bound", bound)
        self.encoding = encoding or HashGridEncoding(n_levels=8, log2_table_size=15, base_resolution=16,
                                                     finest_resolution=128, bounds=(-bound, bound))
        self.mlp = nn.Sequential(nn.Linear(self.encoding.out_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 4))
        self.blob_density, self.blob_radius = float(blob_density), check_positive("blob_radius", blob_radius)

    def blob(self, points: torch.Tensor) -> torch.Tensor:
        """The density bias ``τ [N]`` added before the activation."""
        return self.blob_density * (1 - points.norm(dim=-1) / self.blob_radius)

    def _outputs(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(density [N], albedo logits [N,3])``."""
        points = check_tensor("points", points, shape=["N", 3], floating=True)
        out = self.mlp(self.encoding(points))
        density = F.softplus(out[:, 0] + self.blob(points))
        outside = (points.abs() > self.bound).any(-1)  # the scene is bounded: nothing outside the box
        return density.masked_fill(outside, 0.0), out[:, 1:]

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self._outputs(points)[0]

    def forward(self, points: torch.Tensor, directions: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The field contract (``minidiff3d.fields``); the albedo ignores ``directions``."""
        density, logits = self._outputs(points)
        return {"density": density, "rgb": torch.sigmoid(logits)}
