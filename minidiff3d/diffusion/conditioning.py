"""The conditioning vector of the course's denoisers: timestep embedding plus class embedding.

Timesteps go through diffusers' sinusoidal ``Timesteps`` and ``TimestepEmbedding`` MLP. The
class table has one extra row, the *null* class (index ``num_classes``), which classifier-free
guidance uses for the unconditional prediction; ``class_labels=None`` means all null.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from ..validation import check_tensor


class TimeClassEmbedding(nn.Module):
    """``(timestep, class_labels) -> cond [B, out_dim]`` for a batch of ``B``, with checked inputs."""

    def __init__(self, num_classes: int, proj_dim: int, out_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.time_proj = Timesteps(proj_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(proj_dim, out_dim)
        self.class_embedding = nn.Embedding(num_classes + 1, out_dim)

    def forward(self, timestep, class_labels, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
        """``timestep``: int, ``[]`` or ``[B]``; ``class_labels``: ``[B]`` integers or None."""
        timestep = torch.as_tensor(timestep, device=device)
        timestep = check_tensor("timestep", timestep.expand(batch) if timestep.ndim == 0 else timestep, shape=[batch])
        null = self.num_classes
        if class_labels is None:
            class_labels = torch.full((batch,), null, device=device)
        class_labels = check_tensor("class_labels", torch.as_tensor(class_labels, device=device), shape=[batch])
        if class_labels.is_floating_point() or (class_labels < 0).any() or (class_labels > null).any():
            raise ValueError(f"class_labels: expected integers in [0, {null}] ({null} = unconditional), got {class_labels.tolist()}")
        return self.time_embedding(self.time_proj(timestep).to(dtype)) + self.class_embedding(class_labels)
