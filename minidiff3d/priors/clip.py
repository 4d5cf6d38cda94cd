"""A CLIP model as a judge: image and text embeddings, and their cosine similarities.

``CLIP.from_pretrained`` takes toy CLIP's folder or any transformers CLIP checkpoint
("openai/clip-vit-base-patch32" on a machine with the hub), so R-precision is computed the same
way for both. Images go in as the package keeps them, ``[B,3,H,W]`` in [0,1]; the model's own
image processor config says the size and the normalisation, which we apply with differentiable
tensor ops (resize, then normalise), so a CLIP loss can be backpropagated to a render.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

from ..runtime import get_device
from ..validation import check_images


def clip_pixels(images: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """``[B,3,H,W]`` in [0,1] -> a CLIP vision tower's input ``[B,3,size,size]``: resized (bicubic), then normalised
    by the per-channel ``mean`` and ``std``; differentiable, unlike the PIL image processor."""
    images = check_images("images", images)
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mean, std = (torch.tensor(v, device=images.device, dtype=images.dtype).view(1, 3, 1, 1) for v in (mean, std))
    return (images - mean) / std


@dataclass
class CLIP:
    """A ``CLIPModel`` with its tokenizer and image processor config."""

    model: CLIPModel
    tokenizer: CLIPTokenizer
    processor: CLIPImageProcessorPil

    @classmethod
    def from_pretrained(cls, path, device=None, local_files_only: bool = True) -> CLIP:
        """Load a CLIP folder (or hub id) holding the model, tokenizer and image processor."""
        model = CLIPModel.from_pretrained(path, local_files_only=local_files_only, dtype=torch.float32)
        tokenizer = CLIPTokenizer.from_pretrained(path, local_files_only=local_files_only)
        processor = CLIPImageProcessorPil.from_pretrained(path, local_files_only=local_files_only)
        return cls(model.to(device or get_device()).eval(), tokenizer, processor)

    def save_pretrained(self, path) -> None:
        for part in (self.model, self.tokenizer, self.processor):
            part.save_pretrained(path)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """``[B,3,H,W]`` in [0,1] -> the vision tower's normalised input ``[B,3,S,S]``."""
        return clip_pixels(images, self.model.config.vision_config.image_size, self.processor.image_mean,
                           self.processor.image_std)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings ``[B,D]``."""
        features = self.model.get_image_features(pixel_values=self.pixel_values(images.to(self.device)))
        return F.normalize(getattr(features, "pooler_output", features), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm text embeddings ``[T,D]``."""
        if isinstance(texts, str) or not texts:
            raise ValueError(f"texts: expected a non-empty list of strings, got {texts!r}")
        tokens = self.tokenizer(list(texts), padding="max_length", truncation=True, return_tensors="pt").to(self.device)
        features = self.model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        return F.normalize(getattr(features, "pooler_output", features), dim=-1)

    def similarity(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Cosine similarity of every image with every text, ``[B,T]``."""
        return self.embed_images(images) @ self.embed_texts(texts).T
