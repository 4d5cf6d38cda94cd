"""The trained denoisers that ship with the course, loaded offline.

Each lives in its own folder under ``minidiff3d/assets/`` as diffusers writes it
(``save_pretrained``: config, fp16 safetensors, the training scheduler), with a model card; the
asset manifest holds its sha256. ``scripts/train_shape_prior.py`` makes them.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from .. import assets
from ..runtime import get_device
from ..validation import check_choice
from .point_cloud import PointCloudTransformer
from .sdf_unet import SDFUNet3D

SHIPPED_DENOISERS = {"point-cloud-diffusion": PointCloudTransformer, "sdf-diffusion": SDFUNet3D}


def load_shipped_denoiser(name: str, device=None) -> tuple[torch.nn.Module, DDPMScheduler]:
    """``(model in eval mode, its DDPMScheduler)`` for a shipped denoiser, from local files only, its weights
    checked against the asset manifest's sha256 first."""
    check_choice("name", name, tuple(SHIPPED_DENOISERS))
    folder = assets.asset_path(name).parent
    model = SHIPPED_DENOISERS[name].from_pretrained(folder, torch_dtype=torch.float32, local_files_only=True)
    return model.to(device or get_device()).eval(), DDPMScheduler.from_pretrained(folder, local_files_only=True)


def load_point_cloud_prior(device=None) -> tuple[PointCloudTransformer, DDPMScheduler]:
    """Chapter 02's model: class-conditional surface point clouds ``[B,N,3]`` of the toy world."""
    return load_shipped_denoiser("point-cloud-diffusion", device)


def load_sdf_prior(device=None) -> tuple[SDFUNet3D, DDPMScheduler]:
    """Chapter 03's model: class-conditional truncated SDF grids ``[B,1,R,R,R]``, in units of ``config.truncation``."""
    return load_shipped_denoiser("sdf-diffusion", device)
