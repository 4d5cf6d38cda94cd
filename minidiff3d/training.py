"""One training loop for every model the course trains: accelerate, AdamW, EMA and resumable checkpoints.

A model's objective is a function ``loss_fn(model, batch) -> scalar``; ``fit`` owns everything
else: batching, the learning-rate schedule, the EMA weights, logging, and checkpoints that a
stopped run resumes from (so a long CPU run can be split over sessions). The denoisers of
chapters 02-03, the toy VAE, toy CLIP and toy SD's U-Net all train through it.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, TensorDataset

from .runtime import progress, seeded
from .validation import check_choice, check_positive, check_positive_int


def cosine_decay(start: float, end: float, progress: float) -> float:
    """A learning rate from ``start`` at ``progress`` 0 to ``end`` at 1, along half a cosine (slow at both ends)."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class TrainingResult:
    """The trained model (with EMA weights when EMA was used) and ``history`` of ``step``, ``loss``, ``seconds``, ``lr``."""

    model: torch.nn.Module
    history: dict[str, list] = field(default_factory=lambda: {"step": [], "loss": [], "seconds": [], "lr": []})


def _batches(loader: DataLoader, generator: torch.Generator, seed: int, done: int):
    """The loader's batches forever, from step ``done + 1`` on. Each epoch's order is a function of
    ``(seed, epoch)`` alone, so a run resumed mid-epoch sees the batches an uninterrupted one would."""
    epoch, skip = divmod(done, len(loader))
    while True:
        generator.manual_seed(hash((seed, epoch)))  # ints hash the same in every process and run
        yield from itertools.islice(loader, skip, None)
        epoch, skip = epoch + 1, 0


