"""Text-to-3D steps of several methods against DreamFusion's SDS step, in the same run: seconds and peak memory.

Each is a whole step of its preset (renders at 32x32, guidance, the field's update) on its own prior:

- ``vsd``: as well, the LoRA's no-grad pass for its baseline score and the LoRA's own training step (a VAE
  encode, a forward and a backward through the U-Net's LoRA);
- ``mvdream``: four renders a step (a set of views 90° apart), one pass of the multi-view U-Net over all of them.

Peak memory is each variant's peak resident set, measured in a fresh process of its own so that one
cannot hide behind the other.

    .venv/bin/python benchmarks/guidance_steps.py [--methods vsd mvdream] [--repeats 10] [--steps-in 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys

import torch

from minidiff3d.priors import load
from minidiff3d.systems import PRESETS, System, run_config
from timing import seconds  # benchmarks/ is on the path when a script runs


def measure(method: str, repeats: int, steps_in: int) -> dict:
    """Seconds per step after ``steps_in`` steps, and this process's peak resident memory (MB)."""
    pipe = load(PRESETS[method].prior, device="cpu")
    run = System.from_config(run_config(method, "a yellow duck"), pipe)
    run.fit(steps_in, show_progress=False)
    step = seconds(run.step, repeats)
    return {"seconds": step, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


NAMES = {"dreamfusion": "SDS, 1 view (baseline)", "vsd": "VSD: + LoRA score + LoRA update",
         "mvdream": "multi-view SDS, 4 views"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", nargs="+", default=["vsd", "mvdream"], choices=sorted(NAMES))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps-in", type=int, default=20, help="steps taken before timing, from the same seed")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one method in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.repeats, args.steps_in)))
        return
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"32x32 renders, step {args.steps_in} of a yellow duck\n")
    print("| step | seconds | seconds per view | peak memory (MB) |")
    print("|---|---|---|---|")
    results = {}
    for method in ["dreamfusion", *[m for m in args.methods if m != "dreamfusion"]]:
        out = subprocess.run([sys.executable, __file__, "--one", method, "--repeats", str(args.repeats),
                              "--steps-in", str(args.steps_in)], capture_output=True, text=True, check=True)
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
        views = run_config(method).system.batch_size
        print(f"| {NAMES[method]} | {results[method]['seconds']:.3f} | {results[method]['seconds'] / views:.3f} | "
              f"{results[method]['peak_mb']:.0f} |", flush=True)
    base = results["dreamfusion"]
    print()
    for method in results:
        if method != "dreamfusion":
            print(f"{method} / SDS: {results[method]['seconds'] / base['seconds']:.2f}x the time, "
                  f"{results[method]['peak_mb'] / base['peak_mb']:.2f}x the peak memory")


if __name__ == "__main__":
    main()
