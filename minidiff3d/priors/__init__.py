"""The 2-D priors the text-to-3D chapters distil from, and the CLIP that judges them.

``load("toy-sd")`` gives toy SD, a diffusers ``StableDiffusionPipeline`` trained on the toy world;
``load("toy-clip")`` gives toy CLIP. Both ship in ``minidiff3d/assets`` and load with
``local_files_only=True``. ``load_stable_diffusion(path_or_id)`` loads any other SD checkpoint
(e.g. "stabilityai/stable-diffusion-2-1-base" on a machine with the hub) the same way, so the
guidance and pipelines built on toy SD take real weights unchanged.
"""

from __future__ import annotations

import torch

from .. import assets
from ..runtime import get_device, quiet_loading, quiet_transformers

with quiet_transformers():
    from diffusers import StableDiffusionPipeline
from ..validation import check_choice
from .captions import VIEWS, object_captions, view_name, vocabulary, with_view
from .clip import CLIP
from .data import caption_dataset
from .tokenizer import build_tokenizer
from .toy_sd import assemble, tiny_stable_diffusion

SHIPPED = {"toy-sd": "toy_sd", "toy-clip": "toy_clip", "toy-zero123": "toy_zero123", "toy-mvdream": "toy_mvdream"}


def load_stable_diffusion(path_or_id, device=None, dtype=torch.float32, local_files_only: bool = True
                          ) -> StableDiffusionPipeline:
    """A ``StableDiffusionPipeline`` from a folder (or a hub id, with ``local_files_only=False``), on ``device``."""
    with quiet_loading():
        pipe = StableDiffusionPipeline.from_pretrained(path_or_id, dtype=dtype, local_files_only=local_files_only,
                                                       safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device or get_device())


def load(name: str, device=None):
    """A shipped prior, offline: ``"toy-sd"`` -> ``StableDiffusionPipeline``; ``"toy-clip"`` -> ``CLIP``;
    ``"toy-zero123"`` -> ``zero123.Zero123`` (on toy SD's VAE and toy CLIP's image tower); ``"toy-mvdream"`` ->
    ``StableDiffusionPipeline`` with a multi-view U-Net (``mvdream``; on toy SD's other parts).

    Its weight files are checked against the asset manifest's sha256 first (``assets.checked_folder``).
    """
    check_choice("name", name, tuple(SHIPPED))
    folder = assets.checked_folder(SHIPPED[name])
    if name == "toy-sd":
        return load_stable_diffusion(folder, device)
    if name == "toy-mvdream":
        from .toy_mvdream import load_toy_mvdream  # mvdream imports this package: import it when asked

        with quiet_loading():
            return load_toy_mvdream(folder, load("toy-sd", device))
    if name == "toy-zero123":
        from .toy_zero123 import load_toy_zero123  # zero123 imports this package: import it when asked

        with quiet_loading():
            return load_toy_zero123(folder, load("toy-sd", device), load("toy-clip", device))
    with quiet_loading():
        return CLIP.from_pretrained(folder, device)


__all__ = [
    "CLIP", "VIEWS", "assemble", "build_tokenizer", "caption_dataset", "load", "load_stable_diffusion",
    "object_captions", "tiny_stable_diffusion", "view_name", "vocabulary", "with_view",
]
