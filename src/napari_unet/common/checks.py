"""Argument checks shared by every public function: numbers, ranges and switches.

Each check accepts Python and numpy scalars alike (``np.int64(4)`` is a whole
number, ``np.float32(0.5)`` a real one, ``np.bool_`` a switch) and raises a
``ValueError`` that names the argument and says what is allowed.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["is_whole", "is_real", "check_whole", "check_switch"]


def is_whole(value: Any) -> bool:
    """True for Python or numpy integers (booleans excluded)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """True for finite Python or numpy real numbers (booleans excluded)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


def check_whole(name: str, value: Any, low: int, high: int | None = None, unit: str = "") -> int:
    """``value`` as an int if it is a whole number in ``low..high``, else ``ValueError``."""
    if not is_whole(value) or value < low or (high is not None and value > high):
        allowed = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a whole number{unit} {allowed}; got {value!r}.")
    return int(value)


def check_switch(name: str, value: Any) -> bool:
    """``value`` as a bool if it is True or False (numpy booleans too), else ``ValueError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}.")
    return bool(value)
