"""Score distillation sampling (DreamFusion): a 2-D diffusion model as a loss on rendered images.

For a render ``x = g(θ)``, encoded to latents ``z``, noised to ``z_t = √ᾱ_t z + √(1-ᾱ_t) ε``:

    ∇_θ L_SDS = E_{t,ε}[ w(t) (ε̂_φ(z_t; y, t) - ε) ∂z/∂θ ]

The U-Net Jacobian ∂ε̂/∂z_t is dropped: it is expensive, and poorly conditioned at small noise
levels, and the remaining term is still the gradient of a KL divergence between the noised
render and the prior. We apply it with the stop-gradient trick: ``target = (z - grad).detach()``
and ``loss = ½‖z - target‖²``, whose gradient with respect to ``z`` is exactly ``grad``, so
autograd carries it through the encoder and the renderer to θ.

Classifier-free guidance (CFG), with scale s, conditional ε_c and unconditional ε_u:
    ``cfg="diffusers"`` (the default, as in diffusers and the DreamFusion paper): ε̂ = ε_u + s (ε_c - ε_u)
    ``cfg="threestudio"``:                                                        ε̂ = ε_c + s (ε_c - ε_u)
The second is the first with s + 1, so "guidance 100" means 100 in one and 101 in the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..validation import (check_choice, check_fraction, check_images, check_interval, check_non_negative, check_positive,
                          check_tensor)

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


@dataclass
class SDSOutput:
    """``loss`` (a scalar whose gradient w.r.t. ``latents`` is ``grad``), ``grad [B,4,h,w]``,
    the timesteps ``t [B]``, the render's ``latents``, the guided noise estimate ``noise_pred`` and the true ``noise``."""

    loss: torch.Tensor
    grad: torch.Tensor
    t: torch.Tensor
    latents: torch.Tensor
    noise_pred: torch.Tensor
    noise: torch.Tensor


def guided_noise_prediction(noise_cond: torch.Tensor, noise_uncond: torch.Tensor, scale: float,
                            form: str = "diffusers") -> torch.Tensor:
    """Classifier-free guidance in either form (see the module docstring)."""
    check_choice("form", form, ("diffusers", "threestudio"))
    base = noise_uncond if form == "diffusers" else noise_cond
    return base + scale * (noise_cond - noise_uncond)


