"""The SDF U-Net on CPU: a training step and a sampling step, full resolution against patchified.

Baseline: ``SDFUNet3D(patch_size=1)``, every residual block at the grid's resolution. Against it:
``patch_size=2``, the configuration of the shipped model, whose U-Net runs at half the
resolution. Same widths (base 32, channel mults 1, 2, 4), same 32³ grids.

    .venv/bin/python benchmarks/sdf_unet.py [--batch 8] [--resolution 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform

import torch

from minidiff3d.diffusion import SDFUNet3D
from timing import seconds  # benchmarks/ is on the path when a script runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    grids = torch.randn(args.batch, 1, args.resolution, args.resolution, args.resolution)
    t, labels = torch.randint(0, 1000, (args.batch,)), torch.randint(0, 10, (args.batch,))
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"batch {args.batch} of {args.resolution}³ grids\n")
    print("| patch size | parameters | training step, s | sampling step (forward), s per grid |")
    print("|---|---|---|---|")
    times = {}
    for patch in (1, 2):
        model = SDFUNet3D(base_channels=32, channel_mults=(1, 2, 4), num_classes=10, patch_size=patch)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def train_step():
            loss = (model(grids, t, labels).sample - grids).square().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

        def forward():
            with torch.no_grad():
                model(grids, t, labels)

        times[patch] = (seconds(train_step, args.repeats), seconds(forward, args.repeats) / args.batch)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"| {patch} | {n_params:,} | {times[patch][0]:.2f} | {times[patch][1]:.3f} |", flush=True)
    print(f"\npatch 2 is {times[1][0] / times[2][0]:.1f}x faster to train and {times[1][1] / times[2][1]:.1f}x faster to sample")


if __name__ == "__main__":
    main()
