"""Ancestral sampling with any diffusers scheduler (DDPM, DDIM, ...), with classifier-free guidance.

CFG form: diffusers' ``ε̂ = ε_u + s (ε_c - ε_u)``, so ``guidance_scale = 1`` is the plain
conditional model and ``0`` the unconditional one. (threestudio writes ``ε_c + s (ε_c - ε_u)``,
which is this form at ``s + 1``.)
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, SchedulerMixin

from ..runtime import progress
from ..validation import check_choice, check_non_negative, check_positive_int, check_tensor

CFG_FORMS = ("diffusers", "threestudio")


def classifier_free_guidance(cond: torch.Tensor, uncond: torch.Tensor, scale: float, form: str = "diffusers") -> torch.Tensor:
    """The guided estimate from conditional and unconditional ones: the course's only CFG combination.

    ``"diffusers"``: ``uncond + s (cond - uncond)``; ``"threestudio"``: ``cond + s (cond - uncond)``, which
    is the first at ``s + 1`` (see the module docstring).
    """
    check_choice("form", form, CFG_FORMS)
    return (uncond if form == "diffusers" else cond) + scale * (cond - uncond)


def forward_process(scheduler) -> DDPMScheduler:
    """The variance-preserving forward process ``z_t = √ᾱ_t z + √(1-ᾱ_t) ε`` of a pipeline's ``scheduler``: DDPM's, from
    the same config (betas, timesteps, prediction type). A pipeline may come with any sampler, and an Euler or LMS
    scheduler's own ``add_noise`` gives ``z + σ_t ε``, which its sampler scales back before each U-Net call: fed to
    the U-Net as it is, its inputs would be 1/√ᾱ_t times too large (13x at t = 980 on SD's schedule)."""
    return DDPMScheduler.from_config(scheduler.config)


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


def guided_epsilon(unet, scheduler, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                   guidance_scale: float, cfg: str = "diffusers", class_labels: torch.Tensor | None = None) -> torch.Tensor:
    """The guided ε̂ ``[B,4,h,w]`` of a text-conditioned diffusers ``unet`` at ``noisy [B,4,h,w]``, ``t [B]``, from one
    pass over the conditional and unconditional halves (``cond``, ``uncond`` ``[B,L,D]``; ``class_labels [B,...]``,
    e.g. MVDream's cameras, given to both). Whatever the model predicts (ε or v), the result is ε.

    The halves are stacked, not interleaved, so rows that must stay together (a set of views) stay together.
    """
    noisy2, t2 = torch.cat([noisy, noisy]), torch.cat([t, t])
    labels = None if class_labels is None else torch.cat([class_labels, class_labels]).to(noisy)
    out = unet(noisy2, t2, torch.cat([cond, uncond]).to(noisy.dtype), class_labels=labels).sample
    noise_cond, noise_uncond = epsilon_from_output(scheduler, out, noisy2, t2).chunk(2)
    return classifier_free_guidance(noise_cond, noise_uncond, guidance_scale, cfg)


def guided_noise(model: torch.nn.Module, x_t: torch.Tensor, t, class_labels: torch.Tensor | None,
                 guidance_scale: float) -> torch.Tensor:
    """``ε̂(x_t [B,...], t)`` (``t`` a number, ``[]`` or ``[B]``): conditional, unconditional, or guided in one batched call.

    For a v-prediction model this is v̂; the guidance mix is linear, so it applies to either.
    """
    if class_labels is None or guidance_scale == 1.0:
        return model(x_t, t, class_labels).sample
    null = torch.full_like(class_labels, model.null_class)
    t_both = torch.cat([t, t]) if torch.is_tensor(t) and t.dim() else t  # a timestep per row: one for each half
    eps_cond, eps_uncond = model(torch.cat([x_t, x_t]), t_both, torch.cat([class_labels, null])).sample.chunk(2)
    return classifier_free_guidance(eps_cond, eps_uncond, guidance_scale)


@torch.no_grad()
def sample(model: torch.nn.Module, scheduler: SchedulerMixin, shape, class_labels: torch.Tensor | None = None,
           guidance_scale: float = 1.0, num_inference_steps: int = 50, generator: torch.Generator | None = None,
           show_progress: bool = False) -> torch.Tensor:
    """Draw ``shape = [B,...]`` samples from ``model`` by running ``scheduler`` from pure noise.

    ``class_labels [B]`` condition every sample (``None``: unconditional). With a DDIM scheduler
    (``eta = 0``) and a fixed ``generator``, sampling is deterministic.
    """
    shape = tuple(shape)
    guidance_scale = check_non_negative("guidance_scale", guidance_scale)
    device = next(model.parameters()).device
    if class_labels is not None:
        class_labels = check_tensor("class_labels", torch.as_tensor(class_labels, device=device), shape=[shape[0]])
    scheduler.set_timesteps(check_positive_int("num_inference_steps", num_inference_steps))
    x = torch.randn(shape, generator=generator).to(device) * scheduler.init_noise_sigma
    for t in progress(scheduler.timesteps, desc="sampling", disable=not show_progress):
        eps = guided_noise(model, scheduler.scale_model_input(x, t), t, class_labels, guidance_scale)
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return x
