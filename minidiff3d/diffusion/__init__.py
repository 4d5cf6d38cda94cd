"""Denoising diffusion on 3-D data: the denoisers, the training loop and sampling.

Noise schedules, ``add_noise`` and the sampling steps come from diffusers' schedulers; this
package adds only what the course teaches.
"""

from .point_cloud import PointCloudTransformer
from .sampling import classifier_free_guidance, guided_noise, sample
from .sdf_unet import SDFUNet3D
from .shipped import load_point_cloud_prior, load_sdf_prior, load_shipped_denoiser
from .training import TrainingResult, check_max_weight, epsilon_loss_weights, train_denoiser, training_target, weighted_mse

__all__ = [
    "PointCloudTransformer", "SDFUNet3D", "TrainingResult", "check_max_weight", "classifier_free_guidance", "epsilon_loss_weights", "guided_noise", "load_point_cloud_prior", "load_sdf_prior",
    "load_shipped_denoiser", "sample", "train_denoiser", "training_target", "weighted_mse",
]
