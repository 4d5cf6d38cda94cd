# %% [markdown]
# # Exercises 00 · Cameras and rays
#
# Four functions that every later chapter relies on. For each one, replace
# `raise NotImplementedError` with your code, then run the check cell below it. The checker runs your
# function and the package's reference on random and edge cases, and tells you the first thing that
# differs: which output, which entry, what was expected, often with a hint.
#
# Conventions (chapter 00, section 5): z-up world; OpenGL camera-to-world matrices whose columns are the
# camera's right, up and backward axes and its centre; the camera looks down its $-z$ axis; azimuth 0 is
# on the $+x$ axis and grows towards $+y$.

# %%
import math

import torch

from minidiff3d.exercises import check

# %% [markdown]
# ## 1. An orbit camera
#
# Write `orbit_camera(elevation_deg, azimuth_deg, radius)`: the `[4,4]` camera-to-world matrix of a camera
# at $\mathbf{c} = r(\cos e\cos a, \cos e \sin a, \sin e)$ looking at the origin. Use
# backward $= \mathbf{c}/r$, right $= (-\sin a, \cos a, 0)$ and up $=$ backward $\times$ right.

# %%
def orbit_camera(elevation_deg, azimuth_deg, radius):
    # BEGIN SOLUTION
    e, a = math.radians(elevation_deg), math.radians(azimuth_deg)
    backward = torch.tensor([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    right = torch.tensor([-math.sin(a), math.cos(a), 0.0])
    up = torch.linalg.cross(backward, right)
    c2w = torch.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, backward, radius * backward
    return c2w
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("orbit_camera", orbit_camera)

# %% [markdown]
# ## 2. A look-at camera
#
# An orbit camera always looks at the origin. Write `look_at(eye [3], target [3], up [3])`: the `[4,4]`
# camera-to-world matrix of a camera at `eye` looking at `target`, where `up` is only *roughly* up (any
# length, not perpendicular to the view). With the viewing direction
# $\mathbf{f} = (\text{target} - \text{eye}) / \lVert\text{target} - \text{eye}\rVert$:
# right $= \mathbf{f} \times \text{up}$, normalised; the camera's up $=$ right $\times \mathbf{f}$; backward $= -\mathbf{f}$.
# The two cross products turn a rough up vector into an orthonormal frame; they fail only when `up` is
# parallel to $\mathbf{f}$, which is why `orbit_camera` builds its right axis from the azimuth instead.

# %%
def look_at(eye, target, up):
    # BEGIN SOLUTION
    forward = (target - eye) / (target - eye).norm()
    right = torch.linalg.cross(forward, up)
    right = right / right.norm()
    c2w = torch.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, torch.linalg.cross(right, forward), -forward, eye
    return c2w
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("look_at", look_at)

# %% [markdown]
# ## 3. Rays through pixels
#
# Write `get_rays(c2w, height, width, focal)` returning `(origins, directions)`, each `[H,W,3]` in world
# coordinates, with unit directions. The ray of pixel $(i, j)$ (row $i$ counting down) has camera-space
# direction $\big((j + \tfrac12 - \tfrac W2)/f,\; -(i + \tfrac12 - \tfrac H2)/f,\; -1\big)$; rotate it by
# `c2w[:3, :3]`. Every ray starts at the camera centre.

# %%
def get_rays(c2w, height, width, focal):
    # BEGIN SOLUTION
    i, j = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    camera = torch.stack([(j + 0.5 - width / 2) / focal, -(i + 0.5 - height / 2) / focal, -torch.ones_like(i)], -1)
    directions = camera @ c2w[:3, :3].T
    directions = directions / directions.norm(dim=-1, keepdim=True)
    return c2w[:3, 3].expand(height, width, 3), directions
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("get_rays", get_rays)

# %% [markdown]
# ## 4. From the world back to pixels
#
# Write `project_points(points, c2w, height, width, focal)` for `points [N,3]`: return `pixels [N,2]` as
# (column, row) coordinates, in the same pixel frame as above (the centre of pixel $(i, j)$ is at
# $(j + \tfrac12, i + \tfrac12)$), and `depth [N]`, the distance in front of the camera along its axis.
# Hint: world to camera is $R^\top(\mathbf{p} - \mathbf{c})$.

# %%
def project_points(points, c2w, height, width, focal):
    # BEGIN SOLUTION
    camera = (points - c2w[:3, 3]) @ c2w[:3, :3]
    depth = -camera[:, 2]
    pixels = torch.stack([width / 2 + focal * camera[:, 0] / depth, height / 2 - focal * camera[:, 1] / depth], -1)
    return pixels, depth
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("project_points", project_points)

# %% [markdown]
# ## 5. Put them together
#
# Once all four pass: a look-at camera placed where an orbit camera is, looking at the origin with $z$ up, is
# the orbit camera itself; and a ray through a pixel, followed to any depth and projected back, lands in the
# centre of that pixel. This round trip is a good test of any camera code you write later.

# %%
# NBVAL_CHECK_OUTPUT
try:
    c2w = orbit_camera(25.0, 40.0, 3.0)
    same = torch.allclose(look_at(c2w[:3, 3], torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])), c2w, atol=1e-5)
    print("look_at from the orbit camera's centre gives the orbit camera:", same)
    origins, directions = get_rays(c2w, 6, 8, focal=7.0)
    pixels, depth = project_points(origins[2, 5] + 2.0 * directions[2, 5][None], c2w, 6, 8, focal=7.0)
    print("pixel (row 2, column 5) comes back at (x, y) =", [round(v, 3) for v in pixels[0].tolist()])
except NotImplementedError:
    print("finish the four functions first")
