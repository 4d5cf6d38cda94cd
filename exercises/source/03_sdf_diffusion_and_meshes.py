# %% [markdown]
# # Exercises 03 · Signed distances, grids, mesh topology and a template that deforms
#
# Replace each `raise NotImplementedError` with your code and run the check cell below it: the
# checker compares your function with a reference (`minidiff3d`'s, torch's or trimesh's) on random and edge
# cases and says what differs.

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
# ## 3. The gradient of an SDF grid
#
# An exact SDF has a gradient of unit length wherever it is smooth, $\lVert\nabla f\rVert = 1$ (the eikonal
# equation), and the gradient is the outward normal on the surface. On a grid, central differences estimate it:
#
# $$\frac{\partial f}{\partial x}\Big|_{i,j,k} \approx \frac{f_{i+1,j,k} - f_{i-1,j,k}}{2h}, \qquad
#   h = \frac{\text{hi} - \text{lo}}{R - 1},$$
#
# and likewise along $y$ (index $j$) and $z$ (index $k$), on the course's grid: `grid[i, j, k]` is
# $f(x_i, y_j, z_k)$ with every axis `linspace(lo, hi, R)`. Write
# `sdf_gradient(grid [R,R,R], bounds) -> [R-2,R-2,R-2,3]`, the gradient at every interior voxel.
# (Where a TSDF is clamped, the gradient is 0: truncation keeps the distances only near the surface.)

# %%
def sdf_gradient(grid, bounds):
    # BEGIN SOLUTION
    h = (bounds[1] - bounds[0]) / (grid.shape[0] - 1)
    inner = slice(1, -1)
    dx = (grid[2:, inner, inner] - grid[:-2, inner, inner]) / (2 * h)
    dy = (grid[inner, 2:, inner] - grid[inner, :-2, inner]) / (2 * h)
    dz = (grid[inner, inner, 2:] - grid[inner, inner, :-2]) / (2 * h)
    return torch.stack([dx, dy, dz], -1)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("sdf_gradient", sdf_gradient)

# %% [markdown]
# ## 4. Counting a mesh's topology
#
# Marching cubes gives triangles that share vertices. Two numbers say what kind of surface they make.
# The **Euler characteristic** $\chi = V - E + F$ counts the vertices that the faces use, the distinct
# edges (an edge shared by two triangles counts once, whichever way each triangle runs along it) and the
# faces. A **boundary edge** belongs to one face only; a watertight mesh has none. For a closed surface in
# one piece, the genus (the number of handles) is $g = (2 - \chi)/2$: 0 for a sphere, 1 for a torus or a mug.
# Write `mesh_topology(vertices [V,3], faces [F,3]) -> (euler_characteristic, boundary_edges)`, two integers.
# The check compares them with trimesh's.

# %%
def mesh_topology(vertices, faces):
    # BEGIN SOLUTION
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    unique, uses = edges.unique(dim=0, return_counts=True)
    return len(faces.unique()) - len(unique) + len(faces), int((uses == 1).sum())
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("mesh_topology", mesh_topology)

# %% [markdown]
# ## 5. One step of template deformation
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
