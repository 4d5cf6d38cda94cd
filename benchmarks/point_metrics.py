"""Chamfer distance and 1-NNA: the package against a naive reference, at 2048 points per cloud.

Baseline: one pair of clouds at a time, distances by explicit broadcasting
``((a[:, None] - b[None]) ** 2).sum(-1)``. Against: ``minidiff3d.metrics.pairwise_distances``
(a scipy k-d tree per cloud, queried for every pair). Both compute the same Chamfer matrix between two sets of clouds; the
1-NNA of a 256-shape evaluation (128 samples against 128 references) needs 3 × 128² such pairs,
so its time follows from the measured time per pair.

    .venv/bin/python benchmarks/point_metrics.py [--clouds 16] [--points 2048]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from minidiff3d.metrics import one_nn_accuracy, pairwise_distances


def naive_chamfer_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.empty(len(x), len(y))
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            d = ((a[:, None] - b[None]) ** 2).sum(-1)
            out[i, j] = d.min(1).values.mean() + d.min(0).values.mean()
    return out


def timed(fn, *args):
    tic = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clouds", type=int, default=16, help="clouds per set in the measured block")
    parser.add_argument("--points", type=int, default=2048)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(args.clouds, args.points, 3, generator=g), torch.rand(args.clouds, args.points, 3, generator=g)

    ours, t_ours = timed(pairwise_distances, x, y)
    naive, t_naive = timed(naive_chamfer_matrix, x, y)
    error = ((ours - naive).abs() / naive).max().item()
    pairs = args.clouds**2
    full_pairs = 3 * 128**2
    _, t_nna = timed(lambda: one_nn_accuracy(pairwise_distances(x, x), ours, pairwise_distances(y, y)))

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{args.clouds} x {args.clouds} clouds of {args.points} points; largest relative difference {error:.2e}\n")
    print("| method | Chamfer, ms per pair | 1-NNA at 256 shapes (3 x 128^2 pairs), projected |")
    print("|---|---|---|")
    for name, seconds in (("naive broadcasting, one pair at a time", t_naive), ("minidiff3d pairwise_distances (k-d trees)", t_ours)):
        print(f"| {name} | {1000 * seconds / pairs:.1f} | {seconds / pairs * full_pairs / 60:.1f} min |")
    print(f"\nspeed-up {t_naive / t_ours:.1f}x; measured 1-NNA on the {2 * args.clouds}-cloud block: {t_nna:.1f} s")


if __name__ == "__main__":
    main()
