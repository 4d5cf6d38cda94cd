"""toy-mvdream: MVDream on the toy world, assembled on what toy SD already ships.

Only the fine-tuned U-Net ships (``assets/toy_mvdream``), with its camera MLP; the VAE, text encoder,
tokenizer and schedule are toy SD's, as MVDream fine-tunes Stable Diffusion and keeps its VAE and CLIP.
"""

from __future__ import annotations

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel

from ..mvdream import multiview_unet
from .toy_sd import assemble, tiny_stable_diffusion


def assemble_mvdream(sd: StableDiffusionPipeline, unet: UNet2DConditionModel, num_views: int = 4
                     ) -> StableDiffusionPipeline:
    """A ``StableDiffusionPipeline`` of toy SD's parts around a multi-view ``unet`` (its processors installed).

    Everything that takes a pipeline (``PromptProcessor``, the guidance's encoder) takes it; sampling a set
    goes through ``mvdream.sample_views``, since the pipeline's own ``__call__`` passes no cameras.
    """
    pipe = assemble(sd.vae, sd.text_encoder, sd.tokenizer, multiview_unet(unet.to(sd.device), num_views))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_toy_mvdream(folder, sd: StableDiffusionPipeline) -> StableDiffusionPipeline:
    """The U-Net saved in ``folder/unet`` (the shipped one, or one ``train_toy_mvdream.py --no-publish`` saved), in fp32,
    on toy SD's other parts."""
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True, dtype=torch.float32)
    return assemble_mvdream(sd, unet)


def tiny_mvdream(seed: int = 0, image_size: int = 32) -> StableDiffusionPipeline:
    """A randomly initialised, very small multi-view pipeline for tests: ``tiny_stable_diffusion``'s, its U-Net
    made multi-view. Its camera MLP starts at zero, as the fine-tuning starts; tests that need cameras to matter
    randomise it."""
    sd = tiny_stable_diffusion(seed, image_size)
    return assemble_mvdream(sd, sd.unet)
