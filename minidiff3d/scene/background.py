"""Backgrounds: what a ray sees where the object is transparent.

A solid colour (``marcher.SolidBackground``: white, like every toy-world render); or learned, a
small MLP of the view direction (DreamFusion's choice for real prompts, where backgrounds vary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..fields import PositionalEncoding
from ..marcher import SolidBackground
from ..validation import check_choice, check_fraction


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


@dataclass
class BackgroundConfig:
    """``kind``: ``"solid"`` in ``color``, or ``"learned"`` (a ``LearnedBackground``)."""

    kind: Literal["solid", "learned"] = "solid"
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        check_choice("background.kind", self.kind, ("solid", "learned"))
        for i, channel in enumerate(self.color):
            check_fraction(f"background.color[{i}]", channel)

    def build(self) -> nn.Module:
        """A fresh background; a learned one's weights come from torch's global RNG."""
        return SolidBackground(self.color) if self.kind == "solid" else LearnedBackground()
