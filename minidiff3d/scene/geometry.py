"""Geometry for text-to-3D: a hash-grid density field with an albedo, started from a density blob.

SDS gives a weak, noisy signal; an empty or uniformly foggy volume gives it nothing to grab.
DreamFusion therefore adds a fixed density bias at the centre so that optimisation starts from
a ball. We use Magic3D's form, ``τ(x) = λ (1 - ‖x‖ / r)``: positive inside radius ``r``, and
strongly negative outside, so that empty space starts clear rather than foggy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..fields import HashGridEncoding
from ..validation import check_positive, check_tensor


class DensityField(nn.Module):
    """Points ``[N,3]`` in ``[-bound, bound]^3`` -> density ``[N]`` (softplus, ≥ 0) and albedo ``[N,3]`` in [0,1].

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

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        points = check_tensor("points", points, shape=["N", 3], floating=True)
        out = self.mlp(self.encoding(points))
        density = F.softplus(out[:, 0] + self.blob(points))
        outside = (points.abs() > self.bound).any(-1)  # the scene is bounded: nothing outside the box
        return density.masked_fill(outside, 0.0), torch.sigmoid(out[:, 1:])

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self(points)[0]

    def normals(self, points: torch.Tensor, density: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
        """Unit normals ``[N,3]``, ``-∇σ / ‖∇σ‖``, by forward differences (3 extra density evaluations).

        Differences, not autograd's double backward: cheaper on a CPU, and the gradient of the
        shading still reaches the geometry through every evaluated density.
        """
        offsets = torch.eye(3, device=points.device) * eps
        shifted = self.density((points[:, None, :] + offsets).reshape(-1, 3)).reshape(-1, 3)
        gradient = (shifted - density[:, None]) / eps
        return -F.normalize(gradient, dim=-1, eps=1e-8)
