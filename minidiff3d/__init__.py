"""minidiff3d: compact, tested reference implementations for a course on 3D diffusion models."""

from .runtime import assert_bar, get_device, progress, quick_mode, seed_everything

__version__ = "0.1.0"
__all__ = ["assert_bar", "get_device", "progress", "quick_mode", "seed_everything"]
