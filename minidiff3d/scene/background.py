"""Backgrounds: what a ray sees where the object is transparent.

White, like every toy-world render; or learned, a small MLP of the view direction (DreamFusion's
choice for real prompts, where backgrounds vary).
"""

from __future__ import annotations

import torch
from torch import nn

from ..fields import PositionalEncoding


class WhiteBackground(nn.Module):
    def forward(self, directions: torch.Tensor) -> torch.Tensor:
        """``[...,3]`` directions -> ``[...,3]`` colours, all 1."""
        return torch.ones_like(directions)


class LearnedBackground(nn.Module):
    """Colour ``[...,3]`` as a function of the unit ray direction ``[...,3]`` only (it lies at infinity)."""

    def __init__(self, hidden_dim: int = 16, freqs: int = 2):
        super().__init__()
        self.encoding = PositionalEncoding(3, freqs)
        self.mlp = nn.Sequential(nn.Linear(self.encoding.out_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 3),
                                 nn.Sigmoid())

    def forward(self, directions: torch.Tensor) -> torch.Tensor:
        shape = directions.shape
        return self.mlp(self.encoding(directions.reshape(-1, 3))).reshape(shape)
