"""The parts of a 3-D scene for text-to-3D, in threestudio's split: geometry, material, background.

The renderer is the course's one ray marcher (``minidiff3d.marcher``), or for a mesh geometry (Magic3D's
fine stage, ``DMTetGeometry``) the rasterizing ``MeshRenderer``; 3-D ``Gaussians`` (DreamGaussian's) render through
the ``SplatRenderer`` (``minidiff3d.splatting``); shading itself is ``minidiff3d.shading``. Each part has a typed dataclass config whose ``build()`` makes it.
"""

from .background import BackgroundConfig, LearnedBackground
from .dmtet_geometry import DMTetConfig, DMTetGeometry
from .gaussians import Gaussians, GaussiansConfig
from .geometry import DensityField, DensityFieldConfig
from .material import Material, MaterialConfig
from .mesh_renderer import MeshRenderer, MeshRendererConfig
from .splat_renderer import SplatRenderer, SplatRendererConfig

__all__ = ["BackgroundConfig", "DensityField", "DensityFieldConfig", "DMTetConfig", "DMTetGeometry", "Gaussians",
           "GaussiansConfig", "LearnedBackground",
           "Material", "MaterialConfig", "MeshRenderer", "MeshRendererConfig", "SplatRenderer", "SplatRendererConfig"]
