"""Sampling time per shape: DDPM (1000 ancestral steps) against DDIM at 50, 25 and 10 steps.

The time is the denoiser's: each step is one batched forward pass (two with classifier-free
guidance), so it does not depend on how well the model is trained. The shipped point-cloud model
is used when present, otherwise a freshly initialised one of the same size. Quality against step
count is chapter 02's table.

    .venv/bin/python benchmarks/sampling.py [--batch 16] [--points 1024]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from minidiff3d import assets
from minidiff3d.diffusion import PointCloudTransformer, load_point_cloud_prior, sample


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--points", type=int, default=1024)
    args = parser.parse_args()
    if "point-cloud-diffusion" in assets.manifest():
        model, scheduler = load_point_cloud_prior("cpu")
        source = "the shipped model"
    else:
        model = PointCloudTransformer(num_classes=10, hidden_dim=96).eval()
        scheduler = DDPMScheduler(num_train_timesteps=1000)
        source = "an untrained model of the shipped size"
    labels = torch.arange(args.batch) % model.config.num_classes
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; {source}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters; batch {args.batch} x {args.points} points\n")
    print("| sampler | steps | CFG | seconds per shape |")
    print("|---|---|---|---|")
    runs = [("DDPM", DDPMScheduler, 1000, 1.0), ("DDIM", DDIMScheduler, 50, 1.0), ("DDIM", DDIMScheduler, 50, 3.0),
            ("DDIM", DDIMScheduler, 25, 1.0), ("DDIM", DDIMScheduler, 10, 1.0)]
    for name, cls, steps, scale in runs:
        tic = time.perf_counter()
        sample(model, cls.from_config(scheduler.config), (args.batch, args.points, 3), labels, scale, steps,
               torch.Generator().manual_seed(0))
        print(f"| {name} | {steps} | {scale:g} | {(time.perf_counter() - tic) / args.batch:.3f} |", flush=True)


if __name__ == "__main__":
    main()
