"""The guidance interface: how a 2-D prior scores renders of a 3-D scene, the same for every method.

A text-to-3D system calls, each step,

    out = guidance.loss(images [B,3,H,W], cameras, conditions, progress, generator)
    out.loss.backward()                       # into the scene through the renders
    guidance.update(images.detach(), cameras, conditions, progress, generator)

* ``cameras``: the ``cameras.Cameras`` the images were rendered from.
* ``conditions``: a dict, from the prompt processor: ``{"text": (cond, uncond)}`` for a text
  prompt; image-to-3D and multi-view guidance add their own keys (an input image and the
  camera relative to it, four cameras at once).
* ``progress``: how far the run is, in [0,1] (what t annealing reads).
* ``update``: a hook for guidance that learns during the run (VSD's LoRA); plain SDS learns
  nothing and returns ``{}``. It returns numbers worth logging.
* ``close``: give the pipeline back as it was lent (VSD removes its LoRA from the U-Net).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from ..cameras import Cameras


@dataclass
class GuidanceOutput:
    """``loss`` (a scalar whose gradient w.r.t. ``latents`` is ``grad``), ``grad [B,4,h,w]``,
    the timesteps ``t [B]``, the render's ``latents``, the guided noise estimate ``noise_pred``, the true
    ``noise``, and whatever else a method computes on the way (``extras``, e.g. VSD's ``noise_lora``)."""

    loss: torch.Tensor
    grad: torch.Tensor
    t: torch.Tensor
    latents: torch.Tensor
    noise_pred: torch.Tensor
    noise: torch.Tensor
    extras: dict = field(default_factory=dict)


class Guidance(Protocol):
    def loss(self, images: torch.Tensor, cameras: Cameras | None, conditions: dict, progress: float = 0.0,
             generator: torch.Generator | None = None) -> GuidanceOutput: ...

    def update(self, images: torch.Tensor, cameras: Cameras | None, conditions: dict, progress: float = 0.0,
               generator: torch.Generator | None = None) -> dict[str, float]: ...

    def close(self) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def text_condition(conditions: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cond, uncond)`` embeddings ``[B,L,D]`` from ``conditions``, or an error saying what was there."""
    if not isinstance(conditions, dict) or "text" not in conditions:
        got = sorted(conditions) if isinstance(conditions, dict) else type(conditions).__name__
        raise ValueError(f"conditions: expected a dict with 'text': (cond, uncond) embeddings [B,L,D], got {got}")
    return conditions["text"]
