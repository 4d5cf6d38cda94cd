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
