"""toy-zero123: Zero-1-to-3 on the toy world, assembled from what toy SD and toy CLIP already ship.

Only the fine-tuned 8-channel U-Net and the camera projection ship (``assets/toy_zero123``); the VAE
and the noise schedule are toy SD's, and the image encoder is toy CLIP's vision tower with its
projection, as Zero-1-to-3 reuses Stable Diffusion's VAE and OpenAI CLIP's image tower.
"""

from __future__ import annotations

import copy

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from ..zero123 import CAMERA_WIDTH, CCProjection, Zero123, widen_conv_in
from .clip import CLIP
from .toy_sd import tiny_stable_diffusion


def image_encoder_from_clip(clip: CLIP) -> CLIPVisionModelWithProjection:
    """A ``CLIPModel``'s vision tower and projection as the standalone class Zero-1-to-3's pipeline uses."""
    config = copy.deepcopy(clip.model.config.vision_config)
    config.projection_dim = clip.model.config.projection_dim
    encoder = CLIPVisionModelWithProjection(config)
    own = set(encoder.state_dict())
    encoder.load_state_dict({k: v for k, v in clip.model.state_dict().items() if k in own})
    return encoder.to(clip.device).eval()


def assemble_zero123(sd: StableDiffusionPipeline, clip: CLIP, unet: UNet2DConditionModel,
                     cc_projection: CCProjection) -> Zero123:
    """A ``Zero123`` of toy SD's VAE and schedule, toy CLIP's image tower, and this U-Net and projection."""
    return Zero123(vae=sd.vae, image_encoder=image_encoder_from_clip(clip), unet=unet.to(sd.device),
                   cc_projection=cc_projection.to(sd.device), scheduler=DDIMScheduler.from_config(sd.scheduler.config),
                   image_mean=tuple(clip.processor.image_mean), image_std=tuple(clip.processor.image_std))


def load_toy_zero123(folder, sd: StableDiffusionPipeline, clip: CLIP) -> Zero123:
    """The shipped U-Net and projection in ``folder``, on toy SD and toy CLIP (fp32, on their device)."""
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True, dtype=torch.float32)
    cc_projection = CCProjection.from_pretrained(folder, subfolder="cc_projection", local_files_only=True,
                                                 dtype=torch.float32)
    return assemble_zero123(sd, clip, unet, cc_projection)


def tiny_zero123(seed: int = 0, image_size: int = 32) -> Zero123:
    """A randomly initialised, very small ``Zero123`` in the real model's layout, for tests.

    Saved with ``save_pretrained`` and read back with ``Zero123.from_pretrained(local_files_only=True)``,
    it runs the code path a real Zero-1-to-3 checkpoint takes.
    """
    sd = tiny_stable_diffusion(seed, image_size)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=image_size,
        patch_size=8, projection_dim=24))
    projection = CCProjection(24 + CAMERA_WIDTH, sd.unet.config.cross_attention_dim)
    return Zero123(vae=sd.vae, image_encoder=encoder.eval(), unet=widen_conv_in(sd.unet), cc_projection=projection,
                   scheduler=DDIMScheduler.from_config(sd.scheduler.config))
