# %% [markdown]
# # Exercises 01 · Volume rendering, encodings and marching cubes
#
# Five pieces of a NeRF, each small enough to write in a few lines. Replace each
# `raise NotImplementedError` with your code and run the check cell below it: the checker compares
# your function with `minidiff3d`'s on random and edge cases and says what differs.

# %%
import math

import torch

from minidiff3d.exercises import check

# %% [markdown]
# ## 1. Compositing weights
#
# Along a ray with samples at $z_1 < \dots < z_S$ and densities $\sigma_i$, the spacings are
# $\delta_i = z_{i+1} - z_i$ with the last one open ($\delta_S = 10^{10}$). Each sample's opacity is
# $\alpha_i = 1 - e^{-\sigma_i \delta_i}$, the light that reaches it is $T_i = \prod_{j<i}(1 - \alpha_j)$
# (so $T_1 = 1$), and its weight is $w_i = \alpha_i T_i$.
#
# Write `compositing_weights(sigmas [R,S], z_vals [R,S]) -> weights [R,S]`.

# %%
def compositing_weights(sigmas, z_vals):
    # BEGIN SOLUTION
    deltas = torch.cat([z_vals[..., 1:] - z_vals[..., :-1], torch.full_like(z_vals[..., :1], 1e10)], -1)
    alpha = 1 - torch.exp(-sigmas * deltas)
    # exp of minus the exclusive running sum of σδ equals the product of (1 - α) before each sample
    optical = sigmas * deltas
    before = torch.cat([torch.zeros_like(optical[..., :1]), optical[..., :-1].cumsum(-1)], -1)
    return alpha * torch.exp(-before)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("compositing_weights", compositing_weights)

# %% [markdown]
# ## 2. Positional encoding
#
# $\gamma(\mathbf{x}) = \big(\mathbf{x}, \sin(2^0\pi\mathbf{x}), \cos(2^0\pi\mathbf{x}), \dots,
# \sin(2^{L-1}\pi\mathbf{x}), \cos(2^{L-1}\pi\mathbf{x})\big)$, where each sine and cosine applies to all
# $D$ coordinates at once. Write `positional_encoding(x [N,D], num_freqs) -> [N, D(1 + 2L)]`.

# %%
def positional_encoding(x, num_freqs):
    # BEGIN SOLUTION
    parts = [x]
    for k in range(num_freqs):
        parts += [torch.sin(2**k * math.pi * x), torch.cos(2**k * math.pi * x)]
    return torch.cat(parts, -1)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("positional_encoding", positional_encoding)

# %% [markdown]
# ## 3. Inverse-CDF sampling
#
# Hierarchical sampling puts more samples where the coarse pass found weight. Given bin edges
# `bins [R,S+1]` and `weights [R,S]`: add $10^{-5}$ to the weights, normalise them into a pdf, build the
# cdf with a leading 0, and map the quantiles $u = \text{linspace}(0, 1, n)$ through the inverse cdf,
# linearly inside each bin. Write `sample_pdf(bins, weights, n_samples) -> [R, n_samples]`.

# %%
def sample_pdf(bins, weights, n_samples):
    # BEGIN SOLUTION
    pdf = (weights + 1e-5) / (weights + 1e-5).sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), pdf.cumsum(-1).clamp(max=1)], -1)
    u = torch.linspace(0, 1, n_samples).expand(*cdf.shape[:-1], n_samples).contiguous()
    hi = torch.searchsorted(cdf, u, right=True).clamp(max=cdf.shape[-1] - 1)
    lo = (hi - 1).clamp(min=0)
    c_lo, c_hi, b_lo, b_hi = cdf.gather(-1, lo), cdf.gather(-1, hi), bins.gather(-1, lo), bins.gather(-1, hi)
    t = torch.where(c_hi > c_lo, (u - c_lo) / (c_hi - c_lo).clamp(min=1e-12), torch.zeros_like(u))
    return b_lo + t * (b_hi - b_lo)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("sample_pdf", sample_pdf)

# %% [markdown]
# ## 4. One level of a hash grid
#
# A level of resolution $N$ has $N + 1$ corners per axis. For a point $\mathbf{p} \in [0,1]^3$: its cell is
# $\lfloor N\mathbf{p} \rfloor$ (clamped to $N - 1$, so that the far face has a cell), its position in the
# cell is the fraction $\mathbf{f} = N\mathbf{p} - \text{cell}$, and its feature interpolates the 8 corners'
# features trilinearly, with weight $\prod_{\text{axes}} (f \text{ or } 1 - f)$.
#
# A corner $(i, j, k)$ is stored in `table [T,F]` at slot $i + s j + s^2 k$, with $s = N + 1$, when the
# level is `dense`; otherwise at Instant-NGP's hash
# $\big(i \cdot 1 \oplus j \cdot 2654435761 \oplus k \cdot 805459861\big) \bmod 2^{32} \bmod T$, where each
# product is also taken mod $2^{32}$ (it is uint32 arithmetic) and $\oplus$ is XOR.
#
# Write `hash_grid_level(unit_points [N,3], table [T,F], resolution, dense) -> [N,F]`.

# %%
def hash_grid_level(unit_points, table, resolution, dense):
    # BEGIN SOLUTION
    scaled = unit_points * resolution
    cell = scaled.floor().long().clamp(max=resolution - 1)
    frac = scaled - cell
    out = torch.zeros(len(unit_points), table.shape[1])
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                i, j, k = cell[:, 0] + dx, cell[:, 1] + dy, cell[:, 2] + dz
                if dense:
                    slot = i + (resolution + 1) * j + (resolution + 1) ** 2 * k
                else:
                    m = 2**32 - 1
                    slot = ((i * 1) & m ^ (j * 2654435761) & m ^ (k * 805459861) & m) % table.shape[0]
                w = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1]) * (frac[:, 2] if dz else 1 - frac[:, 2])
                out = out + w[:, None] * table[slot]
    return out
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("hash_grid_level", hash_grid_level)

# %% [markdown]
# ## 5. From grid indices to the world
#
# Marching cubes returns vertices in (fractional) grid indices. A grid of $R$ samples per axis over
# $[\text{lo}, \text{hi}]$, made with `linspace(lo, hi, R)`, has $R - 1$ intervals. Write
# `index_to_world(indices [...,3], resolution, bounds) -> [...,3]`.

# %%
def index_to_world(indices, resolution, bounds):
    # BEGIN SOLUTION
    lo, hi = bounds
    return lo + indices * (hi - lo) / (resolution - 1)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("index_to_world", index_to_world)
