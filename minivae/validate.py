"""Argument checks shared by every public entry point.

Each check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right
kind, wrong value) with a message of one form: ``"<argument>: expected <what>,
got <what was received>"``. Nothing is silently coerced except a float32 or
float64 array cast to the model's float dtype, which every method documents.
The checks run once, at the public entry points; the forward and backward
operations themselves trust their inputs. Paths are checked here too, by what
they must name (:func:`check_file_path`, :func:`check_folder_path`), for the
library's arguments and the command line's flags alike: ``name`` is either.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

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
                strict_minimum: bool = False, strict_maximum: bool = False) -> float:
    """A finite real number (not a bool) in the given range, returned as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        raise ValueError(f"{name}: expected a number {'>' if strict_minimum else '>='} {minimum}, got {value}")
    if maximum is not None and (value >= maximum if strict_maximum else value > maximum):
        raise ValueError(f"{name}: expected a number {'<' if strict_maximum else '<='} {maximum}, got {value}")
    return value


def check_choice(name: str, value, choices) -> str:
    """One of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    """``True`` or ``False`` (a string such as ``"no"`` would otherwise count as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool (True or False), got {type(value).__name__} {value!r}")
    return bool(value)


def check_generator(name: str, value):
    """A random generator such as ``numpy.random.default_rng(seed)`` (or CuPy's), not a seed or ``RandomState``."""
    if not (hasattr(value, "bit_generator") and callable(getattr(value, "standard_normal", None))):
        raise TypeError(f"{name}: expected a random generator such as numpy.random.default_rng(seed), "
                        f"got {type(value).__name__} {value!r}")
    return value


#: The float dtypes the models compute in; an array in any other dtype is refused, not cast.
FLOAT_DTYPES = ("float32", "float64")


def _check_float_dtype(name: str, x, expected: str):
    """An array (anything with ``dtype`` and ``shape``) of dtype float32 or float64.

    Integer, boolean and object arrays are refused: a uint8 image passed by
    mistake would otherwise be read as values up to 255. So are float16
    (a sign that precision was already lost), longdouble and complex.
    """
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise TypeError(f"{name}: expected {expected}, got {type(x).__name__}")
    if x.dtype.name not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {x.dtype}")


def _cast_finite(name: str, x, dtype):
    """``x`` in ``dtype``, refusing NaN and infinity."""
    xp = get_array_module(x)
    if not bool(xp.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or infinity")
    with np.errstate(over="ignore"):  # an overflow is reported below, as an error
        cast = xp.asarray(x, dtype=dtype)
    if cast.dtype != x.dtype and not bool(xp.isfinite(cast).all()):  # finite in float64, infinite in float32
        largest = float(xp.abs(x).max())
        raise ValueError(f"{name}: expected values within {np.dtype(dtype).name}'s range (magnitude at most "
                         f"{float(np.finfo(dtype).max):.4g}), got values up to {largest:.4g}, which overflow "
                         f"{np.dtype(dtype).name}")
    return cast


def check_matrix_shape(name: str, x, n_cols: int, *, allow_empty: bool = False):
    """A float32/float64 2-D array of ``n_cols`` columns, checked without reading its values (no copy)."""
    _check_float_dtype(name, x, "a 2-D float array")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (N, {n_cols}), got {x.ndim}-D shape {tuple(x.shape)}")
    if x.shape[1] != n_cols:
        raise ValueError(f"{name}: expected {n_cols} columns (features), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name}: expected at least one row, got an empty batch of shape {tuple(x.shape)}")
    return x


def check_matrix(name: str, x, n_cols: int, dtype, *, allow_empty: bool = False, unit_interval: bool = False):
    """A finite float32/float64 2-D array of ``n_cols`` columns, returned in ``dtype``.

    ``unit_interval`` additionally requires every value in [0, 1] (Bernoulli targets).
    """
    check_matrix_shape(name, x, n_cols, allow_empty=allow_empty)
    x = _cast_finite(name, x, dtype)
    if unit_interval and x.size and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(f"{name}: expected values in [0, 1] for the Bernoulli likelihood, "
                         f"got values in [{float(x.min())}, {float(x.max())}]")
    return x


def check_array(name: str, x, shape: tuple, dtype):
    """A finite float32/float64 array of ``shape``, returned in ``dtype``.

    An entry of ``shape`` that is a string (a shape letter such as ``"S"``)
    matches any size >= 1: ``check_array("noise", noise, ("S", N, K), dtype)``.
    """
    def fits(size, wanted):  # a letter stands for any size >= 1
        return size >= 1 if isinstance(wanted, str) else size == wanted

    described = "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
    _check_float_dtype(name, x, f"a float array of shape {described}")
    if x.ndim != len(shape) or not all(map(fits, x.shape, shape)):
        raise ValueError(f"{name}: expected shape {described}, got shape {tuple(x.shape)}")
    return _cast_finite(name, x, dtype)


def check_rows(name: str, x, n_rows: int, other: str):
    """``x`` has as many rows as ``other``."""
    if x.shape[0] != n_rows:
        raise ValueError(f"{name}: expected {n_rows} rows (one per row of {other}), got {x.shape[0]}")
    return x


def check_path(name: str, path) -> Path:
    """A path given as a str, bytes or os.PathLike, and not the empty path (which would mean the current folder)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike path, got {type(path).__name__} {path!r}")
    text = os.fsdecode(os.fspath(path))
    if not text:
        raise ValueError(f"{name}: expected a path, got the empty path ''")
    return Path(text)


def check_file_path(name: str, path, *, existing: bool = False, suffixes: tuple = ()) -> Path:
    """A path naming a file, not a directory: with ``existing`` a file that is there (to read), else one whose
    folder is there (to write; no folder is created); ending in one of ``suffixes`` when they are given."""
    path = check_path(name, path)
    if suffixes and path.suffix not in suffixes:
        raise ValueError(f"{name}: expected a path ending in {' or '.join(suffixes)}, got {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"{name}: expected a file path, got {str(path)!r}, which is a directory")
    if existing and not path.exists():
        raise FileNotFoundError(f"{name}: expected an existing file, got {str(path)!r}, which does not exist")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{name}: expected a file in an existing folder, got {str(path)!r}, whose folder "
                                f"{folder!r} does not exist")
    return path


def check_folder_path(name: str, path) -> Path:
    """A path naming a folder, there or to be created: anything but an existing file."""
    path = check_path(name, path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{name}: expected a folder (created if missing), got {str(path)!r}, which is a "
                                 "file")
    return path
