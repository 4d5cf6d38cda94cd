"""Fit several runs at once, one CPU core each.

A text-to-3D step on the toy priors is hundreds of small tensor ops, too small for a second thread to
help: on the 2-core reference machine one run takes the same time on one thread as on two
(``benchmarks/parallel_runs.py``). Two runs in two single-threaded processes therefore take the time of
one. ``fit_parallel`` does that and hands back ordinary runs, their state loaded into parts built here,
so they render and export as if fitted in this process.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import torch

from ..validation import check_positive_int
from .config import CoarseToFineConfig, RunConfig

_worker_pipe = None  # each worker's pipeline, set once when the worker starts


def _start_worker(pipe) -> None:
    global _worker_pipe
    torch.set_num_threads(1)  # the point: one core per run
    _worker_pipe = pipe


def _fit_one(config) -> dict:
    run = config.build(_worker_pipe)
    try:
        run.fit(show_progress=False)
        return run.state_dict()
    finally:
        run.close()


def fit_parallel(configs: list, pipe, workers: int | None = None) -> list:
    """Fit each of ``configs`` (``RunConfig`` or ``CoarseToFineConfig``) on ``pipe``, ``workers`` at a time.

    Each worker process (forked: POSIX only) gets ``pipe`` and one thread. Returns the runs in the order of
    ``configs``, built on ``pipe`` here with the fitted state loaded: ``run.history["seconds"][-1]`` is
    how long each fit took in its worker. ``workers`` defaults to the cores this process may use; with
    one worker, one config, or no ``fork`` (Windows), the runs are fitted here, one after another.
    """
    for i, config in enumerate(configs):
        if not isinstance(config, (RunConfig, CoarseToFineConfig)):
            raise TypeError(f"configs[{i}]: expected a RunConfig or CoarseToFineConfig (systems.run_config), "
                            f"got {type(config).__name__}")
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(check_positive_int("workers", workers if workers is not None else available), len(configs) or 1)
    runs = [config.build(pipe) for config in configs]
    if workers == 1 or "fork" not in multiprocessing.get_all_start_methods():  # Windows has no fork
        for run in runs:
            run.fit(show_progress=False)
        return runs
    # fork, as torch's DataLoader workers do: the children inherit the pipeline without a copy through a pipe,
    # and a script needs no `if __name__ == "__main__"` guard. One thread in the child keeps it clear of the
    # parent's thread pool.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(pipe,)) as pool:
        states = list(pool.map(_fit_one, configs))
    for run, state in zip(runs, states):
        run.load_state_dict(state)
    return runs
