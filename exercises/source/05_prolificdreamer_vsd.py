# %% [markdown]
# # Exercises 05 · Variational score distillation and its LoRA
#
# Replace each `raise NotImplementedError` with your code and run the check cell below it: the
# checker compares your function with `minidiff3d`'s on random and edge cases and says what differs.

# %%
import torch

from minidiff3d.exercises import check

# %% [markdown]
# ## 1. The VSD gradient
#
# SDS's gradient is $w(t)\,(\hat\epsilon_\text{pretrained} - \epsilon)$, the prior against the noise that was
# injected. VSD keeps the first term and replaces the second by the score of the scene's own renders,
# estimated by a LoRA of the prior: $w(t)\,(\hat\epsilon_\text{pretrained} - \epsilon_\text{LoRA})$, with
# $w(t) = 1 - \bar\alpha_t$ as in SDS (or 1 for `"uniform"`).
# Write `vsd_gradient(noise_pretrained, noise_lora, t, alphas_cumprod, weighting) -> [B,4,h,w]`.

# %%
def vsd_gradient(noise_pretrained, noise_lora, t, alphas_cumprod, weighting):
    # BEGIN SOLUTION
    w = (1 - alphas_cumprod[t]) if weighting == "sds" else torch.ones(len(t))
    return w.view(-1, 1, 1, 1) * (noise_pretrained - noise_lora)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("vsd_gradient", vsd_gradient)

# %% [markdown]
# ## 2. The camera the LoRA sees
#
# The renders of a scene differ by view, so the LoRA is told the camera: its camera-to-world matrix,
# flattened to 16 numbers (row by row) and fed, like a timestep, through a small MLP into the U-Net.
# For a share of its training samples the camera is dropped, as zeros, so that it also learns the
# score averaged over views. Write `camera_condition(c2w [B,4,4], keep [B] bool) -> [B,16]`.

# %%
def camera_condition(c2w, keep):
    # BEGIN SOLUTION
    return c2w.reshape(len(c2w), 16) * keep[:, None].float()
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("camera_condition", camera_condition)

# %% [markdown]
# ## 3. A LoRA layer
#
# LoRA leaves a pretrained weight $W$ alone and learns a low-rank change to it, $\Delta W = \frac{\alpha}{r} B A$
# with $A \in \mathbb R^{r \times d_\text{in}}$ and $B \in \mathbb R^{d_\text{out} \times r}$. peft starts $B$ at zero,
# so the layer starts as the pretrained one. Write
# `lora_linear(x [N,in], weight [out,in], bias [out], lora_A [r,in], lora_B [out,r], alpha) -> [N,out]`.

# %%
def lora_linear(x, weight, bias, lora_A, lora_B, alpha):
    # BEGIN SOLUTION
    return x @ weight.T + bias + (alpha / lora_A.shape[0]) * (x @ lora_A.T) @ lora_B.T
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("lora_linear", lora_linear)

# %% [markdown]
# ## 4. What the LoRA is trained on
#
# Each step the LoRA takes one step of the plain diffusion loss on the (detached) renders: noise them to
# $z_t = \sqrt{\bar\alpha_t}\,z + \sqrt{1-\bar\alpha_t}\,\epsilon$ and regress the U-Net's output on its target,
# which depends on the prior's prediction type: $\epsilon$ for `"epsilon"` models, and
# $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,z$ for `"v_prediction"` ones (SD 2.1 at 768).
# Write `lora_target(latents, noise, t, alphas_cumprod, prediction_type) -> [B,4,h,w]`.

# %%
def lora_target(latents, noise, t, alphas_cumprod, prediction_type):
    # BEGIN SOLUTION
    if prediction_type == "epsilon":
        return noise
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * noise - (1 - a).sqrt() * latents
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("lora_target", lora_target)
