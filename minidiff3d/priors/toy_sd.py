"""Toy SD: a real diffusers ``StableDiffusionPipeline``, sized for 64x64 toy-world renders.

Every part is the class Stable Diffusion uses, only smaller: an ``AutoencoderKL`` that maps
``[B,3,64,64]`` images in [-1,1] to ``[B,4,16,16]`` latents, toy CLIP's text tower as the frozen
``CLIPTextModel`` (as SD 1.x uses OpenAI CLIP's), a ``CLIPTokenizer`` over the toy vocabulary, a
``UNet2DConditionModel`` with cross-attention at 8x8 and 4x4, and SD's noise schedule. So code
written against toy SD (sampling, guidance, LoRA) runs unchanged on SD 2.1.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .tokenizer import build_tokenizer

# Stable Diffusion 1.x / 2.x-base's training schedule: "scaled linear" betas, ε-prediction.
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                   prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def vae_config(channels=(16, 32, 64), latent_channels: int = 4, image_size: int = 64, groups: int = 8) -> dict:
    """An ``AutoencoderKL`` that downsamples by ``2**(len(channels)-1)``: 64x64x3 -> 16x16x4 by default."""
    n = len(channels)
    return dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(channels), layers_per_block=1,
                latent_channels=latent_channels, norm_num_groups=groups, sample_size=image_size)


def unet_config(cross_attention_dim: int, channels=(32, 64, 128), latent_size: int = 16, latent_channels: int = 4,
                groups: int = 16) -> dict:
    """A ``UNet2DConditionModel``; cross-attention everywhere but the full-resolution level, where it costs most."""
    n = len(channels)
    return dict(sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels,
                block_out_channels=tuple(channels), layers_per_block=1,
                down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
                up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
                cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=groups)


def assemble(vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
             unet: UNet2DConditionModel) -> StableDiffusionPipeline:
    """A ``StableDiffusionPipeline`` of these parts, with a DDIM scheduler on SD's schedule and no safety checker."""
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler.from_config(SD_SCHEDULE), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def tiny_stable_diffusion(seed: int = 0, image_size: int = 32) -> StableDiffusionPipeline:
    """A randomly initialised, very small pipeline (a few hundred thousand parameters) for tests.

    It stands in for real weights: save it with ``save_pretrained`` and load it back as one would
    load SD 2.1, and everything downstream is exercised on the same code path.
    """
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    vae = AutoencoderKL(**vae_config(channels=(8, 16), image_size=image_size, groups=4))
    unet = UNet2DConditionModel(**unet_config(32, channels=(16, 32), latent_size=image_size // 2, groups=8))
    return assemble(vae, text_encoder, tokenizer, unet)
