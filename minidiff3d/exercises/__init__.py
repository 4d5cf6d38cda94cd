"""Checking a learner's exercise against the package's reference.

In a notebook: ``check("get_rays", get_rays)`` prints what is right, or the first thing
that is wrong (which output, which shape, which entry, what was expected), with a hint
when the mistake is a common one. A function that still raises ``NotImplementedError`` is
reported as "not done yet". ``verify`` does the same silently and returns the verdict.

Each chapter's exercises live in a module ``chNN`` that calls ``register``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Case = tuple[str, dict]  # a label for messages, and the keyword arguments of one call


@dataclass(frozen=True)
class Exercise:
    name: str
    chapter: str
    reference: Callable
    cases: Callable[[torch.Generator], list[Case]]  # random and edge cases from a seeded generator
    output_names: tuple[str, ...] = ("output",)
    diagnose: Callable[[object, object, dict], str | None] = lambda got, expected, kwargs: None
    atol: float = 1e-4
    rtol: float = 1e-4
    # How a case calls a function, the learner's and the reference alike: a harness can check more than
    # the return value (for example the gradient that a returned loss carries).
    run: Callable[[Callable, dict], object] = lambda fn, kwargs: fn(**kwargs)


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "passed", "failed" or "not done"
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed


_REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    _REGISTRY[exercise.name] = exercise
    return exercise


def repeat(n: int, label: str, make: Callable[[], dict]) -> list[Case]:
    """``n`` cases labelled ``"label 0"``, ``"label 1"``, ..., each with the arguments ``make()`` draws."""
    return [(f"{label} {i}", make()) for i in range(n)]


def _load_chapters() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("ch"):
            importlib.import_module(f"{__name__}.{module.name}")


def exercises(chapter: str | None = None) -> list[str]:
    """Names of the registered exercises, of one chapter (``"00"``) or all."""
    _load_chapters()
    return [name for name, ex in _REGISTRY.items() if chapter is None or ex.chapter == chapter]


def get_exercise(name: str) -> Exercise:
    """The registered exercise ``name``: its reference, its cases and its hints."""
    _load_chapters()
    if name not in _REGISTRY:
        raise ValueError(f"name: expected one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() > 4:
            return f"tensor of shape {list(value.shape)}"
        # float32's 0.2 prints as 0.20000000298023224: round in double precision for the message
        return f"tensor({(value.detach().double().round(decimals=4) if value.is_floating_point() else value).tolist()})"
    if callable(value) and hasattr(value, "__name__"):  # a function by its name, not its address
        return value.__name__
    return repr(value)


def _as_tensor(value):
    if isinstance(value, np.ndarray | float | int) and not isinstance(value, bool):
        return torch.as_tensor(value)
    return value


def compare(got, expected, name: str, atol: float, rtol: float) -> str | None:
    """The first difference between ``got`` and ``expected``, in words; None when they match."""
    if isinstance(expected, tuple):
        if not isinstance(got, tuple | list) or len(got) != len(expected):
            return f"expected a tuple of {len(expected)} values, got {_describe(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = compare(g, e, f"{name}[{i}]", atol, rtol)
            if problem:
                return problem
        return None
    got, expected = _as_tensor(got), _as_tensor(expected)
    if not isinstance(got, torch.Tensor):
        return f"{name}: expected a tensor of shape {list(expected.shape)}, got {type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"{name}: shape {list(got.shape)}, expected {list(expected.shape)}"
    got, expected = got.detach().double().cpu(), expected.detach().double()
    if not torch.isfinite(got).all():
        index = tuple((~torch.isfinite(got)).nonzero()[0].tolist())
        return f"{name}: entry {list(index)} is {got[index].item()}, expected {expected[index].item():.4g}"
    wrong = ~torch.isclose(got, expected, atol=atol, rtol=rtol)
    if wrong.any():
        index = tuple(wrong.nonzero()[0].tolist())
        return (
            f"{name}: entry {list(index)} is {got[index].item():.4g}, expected {expected[index].item():.4g} "
            f"({wrong.sum().item()} of {wrong.numel()} entries differ, largest error {(got - expected).abs().max().item():.3g})"
        )
    return None


def _clone(kwargs: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def verify(name: str, fn: Callable, seed: int = 0) -> CheckResult:
    """Run ``fn`` on the exercise's cases against the reference, and return the verdict."""
    ex = get_exercise(name)
    cases = ex.cases(torch.Generator().manual_seed(seed))
    for label, kwargs in cases:
        try:
            got = ex.run(fn, _clone(kwargs))
        except NotImplementedError:
            return CheckResult(name, "not done", f"{name}: not done yet. Replace the `raise NotImplementedError` with your code.")
        except Exception as error:  # the learner's bug: report it in one line, not a traceback
            args = ", ".join(f"{k}={_describe(v)}" for k, v in kwargs.items())
            return CheckResult(name, "failed", f"{name}({args}) raised {type(error).__name__}: {error}")
        expected = ex.run(ex.reference, _clone(kwargs))
        problem = compare(got, expected, ex.output_names[0] if len(ex.output_names) == 1 else "output", ex.atol, ex.rtol)
        if problem:
            for i, output in enumerate(ex.output_names):
                problem = problem.replace(f"output[{i}]", output)
            hint = ex.diagnose(got, expected, kwargs)
            args = ", ".join(f"{k}={_describe(v)}" for k, v in kwargs.items())
            message = f"{name}, case '{label}' ({args}):\n  {problem}" + (f"\n  hint: {hint}" if hint else "")
            return CheckResult(name, "failed", message)
    return CheckResult(name, "passed", f"{name}: all {len(cases)} cases match the reference.")


def check(name: str, fn: Callable, seed: int = 0) -> None:
    """Print whether the learner's ``fn`` matches the reference for exercise ``name``."""
    result = verify(name, fn, seed)
    mark = {"passed": "✔", "failed": "✘", "not done": "…"}[result.status]
    print(f"{mark} {result.message}")
