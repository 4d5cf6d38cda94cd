# %% [markdown]
# # Exercises 11 · DreamGaussian
#
# Replace each `raise NotImplementedError` with your code and run the check cell below it: the
# checker compares your function with `minidiff3d`'s on random and edge cases and says what differs.
# DreamGaussian replaces the NeRF of DreamFusion with a few thousand 3-D Gaussians, splatted to the
# image instead of ray-marched, and grows or thins them while SDS shapes them. The four exercises are
# the pieces of that: a Gaussian's orientation, its footprint in the image, how the splats covering a
# pixel share it, and when 3DGS clones or splits a Gaussian.

# %%
import torch

from minidiff3d.exercises import check

# %% [markdown]
# ## 1. A unit quaternion as a rotation matrix
#
# A Gaussian's orientation is a unit quaternion $q = (w, x, y, z)$, the real part first, as 3DGS stores it:
# four numbers that Adam can move freely and that are normalised before use, with no gimbal lock. The
# rotation it stands for is
#
# $$R(q) = \begin{pmatrix} 1 - 2(y^2 + z^2) & 2(xy - wz) & 2(xz + wy) \\ 2(xy + wz) & 1 - 2(x^2 + z^2) & 2(yz - wx) \\
# 2(xz - wy) & 2(yz + wx) & 1 - 2(x^2 + y^2) \end{pmatrix},$$
#
# and $q$ and $-q$ give the same $R$. The inputs here are already unit length. The pitfall: reading the
# quaternion as $(x, y, z, w)$, the order of scipy and of many game engines; then $(1, 0, 0, 0)$, no
# rotation, becomes half a turn about $x$.
# Write `quaternion_to_rotation(quaternions [N,4]) -> [N,3,3]`.

# %%
def quaternion_to_rotation(quaternions):
    # BEGIN SOLUTION
    w, x, y, z = quaternions.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(-1, 3, 3)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("quaternion_to_rotation", quaternion_to_rotation)

# %% [markdown]
# ## 2. A 3-D Gaussian seen by a camera (EWA splatting)
#
# A Gaussian of mean $\mu$ and covariance $\Sigma = R S S^\top R^\top$ projects to (nearly) a 2-D Gaussian in the
# image. Its mean is the projection of $\mu$. In the camera's frame, $t = W(\mu - c)$ with $W$ the
# world-to-camera rotation (the inverse of `c2w`'s rotation, its transpose) and $c$ the camera's position;
# the course's cameras look down $-z$, so the depth is $d = -t_z$, and the image's $v$ axis points down
# while the camera's $y$ points up:
#
# $$u = \tfrac{W_{\text{img}}}{2} + f\,\frac{t_x}{d}, \qquad v = \tfrac{H}{2} - f\,\frac{t_y}{d}.$$
#
# The perspective map is not linear, so EWA splatting linearises it at $t$: with its Jacobian
#
# $$J = \begin{pmatrix} f/d & 0 & f t_x / d^2 \\ 0 & -f/d & -f t_y / d^2 \end{pmatrix},
# \qquad \Sigma' = J W \Sigma W^\top J^\top + 0.3\, I \quad (\text{px}^2).$$
#
# The $0.3\,\text{px}^2$ is 3DGS's dilation, a low-pass filter: without it a tiny or edge-on Gaussian can fall
# between pixel centres and vanish, and its $\Sigma'$ can be singular. Pitfalls: forgetting the dilation, using
# `c2w`'s rotation itself instead of its inverse, and the sign of the $v$ row.
# Write `project_gaussians(means [N,3], covariances [N,3,3], c2w [4,4], height, width, focal)
# -> (mean2d [N,2], cov2d [N,2,2])`, in pixels.

# %%
def project_gaussians(means, covariances, c2w, height, width, focal):
    # BEGIN SOLUTION
    rotation = c2w[:3, :3].T  # world -> camera: the inverse of a rotation is its transpose
    t = (means - c2w[:3, 3]) @ rotation.T
    x, y, depth = t[:, 0], t[:, 1], -t[:, 2]
    mean2d = torch.stack([width / 2 + focal * x / depth, height / 2 - focal * y / depth], -1)
    zero = torch.zeros_like(depth)
    jacobian = torch.stack([focal / depth, zero, focal * x / depth**2,
                            zero, -focal / depth, -focal * y / depth**2], -1).reshape(-1, 2, 3)
    m = jacobian @ rotation
    return mean2d, m @ covariances @ m.mT + 0.3 * torch.eye(2)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("project_gaussians", project_gaussians)

# %% [markdown]
# ## 3. The compositing weights of one pixel
#
# The splats covering a pixel are sorted by depth and composited front to back, as a NeRF's samples along a
# ray. Splat $i$ has $\alpha_i = o_i \exp(-\tfrac12 \delta^\top \Sigma'^{-1} \delta)$ at the pixel (its opacity times
# its falloff, $\delta$ the pixel's offset from its mean), and its colour gets the weight
#
# $$w_i = \alpha_i\, T_i, \qquad T_i = \prod_{j<i} (1 - \alpha_j),$$
#
# $T_i$ the light that reaches it, $T_0 = 1$. 3DGS adds three rules: $\alpha$ is capped at 0.99 (no splat is
# quite opaque, so the ones behind still get a gradient); a splat with $\alpha < 1/255$ contributes nothing,
# neither weight nor shadow; and once $T_i \le 10^{-4}$ the rest are skipped. The last one changes the image by
# less than $10^{-4}$: it is what lets the rasterizer stop a pixel early (the checker looks that closely).
# Pitfalls: an inclusive product ($T_i$ with the splat's own $1 - \alpha_i$), and compositing back to front.
# Write `splat_weights(alphas [K]) -> weights [K]`, the alphas nearest first.

# %%
def splat_weights(alphas):
    # BEGIN SOLUTION
    alphas = alphas.clamp(max=0.99)
    alphas = torch.where(alphas >= 1 / 255, alphas, torch.zeros_like(alphas))
    through = torch.cumprod(1 - alphas, 0)
    transmittance = torch.cat([torch.ones(1), through[:-1]])  # what the splats before each one let through
    return alphas * transmittance * (transmittance > 1e-4)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("splat_weights", splat_weights)

# %% [markdown]
# ## 4. Clone or split
#
# 3DGS's adaptive density control reads, for each Gaussian, the average norm $\bar g$ of the loss's gradient
# with respect to its *image-space* mean: a large one means the Gaussian is pulled two ways, the region is
# under-reconstructed. Every few hundred steps the hot ones, $\bar g \ge \tau$, are densified according to their
# size, the largest of their three scales against a fraction $p$ (`percent_dense`) of the scene's extent $E$:
#
# $$\text{clone} = \text{hot} \wedge \max_k s_k \le p E, \qquad \text{split} = \text{hot} \wedge \max_k s_k > p E.$$
#
# A small one is cloned (a copy in place, which the next steps pull apart: it covers more); a large one is
# split into two drawn from it with scales divided by 1.6 (it covers the same, in finer pieces). Pitfalls:
# sizing a Gaussian by its mean scale, under which a long thin one passes for small, and the comparisons' ends.
# Write `densify_masks(scales [N,3], grad [N], grad_threshold, extent, percent_dense) -> (clone [N], split [N])`,
# two boolean masks.

# %%
def densify_masks(scales, grad, grad_threshold, extent, percent_dense):
    # BEGIN SOLUTION
    hot = grad >= grad_threshold
    small = scales.max(-1).values <= percent_dense * extent
    return hot & small, hot & ~small
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("densify_masks", densify_masks)
