"""Fitting a radiance field to posed images: ``fit_nerf``.

Each step draws a batch of random pixels from all views, renders their rays with the course's
ray marcher (stratified samples between near and far, optionally followed by hierarchical
samples from the first pass's weights) and descends the photometric MSE. For the hash grid, an
occupancy grid skips empty space: only samples in cells whose density was recently above a
threshold are sent through the network.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .cameras import check_c2w, get_rays
from .fields import HashGridNeRF, NeRF
from .images import to_channels_last
from .marcher import OccupancyGrid, RayMarcher, SolidBackground
from .metrics import psnr
from .runtime import get_device, progress, seeded
from .validation import (check_choice, check_image_range, check_non_negative_int, check_positive, check_positive_int,
                         check_tensor)


@dataclass
class NeRFResult:
    """A fitted ``field`` with the ``marcher`` and ``background`` it was fitted through, and its training ``history``."""

    field: nn.Module
    marcher: RayMarcher
    background: SolidBackground
    history: dict[str, list] = field(default_factory=dict)

    @torch.no_grad()
    def render(self, c2w: torch.Tensor, height: int, width: int, focal: float, chunk: int = 8192) -> torch.Tensor:
        """``[H,W,3]`` image from ``c2w [4,4]`` (on the CPU), in the layout of the photographs it was fitted to."""
        c2w = check_tensor("c2w", check_c2w("c2w", c2w), shape=[4, 4])
        device = next(self.field.parameters()).device
        maps = self.marcher.render(self.field, c2w[None].to(device), height, width, focal, self.background, chunk=chunk)
        return to_channels_last(maps["rgb"][0]).cpu()


def fit_nerf(images: torch.Tensor, c2ws: torch.Tensor, focal: float, near: float, far: float, field: str = "hashgrid",
             steps: int | None = None, max_seconds: float | None = None, batch_size: int = 1024, n_samples: int = 64,
             n_fine: int = 0, lr: float | None = None, background=(1.0, 1.0, 1.0), occupancy: bool | None = None,
             eval_every: int = 100, holdout=None, bound: float = 1.0, seed: int = 0, device=None,
             show_progress: bool = True) -> NeRFResult:
    """Fit a NeRF to ``images [N,H,W,3]`` in [0,1] seen from ``c2ws [N,4,4]`` with ``focal`` in pixels.

    Args:
        field: ``"hashgrid"`` (Instant-NGP style, fast) or ``"mlp"`` (the original NeRF).
        steps, max_seconds: stop after this many steps or this much time, whichever comes first
            (at least one must be given).
        n_samples, n_fine: stratified samples per ray, then hierarchical samples drawn from them.
        occupancy: skip empty space with an occupancy grid (default: on for the hash grid).
        bound: the scene lies in ``[-bound, bound]^3`` (1 for the toy world, 1.5 for NeRF-synthetic).
        eval_every: every so many steps, record the batch's loss and PSNR in ``history``.
        holdout: ``(c2ws [M,4,4], images [M,H,W,3])`` of views kept out of training (same focal); their mean
            PSNR is recorded too, as ``history["test_psnr"]``. Rendering them is not timed.

    Returns a ``NeRFResult``; ``history`` has ``step``, ``loss``, ``psnr``, ``seconds`` (training
    time only) and, with ``holdout``, ``test_psnr``.
    """
    sizes: dict[str, int] = {}
    images = check_image_range("images", check_tensor("images", images, shape=["N", "H", "W", 3], sizes=sizes, floating=True))
    c2ws = check_tensor("c2ws", c2ws, shape=["N", 4, 4], sizes=sizes)
    check_choice("field", field, ("hashgrid", "mlp"))
    focal, near, far = check_positive("focal", focal), check_positive("near", near), check_positive("far", far)
    if steps is None and max_seconds is None:
        raise ValueError("steps, max_seconds: expected at least one of them, got neither")
    steps = check_positive_int("steps", steps) if steps is not None else 10**9
    batch_size = check_positive_int("batch_size", batch_size)
    if max_seconds is not None:
        check_positive("max_seconds", max_seconds)
    n_samples, n_fine = check_positive_int("n_samples", n_samples), check_non_negative_int("n_fine", n_fine)
    eval_every = check_positive_int("eval_every", eval_every)
    device = device or get_device()
    # Every random number of the fit comes from its own generator (the initial weights from its seed),
    # so the fit is a function of the seed, whatever the caller draws before, during or after it.
    generator = torch.Generator().manual_seed(seed)

    bound = check_positive("bound", bound)
    with seeded(seed):
        model = (HashGridNeRF(bound=bound) if field == "hashgrid" else NeRF()).to(device)
    use_grid = field == "hashgrid" if occupancy is None else occupancy
    grid = OccupancyGrid(bound=bound).to(device) if use_grid else None
    marcher = RayMarcher(n_samples, n_fine, near=near, far=far, occupancy=grid)
    result = NeRFResult(model, marcher, SolidBackground(background).to(device),
                        {"step": [], "loss": [], "psnr": [], "seconds": [], "test_psnr": []})
    if holdout is not None:
        holdout_c2ws = check_tensor("holdout c2ws", holdout[0], shape=["M", 4, 4])
        holdout_images = check_image_range("holdout images", check_tensor(
            "holdout images", holdout[1], shape=[len(holdout_c2ws), "h", "w", 3], floating=True))
    origins, directions = get_rays(c2ws, sizes["H"], sizes["W"], focal)
    origins, directions, colours = origins.reshape(-1, 3), directions.reshape(-1, 3), images.reshape(-1, 3)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr or (1e-2 if field == "hashgrid" else 5e-4), eps=1e-15)

    start, untimed = time.perf_counter(), 0.0
    bar = progress(total=steps if steps < 10**9 else None, desc=f"fit_nerf ({field})", disable=not show_progress)
    for step in range(1, steps + 1):
        if grid is not None and step % (4 if step <= 128 else 16) == 1:  # often while the initial fog is pruned
            grid.update(model.density, generator)
        pick = torch.randint(len(colours), (batch_size,), generator=generator)
        out = marcher(model, origins[pick].to(device), directions[pick].to(device), result.background, generator=generator)
        loss = (out["rgb"] - colours[pick].to(device)).square().mean()
        if loss.requires_grad:  # False only if every sample of the batch fell in empty cells
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        bar.update()
        elapsed = time.perf_counter() - start - untimed
        done = step == steps or (max_seconds is not None and elapsed >= max_seconds)
        if step % eval_every == 0 or done:
            result.history["step"].append(step)
            result.history["loss"].append(loss.item())
            result.history["psnr"].append(psnr(out["rgb"].detach().clamp(0, 1), colours[pick].to(device)).item())
            result.history["seconds"].append(elapsed)
            if holdout is not None:
                tic = time.perf_counter()
                h, w = holdout_images.shape[1:3]
                scores = [psnr(result.render(c, h, w, focal), image.cpu()).item() for c, image in zip(holdout_c2ws, holdout_images)]
                result.history["test_psnr"].append(sum(scores) / len(scores))
                untimed += time.perf_counter() - tic
            bar.set_postfix(psnr=f"{result.history['psnr'][-1]:.1f}")
        if done:
            break
    bar.close()
    return result
