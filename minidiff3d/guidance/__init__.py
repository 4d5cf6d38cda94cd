"""Guidance: how a 2-D diffusion prior scores renders of a 3-D scene (SDS), and the prompts it sees."""

from .prompt import PromptProcessor
from .sds import ScoreDistillation, SDSOutput, distill_image, epsilon_from_output, guided_noise_prediction, sds_weight

__all__ = ["PromptProcessor", "SDSOutput", "ScoreDistillation", "distill_image", "epsilon_from_output", "guided_noise_prediction", "sds_weight"]
