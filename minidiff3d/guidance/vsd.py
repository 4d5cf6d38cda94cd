"""Variational score distillation (ProlificDreamer): SDS with a second score that learns what the scene renders look like.

SDS pushes every render towards the prior's mode: its gradient ``w(t) (ε̂_pretrained - ε)`` compares
the prior with the *injected* noise, which is pure noise to the scene. VSD replaces that noise by
the score of the distribution of the scene's own renders, estimated on the fly by a LoRA of the
prior's U-Net, ``ε_LoRA(z_t; y, t, c)``, conditioned on the camera ``c``:

    ∇_θ L_VSD = E_{t,ε}[ w(t) (ε̂_pretrained(z_t; y, t) - ε_LoRA(z_t; y, t, c)) ∂z/∂θ ]

and, each step, the LoRA takes one step of the plain diffusion loss on the (detached) renders, so
it keeps tracking them (``update``). Where the renders already look like samples of the prior, the
two scores agree and the gradient vanishes: VSD does not need SDS's huge CFG scale to fight its
noise term, and works at sampling's 7.5, with less saturated colours and more varied results.

What the LoRA needs, and why:

* **one U-Net, adapters switched on and off.** peft's ``unet.add_adapter`` injects rank-``lora_rank``
  matrices into the attention projections. With adapters disabled the U-Net is exactly the
  pretrained one (the base weights are never touched: a test checks them bit for bit), so no
  second copy of the prior is held in memory.
* **the camera.** The renders' distribution depends on the view (a duck from behind is not a duck
  from the front), so the LoRA reads the flattened camera-to-world matrix through a timestep-style
  MLP (diffusers' ``TimestepEmbedding``) added to the U-Net's time embedding, as a class embedding
  attached only for the LoRA's passes. It is dropped (zeros) for ``camera_dropout`` of the
  training samples, so the LoRA also learns the view-averaged score.
* **its own learning rate** (``lora_lr``): too low and the LoRA stays the prior, so VSD's gradient
  is the bare guidance direction w(t)(s-1)(eps_c - eps_u); too high and it chases each step's
  renders. threestudio's ProlificDreamer uses 1e-4 (AdamW, 25,000 steps) against 1e-2 for the hash
  grid; the default here is 1e-3, for runs of hundreds of steps. The LoRA trains on t
  drawn from the whole range (``lora_t_range``), while the scene's t anneals as SDS's does.

``close()`` (or a ``with`` block) removes the adapter and gives the caller's U-Net back as it was.
"""

from __future__ import annotations

import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer

from ..cameras import Cameras
from ..runtime import frozen
from ..validation import check_fraction, check_positive, check_positive_int
from .base import GuidanceOutput, text_condition
from ..diffusion.sampling import epsilon_from_output
from .sds import SDSConfig, ScoreDistillation, check_t_range, check_text_embeddings

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # the attention projections, as diffusers' LoRA training scripts
CAMERA_DIM = 16  # a flattened 4x4 camera-to-world matrix


def active_adapters(unet) -> tuple[list[str], bool]:
    """The names of ``unet``'s active peft adapters, and whether they are switched on (none: ``[], False``)."""
    if not getattr(unet, "peft_config", None):
        return [], False
    layer = next(m for m in unet.modules() if isinstance(m, BaseTunerLayer))
    return list(unet.active_adapters()), not layer.disable_adapters


@dataclass
class VSDConfig(SDSConfig):
    """``VariationalScoreDistillation``'s arguments: SDS's, and the LoRA's."""

    guidance_scale: float = 7.5
    lora_rank: int = 4
    lora_lr: float = 1e-3
    lora_t_range: tuple[float, float] = (0.0, 1.0)
    camera_dropout: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("guidance.lora_rank", self.lora_rank)
        check_positive("guidance.lora_lr", self.lora_lr)
        check_t_range("guidance.lora_t_range", self.lora_t_range)
        check_fraction("guidance.camera_dropout", self.camera_dropout)

    def build(self, pipe: StableDiffusionPipeline) -> "VariationalScoreDistillation":
        return VariationalScoreDistillation(pipe, **vars(self))


