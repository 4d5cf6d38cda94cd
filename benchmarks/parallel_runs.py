"""Several text-to-3D runs: one after another on all threads, against ``systems.fit_parallel`` in the same run.

Each row fits the same DreamFusion configs (toy SD, 100 steps, one per prompt) three ways: one after
another on this process's threads, one after another on one thread, and in worker processes with one
thread each. On a 2-core CPU a run's small ops leave the second thread idle, so the first two columns
are close and the third about halves them.

    .venv/bin/python benchmarks/parallel_runs.py [--steps 100] [--runs 2 4]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from minidiff3d.priors import load
from minidiff3d.systems import fit_parallel, run_config

PROMPTS = ["a yellow duck", "a red torus", "a blue cube", "a green cone", "an orange mushroom", "a purple snowman",
           "a pink mug", "a brown house"]


def wall(fn) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--runs", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    pipe, threads = load("toy-sd"), torch.get_num_threads()
    print(f"machine: {platform.machine()}, {threads} threads, torch {torch.__version__}; DreamFusion on toy SD, "
          f"{args.steps} steps a run; wall seconds for all the runs\n")
    print(f"| runs | one after another, {threads} threads (s) | one after another, 1 thread (s) | "
          f"fit_parallel, {threads} workers (s) | speed-up |")
    print("|---|---|---|---|---|")
    for n in args.runs:
        configs = [run_config("dreamfusion", PROMPTS[i % len(PROMPTS)], {"system.steps": args.steps}) for i in range(n)]
        serial = wall(lambda: fit_parallel(configs, pipe, workers=1))
        torch.set_num_threads(1)
        single = wall(lambda: fit_parallel(configs, pipe, workers=1))
        torch.set_num_threads(threads)
        parallel = wall(lambda: fit_parallel(configs, pipe, workers=threads))
        print(f"| {n} | {serial:.1f} | {single:.1f} | {parallel:.1f} | {serial / parallel:.2f}x |")


if __name__ == "__main__":
    main()
