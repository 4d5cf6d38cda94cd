"""One training loop for every model the course trains: accelerate, AdamW, EMA and resumable checkpoints.

A model's objective is a function ``loss_fn(model, batch) -> scalar``; ``fit`` owns everything
else: batching, the learning-rate schedule, the EMA weights, logging, and checkpoints that a
stopped run resumes from (so a long CPU run can be split over sessions). The denoisers of
chapters 02-03, the toy VAE, toy CLIP and toy SD's U-Net all train through it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, TensorDataset

from .runtime import progress
from .validation import check_choice, check_positive, check_positive_int


def cosine_decay(start: float, end: float, progress: float) -> float:
    """A learning rate from ``start`` at ``progress`` 0 to ``end`` at 1, along half a cosine (slow at both ends)."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class TrainingResult:
    """The trained model (with EMA weights when EMA was used) and ``history`` of ``step``, ``loss``, ``seconds``, ``lr``."""

    model: torch.nn.Module
    history: dict[str, list] = field(default_factory=lambda: {"step": [], "loss": [], "seconds": [], "lr": []})


def _forever(loader: DataLoader):
    while True:
        yield from loader


def fit(model: torch.nn.Module, tensors: tuple[torch.Tensor, ...], loss_fn: Callable, steps: int = 1000,
        batch_size: int = 32, lr: float = 1e-3, lr_schedule: str = "constant", weight_decay: float = 0.0,
        ema_decay: float | None = 0.999, max_seconds: float | None = None, log_every: int = 50, checkpoint_dir=None,
        checkpoint_every: int = 500, seed: int = 0, show_progress: bool = True, desc: str = "fit") -> TrainingResult:
    """Minimise ``loss_fn(model, batch)`` over minibatches of ``tensors`` (each ``[M,...]``, shuffled together).

    Args:
        steps, max_seconds: stop at this step, or after this much training time (counting the
            time of the runs a checkpoint resumes).
        lr_schedule: ``"constant"``, or ``"cosine"`` decay from ``lr`` to 0 at ``steps``. It is a
            function of the step alone, so a resumed run continues the same curve.
        ema_decay: keep an exponential moving average of the weights (diffusers' ``EMAModel``) and
            return the model with those weights; ``None`` returns the raw weights.
        checkpoint_dir: save the model, optimiser, EMA and step here every ``checkpoint_every``
            steps and at the end; if it already holds a checkpoint, training resumes from it.

    Runs on whatever ``accelerate`` was configured for (one CPU by default; ``accelerate launch``
    for several processes or a GPU). ``loss_fn`` gets the prepared (possibly wrapped) model and
    the batch on the right device.
    """
    sizes = {len(t) for t in tensors}
    if len(sizes) != 1:
        raise ValueError(f"tensors: expected the same first dimension in each, got {[len(t) for t in tensors]}")
    steps, batch_size = check_positive_int("steps", steps), check_positive_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    check_choice("lr_schedule", lr_schedule, ("constant", "cosine"))
    torch.manual_seed(seed)

    accelerator = Accelerator()
    n_items = sizes.pop()
    loader = DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True, drop_last=n_items > batch_size,
                        generator=torch.Generator().manual_seed(seed))
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model, optimiser, loader = accelerator.prepare(model, optimiser, loader)
    ema = EMAModel(accelerator.unwrap_model(model).parameters(), decay=ema_decay) if ema_decay else None
    if ema is not None:
        ema.to(accelerator.device)

    start_step, result = 0, TrainingResult(model)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if checkpoint_dir and (checkpoint_dir / "trainer.pt").exists():
        accelerator.load_state(str(checkpoint_dir))
        saved = torch.load(checkpoint_dir / "trainer.pt", weights_only=False)
        start_step, result.history = saved["step"], saved["history"]
        result.history.setdefault("lr", [])  # absent from checkpoints written before it was logged
        if ema is not None:
            ema.load_state_dict(saved["ema"])

    def save(step: int) -> None:
        if checkpoint_dir and accelerator.is_main_process:
            accelerator.save_state(str(checkpoint_dir))
            torch.save({"step": step, "history": result.history, "ema": ema.state_dict() if ema else None},
                       checkpoint_dir / "trainer.pt")

    model.train()
    batches, tic = _forever(loader), time.perf_counter()
    offset = result.history["seconds"][-1] if result.history["seconds"] else 0.0
    bar = progress(total=steps, initial=start_step, desc=desc, disable=not show_progress)
    running, count = 0.0, 0
    for step in range(start_step + 1, steps + 1):
        loss = loss_fn(model, next(batches))
        step_lr = cosine_decay(lr, 0.0, (step - 1) / steps) if lr_schedule == "cosine" else lr
        for group in optimiser.param_groups:
            group["lr"] = step_lr
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimiser.step()
        if ema is not None:
            ema.step(accelerator.unwrap_model(model).parameters())
        running, count = running + loss.item(), count + 1
        bar.update()
        seconds = offset + time.perf_counter() - tic
        done = step == steps or (max_seconds is not None and seconds >= max_seconds)
        if step % log_every == 0 or done:
            result.history["step"].append(step)
            result.history["loss"].append(running / count)  # mean since the last log
            result.history["seconds"].append(seconds)
            result.history["lr"].append(step_lr)
            running, count = 0.0, 0
            bar.set_postfix(loss=f"{result.history['loss'][-1]:.4f}")
        if checkpoint_dir and (step % checkpoint_every == 0 or done):
            save(step)
        if done:
            break
    bar.close()
    model = accelerator.unwrap_model(model)
    if ema is not None:
        ema.copy_to(model.parameters())
    model.eval()
    result.model = model
    return result
