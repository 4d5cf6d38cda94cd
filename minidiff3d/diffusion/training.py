"""Training an ε-prediction denoiser on a tensor dataset, with accelerate, EMA and resumable checkpoints.

The loss is DDPM's simple objective: draw ``t`` uniformly, ``x_t = sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) ε``
by the scheduler's ``add_noise``, and regress ``ε``. With class labels, a fraction
``cond_dropout`` of them is replaced by the model's null class, so one network learns both the
conditional and the unconditional prediction that classifier-free guidance combines.

The same loop trains the point-cloud transformer (chapter 02) and the 3-D U-Net (chapter 03):
any model ``model(x_t, t, class_labels).sample`` with a ``null_class`` attribute.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, TensorDataset

from ..runtime import progress
from ..validation import check_choice, check_positive, check_positive_int, check_tensor


@dataclass
class TrainingResult:
    """The trained model (with EMA weights when EMA was used) and ``history`` of ``step``, ``loss``, ``seconds``, ``lr``."""

    model: torch.nn.Module
    history: dict[str, list] = field(default_factory=lambda: {"step": [], "loss": [], "seconds": [], "lr": []})


def _forever(loader: DataLoader):
    while True:
        yield from loader


def training_target(scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the denoiser regresses for ``x_t = add_noise(x0, noise, t)``, by the scheduler's ``prediction_type``."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return x0 if scheduler.config.prediction_type == "sample" else noise


def train_denoiser(model: torch.nn.Module, data: torch.Tensor, scheduler: DDPMScheduler, labels: torch.Tensor | None = None,
                   steps: int = 1000, batch_size: int = 32, lr: float = 1e-3, cond_dropout: float = 0.1,
                   ema_decay: float | None = 0.999, max_seconds: float | None = None, log_every: int = 50,
                   checkpoint_dir=None, checkpoint_every: int = 500, seed: int = 0, lr_schedule: str = "constant",
                   show_progress: bool = True) -> TrainingResult:
    """Train ``model`` to denoise ``data [M,...]`` (optionally with ``labels [M]``).

    Args:
        scheduler: gives the noise schedule (``add_noise``), the number of training timesteps and
            the target, by its ``prediction_type``: the noise ε ("epsilon"), the velocity
            ``v = √ᾱ ε - √(1-ᾱ) x0`` ("v_prediction", needed when the schedule ends at zero SNR,
            where ε carries no information about x0) or x0 itself ("sample").
        steps, max_seconds: stop at this step, or after this much training time.
        lr_schedule: ``"constant"``, or ``"cosine"`` decay from ``lr`` to 0 at ``steps``. It is a
            function of the step alone, so a resumed run continues the same curve.
        ema_decay: keep an exponential moving average of the weights (diffusers' ``EMAModel``) and
            return the model with those weights; ``None`` returns the raw weights.
        checkpoint_dir: save the model, optimiser, EMA and step here every ``checkpoint_every``
            steps and at the end; if it already holds a checkpoint, training resumes from it.

    Runs on whatever ``accelerate`` was configured for (one CPU by default; ``accelerate launch``
    for several processes or a GPU).
    """
    data = check_tensor("data", data, floating=True)
    if labels is not None:
        labels = check_tensor("labels", labels, shape=[len(data)])
    steps, batch_size = check_positive_int("steps", steps), check_positive_int("batch_size", batch_size)
    if not 0.0 <= cond_dropout < 1.0:
        raise ValueError(f"cond_dropout: expected a probability in [0, 1), got {cond_dropout!r}")
    lr = check_positive("lr", lr)
    check_choice("scheduler.config.prediction_type", scheduler.config.prediction_type, ("epsilon", "v_prediction", "sample"))
    check_choice("lr_schedule", lr_schedule, ("constant", "cosine"))
    torch.manual_seed(seed)

    accelerator = Accelerator()
    tensors = (data,) if labels is None else (data, labels.long())
    loader = DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True, drop_last=len(data) > batch_size,
                        generator=torch.Generator().manual_seed(seed))
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model, optimiser, loader = accelerator.prepare(model, optimiser, loader)
    ema = EMAModel(accelerator.unwrap_model(model).parameters(), decay=ema_decay) if ema_decay else None
    if ema is not None:
        ema.to(accelerator.device)
    null_class = accelerator.unwrap_model(model).null_class
    n_train_steps = scheduler.config.num_train_timesteps

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
    bar = progress(total=steps, initial=start_step, desc="train_denoiser", disable=not show_progress)
    running, count = 0.0, 0
    for step in range(start_step + 1, steps + 1):
        batch = next(batches)
        x0 = batch[0]
        y = batch[1] if labels is not None else None
        if y is not None and cond_dropout > 0:
            y = torch.where(torch.rand(len(y), device=y.device) < cond_dropout, torch.full_like(y, null_class), y)
        noise = torch.randn_like(x0)
        t = torch.randint(0, n_train_steps, (len(x0),), device=x0.device)
        x_t = scheduler.add_noise(x0, noise, t)
        loss = torch.nn.functional.mse_loss(model(x_t, t, y).sample, training_target(scheduler, x0, noise, t))
        step_lr = lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / steps)) if lr_schedule == "cosine" else lr
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
