# %% [markdown]
# # Exercises 08 · MVDream
#
# Replace each `raise NotImplementedError` with your code and run the check cell below it: the
# checker compares your function with `minidiff3d`'s on random and edge cases and says what differs.
# MVDream makes a text-to-image U-Net denoise the V views of one object *together*, with two changes
# and nothing else: self-attention joined over the views of a set, and each view's camera added to the
# timestep embedding. Score distillation through it then noises each set of renders at one timestep.
# The four exercises are these pieces.

# %%
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from minidiff3d.cameras import orbit_camera
from minidiff3d.exercises import check

# %% [markdown]
# ## 1. Joint self-attention over the views of a set
#
# In Stable Diffusion's U-Net each self-attention layer lets the $L = h \cdot w$ tokens of one image attend
# to each other. MVDream keeps the layer and its weights and changes only *which* tokens meet: the batch
# holds whole sets, view after view (rows $bV, \dots, bV + V - 1$ are object $b$'s views), and the
# activations are reshaped
#
# $$(B \cdot V,\ L,\ C) \;\longrightarrow\; (B,\ V \cdot L,\ C)$$
#
# before attention, $\mathrm{softmax}(QK^\top / \sqrt d)\,V$ over all $V \cdot L$ tokens of the object, and back
# after. A pixel of the front view can now look at the same part of the object in the side view, wherever
# it lands there; tokens of different objects never meet.
# The pitfall, the source chapter's: a second attention *across views at each position*,
# $(B \cdot V, L, C) \to (B \cdot L, V, C)$, where a token sees only the tokens at its own pixel in the other
# views, which is not where the same point of the object appears (and whose new weights start untrained).
# Write `joint_attention(attn, hidden_states [B·V,L,C], num_views) -> [B·V,L,C]`; `attn` is a diffusers
# `Attention` layer, and `AttnProcessor2_0()(attn, x)` runs its self-attention on any `x [N,T,C]`.

# %%
def joint_attention(attn, hidden_states, num_views):
    # BEGIN SOLUTION
    rows, tokens, channels = hidden_states.shape
    joint = hidden_states.reshape(rows // num_views, num_views * tokens, channels)
    return AttnProcessor2_0()(attn, joint).reshape(rows, tokens, channels)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("joint_attention", joint_attention)

# %% [markdown]
# ## 2. Cameras relative to the set's first view
#
# Each view tells the model where it was seen from with its $4 \times 4$ camera-to-world matrix, flattened
# row by row to 16 numbers. toy-mvdream's cameras are *relative*: the set is turned about the up axis so
# that its first view stands at azimuth 0, $\phi_v \to \phi_v - \phi_0$, and the cameras are at unit
# distance. A set and the same set turned by any angle then look the same to the model: it cannot know,
# and needs not know, where the world's front is; the views only have to agree with each other.
# Write `relative_cameras(elevation [V], azimuth [V]) -> [V,16]` (degrees) with
# `orbit_camera(elevation, azimuth, radius) -> [V,4,4]`.
# Pitfalls: absolute azimuths, `orbit_camera`'s default radius (2.8), and flattening the transpose.

# %%
def relative_cameras(elevation, azimuth):
    # BEGIN SOLUTION
    return orbit_camera(elevation, azimuth - azimuth[0], 1.0).reshape(len(azimuth), 16)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("relative_cameras", relative_cameras)

# %% [markdown]
# ## 3. The camera, added to the timestep embedding
#
# Every residual block of the U-Net adds one vector per image to its features: the timestep embedding, an
# MLP of the sinusoidal features $\gamma(t)$ of $t$. MVDream adds the camera there, through an MLP of its own:
#
# $$e = \mathrm{MLP}_t\big(\gamma(t)\big) + \mathrm{MLP}_c\big(\mathrm{vec}(c)\big),$$
#
# so the camera reaches every block, which is where the layout of each view is drawn. In diffusers this is
# the U-Net's class embedding of type `"projection"`, fed the cameras as `class_labels`:
# `unet.time_proj` makes $\gamma(t)$, `unet.time_embedding` is $\mathrm{MLP}_t$, `unet.class_embedding` is
# $\mathrm{MLP}_c$. (Its last layer starts at zero, so that the new model starts as the text-to-image one;
# the checker's is randomised, so that the camera counts.) The pitfall, the source chapter's: adding the
# camera to the *text* embedding, where only the cross-attention layers would see it.
# Write `time_and_camera_embedding(unet, timesteps [N], cameras [N,16]) -> [N,E]`, `E` the U-Net's
# time-embedding width.

# %%
def time_and_camera_embedding(unet, timesteps, cameras):
    # BEGIN SOLUTION
    return unet.time_embedding(unet.time_proj(timesteps)) + unet.class_embedding(cameras)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("time_and_camera_embedding", time_and_camera_embedding)

# %% [markdown]
# ## 4. One timestep per set
#
# SDS draws a timestep for each render, $t \sim \mathcal U\{t_{\min}, \dots, t_{\max}\}$. The multi-view U-Net
# was trained on sets whose views were noised together, at one $t$: a set whose views sit at different
# noise levels is an input it never saw. Multi-view SDS therefore draws one timestep per set and gives it
# to all the set's views, set after set as the renders come: $t_{bV + v} = t_b$.
# Write `set_timesteps(n_sets, num_views, low, high, generator) -> [n_sets·V]` integer timesteps, drawn as the
# package draws them (the checker gives you and the reference the same fresh generator):
# `torch.randint(low, high + 1, (n_sets,), generator=generator)`, then each repeated for its views.
# Pitfalls: `repeat` tiles the whole draw, while `repeat_interleave` repeats each entry; `randint`'s upper
# bound is exclusive.

# %%
def set_timesteps(n_sets, num_views, low, high, generator):
    # BEGIN SOLUTION
    t = torch.randint(low, high + 1, (n_sets,), generator=generator)
    return t.repeat_interleave(num_views)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("set_timesteps", set_timesteps)
