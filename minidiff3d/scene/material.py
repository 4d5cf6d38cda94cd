"""The material: which shading each step renders with, and where its light comes from.

DreamFusion renders unlit albedo for its first steps and then picks albedo, lambertian or
textureless shading at random, under a light drawn around the camera. The toy world's priors
have only seen objects lit by one fixed light from above (``shading.LIGHT_DIR``): for them the
light is drawn around that light instead, and every render is lit (to toy SD an unlit render is
out of distribution, and SDS answers it with saturated colours: a blue cube turned violet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from ..shading import AMBIENT, LIGHT_DIR, SHADINGS, random_light_dirs
from ..validation import check_choice, check_fraction, check_non_negative, check_non_negative_int


@dataclass
class MaterialConfig:
    albedo_steps: int = 0  # steps rendered unlit before shading_probs applies
    shading_probs: dict[str, float] = field(default_factory=lambda: {"lambertian": 0.7, "textureless": 0.3})
    # "camera" (DreamFusion's choice, for a prior that saw every lighting) or "world" (the toy world's light).
    light: Literal["world", "camera"] = "world"
    ambient: float = AMBIENT
    light_spread: float = 0.5  # the Gaussian jitter of each step's light direction

    def __post_init__(self):
        check_non_negative_int("material.albedo_steps", self.albedo_steps)
        check_choice("material.light", self.light, ("world", "camera"))
        check_fraction("material.ambient", self.ambient)
        check_non_negative("material.light_spread", self.light_spread)
        unknown = set(self.shading_probs) - set(SHADINGS)
        if unknown or not self.shading_probs or abs(sum(self.shading_probs.values()) - 1) > 1e-6 or \
                min(self.shading_probs.values()) < 0:
            raise ValueError(f"material.shading_probs: expected probabilities over {'/'.join(SHADINGS)} summing "
                             f"to 1, got {self.shading_probs!r}")

    def build(self) -> "Material":
        return Material(self)


class Material:
    """Chooses each step's shading (``choose``) and lights each view (``light_dirs``), by its ``config``."""

    def __init__(self, config: MaterialConfig | None = None):
        self.config = config or MaterialConfig()
        self.ambient = self.config.ambient

    def choose(self, step: int, generator: torch.Generator | None = None) -> str:
        """The shading mode of training step ``step``: albedo for ``albedo_steps``, then drawn from ``shading_probs``."""
        if step < self.config.albedo_steps:
            return "albedo"
        modes, probs = zip(*self.config.shading_probs.items())
        return modes[torch.multinomial(torch.tensor(probs), 1, generator=generator).item()]

    def light_centers(self, c2w: torch.Tensor) -> torch.Tensor:
        """``[B,3]`` directions that each view's light is drawn around (``config.light``), not normalised."""
        if self.config.light == "camera":
            return c2w[:, :3, 3]
        return torch.tensor(LIGHT_DIR, device=c2w.device).expand(len(c2w), 3)

    def light_dirs(self, c2w: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Unit directions ``[B,3]`` towards the light of each view ``c2w [B,4,4]``: jittered with ``generator``
        (training), or exactly the centre without one (evaluation)."""
        centers = self.light_centers(c2w)
        if generator is None:
            return F.normalize(centers, dim=-1)
        return random_light_dirs(centers, self.config.light_spread, generator)
