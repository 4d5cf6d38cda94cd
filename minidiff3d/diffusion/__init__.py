"""Denoising diffusion on 3-D data: the denoisers, the training loop and sampling.

Noise schedules, ``add_noise`` and the sampling steps come from diffusers' schedulers; this
package adds only what the course teaches.
"""

from .point_cloud import PointCloudTransformer, load_point_cloud_prior
from .sdf_unet import SDFUNet3D
from .sampling import guided_noise, sample
from .training import TrainingResult, train_denoiser

__all__ = ["PointCloudTransformer", "SDFUNet3D", "TrainingResult", "guided_noise", "load_point_cloud_prior", "sample", "train_denoiser"]
