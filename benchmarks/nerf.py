"""NeRF fitting speed: the plain NeRF of the source chapter against the package's hash-grid NeRF.

Baseline: the original MLP (8 layers of 256, skip at layer 4, view-dependent colour), 64
stratified samples per ray, no hierarchy and no empty-space skipping. Against: ``fit_nerf``
with the hash grid and its occupancy grid. Both fit the same toy scene (50 views at 64x64) for
the same training-time budget in one run; held-out PSNR (5 views) is recorded as they go.
``--blender`` first writes the scene in the Blender ``transforms_*.json`` format (PNG images, as
nerf_synthetic ships) and fits what ``load_blender`` reads back: the path a real scene takes.

    .venv/bin/python benchmarks/nerf.py [--budget 300] [--blender]
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile

import torch

from minidiff3d import get_device
from minidiff3d.nerf import fit_nerf
from minidiff3d.toyworld import load_blender, make_object, render_views, write_blender

NEAR, FAR = 1.8, 3.8


def psnr_at(history, seconds):
    """Held-out PSNR of the last evaluation at or before ``seconds`` of training."""
    before = [p for t, p in zip(history["seconds"], history["test_psnr"]) if t <= seconds]
    return before[-1] if before else float("nan")


def time_to(history, bar):
    return next((t for t, p in zip(history["seconds"], history["test_psnr"]) if p >= bar), float("inf"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per method")
    parser.add_argument("--blender", action="store_true", help="fit the scene as written to and read from Blender format")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    obj = make_object("mug", "red", 0)
    train = render_views(obj, 50, 64, 64, seed=0)
    test = render_views(obj, 5, 64, 64, seed=99, azimuths="random")
    if args.blender:
        folder = tempfile.mkdtemp(prefix="nerf-bench-")
        write_blender(train, folder, "train")
        write_blender(test, folder, "test")
        train, test = load_blender(folder, "train"), load_blender(folder, "test")
    print(f"scene: the toy mug{', through Blender format' if args.blender else ''}, {len(train.images)} views")
    runs = {}
    for name, kwargs in [("plain NeRF (8x256 MLP, 64 samples)", dict(field="mlp", occupancy=False, eval_every=25)),
                         ("hash-grid NeRF + occupancy grid", dict(field="hashgrid", eval_every=50))]:
        result = fit_nerf(train.images, train.c2ws, train.focal, NEAR, FAR, max_seconds=args.budget, batch_size=1024,
                          n_samples=64, holdout=(test.c2ws, test.images), show_progress=False, **kwargs)
        runs[name] = result.history
        print(f"{name}: {result.history['step'][-1]} steps in {result.history['seconds'][-1]:.0f} s", flush=True)

    device = get_device()
    print(f"\nmachine: {platform.machine()}, device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    checkpoints = [t for t in (15, 30, 60, 120, 300, 600) if t <= args.budget]
    print("| method | " + " | ".join(f"PSNR @ {t} s" for t in checkpoints) + " | time to 25 dB | steps/s |")
    print("|---|" + "---|" * (len(checkpoints) + 2))
    for name, history in runs.items():
        cells = " | ".join(dash(psnr_at(history, t), "{:.2f}") for t in checkpoints)
        print(f"| {name} | {cells} | {dash(time_to(history, 25.0), '{:.0f} s', 'not reached')} | "
              f"{history['step'][-1] / history['seconds'][-1]:.1f} |")
    plain, grid = runs["plain NeRF (8x256 MLP, 64 samples)"], runs["hash-grid NeRF + occupancy grid"]
    final = psnr_at(plain, args.budget)
    if math.isfinite(final):
        print(f"\nplain NeRF at {args.budget:.0f} s: {final:.2f} dB; the hash grid gets there in {time_to(grid, final):.0f} s "
              f"({args.budget / max(time_to(grid, final), 1e-9):.1f}x sooner)")
    else:
        print(f"\nthe plain NeRF reached no evaluation in {args.budget:.0f} s (its first is at step 25)")


def dash(value: float, form: str, missing: str = "–") -> str:
    """``value`` formatted, or ``missing`` where there is none yet (no evaluation, or never reached)."""
    return form.format(value) if math.isfinite(value) else missing


if __name__ == "__main__":
    main()
