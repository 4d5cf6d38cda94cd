"""A 3-D scene for text-to-3D, in threestudio's split: geometry, material (shading), background, renderer."""

from .background import LearnedBackground, WhiteBackground
from .geometry import DensityField
from .renderer import VolumeRenderer, sphere_chords
from .shading import SHADINGS, random_light_dirs, shade

__all__ = ["DensityField", "LearnedBackground", "SHADINGS", "VolumeRenderer", "WhiteBackground", "random_light_dirs",
           "shade", "sphere_chords"]
