"""Argument checks shared by every public entry point.

Each check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right
kind, wrong value) with a message of one form: ``"<argument>: expected <what>,
got <what was received>"``. Nothing is silently coerced except a float array
cast to the model's float dtype, which every method documents.
"""

from __future__ import annotations

import numbers

import numpy as np

from .backend import get_array_module


def check_int(name: str, value, minimum: int = 1) -> int:
    """An integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_float(name: str, value, minimum: float | None = None, maximum: float | None = None,
                strict_minimum: bool = False) -> float:
    """A finite real number (not a bool) in the given range, returned as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        raise ValueError(f"{name}: expected a number {'>' if strict_minimum else '>='} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected a number <= {maximum}, got {value}")
    return value


def check_choice(name: str, value, choices) -> str:
    """One of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_matrix(name: str, x, n_cols: int, dtype, *, allow_empty: bool = False, unit_interval: bool = False):
    """A finite float 2-D array of ``n_cols`` columns, returned in ``dtype``.

    Integer, boolean and object arrays are refused (``TypeError``): a uint8
    image passed by mistake would otherwise be read as values up to 255.
    ``unit_interval`` additionally requires every value in [0, 1] (Bernoulli targets).
    """
    xp = get_array_module(x)
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise TypeError(f"{name}: expected a 2-D float array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (N, {n_cols}), got {x.ndim}-D shape {tuple(x.shape)}")
    if x.shape[1] != n_cols:
        raise ValueError(f"{name}: expected {n_cols} columns (features), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name}: expected at least one row, got an empty batch of shape {tuple(x.shape)}")
    x = xp.asarray(x, dtype=dtype)
    if not bool(xp.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or infinity")
    if unit_interval and x.size and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(f"{name}: expected values in [0, 1] for the Bernoulli likelihood, "
                         f"got values in [{float(x.min())}, {float(x.max())}]")
    return x


def check_rows(name: str, x, n_rows: int, other: str):
    """``x`` has as many rows as ``other``."""
    if x.shape[0] != n_rows:
        raise ValueError(f"{name}: expected {n_rows} rows (one per row of {other}), got {x.shape[0]}")
    return x
