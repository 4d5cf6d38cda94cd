"""Time per text-to-3D step: what dropping the U-Net Jacobian saves, and what the renderer's shortcut saves.

Rows, on toy SD:

- SDS: VAE encode, two U-Net passes under no_grad, backward through the encoder only;
- its baseline, the full diffusion-loss gradient: the same, but backpropagated through the U-Net;
- a DreamFusion step with textureless shading, normals only where the composite weighs (the package's
  renderer), against its baseline, normals at every sample;
- the same step against the hash grid's previous lookup: every level gathering its 8 corners by
  advanced indexing (the package reads dense levels with ``grid_sample`` and hashed ones with ``index_select``);
- the same step with 48 samples per ray, the previous default (now 32);
- the same step with guidance 15 and opacity penalty 0.1, the previous defaults (now 7.5 and 0.01): the
  penalty decides how much empty space is left by step 400, and so how many samples need normals.

    .venv/bin/python benchmarks/sds.py [--repeats 10] [--steps-in 20]
"""

from __future__ import annotations

import argparse
import platform
from unittest import mock

import torch

from minidiff3d import fields, marcher
from minidiff3d.diffusion import classifier_free_guidance
from minidiff3d.guidance import PromptProcessor, ScoreDistillation
from minidiff3d.priors import load
from minidiff3d.runtime import frozen
from minidiff3d.systems import System, run_config
from timing import seconds  # benchmarks/ is on the path when a script runs


def gather_level(unit_points, table, resolution, dense=False):
    """The baseline: ``fields.interpolate_level`` as it was, one gather by advanced indexing for every level."""
    scaled = unit_points * resolution
    base = scaled.floor().long().clamp(max=resolution - 1)
    frac = scaled - base
    corners = fields._CORNERS
    ijk = base[:, None, :] + corners
    stride = resolution + 1
    slots = (ijk[..., 0] + stride * ijk[..., 1] + stride * stride * ijk[..., 2] if dense
             else fields.spatial_hash(ijk, table.shape[0]))
    weights = torch.where(corners.bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)
    return (weights[..., None] * table[slots]).sum(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps-in", type=int, default=20, help="DreamFusion steps taken before timing one")
    args = parser.parse_args()
    pipe = load("toy-sd", device="cpu")
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; toy SD\n")
    print("| step | variant | seconds |")
    print("|---|---|---|")

    sds = ScoreDistillation(pipe, guidance_scale=100.0)
    embeddings = PromptProcessor(pipe, "a yellow duck")(torch.zeros(1), torch.zeros(1))
    image = torch.rand(1, 3, 64, 64)

    def sds_step():
        x = image.clone().requires_grad_(True)
        sds.loss(x, None, {"text": embeddings}).loss.backward()

    def through_unet():  # the diffusion loss itself: its gradient includes the U-Net Jacobian
        x = image.clone().requires_grad_(True)
        latents = sds.encode(x)
        noise, t = torch.randn_like(latents), torch.randint(20, 980, (1,))
        noisy = pipe.scheduler.add_noise(latents, noise, t)
        cond, uncond = embeddings
        with frozen(pipe.unet):  # the Jacobian with respect to the input, not the weights
            out = pipe.unet(torch.cat([noisy, noisy]), torch.cat([t, t]), torch.cat([cond, uncond])).sample
        guided = classifier_free_guidance(*out.chunk(2), 100.0)
        (0.5 * (1 - pipe.scheduler.alphas_cumprod[t]) * (guided - noise).pow(2).sum()).backward()

    print(f"| guidance, 64x64 | SDS (no U-Net Jacobian) | {seconds(sds_step, args.repeats):.3f} |", flush=True)
    print(f"| guidance, 64x64 | baseline: backprop through the U-Net | {seconds(through_unet, args.repeats):.3f} |",
          flush=True)

    def step_seconds(**overrides) -> float:  # every variant from the same state: a fresh run, --steps-in steps in
        run = System.from_config(run_config("dreamfusion", "a yellow duck", {
            "material.albedo_steps": 0, "material.shading_probs": {"textureless": 1.0}, **overrides}), pipe)
        run.fit(args.steps_in, show_progress=False)
        return seconds(run.step, args.repeats)

    variant = f"| DreamFusion, 32x32 textureless, step {args.steps_in} |"
    print(f"{variant} normals where the composite weighs > 1e-4 | {step_seconds():.3f} |", flush=True)
    with mock.patch.object(marcher, "WEIGHT_EPS", -1.0):  # every sample "weighs": normals everywhere
        print(f"{variant} baseline: normals at every sample | {step_seconds():.3f} |", flush=True)
    with mock.patch.object(fields, "interpolate_level", gather_level):
        print(f"{variant} baseline: hash-grid levels gathered by advanced indexing | {step_seconds():.3f} |", flush=True)
    more_samples = step_seconds(**{"renderer.n_samples": 48})
    print(f"{variant} baseline: 48 samples per ray (the previous default) | {more_samples:.3f} |",
          flush=True)
    previous = step_seconds(**{"guidance.guidance_scale": 15.0, "system.lambda_sparsity": 0.1})
    print(f"{variant} baseline: guidance 15, opacity penalty 0.1 (the previous defaults) | {previous:.3f} |", flush=True)


if __name__ == "__main__":
    main()