def epsilon_from_output(scheduler, model_output: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The noise estimate ε̂ from a U-Net output of the scheduler's ``prediction_type``.

    ε-prediction models (SD 1.x, 2.x-base, toy SD) return it directly; v-prediction models
    (SD 2.1 at 768) return v = √ᾱ ε - √(1-ᾱ) x0, and then ε = √ᾱ v + √(1-ᾱ) x_t.
    """
    kind = scheduler.config.prediction_type
    check_choice("scheduler.config.prediction_type", kind, ("epsilon", "v_prediction"))
    if kind == "epsilon":
        return model_output
    a = scheduler.alphas_cumprod.to(t.device)[t].view(-1, *[1] * (noisy.dim() - 1)).to(model_output.dtype)
    return a.sqrt() * model_output + (1 - a).sqrt() * noisy


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


class ScoreDistillation:
    """SDS guidance from any ``StableDiffusionPipeline`` (toy SD, or SD 2.1 loaded from a path or id).

    Args:
        guidance_scale: CFG scale; DreamFusion uses 100, far above sampling's 7.5, because SDS
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
        check_choice("cfg", cfg, ("diffusers", "threestudio"))
        check_choice("weighting", weighting, ("sds", "uniform"))
        self.t_range = check_t_range("t_range", t_range)
        self.t_range_end = None if t_range_end is None else check_t_range("t_range_end", t_range_end)
        self.guidance_scale = check_non_negative("guidance_scale", guidance_scale)
        self.pipe, self.cfg, self.weighting = pipe, cfg, weighting
        self.grad_clip = None if grad_clip is None else check_positive("grad_clip", grad_clip)
        self.scheduler = pipe.scheduler
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(pipe.device)
        self.resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):  # the prior stays frozen
            module.requires_grad_(False)

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
        posterior = self.pipe.vae.encode(images * 2 - 1).latent_dist  # the VAE was trained on [-1, 1]
        return posterior.sample(generator) * self.pipe.vae.config.scaling_factor

    @torch.no_grad()
    def noise_prediction(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        """The guided ε̂ ``[B,4,h,w]``, from one U-Net pass over the conditional and unconditional halves."""
        noisy, t = torch.cat([noisy, noisy]), torch.cat([t, t])
        out = self.pipe.unet(noisy, t, torch.cat([cond, uncond]).to(noisy.dtype)).sample
        noise_cond, noise_uncond = epsilon_from_output(self.scheduler, out, noisy, t).chunk(2)
        return guided_noise_prediction(noise_cond, noise_uncond, self.guidance_scale, self.cfg)

    def __call__(self, images: torch.Tensor, text_embeddings: tuple[torch.Tensor, torch.Tensor], progress: float = 0.0,
                 generator: torch.Generator | None = None) -> SDSOutput:
        """SDS for renders ``images [B,3,H,W]`` in [0,1] and ``(cond, uncond)`` embeddings ``[B,L,D]``.

        ``loss.backward()`` sends ``grad`` into the latents (and on, through the encoder, to the
        renders). ``progress`` in [0,1] moves the t range when ``t_range_end`` is set.
        """
        return self.from_latents(self.encode(images, generator), text_embeddings, progress, generator)

    def from_latents(self, latents: torch.Tensor, text_embeddings: tuple[torch.Tensor, torch.Tensor],
                     progress: float = 0.0, generator: torch.Generator | None = None) -> SDSOutput:
        """SDS on scaled latents ``[B,4,h,w]`` directly (what ``__call__`` does after encoding the renders)."""
        cond, uncond = text_embeddings
        sizes = {"B": len(latents)}
        check_tensor("latents", latents, shape=["B", self.pipe.unet.config.in_channels, None, None], sizes=sizes,
                     floating=True)
        check_tensor("text_embeddings[0]", cond, shape=["B", None, None], sizes=sizes)
        check_tensor("text_embeddings[1]", uncond, shape=list(cond.shape))
        lo, hi = self.timestep_bounds(progress)
        device = latents.device
        t = torch.randint(lo, hi + 1, (len(latents),), generator=generator, device="cpu").to(device)
        noise = torch.randn(latents.shape, generator=generator, device="cpu").to(device, latents.dtype)
        noisy = self.scheduler.add_noise(latents.detach(), noise, t)
        noise_pred = self.noise_prediction(noisy, t, cond.to(device), uncond.to(device))
        w = sds_weight(self.alphas_cumprod[t], self.weighting).view(-1, 1, 1, 1).to(latents.dtype)
        grad = w * (noise_pred - noise)
        if self.grad_clip is not None:
            grad = grad.clamp(-self.grad_clip, self.grad_clip)
        target = (latents - grad).detach()
        loss = 0.5 * (latents - target).pow(2).sum()  # d loss / d latents = latents - target = grad
        return SDSOutput(loss, grad, t, latents, noise_pred, noise)


def distill_image(guidance: ScoreDistillation, text_embeddings: tuple[torch.Tensor, torch.Tensor], steps: int = 200,
                  lr: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """SDS with no 3-D at all: optimise one image's latents ``[1,4,h,w]`` directly, then decode them.

    The latents start as the encoding of a grey image. ``text_embeddings`` are one prompt's
    ``(cond, uncond)`` ``[1,L,D]``. Returns the decoded image ``[1,3,H,W]`` in [0,1] and the SDS
    loss per step. It isolates what the guidance alone does: the CFG scale's effect on saturation,
    and how alike the results of different seeds are (SDS seeks a mode).

    Why latents and not pixels: the SDS gradient on pixels comes back through the VAE encoder,
    which turns it into high-frequency patterns that Adam happily amplifies; a renderer's
    smoothness keeps that in check in 3-D, nothing does for free pixels.
    """
    generator = torch.Generator().manual_seed(seed)
    pipe = guidance.pipe
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    with torch.no_grad():
        start = guidance.encode(torch.full((1, 3, size, size), 0.5, device=pipe.device), generator)
    latents = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latents], lr=lr)
    losses = []
    for step in range(steps):
        out = guidance.from_latents(latents, text_embeddings, progress=step / max(steps - 1, 1), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    with torch.no_grad():
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return ((image + 1) / 2).clamp(0, 1).cpu(), losses
