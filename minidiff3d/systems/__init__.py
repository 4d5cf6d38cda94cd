"""Text-to-3D systems composed of parts (``System``), and the methods as presets of one config (``PRESETS``)."""

from .config import PRESETS, Preset, RunConfig, SystemConfig, load_run_config, run_config
from .system import System, opacity_entropy, orbit_r_precision

__all__ = ["PRESETS", "Preset", "RunConfig", "System", "SystemConfig", "load_run_config", "opacity_entropy",
           "orbit_r_precision", "run_config"]
