"""Guidance: how a 2-D diffusion prior scores renders of a 3-D scene (``base``: the one interface; SDS), and the prompts it sees."""

from .base import Guidance, GuidanceOutput, text_condition
from .prompt import PromptConfig, PromptProcessor
from .sds import SDSConfig, ScoreDistillation, distill_image, epsilon_from_output, sds_weight
from .vsd import VariationalScoreDistillation, VSDConfig

__all__ = ["Guidance", "GuidanceOutput", "PromptConfig", "PromptProcessor", "SDSConfig", "ScoreDistillation", "VSDConfig",
           "VariationalScoreDistillation", "distill_image", "epsilon_from_output", "sds_weight", "text_condition"]
