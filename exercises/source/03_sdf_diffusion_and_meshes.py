# %% [markdown]
# # Exercises 03 · Signed distances, grids and a template that deforms
#
# Replace each `raise NotImplementedError` with your code and run the check cell below it: the
# checker compares your function with `minidiff3d`'s on random and edge cases and says what differs.

# %%
import torch

from minidiff3d.exercises import check

# %% [markdown]
# ## 1. The SDF of a box
#
# For a box centred at the origin with half-extents $\mathbf{h}$, let $\mathbf{q} = |\mathbf{p}| - \mathbf{h}$
# (per coordinate). Outside, the distance is $\lVert\max(\mathbf{q}, 0)\rVert$; inside it is
# $\max(q_x, q_y, q_z)$, which is negative. Together:
# $d(\mathbf{p}) = \lVert\max(\mathbf{q}, 0)\rVert + \min(\max(q_x, q_y, q_z), 0)$.
# Write `box_sdf(points [N,3], half_size) -> [N]`.

# %%
def box_sdf(points, half_size):
    # BEGIN SOLUTION
    q = points.abs() - torch.as_tensor(half_size, dtype=points.dtype)
    return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("box_sdf", box_sdf)

# %% [markdown]
# ## 2. The SDF of a torus
#
# A torus around the $z$ axis is a circle of radius `minor` swept around a circle of radius `major`.
# In the half-plane through the $z$ axis and the point, the point sits at
# $(\sqrt{x^2 + y^2} - R,\ z)$ from the tube's centre. Write `torus_sdf(points [N,3], major, minor) -> [N]`.

# %%
def torus_sdf(points, major, minor):
    # BEGIN SOLUTION
    ring = torch.stack([points[:, :2].norm(dim=-1) - major, points[:, 2]], -1)
    return ring.norm(dim=-1) - minor
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("torus_sdf", torus_sdf)

# %% [markdown]
# ## 3. From grid indices to the world
#
# Marching cubes returns vertices in grid-index units. On the course's grid, index $i$ of $R$
# samples over $[\text{lo}, \text{hi}]$ sits at $\text{lo} + i\,(\text{hi} - \text{lo})/(R - 1)$.
# Write `index_to_world(indices [...,3], resolution, bounds) -> [...,3]` (chapter 01's checker).

# %%
def index_to_world(indices, resolution, bounds=(-1.0, 1.0)):
    # BEGIN SOLUTION
    lo, hi = bounds
    return lo + indices * (hi - lo) / (resolution - 1)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("index_to_world", index_to_world)

# %% [markdown]
# ## 4. One step of template deformation
#
# The template's vertices $\mathbf{x}$ descend the loss
# $\mathcal L = \text{CD}(\mathbf{x}, \text{target}) + w \cdot \frac{1}{V}\sum_i \lVert L\mathbf{x}_i\rVert^2$, where
# $L\mathbf{x}_i = \mathbf{x}_i - \frac{1}{|N(i)|}\sum_{j \in N(i)} \mathbf{x}_j$ over the mesh's `edges [E,2]`.
# Write `deformation_step(vertices [V,3], edges, target [N,3], lr, w_laplacian) -> [V,3]`: one plain
# gradient step, $\mathbf{x} - \text{lr}\,\nabla_{\mathbf{x}}\mathcal L$. Use autograd; the vertices themselves
# stand in for samples of the surface here. `minidiff3d.metrics.chamfer_distance` is yours to use.

# %%
from minidiff3d.metrics import chamfer_distance


def deformation_step(vertices, edges, target, lr, w_laplacian):
    # BEGIN SOLUTION
    x = vertices.detach().clone().requires_grad_(True)
    i, j = torch.cat([edges[:, 0], edges[:, 1]]), torch.cat([edges[:, 1], edges[:, 0]])
    neighbour_mean = torch.zeros_like(x).index_add(0, i, x[j]) / torch.bincount(i, minlength=len(x)).clamp(min=1)[:, None]
    laplacian = (x - neighbour_mean).square().sum(-1).mean()
    loss = chamfer_distance(x[None], target[None])[0] + w_laplacian * laplacian
    loss.backward()
    return (x - lr * x.grad).detach()
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("deformation_step", deformation_step)