def _seeded_by_its_seed(fn):
    """``fn`` run with torch's global RNG seeded from its ``seed`` argument, and the caller's state given back after.

    ``loss_fn`` and dropout draw from the global RNG, and a run must be a function of its seed
    without reseeding the caller's RNG.
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        with seeded(arguments.arguments["seed"]):
            return fn(*args, **kwargs)
    return run


def parameter_groups(model: torch.nn.Module, lr: float, lr_multipliers: dict[str, float]) -> list[dict]:
    """AdamW's parameter groups: every parameter at ``lr``, except those whose name starts with a prefix of
    ``lr_multipliers``, at ``lr`` times its factor. Adam moves each weight by at most about its learning rate a
    step, whatever its gradient, so a layer a fine-tune adds zero-initialised can grow no faster than that; a
    larger rate lifts the cap (it does not strengthen a weak or noisy gradient: chapter 07)."""
    named = list(model.named_parameters())
    groups = {}
    for prefix, factor in lr_multipliers.items():
        check_positive(f"lr_multipliers[{prefix!r}]", factor)
        chosen = [p for name, p in named if name.startswith(prefix)]
        if not chosen:
            raise ValueError(f"lr_multipliers: expected each prefix to name a parameter of the model, got {prefix!r} "
                             f"(names look like {named[0][0]!r})")
        groups[prefix] = {"params": chosen, "lr": lr * factor}
    taken = {id(p) for group in groups.values() for p in group["params"]}
    if len(taken) != sum(len(group["params"]) for group in groups.values()):
        raise ValueError(f"lr_multipliers: expected prefixes that name disjoint parameters, got {list(lr_multipliers)}")
    return [{"params": [p for _, p in named if id(p) not in taken]}, *groups.values()]


@_seeded_by_its_seed
def fit(model: torch.nn.Module, tensors: tuple[torch.Tensor, ...], loss_fn: Callable, steps: int = 1000,
        batch_size: int = 32, lr: float = 1e-3, lr_schedule: str = "constant", weight_decay: float = 0.0,
        ema_decay: float | None = 0.999, max_seconds: float | None = None, log_every: int = 50, checkpoint_dir=None,
        checkpoint_every: int = 500, keep_checkpoints: int = 2, seed: int = 0, show_progress: bool = True,
        desc: str = "fit", lr_multipliers: dict[str, float] | None = None) -> TrainingResult:
    """Minimise ``loss_fn(model, batch)`` over minibatches of ``tensors`` (each ``[M,...]``, shuffled together).

    Args:
        steps, max_seconds: stop at this step, or after this much training time (counting the
            time of the runs a checkpoint resumes).
        lr_schedule: ``"constant"``, or ``"cosine"`` decay from ``lr`` to 0 at ``steps``. It is a
            function of the step alone, so a resumed run continues the same curve.
        lr_multipliers: {parameter-name prefix: factor}; those parameters train at ``factor`` times
            ``lr`` (on the same schedule), as fine-tuning gives the layers it adds. Each prefix must
            name at least one parameter.
        ema_decay: keep an exponential moving average of the weights (diffusers' ``EMAModel``) and
            return the model with those weights; ``None`` returns the raw weights.
        checkpoint_dir: every ``checkpoint_every`` steps and at the end, save the accelerate state
            (model, optimiser, EMA, schedule, RNG states) and the history into ``step-NNNNNN/``
            here, written as ``step-NNNNNN.tmp/`` and renamed when complete; then the file
            ``latest`` names it (replaced atomically) and all but the last ``keep_checkpoints``
            step folders go. A kill at any moment leaves ``latest`` naming a whole checkpoint,
            and a run given a folder with one resumes from it to the weights an uninterrupted
            run reaches.

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
    keep_checkpoints = check_positive_int("keep_checkpoints", keep_checkpoints)
    log_every, checkpoint_every = check_positive_int("log_every", log_every), check_positive_int("checkpoint_every", checkpoint_every)
    if max_seconds is not None:
        check_positive("max_seconds", max_seconds)
    if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay: expected a decay in [0, 1) or None, got {ema_decay!r}")

    accelerator = Accelerator()
    n_items = sizes.pop()
    order = torch.Generator()
    loader = DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True, drop_last=n_items > batch_size,
                        generator=order)
    optimiser = torch.optim.AdamW(parameter_groups(model, lr, lr_multipliers or {}), lr=lr, weight_decay=weight_decay)
    # Registered, not prepared: a prepared schedule steps once per process, so its curve would shrink with their number.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda taken: cosine_decay(1.0, 0.0, taken / steps) if lr_schedule == "cosine" else 1.0)
    model, optimiser, loader = accelerator.prepare(model, optimiser, loader)
    accelerator.register_for_checkpointing(schedule)
    ema = EMAModel(accelerator.unwrap_model(model).parameters(), decay=ema_decay) if ema_decay else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
        ema.to(accelerator.device)

    # Where a run stands; a checkpoint keeps all of it, so a resumed run logs what an uninterrupted one would.
    start_step, offset, running, count, result = 0, 0.0, 0.0, 0, TrainingResult(model)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if checkpoint_dir and (checkpoint_dir / "latest").exists():
        folder = checkpoint_dir / (checkpoint_dir / "latest").read_text()
        accelerator.load_state(str(folder))
        saved = torch.load(folder / "trainer.pt", weights_only=True)
        start_step, offset, (running, count), result.history = (saved["step"], saved["seconds"], saved["running"],
                                                                 saved["history"])
        if ema is not None:
            ema.to(accelerator.device)  # accelerate loads registered objects onto the CPU

    def save(step: int, seconds: float) -> None:
        folder = checkpoint_dir / f"step-{step:06d}"
        partial = folder.with_name(folder.name + ".tmp")
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)  # left by a run killed while saving
        accelerator.wait_for_everyone()
        accelerator.save_state(str(partial))  # on every process: each writes its own RNG state
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            torch.save({"step": step, "seconds": seconds, "running": [running, count], "history": result.history},
                       partial / "trainer.pt")
            shutil.rmtree(folder, ignore_errors=True)  # a run killed before ``latest`` named it got this far
            partial.rename(folder)
            pointer = checkpoint_dir / "latest.tmp"
            pointer.write_text(folder.name)
            os.replace(pointer, checkpoint_dir / "latest")
            older = sorted((p for p in checkpoint_dir.glob("step-*[0-9]") if p != folder),
                           key=lambda p: int(p.name.removeprefix("step-")), reverse=True)
            for old in older[keep_checkpoints - 1:]:
                shutil.rmtree(old)

    model.train()
    batches, tic = _batches(loader, order, seed, start_step), time.perf_counter()
    bar = progress(total=steps, initial=start_step, desc=desc, disable=not show_progress)
    out_of_time = max_seconds is not None and start_step > 0 and offset >= max_seconds  # the run it resumes ended so
    for step in range(start_step + 1, start_step if out_of_time else steps + 1):
        loss = loss_fn(model, next(batches))
        step_lr = schedule.get_last_lr()[0]
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimiser.step()
        schedule.step()
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
            save(step, seconds)
        if done:
            break
    bar.close()
    model = accelerator.unwrap_model(model)
    if ema is not None:
        ema.copy_to(model.parameters())
    model.eval()
    result.model = model
    return result
