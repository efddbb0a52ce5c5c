"""Validation helpers shared by the data modules (private)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..exceptions import ValidationError

#: What a ``seed`` argument may be: an int, a NumPy Generator, or None (fresh OS entropy).
SeedLike = int | np.random.Generator | None


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum``, or raise a ValidationError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValidationError(name, f"an integer >= {minimum}", repr(value))
    return int(value)


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as a float, requiring a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValidationError(name, "a positive finite number", repr(value))
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValidationError(name, "a positive finite number", repr(value))
    return v


def check_finite(value: Any, name: str) -> float:
    """Return ``value`` as a float, requiring a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValidationError(name, "a finite real number", repr(value))
    v = float(value)
    if not math.isfinite(v):
        raise ValidationError(name, "a finite real number", repr(value))
    return v


def check_float_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    """Return ``dtype`` if it is a floating-point torch dtype."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValidationError(
            name, "a floating-point torch.dtype such as torch.float32", repr(dtype)
        )
    return dtype


def make_rng(seed: Any, name: str = "seed") -> np.random.Generator:
    """Turn ``seed`` (int >= 0, Generator or None) into a NumPy Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValidationError(name, "an integer >= 0, a numpy.random.Generator or None", repr(seed))
    return np.random.default_rng(int(seed))


def check_step_ratio(numerator: float, denominator: float, name: str, what: str) -> int:
    """Return round(numerator / denominator), requiring it to be a whole number >= 1."""
    ratio = numerator / denominator
    k = round(ratio)
    if k < 1 or abs(ratio - k) > 1e-9 * max(1.0, ratio):
        raise ValidationError(name, what, f"{denominator!r} (ratio {ratio!r})")
    return int(k)
