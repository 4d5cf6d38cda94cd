"""Training an ε-prediction denoiser on a tensor dataset, with accelerate, EMA and resumable checkpoints.

The loss is DDPM's simple objective: draw ``t`` uniformly, ``x_t = sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) ε``
by the scheduler's ``add_noise``, and regress ``ε``. With class labels, a fraction
``cond_dropout`` of them is replaced by the model's null class, so one network learns both the
conditional and the unconditional prediction that classifier-free guidance combines.

The same objective trains the point-cloud transformer (chapter 02), the 3-D U-Net (chapter 03) and
toy SD's text-conditioned U-Net: any model ``model(x_t, t, condition).sample``, where the condition
is a class label, or a row of ``label_embeddings`` (e.g. a caption's text-encoder states).
``epsilon_loss_weights`` and ``weighted_mse`` weigh the ε error by timestep instead, for the
fine-tuning scripts whose conditions decide a sample's layout (toy-zero123, toy-mvdream).
"""

from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler

from ..training import TrainingResult, fit
from ..validation import check_choice, check_tensor


def training_target(scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the denoiser regresses for ``x_t = add_noise(x0, noise, t)``, by the scheduler's ``prediction_type``."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return x0 if scheduler.config.prediction_type == "sample" else noise


def epsilon_loss_weights(scheduler: DDPMScheduler, max_weight: float = 1.0) -> torch.Tensor:
    """``[T]``: the weight min(1/ᾱ_t, ``max_weight``) of an ε error at each training timestep t.

    1/ᾱ_t = (SNR_t + 1)/SNR_t is the weight v-prediction's loss puts on the ε error. Plain ε-loss
    (``max_weight`` 1: every weight 1) weighs every step alike, though the clean sample read from the
    prediction, (x_t - √(1-ᾱ_t) ε̂)/√ᾱ_t, is off by 1/SNR_t times the squared ε error: 120 times at
    t = 950 on Stable Diffusion's schedule. Those noisy steps set a sample's layout, which is what a
    view- or camera-conditioned model's conditions should decide, and plain ε-loss barely teaches them.
    """
    return (1 / scheduler.alphas_cumprod).clamp(max=check_max_weight(max_weight))


def check_max_weight(max_weight: float, name: str = "max_weight") -> float:
    """``epsilon_loss_weights``' cap, or an error naming ``name``: a finite number of at least 1 (1 is plain ε-loss)."""
    if not 1 <= max_weight < math.inf:
        raise ValueError(f"{name}: expected a finite number of at least 1 (1 is plain ε-loss), got {max_weight}")
    return float(max_weight)


def weighted_mse(predicted: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each sample's mean squared error (``predicted``, ``target`` ``[B,...]``), averaged with ``weights [B]`` (non-negative,
    not all zero): a scalar ``[]``."""
    check_tensor("predicted", predicted, floating=True)
    check_tensor("target", target, shape=list(predicted.shape))
    check_tensor("weights", weights, shape=[len(predicted)])
    if (weights < 0).any() or not weights.sum() > 0:  # a zero total would divide into a NaN loss
        raise ValueError(f"weights: expected non-negative weights, not all zero, got {weights.tolist()}")
    errors = (predicted - target).pow(2).flatten(1).mean(1)
    weights = weights.to(errors)
    return (weights * errors).sum() / weights.sum()


def train_denoiser(model: torch.nn.Module, data: torch.Tensor, scheduler: DDPMScheduler, labels: torch.Tensor | None = None,
                   steps: int = 1000, batch_size: int = 32, lr: float = 1e-3, cond_dropout: float = 0.1,
                   ema_decay: float | None = 0.999, max_seconds: float | None = None, log_every: int = 50,
                   checkpoint_dir=None, checkpoint_every: int = 500, seed: int = 0, lr_schedule: str = "constant",
                   show_progress: bool = True, label_embeddings: torch.Tensor | None = None,
                   null_label: int | None = None) -> TrainingResult:
    """Train ``model`` to denoise ``data [M,...]`` (optionally with ``labels [M]``).

    Args:
        scheduler: gives the noise schedule (``add_noise``), the number of training timesteps and
            the target, by its ``prediction_type``: the noise ε ("epsilon"), the velocity
            ``v = √ᾱ ε - √(1-ᾱ) x0`` ("v_prediction", needed when the schedule ends at zero SNR,
            where ε carries no information about x0) or x0 itself ("sample").
        label_embeddings: ``[K,...]``; when given, the model is called with
            ``label_embeddings[labels]`` instead of the labels themselves.
        null_label: the label that stands for "no condition" (what ``cond_dropout`` swaps in);
            default ``model.null_class``.
        The rest (steps, lr, lr_schedule, EMA, checkpoints) is ``minidiff3d.training.fit``'s.
    """
    data = check_tensor("data", data, floating=True)
    if labels is not None:
        labels = check_tensor("labels", labels, shape=[len(data)])
    if not 0.0 <= cond_dropout < 1.0:
        raise ValueError(f"cond_dropout: expected a probability in [0, 1), got {cond_dropout!r}")
    check_choice("scheduler.config.prediction_type", scheduler.config.prediction_type, ("epsilon", "v_prediction", "sample"))
    null_label = getattr(model, "null_class", None) if null_label is None else null_label
    if labels is not None and cond_dropout > 0 and null_label is None:
        raise ValueError("null_label: expected the label of the empty condition (the model has no null_class), got None")
    if label_embeddings is not None:
        if labels is None:
            raise ValueError("labels: expected labels [M] to index label_embeddings, got None")
        label_embeddings = check_tensor("label_embeddings", label_embeddings, floating=True)
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(label_embeddings):
            raise ValueError(f"labels: expected indices into the {len(label_embeddings)} label_embeddings, "
                             f"got values in [{int(labels.min())}, {int(labels.max())}]")
    n_train_steps = scheduler.config.num_train_timesteps

    def loss_fn(model, batch):
        x0, y = batch[0], (batch[1] if labels is not None else None)
        if y is not None and cond_dropout > 0:
            y = torch.where(torch.rand(len(y), device=y.device) < cond_dropout, torch.full_like(y, null_label), y)
        if y is not None and label_embeddings is not None:
            y = label_embeddings.to(x0.device)[y]
        noise = torch.randn_like(x0)
        t = torch.randint(0, n_train_steps, (len(x0),), device=x0.device)
        x_t = scheduler.add_noise(x0, noise, t)
        return torch.nn.functional.mse_loss(model(x_t, t, y).sample, training_target(scheduler, x0, noise, t))

    tensors = (data,) if labels is None else (data, labels.long())
    return fit(model, tensors, loss_fn, steps=steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
               ema_decay=ema_decay, max_seconds=max_seconds, log_every=log_every, checkpoint_dir=checkpoint_dir,
               checkpoint_every=checkpoint_every, seed=seed, show_progress=show_progress, desc="train_denoiser")
