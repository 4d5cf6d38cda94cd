"""Text-to-3D systems composed from ``minidiff3d.scene`` parts and ``minidiff3d.guidance``."""

from .dreamfusion import DreamFusion, DreamFusionConfig, orbit_r_precision

__all__ = ["DreamFusion", "DreamFusionConfig", "orbit_r_precision"]
