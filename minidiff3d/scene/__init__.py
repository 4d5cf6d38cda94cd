"""The parts of a 3-D scene for text-to-3D, in threestudio's split: geometry, material, background.

The renderer is the course's one ray marcher (``minidiff3d.marcher``); shading itself is
``minidiff3d.shading``. Each part has a typed dataclass config whose ``build()`` makes it.
"""

from .background import BackgroundConfig, LearnedBackground
from .geometry import DensityField, DensityFieldConfig
from .material import Material, MaterialConfig

__all__ = ["BackgroundConfig", "DensityField", "DensityFieldConfig", "LearnedBackground", "Material", "MaterialConfig"]
