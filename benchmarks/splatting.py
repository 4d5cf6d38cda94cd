"""Splatting time: forward and backward of ``splatting.render_gaussians``, against a per-Gaussian loop.

The baseline composites one Gaussian at a time over the whole image, in depth order, as a first
implementation would; the package's splatter composites every (pixel, Gaussian) pair where a splat's
α reaches 1/255 in one batch, sorted by pixel and depth. Scenes are random Gaussians in a ball seen
from an orbit camera, as DreamGaussian's first steps see them. The goal (issue 26): a DreamGaussian
step at 64² with 10k Gaussians in ≤ 50 ms on the 2-core CPU. The loop is timed only where it finishes
in reasonable time.

    .venv/bin/python benchmarks/splatting.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform

import torch

from minidiff3d.cameras import focal_from_fov, orbit_camera
from minidiff3d.splatting import covariance_3d, project_gaussians, render_gaussians
from timing import seconds  # benchmarks/ is on the path when a script runs


def gaussians(n: int, seed: int = 0) -> dict:
    """``n`` random Gaussians in a ball of radius 0.5, the parameters requiring gradients."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return dict(means=direction * 0.5 * torch.rand(n, 1, generator=g) ** (1 / 3),
                scales=0.005 + 0.02 * torch.rand(n, 3, generator=g),
                rotations=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                opacities=0.1 + 0.8 * torch.rand(n, generator=g), colors=torch.rand(n, 3, generator=g))


def loop_render(means, scales, rotations, opacities, colors, c2w, height, width, focal):
    """The baseline: every Gaussian over every pixel, one after another in depth order."""
    p = project_gaussians(means, covariance_3d(scales, rotations), c2w, height, width, focal)
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    rgb, transmittance = torch.zeros(height, width, 3), torch.ones(height, width)
    for i in torch.argsort(p["depth"]).tolist():
        d = torch.stack([xs - p["mean2d"][i, 0], ys - p["mean2d"][i, 1]], -1)
        alpha = (opacities[i] * torch.exp(-0.5 * torch.einsum("hwi,ij,hwj->hw", d, torch.linalg.inv(p["cov2d"][i]), d)))
        alpha = alpha.clamp(max=0.99)
        rgb = rgb + (transmittance * alpha)[..., None] * colors[i]
        transmittance = transmittance * (1 - alpha)
    return {"rgb": rgb + transmittance[..., None]}


def step(render, scene: dict, size: int):
    params = {k: v.clone().requires_grad_(True) for k, v in scene.items()}
    c2w = orbit_camera(20.0, 30.0, 2.8)

    def run():
        out = render(**params, c2w=c2w, height=size, width=size, focal=focal_from_fov(40.0, size))
        out["rgb"].sum().backward()
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-max", type=int, default=5000, help="time the loop baseline up to this many Gaussians")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| size | Gaussians | per-Gaussian loop (s) | pairs (s) | speed-up |")
    print("|---|---|---|---|---|")
    for size in (64, 128):
        for n in (5_000, 10_000, 20_000, 50_000):
            scene = gaussians(n)
            pairs = seconds(step(render_gaussians, scene, size), args.repeats)
            loop = seconds(step(loop_render, scene, size), 1) if n <= args.loop_max else None
            print(f"| {size}² | {n:,} | {'–' if loop is None else f'{loop:.3f}'} | {pairs:.4f} | "
                  f"{'–' if loop is None else f'{loop / pairs:.0f}x'} |", flush=True)


if __name__ == "__main__":
    main()
