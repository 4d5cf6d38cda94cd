"""One-2-3-45: image-to-3D without score distillation: generate the other views, then reconstruct from them.

Zero123-SDS asks the prior about one render at a time, for hundreds of steps. One-2-3-45 asks it once:
a ring of views around the input, sampled together in one batch, and then fits a 3-D model to those
views as if they were photos. The paper reconstructs with SparseNeuS, a feed-forward network (on
torchsparse, CUDA only) that takes the views to an SDF in one pass; here the reconstruction is a
photometric fit of the same hash-grid field and ray marcher the other systems use, which is what the
field did before feed-forward reconstructors (chapter 13 builds one). The "45" of the name is 45
seconds, the paper's time per object, not a 45° step between views.

The generated views disagree with one another a little (each is a separate sample), and the fit
averages them: sharpness is what this method trades for speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..cameras import Cameras
from ..zero123 import Zero123
from .config import RingConfig
from .system import System


def ring_angles(elevation: float, azimuth: float, n_azimuths: int, elevations) -> tuple[torch.Tensor, torch.Tensor]:
    """``(elevation [V], azimuth [V])`` in degrees of the views around an input seen from (``elevation``, ``azimuth``):
    ``n_azimuths`` evenly spaced turns from the input's azimuth at each of ``elevations``, in that order, without
    the input's own camera (the input itself stands there)."""
    turns = torch.arange(n_azimuths, dtype=torch.float32) * 360.0 / n_azimuths
    rows, turn = torch.meshgrid(torch.as_tensor(elevations, dtype=torch.float32), turns, indexing="ij")
    rows, turn = rows.reshape(-1), turn.reshape(-1)
    keep = ~((rows == elevation) & (turn == 0))
    return rows[keep], (azimuth + turn)[keep]


class ViewRing:
    """Samples the ring of views around an input image (the "guidance" part of One-2-3-45: it guides once)."""

    def __init__(self, model: Zero123, config: RingConfig):
        if not isinstance(model, Zero123):
            raise TypeError(f"pipe: expected a zero123.Zero123 (priors.load('toy-zero123')), got {type(model).__name__}")
        self.model, self.config = model, config

    def cameras(self, prompt, radius: float, fov_deg: float, device=None) -> Cameras:
        """The ring's cameras around ``prompt``'s (``ring_angles``)."""
        elevation, azimuth = ring_angles(prompt.elevation, prompt.azimuth, self.config.azimuths, self.config.elevations)
        return Cameras.orbit(elevation, azimuth, radius, fov_deg, device)

    @torch.no_grad()
    def sample(self, prompt, cameras: Cameras, generator: torch.Generator) -> torch.Tensor:
        """The views ``[V,3,S,S]`` from ``cameras``, all in one batch, conditioned on ``prompt``'s image and camera."""
        images = prompt.image[None].expand(len(cameras), -1, -1, -1)
        return self.model(images, prompt.camera(cameras), self.config.num_inference_steps, self.config.guidance_scale,
                          generator)

    def close(self) -> None:
        """Nothing to give back."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing learned."""


class One2345(System):
    """A ``System`` whose step fits the scene to views instead of distilling a prior: the first step samples the ring
    (the input view joins it as is), every step then fits one random view, area-averaged to ``system.render_size``, by
    MSE, lit as the toy world lights it."""

    views: tuple[torch.Tensor, Cameras] | None = None

    def ring(self) -> tuple[torch.Tensor, Cameras]:
        """The images ``[V+1,3,S,S]`` to fit, the input first, and their cameras; sampled on the first call."""
        if self.views is None:
            prompt, config = self.prompt, self.config
            cameras = self.guidance.cameras(prompt, config.radius, config.fov_deg)
            sampled = self.guidance.sample(prompt, cameras, self.generator).cpu()
            every = Cameras.orbit(torch.cat([torch.tensor([prompt.elevation]), cameras.elevation.cpu()]),
                                  torch.cat([torch.tensor([prompt.azimuth]), cameras.azimuth.cpu()]), config.radius,
                                  config.fov_deg, self.device)
            self.views = (torch.cat([prompt.image[None], sampled]), every)
        return self.views

    def step(self) -> dict:
        images, cameras = self.ring()
        size = self.config.render_size  # the fit renders at the system's size, as SDS does: 64² would cost 4x
        targets = images if images.shape[-1] == size else F.interpolate(images, size=(size, size), mode="area")
        self.schedule_learning_rate(self.fraction_done(self.step_count))
        loss = self.photometric_step(targets, cameras)
        self.step_count += 1
        return {"loss": loss, "shading": "lambertian", "t": []}

    def state_dict(self) -> dict:
        """``System``'s, with the sampled views: a resumed run fits the same ones."""
        state = super().state_dict()
        if self.views is not None:
            images, cameras = self.views
            state["views"] = {"images": images, "elevation": cameras.elevation, "azimuth": cameras.azimuth}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "views" in state:
            views = state["views"]
            self.views = (views["images"], Cameras.orbit(views["elevation"], views["azimuth"], self.config.radius,
                                                         self.config.fov_deg, self.device))


__all__ = ["One2345", "ViewRing", "ring_angles"]
