"""The benchmarks' one timer."""

from __future__ import annotations

import time


def seconds(fn, repeats: int) -> float:
    """Mean wall time of ``fn()`` over ``repeats`` calls, after one warm-up call (allocator, oneDNN kernel choice)."""
    fn()
    tic = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - tic) / repeats
