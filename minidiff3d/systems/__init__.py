"""Text-to-3D systems composed of parts (``System``), the two-stage ``CoarseToFine`` (Magic3D) and ``DreamGaussian``,
and the methods as presets of one config (``PRESETS``); ``run_config(method, prompt).build(pipe)`` makes any kind of
run."""

from .coarse_to_fine import CoarseToFine
from .config import (PRESETS, CoarseToFineConfig, DensifyConfig, DreamGaussianConfig, FineStageConfig, One2345Config,
                     Preset, RingConfig, RunConfig, SystemConfig, TextureConfig, load_run_config, run_config)
from .dreamgaussian import DreamGaussian, GaussianSystem, gaussians_mesh
from .one2345 import One2345
from .parallel import fit_parallel
from .system import System, back_view, coloured_mesh, opacity_entropy, orbit_r_precision, view_psnr

__all__ = ["CoarseToFine", "CoarseToFineConfig", "DensifyConfig", "DreamGaussian", "DreamGaussianConfig",
           "FineStageConfig", "GaussianSystem", "One2345", "One2345Config", "PRESETS", "Preset", "RingConfig", "RunConfig",
           "System", "SystemConfig", "TextureConfig", "back_view", "coloured_mesh", "fit_parallel", "gaussians_mesh",
           "load_run_config", "opacity_entropy", "orbit_r_precision", "run_config", "view_psnr"]
