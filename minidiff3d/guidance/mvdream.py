"""Multi-view SDS (MVDream): score distillation through a U-Net that denoises four views of one object together.

Each step the system renders a *set*: V views of the scene around it (``SystemConfig.views_per_set``,
azimuths evenly spaced from a random start, one elevation). The set is encoded, noised at one
timestep, and denoised jointly by the multi-view U-Net (``mvdream``) with each view's camera relative
to the set's first; the SDS gradient ``w(t) (ε̂ - ε)`` then reaches every view. Because the prior
scores the four views as one object, a back that repeats the front is improbable under it: this is
what removes the Janus problem, where view words in a single-view prompt only hint.

The text is the plain prompt: the cameras say which side each view shows (``PromptConfig`` with
``view_dependent=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..cameras import Cameras
from ..mvdream import CAMERA_WIDTH, guided_noise, relative_cameras
from ..mvdream_port import port_cameras
from ..validation import check_choice, check_positive_int
from .base import GuidanceOutput, text_condition
from .sds import SDSConfig, ScoreDistillation, check_text_embeddings


CAMERA_CONVENTIONS = ("relative", "mvdream")


@dataclass
class MultiViewSDSConfig(SDSConfig):
    """``MultiViewDistillation``'s arguments: SDS's, the ``num_views`` of a set (4, as MVDream is trained), and the
    ``cameras`` the prior was trained with: ``"relative"`` to the set's first view (toy-mvdream), or ``"mvdream"``,
    the released model's world cameras (``mvdream_port.port_cameras``)."""

    num_views: int = 4
    cameras: Literal["relative", "mvdream"] = "relative"

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("guidance.num_views", self.num_views)
        check_choice("guidance.cameras", self.cameras, CAMERA_CONVENTIONS)

    def build(self, pipe) -> "MultiViewDistillation":
        return MultiViewDistillation(pipe, **vars(self))


class MultiViewDistillation(ScoreDistillation):
    """SDS through a multi-view ``pipe`` (``priors.load("toy-mvdream")``): the guidance interface (``guidance.base``),
    for renders that come in whole sets of ``num_views``, set after set, with their ``cameras``."""

    def __init__(self, pipe, num_views: int = 4, cameras: str = "relative", **sds):
        if getattr(pipe.unet.config, "projection_class_embeddings_input_dim", None) != CAMERA_WIDTH:
            raise TypeError("pipe: expected a pipeline with a multi-view U-Net (priors.load('toy-mvdream')), got a U-Net "
                            "without a camera embedding")
        super().__init__(pipe, **sds)
        self.num_views = check_positive_int("num_views", num_views)
        check_choice("cameras", cameras, CAMERA_CONVENTIONS)
        self.camera_convention = cameras

    def set_cameras(self, cameras: Cameras) -> torch.Tensor:
        """``[B,16]``: the prior's camera input for each render, relative to the first of its set
        (``mvdream.relative_cameras``) or in the released MVDream's world (``mvdream_port.port_cameras``)."""
        if cameras is None or len(cameras) % self.num_views:
            got = "None" if cameras is None else f"{len(cameras)} cameras"
            raise ValueError(f"cameras: expected whole sets of {self.num_views} views (system.views_per_set), got {got}")
        if self.camera_convention == "mvdream":
            return port_cameras(cameras.elevation, cameras.azimuth)
        sets = (-1, self.num_views)
        return relative_cameras(cameras.elevation.reshape(sets), cameras.azimuth.reshape(sets)).reshape(-1, CAMERA_WIDTH)

    def loss(self, images: torch.Tensor, cameras: Cameras | None, conditions: dict, progress: float = 0.0,
             generator: torch.Generator | None = None) -> GuidanceOutput:
        """SDS for renders ``images [B,3,H,W]`` in [0,1], B/V sets of V views seen from ``cameras``, under
        ``conditions["text"] = (cond, uncond)`` ``[B,L,D]``: one timestep per set, all views denoised together."""
        set_cameras = self.set_cameras(cameras).to(self.pipe.device)
        latents = self.encode(images, generator)
        cond, uncond = check_text_embeddings(text_condition(conditions), len(latents))
        t, noise, noisy = self._noised(latents, progress, generator, group=self.num_views)
        with torch.no_grad():
            noise_pred = guided_noise(self.pipe, noisy, t, cond.to(noisy.device), uncond.to(noisy.device), set_cameras,
                                      self.num_views, self.guidance_scale, self.cfg)
        return self._surrogate(latents, t, noise_pred, noise, noise)


__all__ = ["MultiViewDistillation", "MultiViewSDSConfig"]
