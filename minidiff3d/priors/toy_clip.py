"""Toy CLIP: a transformers ``CLIPModel`` sized for 64x64 toy renders, and its contrastive loss.

CLIP learns one embedding space for images and captions by contrast: in a batch of B pairs, each
image should score its own caption above the other B-1 (and each caption its own image). Toy
captions repeat within a batch (many renders are "a red duck"), so the target is not the
identity but every pair that truly matches, spread uniformly. Half the captions carry their
view suffix, so the model also learns what "back view" looks like; ``matches`` says which
(caption, image) pairs count as matching.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

from .clip import CLIP


def toy_clip_config(tokenizer: CLIPTokenizer, image_size: int = 64, width: int = 128) -> CLIPConfig:
    """A small CLIP: a ViT of 8x8 patches and a 3-layer text transformer, both ``width`` wide."""
    text = dict(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
                num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(image_size=image_size, patch_size=8, hidden_size=width, intermediate_size=2 * width,
                  num_hidden_layers=4, num_attention_heads=4)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=width)


def build_toy_clip(tokenizer: CLIPTokenizer, image_size: int = 64, width: int = 128, seed: int = 0) -> CLIP:
    """A randomly initialised toy CLIP with its tokenizer and image processor."""
    torch.manual_seed(seed)
    model = CLIPModel(toy_clip_config(tokenizer, image_size, width))
    processor = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return CLIP(model, tokenizer, processor)


def matches(text_objects: torch.Tensor, text_views: torch.Tensor, image_objects: torch.Tensor,
            image_views: torch.Tensor) -> torch.Tensor:
    """``[T,B]`` bool: caption t describes image b. Views ``-1`` mean "no view word" (matches any view)."""
    same_object = text_objects[:, None] == image_objects[None, :]
    view_ok = (text_views[:, None] < 0) | (text_views[:, None] == image_views[None, :])
    return same_object & view_ok


def contrastive_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE for ``logits [T,B]`` (text x image) with several ``positives [T,B]`` per row and column."""
    text_to_image = -(positives / positives.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    image_to_text = -(positives / positives.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return (text_to_image + image_to_text) / 2


def augment(images: torch.Tensor, max_zoom: float = 0.15, max_shift: float = 0.1) -> torch.Tensor:
    """Random zoom and shift of renders ``[B,3,H,W]`` in [0,1], on white.

    Every toy render is framed the same way, so without this CLIP learns the exact pixel extent
    of its few training shapes, and fails on new proportions and on a NeRF's renders.
    """
    b = len(images)
    scale = 1 + (torch.rand(b, device=images.device) * 2 - 1) * max_zoom
    shift = (torch.rand(b, 2, device=images.device) * 2 - 1) * max_shift
    theta = torch.zeros(b, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = scale, scale, shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images - 1, grid, align_corners=False) + 1  # zero padding of (x - 1) is white
