# %% [markdown]
# # Exercises 06 · A rasterizer and marching tetrahedra
#
# Replace each `raise NotImplementedError` with your code and run the check cell below it: the
# checker compares your function with `minidiff3d`'s on random and edge cases and says what differs.
# Each is a piece of the two algorithms that let Magic3D's fine stage render a mesh and move it.

# %%
import torch

from minidiff3d.exercises import check

# %% [markdown]
# ## 1. The edge function
#
# A rasterizer asks, for every pixel centre $p$, which side of each edge of a screen triangle $(a, b, c)$
# it lies on. For the edge from $u$ to $v$ that is the 2-D cross product
# $E(u, v, p) = (v - u)_x (p - u)_y - (v - u)_y (p - u)_x$, twice the signed area of the triangle $(u, v, p)$.
# The three values $E(b, c, p)$, $E(c, a, p)$, $E(a, b, p)$ share one sign exactly when $p$ is inside, and
# divided by their sum they are $p$'s barycentric weights for $a$, $b$, $c$.
# Write `edge_functions(tri [...,3,2], p [...,2]) -> [...,3]`, unnormalised.

# %%
def edge_functions(tri, p):
    # BEGIN SOLUTION
    a, b, c = tri.unbind(-2)

    def cross(u, v):
        along, to_p = v - u, p - u
        return along[..., 0] * to_p[..., 1] - along[..., 1] * to_p[..., 0]

    return torch.stack([cross(b, c), cross(c, a), cross(a, b)], -1)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("edge_functions", edge_functions)

# %% [markdown]
# ## 2. Perspective-correct barycentrics
#
# Weights from the edge functions are linear *on the screen*. Projection divides by the depth $w$, so on a
# slanted triangle equal steps on the screen are unequal steps on the triangle, and an attribute
# interpolated with screen weights slides towards the far corner. The weights on the triangle itself are
# $\lambda_k = \dfrac{s_k / w_k}{\sum_j s_j / w_j}$ for screen weights $s_k$ (at any scale) and corner depths $w_k$.
# Write `perspective_correct(screen_weights [...,3], w [...,3]) -> [...,3]`.

# %%
def perspective_correct(screen_weights, w):
    # BEGIN SOLUTION
    over_w = screen_weights / w
    return over_w / over_w.sum(-1, keepdim=True)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("perspective_correct", perspective_correct)

# %% [markdown]
# ## 3. Which case a tetrahedron is
#
# Marching tetrahedra looks each tetrahedron up in a table of 16 cases, one per pattern of inside
# corners. Corner $i$ sets bit $i$ when it is inside, where the SDF is negative (a zero counts as
# outside), so case 0 and case 15 hold no surface, and case 1 has corner 0 alone inside.
# Write `case_index(corner_sdf [T,4]) -> [T]` (integers).

# %%
def case_index(corner_sdf):
    # BEGIN SOLUTION
    inside = (corner_sdf < 0).long()
    return (inside * 2 ** torch.arange(4)).sum(-1)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("case_index", case_index)

# %% [markdown]
# ## 4. Where the surface crosses an edge
#
# Each vertex of the extracted mesh lies on a grid edge whose ends have SDF values of opposite signs, at
# the zero of the SDF interpolated linearly along it. Because that point is a smooth function of both the
# SDF values and the two (deformable) corner positions, a gradient on the mesh reaches both: this is what
# makes DMTet differentiable. Write `edge_crossings(start [E,3], end [E,3], sdf_start [E], sdf_end [E]) -> [E,3]`.

# %%
def edge_crossings(start, end, sdf_start, sdf_end):
    # BEGIN SOLUTION
    fraction = sdf_start / (sdf_start - sdf_end)
    return start + fraction[:, None] * (end - start)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("edge_crossings", edge_crossings)
