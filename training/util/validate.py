"""Input validation with one error format: the parameter, the bad value, what was expected.

Every check raises ``ValueError`` (``TypeError`` for a wrong type) with a one-line message
such as ``metric must be one of ['logit', 'logit_diff'], got 'logits'``; the CLI prints it
as is, without a traceback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def check_choice(name: str, value: T, allowed: Iterable[T]) -> T:
    """``value`` if it is one of ``allowed``; else ``ValueError`` listing the allowed values."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_choices(name: str, values: Iterable[T], allowed: Iterable[T]) -> list[T]:
    """Every element of ``values`` in ``allowed``; the error names all unknown ones."""
    allowed = list(allowed)
    values = list(values)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{name}: unknown {unknown}; expected values from {allowed}")
    return values


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """A finite number (an ``int`` if ``integer``) within the given bounds; else a one-line
    error that states the expected range, e.g. ``lr must be a finite number > 0, got inf``."""
    kind = "an integer" if integer else "a finite number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    expected = f"{name} must be {kind}" + (f" {' and '.join(bounds)}" if bounds else "")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{expected}, got {value!r}")
    if integer and not isinstance(value, int):
        raise TypeError(f"{expected}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{expected}, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{expected}, got {value!r}")
    return value


#: Device names the trainer and evaluation accept (``auto``: this rank's GPU if any, else CPU).
DEVICE_NAMES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:<index>", "mps")
_DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(name: str, value: Any) -> str:
    """``value`` if it names a device of :data:`DEVICE_NAMES`; else ``ValueError`` listing them
    (torch itself would fail only when the model is moved, after data loading)."""
    if not isinstance(value, str) or not _DEVICE_RE.fullmatch(value):
        raise ValueError(f"{name} must be one of {list(DEVICE_NAMES)}, got {value!r}")
    return value
