"""DreamGaussian's speed against DreamFusion's: seconds per prompt of each preset, run one after the other in this
process, on the same thread count, with each run's R-precision beside its time.

DreamGaussian's point is speed (about 2 minutes an asset against DreamFusion's hour on a GPU). Issue 26's bar:
at most a quarter of DreamFusion's seconds per prompt, on the same machine in the same run. DreamGaussian's
seconds include stage 2 (mesh, SDEdit targets, texture fit); DreamFusion's are its fit alone (its mesh export
is not counted, which favours it).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dreamgaussian.py [--prompts "a blue cone" ...]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from minidiff3d.metrics import r_precision
from minidiff3d.priors import load, object_captions
from minidiff3d.systems import orbit_r_precision, run_config

PROMPTS = ["a yellow duck", "a red torus", "a blue cube", "a green cone", "an orange mushroom", "a purple snowman",
           "a pink mug", "a brown house"]  # chapter 04's eight


def timed(method: str, prompt: str, pipe, seed: int = 0):
    run = run_config(method, prompt, {"system.seed": seed}).build(pipe)
    tic = time.perf_counter()
    run.fit(show_progress=False)
    return run, time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", nargs="+", default=PROMPTS[:4])
    args = parser.parse_args()
    sd, clip, candidates = load("toy-sd"), load("toy-clip"), object_captions()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| prompt | DreamFusion (s) | R-precision | DreamGaussian (s) | of which stage 2 (s) | R-precision splats / mesh "
          "| time ratio |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for prompt in args.prompts:
        fusion, fusion_seconds = timed("dreamfusion", prompt, sd)
        gaussian, gaussian_seconds = timed("dreamgaussian", prompt, sd)
        mesh_views = gaussian.render_mesh(torch.full((8,), 15.0), torch.arange(8) * 45.0)
        ratios.append(gaussian_seconds / fusion_seconds)
        print(f"| {prompt} | {fusion_seconds:.1f} | {orbit_r_precision(fusion, prompt, candidates, clip):.2f} | "
              f"{gaussian_seconds:.1f} | {gaussian.texture_history['seconds']:.1f} | "
              f"{orbit_r_precision(gaussian, prompt, candidates, clip):.2f} / "
              f"{r_precision(mesh_views, [prompt] * 8, candidates, clip):.2f} | {ratios[-1]:.2f} |", flush=True)
    print(f"\nmean time ratio DreamGaussian / DreamFusion: {sum(ratios) / len(ratios):.2f} (bar: at most 0.25)")


if __name__ == "__main__":
    main()
