"""Chamfer distance and 1-NNA: the package against a naive reference, at 2048 points per cloud.

Baselines: one pair of clouds at a time, distances by explicit broadcasting
``((a[:, None] - b[None]) ** 2).sum(-1)``; and the package's previous version, a scipy k-d tree
per cloud queried once per pair from Python. Against: ``minidiff3d.metrics.pairwise_distances``
(each tree queried once with every cloud of the other set, on all cores). Both compute the same Chamfer matrix between two sets of clouds; the
1-NNA of a 256-shape evaluation (128 samples against 128 references) needs 3 × 128² such pairs,
so its time follows from the measured time per pair.

    .venv/bin/python benchmarks/point_metrics.py [--clouds 16] [--points 2048]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from minidiff3d.metrics import one_nn_accuracy, pairwise_distances


def naive_chamfer_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.empty(len(x), len(y))
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            d = ((a[:, None] - b[None]) ** 2).sum(-1)
            out[i, j] = d.min(1).values.mean() + d.min(0).values.mean()
    return out


def per_pair_kd_tree_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x_np, y_np = x.double().numpy(), y.double().numpy()
    x_trees, y_trees = [cKDTree(c) for c in x_np], [cKDTree(c) for c in y_np]
    out = np.empty((len(x), len(y)))
    for i, (a, a_tree) in enumerate(zip(x_np, x_trees)):
        for j, (b, b_tree) in enumerate(zip(y_np, y_trees)):
            out[i, j] = np.square(b_tree.query(a)[0]).mean() + np.square(a_tree.query(b)[0]).mean()
    return torch.from_numpy(out).float()


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
    per_pair, t_per_pair = timed(per_pair_kd_tree_matrix, x, y)
    error = max(((m - naive).abs() / naive).max().item() for m in (ours, per_pair))
    pairs = args.clouds**2
    full_pairs = 3 * 128**2
    _, t_nna = timed(lambda: one_nn_accuracy(pairwise_distances(x, x), ours, pairwise_distances(y, y)))

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{args.clouds} x {args.clouds} clouds of {args.points} points; largest relative difference {error:.2e}\n")
    print("| method | Chamfer, ms per pair | 1-NNA at 256 shapes (3 x 128^2 pairs), projected |")
    print("|---|---|---|")
    for name, seconds in (("naive broadcasting, one pair at a time", t_naive),
                          ("k-d trees, one query per pair (the previous version)", t_per_pair),
                          ("minidiff3d pairwise_distances (k-d trees, one query per tree)", t_ours)):
        print(f"| {name} | {1000 * seconds / pairs:.1f} | {seconds / pairs * full_pairs / 60:.1f} min |")
    print(f"\nspeed-up {t_naive / t_ours:.1f}x over naive, {t_per_pair / t_ours:.1f}x over per pair; measured 1-NNA on the {2 * args.clouds}-cloud block: {t_nna:.1f} s")


if __name__ == "__main__":
    main()
