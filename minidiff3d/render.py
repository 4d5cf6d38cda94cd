"""Volume rendering: from densities and colours along rays to pixels, and where to sample.

A ray's colour is the integral of emitted colour weighted by transmittance,
``C = ∫ T(t) σ(t) c(t) dt`` with ``T(t) = exp(-∫_0^t σ)``. With samples ``t_1 < ... < t_S`` and
spacings ``δ_i = t_{i+1} - t_i`` it becomes ``C ≈ Σ w_i c_i`` with ``α_i = 1 - exp(-σ_i δ_i)``
and ``w_i = α_i Π_{j<i}(1 - α_j)``.
"""

from __future__ import annotations

import torch

from .validation import check_positive_int, check_tensor

OPEN_INTERVAL = 1e10  # the last sample's spacing: the ray goes on to infinity


def volume_render(sigmas: torch.Tensor, colors: torch.Tensor, z_vals: torch.Tensor, background=None,
                  ray_norms: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Composite samples along rays, NeRF's quadrature.

    Args:
        sigmas: densities ``[...,S]``, non-negative and finite (an activation such as ReLU or
            softplus goes before this call; a NaN raises rather than spreading into the image).
        colors: ``[...,S,3]``.
        z_vals: sample positions ``[...,S]`` along each ray, non-decreasing.
        background: ``[3]`` or ``[...,3]`` colour behind the volume; it shows through ``1 - opacity``.
        ray_norms: ``[...]`` lengths of the ray directions. Spacings in ``z_vals`` are in units of
            the direction's length, so with unnormalised directions (NeRF's z = -1 rays) a spacing
            in world units is ``δ * |d|``. Omit it for unit directions.

    Returns:
        ``rgb [...,3]``, ``depth [...]`` (expected ``z``), ``opacity [...]`` (sum of weights, ≤ 1)
        and ``weights [...,S]``.
    """
    sizes: dict[str, int] = {}
    z_vals = check_tensor("z_vals", z_vals, shape=["...", "S"], sizes=sizes, floating=True)
    batch = list(z_vals.shape[:-1])
    sigmas = check_tensor("sigmas", sigmas, shape=[*batch, "S"], sizes=sizes, floating=True)
    colors = check_tensor("colors", colors, shape=[*batch, "S", 3], sizes=sizes, floating=True)
    if (sigmas < 0).any():
        raise ValueError(f"sigmas: expected non-negative densities, got a minimum of {sigmas.min().item():.4g}")
    deltas = z_vals.diff(dim=-1)
    if (deltas < 0).any():
        raise ValueError("z_vals: expected non-decreasing sample positions along each ray")
    deltas = torch.cat([deltas, torch.full_like(z_vals[..., :1], OPEN_INTERVAL)], -1)
    if ray_norms is not None:
        deltas = deltas * check_tensor("ray_norms", ray_norms, shape=batch)[..., None]

    optical_depth = sigmas * deltas
    alpha = 1 - torch.exp(-optical_depth)
    # Exclusive cumulative sum: T_i = exp(-Σ_{j<i} σ_j δ_j). Summing exponents is exact and
    # never multiplies by the 1e10 interval, which the product form would meet as inf * 0.
    transmittance = torch.exp(-torch.cat([torch.zeros_like(optical_depth[..., :1]), optical_depth[..., :-1].cumsum(-1)], -1))
    weights = alpha * transmittance
    opacity = weights.sum(-1)
    rgb = (weights[..., None] * colors).sum(-2)
    if background is not None:
        bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
        check_tensor("background", bg, shape=[3] if bg.ndim == 1 else [*batch, 3])
        rgb = rgb + (1 - opacity[..., None]) * bg
    return {"rgb": rgb, "depth": (weights * z_vals).sum(-1), "opacity": opacity, "weights": weights}


def stratified_samples(near: float, far: float, n_samples: int, shape=(), perturb: bool = True,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``[*shape, S]`` positions: ``[near, far]`` cut into S equal bins, one sample per bin.

    With ``perturb`` each sample is uniform in its bin, so over training every depth is seen and
    the integral is estimated without bias; without it, samples sit at the bin centres, which
    is what evaluation uses (and what makes plain uniform sampling alias).
    """
    n_samples = check_positive_int("n_samples", n_samples)
    if not far > near:
        raise ValueError(f"near, far: expected near < far, got near={near}, far={far}")
    edges = torch.linspace(near, far, n_samples + 1)
    offsets = torch.rand(*shape, n_samples, generator=generator) if perturb else torch.full((*shape, n_samples), 0.5)
    return edges[:-1] + (edges[1:] - edges[:-1]) * offsets


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n_samples: int, deterministic: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverse-CDF sampling: ``[...,n_samples]`` positions distributed like ``weights`` over ``bins``.

    Args:
        bins: bin edges ``[...,S+1]``, non-decreasing.
        weights: ``[...,S]`` non-negative; a small constant is added so empty rays still sample.
        deterministic: quantiles at ``linspace(0, 1, n)`` instead of uniform random numbers.
    """
    sizes: dict[str, int] = {}
    bins = check_tensor("bins", bins, shape=["...", "E"], sizes=sizes, floating=True)
    weights = check_tensor("weights", weights, shape=[*bins.shape[:-1], sizes["E"] - 1], floating=True)
    n_samples = check_positive_int("n_samples", n_samples)
    if (weights < 0).any():
        raise ValueError("weights: expected non-negative values")
    pdf = weights + 1e-5
    pdf = pdf / pdf.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), pdf.cumsum(-1).clamp(max=1.0)], -1)  # [...,S+1]
    shape = (*cdf.shape[:-1], n_samples)
    u = torch.linspace(0, 1, n_samples).expand(shape) if deterministic else torch.rand(shape, generator=generator)
    u = u.to(cdf).contiguous()
    above = torch.searchsorted(cdf, u, right=True).clamp(max=cdf.shape[-1] - 1)
    below = (above - 1).clamp(min=0)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    span = cdf_hi - cdf_lo
    fraction = torch.where(span > 0, (u - cdf_lo) / span.clamp(min=1e-12), torch.zeros_like(u))
    return bin_lo + fraction * (bin_hi - bin_lo)
