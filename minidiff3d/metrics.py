"""Image quality metrics."""

from __future__ import annotations

import torch

from .validation import check_positive, check_tensor


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB over all entries: ``10 log10(range^2 / MSE)``.

    ``pred`` and ``target`` must have the same shape (no broadcasting); identical inputs give inf.
    """
    target = check_tensor("target", target, floating=True)
    pred = check_tensor("pred", pred, shape=list(target.shape), floating=True)
    mse = (pred - target).double().square().mean()
    return (10 * torch.log10(check_positive("data_range", data_range) ** 2 / mse)).float()


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity of images ``[H,W,3]`` (or ``[H,W]``), Wang et al. 2004.

    Local means, variances and covariance under an 11x11 Gaussian window (σ = 1.5), with
    ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2``; the mean over valid windows and channels.
    """
    target = check_tensor("target", target, floating=True)
    pred = check_tensor("pred", pred, shape=list(target.shape), floating=True)
    if target.ndim not in (2, 3) or min(target.shape[:2]) < window:
        raise ValueError(f"target: expected an image [H,W] or [H,W,C] with H, W ≥ {window}, got {list(target.shape)}")
    to_bchw = lambda x: (x[..., None] if x.ndim == 2 else x).permute(2, 0, 1)[:, None].double()  # [C,1,H,W]
    x, y = to_bchw(pred), to_bchw(target)
    g = _gaussian_window(window, sigma)
    blur = lambda z: torch.nn.functional.conv2d(torch.nn.functional.conv2d(z, g[None, None, :, None]), g[None, None, None, :])
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.mean().float()
