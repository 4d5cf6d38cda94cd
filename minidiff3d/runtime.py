"""Where code runs and how much it does: device choice, seeding, quick mode and progress bars.

These exist once; every notebook, script and module of the course uses them.
"""

from __future__ import annotations

import io
import json
import os
import platform
from contextlib import contextmanager
import random

import numpy as np
import torch
from tqdm.std import tqdm


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) and return a CPU generator seeded the same."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def seeded(seed: int):
    """Seed torch's global RNG (CPU and CUDA) for a block, then give the caller's state back.

    For library code that must draw from the global RNG, such as a model's initialisation, a
    user's loss function or transformers' ``generate``, yet be reproducible without reseeding the caller.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


@contextmanager
def frozen(*parts):
    """Switch off ``requires_grad`` on the parameters of ``parts`` (modules, or parameters themselves) for a block,
    then restore each flag as it was.

    Gradients still flow *through* the modules to their inputs (a renderer's pixels through a VAE
    encoder), but none is computed or stored for their weights. The caller's modules come back
    as they were lent: freezing someone else's pipeline for good is a side effect they did not ask for.
    """
    params = [p for part in parts for p in (part.parameters() if isinstance(part, torch.nn.Module) else [part])]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def quick_mode() -> bool:
    """True when ``MINIDIFF3D_QUICK=1``: CI mode, where every chapter fits in 90 s on 2 CPU cores."""
    return _env_flag("MINIDIFF3D_QUICK")


class _DisplayBar(tqdm):
    """A text bar in one notebook output that is rewritten in place.

    tqdm's widget bar keeps the text of its first frame ("0%| 0/600") as the output's fallback,
    so a stored notebook read without a kernel shows every loop frozen at zero. Updating one
    display output by its id stores the last frame instead: the final count and time.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, file=io.StringIO(), **kwargs)  # tqdm's own writes go nowhere

    def display(self, msg=None, pos=None):
        from IPython.display import display

        bundle = {"text/plain": str(self) if msg is None else msg}
        if not hasattr(self, "_handle"):
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        return True


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def progress(iterable=None, **kwargs):
    """A tqdm bar (in a notebook, one output updated in place), silent in quick mode and on CI."""
    disable = kwargs.pop("disable", False) or quick_mode() or _env_flag("CI")
    return (_DisplayBar if _in_kernel() else tqdm)(iterable, disable=disable, **kwargs)


def assert_bar(name: str, value: float, bar: float, higher_is_better: bool = True, digits: int = 3) -> None:
    """Assert a chapter's measured result against its bar, print it, and log it for ``make course``.

    With ``MINIDIFF3D_RESULTS`` set to a file path, one JSON line per result is appended
    there; ``scripts/run_chapters.py`` gathers them into the course's summary table.
    """
    value, bar = float(value), float(bar)  # numpy scalars would make a numpy bool, which JSON cannot hold
    passed = value >= bar if higher_is_better else value <= bar
    line = f"{name}: {value:.{digits}g} (bar: {'≥' if higher_is_better else '≤'} {bar:g}) {'✔' if passed else '✘'}"
    print(line)
    log = os.environ.get("MINIDIFF3D_RESULTS")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"name": name, "value": value, "bar": bar, "higher_is_better": higher_is_better, "passed": passed}) + "\n")
    assert passed, line


def describe_machine() -> str:
    """What a model card says it was trained on, e.g. "x86_64 CPU, 2 threads" or "NVIDIA H200"."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    threads = torch.get_num_threads()
    return f"{platform.machine()} CPU, {threads} thread{'s' if threads > 1 else ''}"


@contextmanager
def quiet_loading():
    """No progress bars from diffusers' and transformers' ``from_pretrained`` inside the block, then each library's
    setting as it was. Loading a few-MB prior takes a fraction of a second, and a notebook would store its bars
    as widgets frozen at 0 %."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    libraries = [lib for lib in (diffusers_logging, transformers_logging) if lib.is_progress_bar_enabled()]
    for lib in libraries:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib in libraries:
            lib.enable_progress_bar()


@contextmanager
def quiet_transformers():
    """Silence transformers' warnings inside the block: importing diffusers' pipelines makes it warn, at
    length, that torchvision is missing, and the course needs no torchvision (there is no CPU build)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
