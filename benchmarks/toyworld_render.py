"""Toy-world rendering speed: the sphere tracer against a fixed-step ray-marching baseline.

The baseline samples every ray at 256 evenly spaced points through the bounding ball and takes
the first sign change of the SDF, which is what one writes without trusting the SDF as a
distance. Both run in the same process on the same views; the table reports time per 64x64 view
and how well the baseline's hits agree with the tracer's.

    .venv/bin/python benchmarks/toyworld_render.py
"""

from __future__ import annotations

import platform
import time

import torch

from minidiff3d.cameras import focal_from_fov, get_rays, orbit_camera
from minidiff3d.toyworld import CATEGORIES, DEFAULT_FOV_DEG, make_object, render
from minidiff3d.toyworld.render import BOUND

SIZE, REPEATS, MARCH_STEPS = 64, 3, 256


def march_depth(obj, c2w, steps=MARCH_STEPS):
    """Baseline: dense uniform samples inside the bounding ball, first inside sample per ray."""
    origins, directions = get_rays(c2w, SIZE, SIZE, focal_from_fov(DEFAULT_FOV_DEG, SIZE))
    o, d = origins.reshape(-1, 3), directions.reshape(-1, 3)
    centre_t = -(o * d).sum(-1)
    t = centre_t[:, None] + torch.linspace(-BOUND, BOUND, steps)  # [R, S]
    inside = obj.sdf(o[:, None] + t[..., None] * d[:, None]) < 0
    hit = inside.any(-1)
    first = inside.float().argmax(-1)
    return hit.reshape(SIZE, SIZE), torch.where(hit, t.gather(1, first[:, None])[:, 0], 0.0).reshape(SIZE, SIZE)


def seconds(fn) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(REPEATS):
        fn()
    return (time.perf_counter() - start) / REPEATS


def main():
    torch.set_num_threads(2)
    c2w = orbit_camera(25.0, 30.0)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"| category | sphere tracing (ms/view) | antialias 2 (ms/view) | ray marching {MARCH_STEPS} steps (ms/view) | speed-up | hit agreement | depth diff (mean) |")
    print("|---|---|---|---|---|---|---|")
    totals = torch.zeros(3)
    for category in CATEGORIES:
        obj = make_object(category, "red", 0)
        traced = seconds(lambda: render(obj, c2w, SIZE, SIZE))
        traced_aa = seconds(lambda: render(obj, c2w, SIZE, SIZE, antialias=2))
        marched = seconds(lambda: march_depth(obj, c2w))
        view = render(obj, c2w, SIZE, SIZE)
        hit, depth = march_depth(obj, c2w)
        both = hit & (view["alpha"] > 0)
        agreement = (hit == (view["alpha"] > 0)).float().mean().item()
        depth_diff = (depth[both] - view["depth"][both]).abs().mean().item()
        totals += torch.tensor([traced, traced_aa, marched])
        print(f"| {category} | {traced * 1e3:.1f} | {traced_aa * 1e3:.1f} | {marched * 1e3:.1f} | {marched / traced:.1f}x | "
              f"{agreement:.4f} | {depth_diff:.4f} |")
    mean = totals / len(CATEGORIES)
    print(f"| **mean** | {mean[0] * 1e3:.1f} | {mean[1] * 1e3:.1f} | {mean[2] * 1e3:.1f} | {mean[2] / mean[0]:.1f}x | | |")


if __name__ == "__main__":
    main()
