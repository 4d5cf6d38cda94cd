"""Guidance: how a 2-D diffusion prior scores renders of a 3-D scene (``base``: the one interface; SDS, VSD, Zero123-SDS,
multi-view SDS),
and the prompts it sees (text, or an input image with its camera)."""

from .base import Guidance, GuidanceOutput, text_condition
from .mvdream import MultiViewDistillation, MultiViewSDSConfig
from .prompt import PromptConfig, PromptProcessor
from ..diffusion.sampling import epsilon_from_output
from .sds import SDSConfig, ScoreDistillation, distill_image, sds_weight
from .vsd import VariationalScoreDistillation, VSDConfig
from .zero123 import ImagePrompt, ImagePromptConfig, Zero123Distillation, Zero123SDSConfig

__all__ = ["Guidance", "GuidanceOutput", "ImagePrompt", "ImagePromptConfig", "MultiViewDistillation", "MultiViewSDSConfig", "PromptConfig", "PromptProcessor",
           "SDSConfig", "ScoreDistillation", "VSDConfig", "VariationalScoreDistillation", "Zero123Distillation",
           "Zero123SDSConfig", "distill_image", "epsilon_from_output", "sds_weight", "text_condition"]
