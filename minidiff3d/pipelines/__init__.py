"""Text-to-3D systems composed from ``minidiff3d.scene`` parts and ``minidiff3d.guidance``."""

from .dreamfusion import DreamFusion, DreamFusionConfig

__all__ = ["DreamFusion", "DreamFusionConfig"]
