"""Prompts for score distillation: view-dependent text, encoded once and cached.

A 3-D generator renders from a new camera at every step; encoding the prompt each time would
waste a text-encoder pass. ``PromptProcessor`` encodes the prompt once per view word (and the
negative prompt once) and hands out ``[B,L,D]`` embeddings for a batch of cameras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..cameras import Cameras

from ..priors.captions import VIEWS, view_name, with_view

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


@dataclass
class PromptConfig:
    """The prompt of a run: ``text``, the ``negative`` prompt, and whether view suffixes are appended."""

    text: str = ""
    negative: str = ""
    view_dependent: bool = True

    def build(self, pipe: StableDiffusionPipeline) -> "PromptProcessor":
        return PromptProcessor(pipe, self.text, self.negative, self.view_dependent)


class PromptProcessor:
    """Text embeddings of ``prompt`` for any camera, with DreamFusion's view suffixes.

    Args:
        pipe: any ``StableDiffusionPipeline`` (its tokenizer and text encoder do the encoding).
        prompt: e.g. "a red duck".
        negative_prompt: what the unconditional branch of CFG sees ("" as in DreamFusion).
        view_dependent: append ", front view" etc. by the camera's angles; ``False`` uses the bare
            prompt from every side (what the Janus experiment compares against).
    """

    def __init__(self, pipe: StableDiffusionPipeline, prompt: str, negative_prompt: str = "", view_dependent: bool = True):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt: expected a non-empty string, got {prompt!r}")
        self.prompt, self.view_dependent = prompt, view_dependent
        views = VIEWS if view_dependent else (None,)
        self.texts = {view: with_view(prompt, view) for view in views}
        with torch.no_grad():
            cond, uncond = pipe.encode_prompt(list(self.texts.values()), pipe.device, 1, True,
                                              [negative_prompt] * len(views))
        self._cond = dict(zip(views, cond))
        self._uncond = uncond[0]

    def _views(self, elevation_deg, azimuth_deg) -> list[str | None]:
        views = view_name(elevation_deg, azimuth_deg)
        return views if self.view_dependent else [None] * len(views)

    def text(self, elevation_deg, azimuth_deg) -> list[str]:
        """The prompt each camera sees."""
        return [self.texts[v] for v in self._views(elevation_deg, azimuth_deg)]

    def __call__(self, elevation_deg, azimuth_deg) -> tuple[torch.Tensor, torch.Tensor]:
        """``(conditional, unconditional)`` embeddings ``[B,L,D]`` for cameras with these angles ``[B]`` (degrees)."""
        cond = torch.stack([self._cond[v] for v in self._views(elevation_deg, azimuth_deg)])
        return cond, self._uncond.expand_as(cond)

    def conditions(self, cameras: Cameras) -> dict:
        """The guidance's ``conditions`` for these cameras: ``{"text": (cond, uncond)}``."""
        return {"text": self(cameras.elevation, cameras.azimuth)}
