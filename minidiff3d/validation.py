"""Input checks that fail loudly, naming the argument, what was expected and what came.

Every public function of the package checks its inputs with these helpers, so that a
wrong shape never broadcasts silently and a NaN never spreads into a result.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

# A shape spec lists one entry per trailing dimension: an int must match exactly, a
# string is a named size (the same name must match the same size within one call), and
# None matches anything. A leading "..." allows any number of batch dimensions.
ShapeSpec = Sequence[int | str | None]


def _fmt(spec: ShapeSpec) -> str:
    return "[" + ", ".join("..." if s == "..." else ("*" if s is None else str(s)) for s in spec) + "]"


def check_tensor(
    name: str,
    value,
    shape: ShapeSpec | None = None,
    sizes: dict[str, int] | None = None,
    finite: bool = True,
    floating: bool = False,
) -> torch.Tensor:
    """Check that ``value`` is a tensor of the given ``shape`` and return it.

    ``sizes`` maps named sizes to values already fixed by other arguments; it is filled in
    place, so several calls can share it (``sizes={}`` then ``sizes["N"]``).
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {_fmt(shape or [])}, got {type(value).__name__}")
    if shape is not None:
        spec = list(shape)
        batched = bool(spec) and spec[0] == "..."
        dims = spec[1:] if batched else spec
        actual = tuple(value.shape)
        ok = len(actual) >= len(dims) if batched else len(actual) == len(dims)
        tail = actual[len(actual) - len(dims):] if ok else ()
        sizes = {} if sizes is None else sizes
        for want, got in zip(dims, tail):
            if isinstance(want, int) and want != got:
                ok = False
            elif isinstance(want, str):
                if sizes.setdefault(want, got) != got:
                    raise ValueError(
                        f"{name}: expected shape {_fmt(spec)} with {want}={sizes[want]} (fixed by an earlier dimension or argument), "
                        f"got {list(actual)}"
                    )
        if not ok:
            raise ValueError(f"{name}: expected shape {_fmt(spec)}, got {list(actual)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
    if finite and value.is_floating_point() and not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).sum().item()
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf entries of {value.numel()}")
    return value


def check_positive_int(name: str, value) -> int:
    """Return ``value`` as an int, or raise if it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def check_non_negative_int(name: str, value) -> int:
    """Return ``value`` as an int, or raise if it is not an integer ≥ 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def _number(name: str, value, expected: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected {expected}, got {value!r}") from None


def check_positive(name: str, value) -> float:
    """Return ``value`` as a float, or raise if it is not a finite positive number."""
    number = _number(name, value, "a positive number")
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name}: expected a finite positive number, got {value!r}")
    return number


def check_non_negative(name: str, value) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number ≥ 0 (NaN included)."""
    number = _number(name, value, "a non-negative number")
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name}: expected a finite non-negative number, got {value!r}")
    return number


def check_fraction(name: str, value) -> float:
    """Return ``value`` as a float, or raise if it is not a number in [0, 1] (NaN included)."""
    number = _number(name, value, "a fraction in [0, 1]")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name}: expected a fraction in [0, 1], got {value!r}")
    return number


def check_interval(name: str, value, low: float, high: float) -> tuple[float, float]:
    """Return ``value`` as ``(min, max)`` floats, or raise unless ``low <= min <= max <= high``."""
    expected = f"(min, max) with {low} <= min <= max <= {high}"
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected {expected}, got {value!r}") from None
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return lo, hi


def check_broadcast(**tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The named tensors broadcast to one shape, or an error naming each one's shape."""
    try:
        return torch.broadcast_tensors(*tensors.values())
    except RuntimeError:
        shapes = ", ".join(f"{name} {list(t.shape)}" for name, t in tensors.items())
        raise ValueError(f"{', '.join(tensors)}: expected shapes that broadcast (numbers, or sequences of one length), got {shapes}") from None


def check_choice(name: str, value, choices: Sequence) -> None:
    """Raise if ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def check_images(name: str, images, channels: int = 3) -> torch.Tensor:
    """Check a batch of images ``[B,C,H,W]`` with values in [0, 1] (the package's image convention)."""
    return check_image_range(name, check_tensor(name, images, shape=[None, channels, None, None], floating=True))


def check_image_range(name: str, images: torch.Tensor) -> torch.Tensor:
    """Raise unless every value of ``images`` (any shape) lies in [0, 1], give or take rounding."""
    if images.numel() and (images.min() < -1e-3 or images.max() > 1 + 1e-3):
        raise ValueError(f"{name}: expected values in [0, 1], got [{images.min().item():.3g}, {images.max().item():.3g}] "
                         f"(images in [-1, 1] belong only inside the diffusion models)")
    return images
