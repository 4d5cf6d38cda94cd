# %% [markdown]
# # Exercises 04 · Guidance, score distillation and view-dependent prompts
#
# Replace each `raise NotImplementedError` with your code and run the check cell below it: the
# checker compares your function with `minidiff3d`'s on random and edge cases and says what differs.

# %%
import torch

from minidiff3d.exercises import check

# %% [markdown]
# ## 1. Classifier-free guidance
#
# One U-Net pass with the prompt gives $\epsilon_c$, one with the empty prompt gives $\epsilon_u$.
# Guidance extrapolates from the unconditional towards the conditional prediction:
# $\hat\epsilon = \epsilon_u + s\,(\epsilon_c - \epsilon_u)$ (diffusers' form; $s = 1$ is no guidance).
# Write `cfg(noise_cond, noise_uncond, scale) -> [B,4,h,w]`.

# %%
def cfg(noise_cond, noise_uncond, scale):
    # BEGIN SOLUTION
    return noise_uncond + scale * (noise_cond - noise_uncond)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("cfg", cfg)

# %% [markdown]
# ## 2. The weighting $w(t)$
#
# DreamFusion weights the SDS gradient by $w(t) = 1 - \bar\alpha_t = \sigma_t^2$, where
# $\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)$. Large $t$ (coarse structure) counts more than small $t$
# (fine detail, where the prior's gradient is noisiest). Write `sds_weight(betas [T], timesteps [B], weighting) -> [B]`
# for `weighting` in `"sds"` and `"uniform"` (all ones).

# %%
def sds_weight(betas, timesteps, weighting):
    # BEGIN SOLUTION
    alphas_cumprod = torch.cumprod(1 - betas, 0)[timesteps]
    return 1 - alphas_cumprod if weighting == "sds" else torch.ones_like(alphas_cumprod)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("sds_weight", sds_weight)

# %% [markdown]
# ## 3. The SDS gradient through a surrogate loss
#
# SDS hands you a gradient $g = w(t)(\hat\epsilon - \epsilon)$ for the latents $z$, not a loss. To let
# autograd carry it back through the encoder and the renderer, build a loss whose gradient is
# exactly $g$: with the target $z - g$ held constant, $\mathcal L = \tfrac12 \lVert z - \mathrm{sg}(z - g)\rVert^2$
# has $\partial \mathcal L / \partial z = g$.
# Write `sds_surrogate(latents, grad) -> (loss, latents_grad)`: build the loss on a copy of `latents` that
# requires grad, and return it with its gradient from `torch.autograd.grad`.

# %%
def sds_surrogate(latents, grad):
    # BEGIN SOLUTION
    latents = latents.detach().clone().requires_grad_(True)
    target = (latents - grad).detach()
    loss = 0.5 * (latents - target).pow(2).sum()
    (latents_grad,) = torch.autograd.grad(loss, latents)
    return loss.detach(), latents_grad
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("sds_surrogate", sds_surrogate)

# %% [markdown]
# ## 4. A whole SDS step
#
# Now put the pieces together. For latents $z$ of a render (they arrive requiring grad: they come from the
# renderer), a noise sample $\epsilon$ and a timestep $t$ per latent:
#
# 1. noise the latents, $z_t = \sqrt{\bar\alpha_t}\,z + \sqrt{1 - \bar\alpha_t}\,\epsilon$;
# 2. ask the prior: `denoiser(z_t, t)` returns the U-Net's two predictions $(\epsilon_c, \epsilon_u)$, and
#    guidance (exercise 1) makes $\hat\epsilon$ of them;
# 3. the SDS gradient is $g = w(t)\,(\hat\epsilon - \epsilon)$, with $w(t) = 1 - \bar\alpha_t$ for `"sds"` and 1 for `"uniform"`;
# 4. a surrogate loss (exercise 3) hands $g$ to autograd.
#
# SDS drops the U-Net's Jacobian $\partial\hat\epsilon/\partial z_t$ from the chain rule (section 2 of the chapter
# says why), so the prior runs forward only and nothing of its computation may reach the loss's gradient.
# Write `sds_step(latents, noise, t, alphas_cumprod, denoiser, guidance_scale, weighting) -> (grad, loss)`,
# where the loss is built from `latents` itself, so that `loss.backward()` sends exactly `grad` into them.
# The check compares `grad` with the package's SDS, and the gradient your loss sends back with `grad`.

# %%
def sds_step(latents, noise, t, alphas_cumprod, denoiser, guidance_scale, weighting):
    # BEGIN SOLUTION
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():  # the prior only runs forward: no U-Net Jacobian
        noise_pred = cfg(*denoiser(a.sqrt() * latents + (1 - a).sqrt() * noise, t), guidance_scale)
    w = 1 - a if weighting == "sds" else torch.ones_like(a)
    grad = w * (noise_pred - noise)
    return grad, 0.5 * (latents - (latents - grad).detach()).pow(2).sum()
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("sds_step", sds_step)

# %% [markdown]
# ## 5. Choosing the view-dependent prompt
#
# A camera at elevation $e$ and azimuth $a$ (degrees; azimuth 0 is the object's front) sees
# `VIEWS = ("front", "side", "back", "overhead")`: overhead when $e \ge 60$; otherwise, with
# $\delta = |((a + 180) \bmod 360) - 180|$ the angle from the front, front when $\delta \le 45$,
# back when $\delta \ge 135$, and side in between. Write `view_index(elevation [B], azimuth [B]) -> [B]`
# (long indices into `VIEWS`).

# %%
def view_index(elevation, azimuth):
    # BEGIN SOLUTION
    delta = ((azimuth + 180) % 360 - 180).abs()
    index = torch.full(elevation.shape, 1, dtype=torch.long)
    index[delta <= 45] = 0
    index[delta >= 135] = 2
    index[elevation >= 60] = 3
    return index
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("view_index", view_index)