class VariationalScoreDistillation(ScoreDistillation):
    """VSD guidance from any ``StableDiffusionPipeline``: ``ScoreDistillation``'s arguments, plus the LoRA's.

    Args:
        lora_rank: rank of the LoRA matrices on the U-Net's attention projections.
        lora_lr: the LoRA's (and its camera embedding's) Adam learning rate.
        lora_t_range: the fractions of the training timesteps the LoRA trains on.
        camera_dropout: the share of the LoRA's training samples that see no camera (zeros).
    """

    def __init__(self, pipe: StableDiffusionPipeline, guidance_scale: float = 7.5, cfg: str = "diffusers",
                 t_range=(0.02, 0.98), t_range_end=None, weighting: str = "sds", grad_clip: float | None = None,
                 lora_rank: int = 4, lora_lr: float = 1e-3, lora_t_range=(0.0, 1.0), camera_dropout: float = 0.1):
        super().__init__(pipe, guidance_scale, cfg, t_range, t_range_end, weighting, grad_clip)
        self.lora_t_range = check_t_range("lora_t_range", lora_t_range)
        self.camera_dropout = check_fraction("camera_dropout", camera_dropout)
        unet = pipe.unet
        self.adapter = f"vsd_{uuid.uuid4().hex[:8]}"  # its own name: two VSD runs on one pipeline do not collide
        # The caller's adapters, as they are active and switched on or off, are part of the prior: every LoRA pass
        # runs them under this LoRA, and gives them back as they were.
        self.caller_adapters, self.caller_enabled = active_adapters(unet)
        flags = [(p, p.requires_grad) for p in unet.parameters()]
        before = {id(p) for p, _ in flags}
        with warnings.catch_warnings():  # several named adapters on one U-Net is the design, not an accident
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            unet.add_adapter(LoraConfig(r=check_positive_int("lora_rank", lora_rank), lora_alpha=lora_rank,
                                        target_modules=list(LORA_TARGETS), init_lora_weights=True), self.adapter)
        # peft starts B at zero: the LoRA begins as the pretrained U-Net, and so does its camera's
        # embedding, whose last layer starts at zero too.
        self.lora_parameters = [p for p in unet.parameters() if id(p) not in before]
        time_embed_dim = unet.time_embedding.linear_2.out_features  # what the class embedding is added to
        self.camera_embedding = TimestepEmbedding(CAMERA_DIM, time_embed_dim).to(pipe.device, unet.dtype)
        torch.nn.init.zeros_(self.camera_embedding.linear_2.weight)
        torch.nn.init.zeros_(self.camera_embedding.linear_2.bias)
        # peft marks the active adapters trainable and all else frozen: every switch gives the caller's weights (and
        # adapters) their own flags back. They stay frozen where it matters, by ``runtime.frozen`` around the LoRA's
        # backward pass.
        self.base_flags, self.base_parameters = flags, [p for p, _ in flags]
        self._give_back_adapters()
        trainable = [*self.lora_parameters, *self.camera_embedding.parameters()]
        for p in self.camera_embedding.parameters():
            p.requires_grad_(True)
        self.optimizer = torch.optim.Adam(trainable, lr=check_positive("lora_lr", lora_lr))
        self.closed = False

    @contextmanager
    def _lora(self):
        """The U-Net with this LoRA switched on and the camera embedding attached, for one block."""
        if self.closed:
            raise RuntimeError("VariationalScoreDistillation: closed; its LoRA was removed from the U-Net")
        unet = self.pipe.unet
        previous = unet.class_embedding
        callers = self._callers()
        self._switch([*callers, self.adapter] if self.caller_enabled else [self.adapter], True)
        unet.class_embedding = self.camera_embedding
        try:
            yield unet
        finally:
            unet.class_embedding = previous
            self._give_back_adapters()

    def _callers(self) -> list[str]:
        """The caller's active adapters that are still there (another VSD run's may have been removed)."""
        return [name for name in self.caller_adapters if name in self.pipe.unet.peft_config]

    def _give_back_adapters(self) -> None:
        """The caller's adapters active, and switched on or off, as they were before this guidance; this LoRA off."""
        callers = self._callers()
        self._switch(callers, self.caller_enabled and bool(callers))

    def _switch(self, names: list[str], on: bool) -> None:
        """``names`` the U-Net's active adapters (none: leave which is active), all switched ``on`` or off; then every
        weight's trainable flag as the caller lent it, and this LoRA's trainable."""
        unet = self.pipe.unet
        if names:
            unet.set_adapter(names)
        if on:
            unet.enable_adapters()
        else:
            unet.disable_adapters()
        for p, flag in self.base_flags:
            p.requires_grad_(flag)
        for p in self.lora_parameters:
            p.requires_grad_(True)

    def camera_condition(self, cameras: Cameras | None, batch: int, generator: torch.Generator | None = None,
                         dropout: float = 0.0) -> torch.Tensor:
        """``[B,16]`` flattened c2w of ``cameras`` (zeros without cameras), each row zeroed with probability ``dropout``."""
        if cameras is None:
            return torch.zeros(batch, CAMERA_DIM, device=self.pipe.device)
        if len(cameras) != batch:
            raise ValueError(f"cameras: expected {batch}, one per latent, got {len(cameras)}")
        camera = cameras.c2w.reshape(len(cameras), CAMERA_DIM).to(self.pipe.device, torch.float32)
        if dropout > 0:
            keep = torch.rand(len(camera), generator=generator) >= dropout
            camera = camera * keep[:, None].to(camera)
        return camera

    def lora_prediction(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """ε_LoRA ``[B,4,h,w]``: the LoRA's noise estimate under the conditional text and the camera."""
        with self._lora() as unet:
            out = unet(noisy, t, cond.to(noisy.dtype), class_labels=camera.to(noisy.dtype)).sample
        return epsilon_from_output(self.scheduler, out, noisy, t)

    def from_latents(self, latents: torch.Tensor, text_embeddings: tuple[torch.Tensor, torch.Tensor],
                     progress: float = 0.0, generator: torch.Generator | None = None,
                     cameras: Cameras | None = None) -> GuidanceOutput:
        """VSD on scaled latents ``[B,4,h,w]``: ``w(t) (ε̂_pretrained - ε_LoRA)``, by the same stop-gradient trick as SDS."""
        cond, uncond = check_text_embeddings(text_embeddings, len(latents))
        t, noise, noisy = self._noised(latents, progress, generator)
        noise_pred = self.noise_prediction(noisy, t, cond.to(latents.device), uncond.to(latents.device))
        with torch.no_grad():
            noise_lora = self.lora_prediction(noisy, t, cond.to(latents.device), self.camera_condition(cameras, len(latents)))
        return self._surrogate(latents, t, noise_pred, noise_lora, noise, extras={"noise_lora": noise_lora})

    def loss(self, images: torch.Tensor, cameras: Cameras | None, conditions: dict, progress: float = 0.0,
             generator: torch.Generator | None = None) -> GuidanceOutput:
        """VSD for renders ``images [B,3,H,W]`` from ``cameras`` under ``conditions["text"]`` (the guidance interface)."""
        return self.from_latents(self.encode(images, generator), text_condition(conditions), progress, generator, cameras)

    def update(self, images: torch.Tensor, cameras: Cameras | None, conditions: dict, progress: float = 0.0,
               generator: torch.Generator | None = None) -> dict[str, float]:
        """One LoRA step of the diffusion loss on the detached renders ``images [B,3,H,W]``; returns ``lora_loss``."""
        cond, _ = text_condition(conditions)
        with torch.no_grad():
            latents = self.encode(images.detach(), generator)
        return self.update_from_latents(latents, cond, cameras, generator)

    def update_from_latents(self, latents: torch.Tensor, cond: torch.Tensor, cameras: Cameras | None = None,
                            generator: torch.Generator | None = None) -> dict[str, float]:
        """The LoRA's step on scaled latents ``[B,4,h,w]`` directly (what ``update`` does after encoding)."""
        latents = latents.detach()
        n = self.scheduler.config.num_train_timesteps
        lo, hi = int(self.lora_t_range[0] * n), max(int(self.lora_t_range[0] * n), int(self.lora_t_range[1] * n) - 1)
        t = torch.randint(lo, hi + 1, (len(latents),), generator=generator).to(latents.device)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        noisy = self.scheduler.add_noise(latents, noise, t)
        target = noise if self.scheduler.config.prediction_type == "epsilon" else self.scheduler.get_velocity(latents, noise, t)
        camera = self.camera_condition(cameras, len(latents), generator, self.camera_dropout)
        with self._lora() as unet, frozen(*self.base_parameters):  # frozen after the switch, which gives flags back
            out = unet(noisy, t, cond.to(latents.device, latents.dtype), class_labels=camera.to(latents.dtype)).sample
            loss = F.mse_loss(out.float(), target.float())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return {"lora_loss": loss.item()}

    def state_dict(self) -> dict:
        """The LoRA, its camera embedding and their optimiser: what a resumed run needs to continue exactly."""
        return {"lora": [p.detach().clone() for p in self.lora_parameters], "camera": self.camera_embedding.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for p, saved in zip(self.lora_parameters, state["lora"], strict=True):
                p.copy_(saved)
        self.camera_embedding.load_state_dict(state["camera"])
        self.optimizer.load_state_dict(state["optimizer"])

    def close(self) -> None:
        """Remove the LoRA: the caller's U-Net is the pretrained one again, module for module, its own adapters as they
        were."""
        if self.closed:
            return
        unet = self.pipe.unet
        if set(unet.peft_config) - {self.adapter}:  # another run's (or the caller's) adapters stay
            with warnings.catch_warnings():  # peft's note that it made another adapter active: set back below
                warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")
                unet.delete_adapters(self.adapter)
            self._give_back_adapters()
        else:
            unet.unload_lora()
        self.closed = True

    def __enter__(self) -> "VariationalScoreDistillation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

