"""Score distillation sampling (DreamFusion): a 2-D diffusion model as a loss on rendered images.

For a render ``x = g(θ)``, encoded to latents ``z``, noised to ``z_t = √ᾱ_t z + √(1-ᾱ_t) ε``:

    ∇_θ L_SDS = E_{t,ε}[ w(t) (ε̂_φ(z_t; y, t) - ε) ∂z/∂θ ]

The U-Net Jacobian ∂ε̂/∂z_t is dropped: it is expensive, and poorly conditioned at small noise
levels, and the remaining term is still the gradient of a KL divergence between the noised
render and the prior. We apply it with the stop-gradient trick: ``target = (z - grad).detach()``
and ``loss = ½‖z - target‖²``, whose gradient with respect to ``z`` is exactly ``grad``, so
autograd carries it through the encoder and the renderer to θ.

Classifier-free guidance (CFG), with scale s, conditional ε_c and unconditional ε_u
(``diffusion.sampling.classifier_free_guidance``):
    ``cfg="diffusers"`` (the default, as diffusers samples):              ε̂ = ε_u + s (ε_c - ε_u)
    ``cfg="threestudio"`` (DreamFusion's (1 + ω) ε_c - ω ε_u, ω = s):   ε̂ = ε_c + s (ε_c - ε_u)
The second is the first with s + 1, so "guidance 100" means 100 in one and 101 in the other.

The prior stays frozen without touching the caller's pipeline: the U-Net runs under
``no_grad``, and the VAE encoder (which the gradient must cross to reach the renders) runs
inside ``runtime.frozen``, which gives every ``requires_grad`` flag back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from ..cameras import Cameras
from ..diffusion.sampling import CFG_FORMS, forward_process, guided_epsilon
from ..runtime import frozen
from ..validation import (check_choice, check_fraction, check_images, check_interval, check_non_negative, check_positive,
                          check_positive_int, check_tensor)
from .base import GuidanceOutput, text_condition

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


def set_timesteps(count: int, group: int, low: int, high: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[count]`` integer timesteps, uniform in [low, high]: one draw per ``group`` of consecutive rows, repeated for
    each row of it (1: a timestep per image; 4: one per set of four views, which a multi-view model denoises at one t)."""
    group = check_positive_int("group", group)
    if count % group:
        raise ValueError(f"latents: expected whole groups of {group} (sets of views), got {count} rows")
    return torch.randint(low, high + 1, (count // group,), generator=generator).repeat_interleave(group)


def check_t_range(name: str, value) -> tuple[float, float]:
    """``(min, max)`` fractions of the training timesteps, with ``min < 1`` so that the lowest t is a real step."""
    lo, hi = check_interval(name, value, 0.0, 1.0)
    if lo >= 1.0:
        raise ValueError(f"{name}: expected min < 1 (t = min * num_train_timesteps must be a timestep), got {value!r}")
    return lo, hi


def sds_weight(alphas_cumprod: torch.Tensor, weighting: str = "sds") -> torch.Tensor:
    """w(t) for ``alphas_cumprod [B]`` (ᾱ_t): ``"sds"`` is DreamFusion's 1 - ᾱ_t (σ_t², small for small t),
    ``"uniform"`` is 1."""
    check_choice("weighting", weighting, ("sds", "uniform"))
    return 1 - alphas_cumprod if weighting == "sds" else torch.ones_like(alphas_cumprod)


@dataclass
class SDSConfig:
    """``ScoreDistillation``'s arguments (see there), as a run's config holds them."""

    guidance_scale: float = 100.0
    cfg: Literal["diffusers", "threestudio"] = "diffusers"
    t_range: tuple[float, float] = (0.02, 0.98)
    t_range_end: tuple[float, float] | None = None
    weighting: Literal["sds", "uniform"] = "sds"
    grad_clip: float | None = None

    def __post_init__(self):
        check_non_negative("guidance.guidance_scale", self.guidance_scale)
        check_choice("guidance.cfg", self.cfg, CFG_FORMS)
        check_t_range("guidance.t_range", self.t_range)
        if self.t_range_end is not None:
            check_t_range("guidance.t_range_end", self.t_range_end)
        check_choice("guidance.weighting", self.weighting, ("sds", "uniform"))
        if self.grad_clip is not None:
            check_positive("guidance.grad_clip", self.grad_clip)

    def build(self, pipe: StableDiffusionPipeline) -> "ScoreDistillation":
        return ScoreDistillation(pipe, **vars(self))


class ScoreDistillation:
    """SDS guidance from any ``StableDiffusionPipeline`` (toy SD, or SD 2.1 loaded from a path or id).

    Args:
        guidance_scale: CFG scale; DreamFusion uses ω = 100 (101 in this form), far above sampling's 7.5, because SDS
            seeks a mode and weak guidance leaves blurry, averaged results.
        cfg: ``"diffusers"`` or ``"threestudio"`` (see the module docstring).
        t_range: (min, max) fraction of the training timesteps that t is drawn from.
        t_range_end: if given, the range moves linearly to this one as ``progress`` goes 0 -> 1
            (e.g. (0.02, 0.5): large noise early for the layout, small late for the details).
        weighting: ``"sds"`` (w = 1 - ᾱ_t) or ``"uniform"``.
        grad_clip: clamp each gradient entry to ±grad_clip (None: no clamp).
    """

    def __init__(self, pipe: StableDiffusionPipeline, guidance_scale: float = 100.0, cfg: str = "diffusers",
                 t_range=(0.02, 0.98), t_range_end=None, weighting: str = "sds", grad_clip: float | None = None):
        check_choice("cfg", cfg, CFG_FORMS)
        check_choice("weighting", weighting, ("sds", "uniform"))
        self.t_range = check_t_range("t_range", t_range)
        self.t_range_end = None if t_range_end is None else check_t_range("t_range_end", t_range_end)
        self.guidance_scale = check_non_negative("guidance_scale", guidance_scale)
        self.pipe, self.cfg, self.weighting = pipe, cfg, weighting
        self.grad_clip = None if grad_clip is None else check_positive("grad_clip", grad_clip)
        self.scheduler = forward_process(pipe.scheduler)  # whatever sampler the pipeline was saved with
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(pipe.device)
        self.resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor

    def timestep_bounds(self, progress: float = 0.0) -> tuple[int, int]:
        """The integer timesteps [lo, hi] that t is drawn from at ``progress`` in [0, 1] of the optimisation."""
        progress = check_fraction("progress", progress)
        lo, hi = self.t_range
        if self.t_range_end is not None:
            lo = lo + progress * (self.t_range_end[0] - lo)
            hi = hi + progress * (self.t_range_end[1] - hi)
        n = self.scheduler.config.num_train_timesteps
        return int(lo * n), max(int(lo * n), int(hi * n) - 1)

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Renders ``[B,3,H,W]`` in [0,1] -> scaled VAE latents, with gradients (resized to the model's resolution),
        sampled from the VAE's posterior with ``generator``."""
        images = check_images("images", images).to(self.pipe.device, self.pipe.vae.dtype)
        if images.shape[-2:] != (self.resolution, self.resolution):
            images = F.interpolate(images, (self.resolution, self.resolution), mode="bilinear", align_corners=False)
        with frozen(self.pipe.vae):  # gradients reach the renders, never the prior's weights
            posterior = self.pipe.vae.encode(images * 2 - 1).latent_dist  # the VAE was trained on [-1, 1]
        return posterior.sample(generator) * self.pipe.vae.config.scaling_factor

    @torch.no_grad()
    def noise_prediction(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                         class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The guided ε̂ ``[B,4,h,w]``, from one U-Net pass over the conditional and unconditional halves."""
        return guided_epsilon(self.pipe.unet, self.scheduler, noisy, t, cond, uncond, self.guidance_scale, self.cfg,
                              class_labels)

    def guided_noise(self, noisy: torch.Tensor, t: torch.Tensor, conditions: dict) -> torch.Tensor:
        """The guided ε̂ ``[B,4,h,w]`` at ``noisy`` under ``conditions`` (the guidance interface's dict): what
        ``refine`` denoises with, and what an image-conditioned guidance overrides."""
        cond, uncond = check_text_embeddings(text_condition(conditions), len(noisy))
        return self.noise_prediction(noisy, t, cond.to(noisy.device), uncond.to(noisy.device))

    @torch.no_grad()
    def refine(self, images: torch.Tensor, conditions: dict, strength: float = 0.5, num_inference_steps: int = 20,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """SDEdit (Meng et al., 2022), as DreamGaussian refines its texture: ``images [B,3,H,W]`` in [0,1] noised to
        ``strength`` of the diffusion and denoised back by DDIM under ``conditions``; returns ``[B,3,R,R]`` in [0,1] at
        the prior's resolution. Small strengths keep the layout and sharpen the details."""
        strength = check_fraction("strength", strength)
        steps = check_positive_int("num_inference_steps", num_inference_steps)
        latents = self.encode(images, generator)
        scheduler = DDIMScheduler.from_config(self.scheduler.config, prediction_type="epsilon", clip_sample=False)
        scheduler.set_timesteps(steps, device=latents.device)
        timesteps = scheduler.timesteps[steps - int(steps * strength):]  # the last strength·steps, rounded down as img2img
        if len(timesteps):
            noise = torch.randn(latents.shape, generator=generator).to(latents)
            latents = scheduler.add_noise(latents, noise, timesteps[:1].expand(len(latents)))
        for t in timesteps:
            latents = scheduler.step(self.guided_noise(latents, t.expand(len(latents)), conditions), t, latents).prev_sample
        vae = self.pipe.vae
        return ((vae.decode(latents / vae.config.scaling_factor).sample.float() + 1) / 2).clamp(0, 1)

    def loss(self, images: torch.Tensor, cameras: Cameras | None, conditions: dict, progress: float = 0.0,
             generator: torch.Generator | None = None) -> GuidanceOutput:
        """SDS for renders ``images [B,3,H,W]`` in [0,1] under ``conditions["text"] = (cond, uncond)`` ``[B,L,D]``
        (the guidance interface, ``guidance.base``; SDS does not read ``cameras``).

        ``loss.backward()`` sends ``grad`` into the latents (and on, through the encoder, to the
        renders). ``progress`` in [0,1] moves the t range when ``t_range_end`` is set.
        """
        return self.from_latents(self.encode(images, generator), text_condition(conditions), progress, generator)

    def update(self, images: torch.Tensor, cameras: Cameras | None, conditions: dict, progress: float = 0.0,
               generator: torch.Generator | None = None) -> dict[str, float]:
        """SDS learns nothing during a run."""
        return {}

    def close(self) -> None:
        """SDS leaves nothing on the pipeline to remove."""

    def update_from_latents(self, latents: torch.Tensor, cond: torch.Tensor, cameras: Cameras | None = None,
                            generator: torch.Generator | None = None) -> dict[str, float]:
        """``update`` on scaled latents directly: SDS learns nothing."""
        return {}

    def state_dict(self) -> dict:
        """What the guidance learned during a run, for a checkpoint: nothing, for SDS."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``."""

    def from_latents(self, latents: torch.Tensor, text_embeddings: tuple[torch.Tensor, torch.Tensor],
                     progress: float = 0.0, generator: torch.Generator | None = None, group: int = 1,
                     class_labels: torch.Tensor | None = None) -> GuidanceOutput:
        """SDS on scaled latents ``[B,4,h,w]`` directly (what ``loss`` does after encoding the renders): one timestep per
        ``group`` of consecutive latents, and ``class_labels`` (e.g. cameras) given to the U-Net."""
        cond, uncond = check_text_embeddings(text_embeddings, len(latents))
        t, noise, noisy = self._noised(latents, progress, generator, group)
        noise_pred = self.noise_prediction(noisy, t, cond.to(latents.device), uncond.to(latents.device), class_labels)
        return self._surrogate(latents, t, noise_pred, noise, noise)

    def _noised(self, latents, progress, generator, group: int = 1) -> tuple[torch.Tensor, ...]:
        """``(t [B], ε, z_t)``: a timestep from the current range (one per ``group`` of consecutive latents) and fresh
        noise, both from ``generator``."""
        check_tensor("latents", latents, shape=[None, self.pipe.unet.config.out_channels, None, None], floating=True)
        lo, hi = self.timestep_bounds(progress)
        t = set_timesteps(len(latents), group, lo, hi, generator).to(latents.device)
        noise = torch.randn(latents.shape, generator=generator, device="cpu").to(latents.device, latents.dtype)
        return t, noise, self.scheduler.add_noise(latents.detach(), noise, t)

    def _surrogate(self, latents, t, noise_pred, baseline, noise, extras=None) -> GuidanceOutput:
        """The gradient ``w(t) (noise_pred - baseline)`` and the loss ``½‖z - sg(z - grad)‖²`` whose gradient it is.

        SDS's baseline is the injected noise ε; VSD's is the LoRA's estimate."""
        w = sds_weight(self.alphas_cumprod[t], self.weighting).view(-1, 1, 1, 1).to(latents.dtype)
        grad = w * (noise_pred - baseline)
        if self.grad_clip is not None:
            grad = grad.clamp(-self.grad_clip, self.grad_clip)
        target = (latents - grad).detach()
        loss = 0.5 * (latents - target).pow(2).sum()  # d loss / d latents = latents - target = grad
        return GuidanceOutput(loss, grad, t, latents, noise_pred, noise, extras or {})

def check_text_embeddings(text_embeddings, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cond, uncond)`` ``[B,L,D]`` each, for a batch of ``batch`` latents, or an error naming the one that is wrong."""
    cond, uncond = text_embeddings
    check_tensor("text_embeddings[0]", cond, shape=[batch, None, None])
    check_tensor("text_embeddings[1]", uncond, shape=list(cond.shape))
    return cond, uncond


def distill_image(guidance: ScoreDistillation, text_embeddings: tuple[torch.Tensor, torch.Tensor], steps: int = 200,
                  lr: float = 0.05, seed: int = 0, particles: int = 1) -> tuple[torch.Tensor, list[float]]:
    """Score distillation with no 3-D at all: optimise ``particles`` images' latents ``[P,4,h,w]`` directly, then decode them.

    The latents start as the encoding of a grey image. ``text_embeddings`` are one prompt's
    ``(cond, uncond)`` ``[1,L,D]``. Returns the decoded images ``[P,3,H,W]`` in [0,1] and the
    guidance loss per step. It isolates what the guidance alone does: the CFG scale's effect on
    saturation, and how alike the results are (SDS seeks a mode). After each step the guidance's
    ``update_from_latents`` sees the particles (VSD's LoRA learns them; SDS does nothing), which is
    why VSD's particles stay apart: each is scored against the distribution of all of them.

    Why latents and not pixels: the SDS gradient on pixels comes back through the VAE encoder,
    which turns it into high-frequency patterns that Adam happily amplifies; a renderer's
    smoothness keeps that in check in 3-D, nothing does for free pixels.
    """
    generator = torch.Generator().manual_seed(seed)
    pipe = guidance.pipe
    particles = check_positive_int("particles", particles)
    cond, uncond = (e.expand(particles, -1, -1) for e in text_embeddings)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    with torch.no_grad():
        start = guidance.encode(torch.full((particles, 3, size, size), 0.5, device=pipe.device), generator)
    latents = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latents], lr=lr)
    losses = []
    for step in range(steps):
        out = guidance.from_latents(latents, (cond, uncond), progress=step / max(steps - 1, 1), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        guidance.update_from_latents(latents.detach(), cond, None, generator)
        losses.append(out.loss.item())
    with torch.no_grad():
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return ((image + 1) / 2).clamp(0, 1).cpu(), losses
