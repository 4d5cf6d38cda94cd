"""Multi-view SDS (MVDream): score distillation through a U-Net that denoises four views of one object together.

Each step the system renders a *set*: V views of the scene around it (``SystemConfig.views_per_set``,
azimuths evenly spaced from a random start, one elevation). The set is encoded, noised at one
timestep, and denoised jointly by the multi-view U-Net (``mvdream``) with each view's camera; the SDS
gradient ``w(t) (ε̂ - ε)`` then reaches every view. Because the prior scores the four views as one
object, a back that repeats the front is improbable under it: this is what removes the Janus problem,
where view words in a single-view prompt only hint.

The text is the plain prompt: the cameras say which side each view shows (``PromptConfig`` with
``view_dependent=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..cameras import Cameras
from ..mvdream import CAMERA_CONVENTIONS, CAMERA_WIDTH, camera_inputs, set_views
from ..validation import check_choice, check_positive_int
from .base import GuidanceOutput, text_condition
from .sds import SDSConfig, ScoreDistillation


@dataclass
class MultiViewSDSConfig(SDSConfig):
    """``MultiViewDistillation``'s arguments: SDS's, the ``num_views`` of a set (4, as MVDream is trained; the system's
    ``views_per_set`` must match), and the ``camera_convention`` the prior was trained with: ``"relative"`` to the
    set's first view (toy-mvdream), or ``"mvdream"``, the released model's world cameras (``mvdream.port_cameras``)."""

    num_views: int = 4
    camera_convention: Literal["relative", "mvdream"] = "relative"

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("guidance.num_views", self.num_views)
        check_choice("guidance.camera_convention", self.camera_convention, tuple(CAMERA_CONVENTIONS))

    def build(self, pipe) -> "MultiViewDistillation":
        return MultiViewDistillation(pipe, **vars(self))


class MultiViewDistillation(ScoreDistillation):
    """SDS through a multi-view ``pipe`` (``priors.load("toy-mvdream")``): the guidance interface (``guidance.base``),
    for renders that come in whole sets of ``num_views``, set after set, with their ``cameras``."""

    def __init__(self, pipe, num_views: int = 4, camera_convention: str = "relative", **sds):
        width = getattr(pipe.unet.config, "projection_class_embeddings_input_dim", None)
        if pipe.unet.config.class_embed_type != "projection" or width != CAMERA_WIDTH:
            raise TypeError(f"pipe: expected a multi-view U-Net with a camera embedding of {CAMERA_WIDTH} inputs "
                            f"(priors.load('toy-mvdream')), got class_embed_type={pipe.unet.config.class_embed_type!r} "
                            f"of {width} inputs")
        super().__init__(pipe, **sds)
        self.num_views = check_positive_int("num_views", num_views)
        check_choice("camera_convention", camera_convention, tuple(CAMERA_CONVENTIONS))
        self.camera_convention = camera_convention

    def set_cameras(self, cameras: Cameras) -> torch.Tensor:
        """``[B,16]``: what the prior is told of each render's camera (``mvdream.camera_inputs``), set by set."""
        if cameras is None or len(cameras) % self.num_views:
            got = "None" if cameras is None else f"{len(cameras)} cameras"
            raise ValueError(f"cameras: expected whole sets of {self.num_views} views (system.views_per_set), got {got}")
        sets = (-1, self.num_views)
        return camera_inputs(cameras.elevation.reshape(sets), cameras.azimuth.reshape(sets),
                             self.camera_convention).reshape(-1, CAMERA_WIDTH)

    @torch.no_grad()
    def noise_prediction(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                         class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """SDS's guided ε̂, with the self-attention joined over each set and the cameras ``class_labels [B,16]``."""
        if class_labels is None:
            raise ValueError(f"class_labels: expected the cameras [B,{CAMERA_WIDTH}] of the views, got None")
        set_views(self.pipe.unet, self.num_views)
        return super().noise_prediction(noisy, t, cond, uncond, class_labels)

    def loss(self, images: torch.Tensor, cameras: Cameras | None, conditions: dict, progress: float = 0.0,
             generator: torch.Generator | None = None) -> GuidanceOutput:
        """SDS for renders ``images [B,3,H,W]`` in [0,1], B/V sets of V views seen from ``cameras``, under
        ``conditions["text"] = (cond, uncond)`` ``[B,L,D]``: one timestep per set, all views denoised together."""
        if cameras is None or len(cameras) != len(images):
            raise ValueError(f"cameras: expected one per image ({len(images)}), got "
                             f"{'None' if cameras is None else len(cameras)}")
        set_cameras = self.set_cameras(cameras).to(self.pipe.device)
        return self.from_latents(self.encode(images, generator), text_condition(conditions), progress, generator,
                                 group=self.num_views, class_labels=set_cameras)


__all__ = ["MultiViewDistillation", "MultiViewSDSConfig"]
