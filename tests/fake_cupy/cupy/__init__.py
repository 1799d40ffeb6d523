"""A stand-in for CuPy, over NumPy, that checks device discipline on a machine without a GPU.

It is *not* CuPy and proves nothing about CUDA: ``tests/test_device_discipline.py``
puts it on the path of a child process so that ``device="cuda"`` runs the
library's GPU code path (everything but the fused kernels, which need NVRTC)
on arrays of a distinct type, ``cupy.ndarray``. Like CuPy, it refuses an
operation that mixes a device array with a host (NumPy) array, so library code
that builds a NumPy array in the middle of a GPU computation, which would fail
or transfer silently on a real GPU, fails here too. Results of operations on
device arrays stay device arrays; ``asnumpy`` brings one back.
"""

import sys
import types

import numpy as np


class ndarray(np.ndarray):  # noqa: N801 - CuPy's name
    """A "device" array: a NumPy array that refuses to meet a host array in one operation."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _refuse_host(ufunc.__name__, inputs + tuple(kwargs.get("out", ()) or ()))
        inputs = tuple(_host(a) for a in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_host(o) for o in kwargs["out"])
        return _device(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        _refuse_host(func.__name__, list(args) + list(kwargs.values()))
        return _device(func(*_host(args), **{k: _host(v) for k, v in kwargs.items()}))

    def get(self):
        return np.array(self.view(np.ndarray))


def _refuse_host(what, values):
    for value in values:
        if isinstance(value, (list, tuple)):
            _refuse_host(what, value)
        elif isinstance(value, np.ndarray) and not isinstance(value, ndarray) and value.ndim > 0:
            raise TypeError(f"fake cupy: a host (NumPy) array of shape {value.shape} mixed into {what}")


def _host(value):
    if isinstance(value, ndarray):
        return value.view(np.ndarray)
    if isinstance(value, (list, tuple)):
        return type(value)(_host(v) for v in value)
    return value


def _device(value):
    if isinstance(value, tuple):
        return tuple(_device(v) for v in value)
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and not isinstance(value, ndarray)):
        return np.asarray(value).view(ndarray)
    return value


def asarray(a, dtype=None):
    """A host-to-device "transfer": a copy when ``a`` is a host array."""
    if isinstance(a, ndarray):
        return _device(np.asarray(a.view(np.ndarray), dtype=dtype))
    return np.array(a, dtype=dtype).view(ndarray)


def asnumpy(a):
    return np.array(_host(a))


def get_array_module(*arrays):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in arrays) else np


def shares_memory(a, b):
    return np.shares_memory(_host(a), _host(b))


def __getattr__(name):  # every other function of NumPy, returning device arrays
    value = getattr(np, name)
    if callable(value) and not isinstance(value, type):
        def on_device(*args, **kwargs):
            _refuse_host(name, list(args) + list(kwargs.values()))
            return _device(value(*_host(args), **{k: _host(v) for k, v in kwargs.items()}))
        return on_device
    return value


class Generator:
    """Draws into device arrays; the stream is NumPy's (CuPy's differs, which the library must not rely on)."""

    def __init__(self, seed=None):
        self._rng = np.random.default_rng(seed)
        self.bit_generator = self._rng.bit_generator

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        if out is not None:
            self._rng.standard_normal(dtype=dtype, out=_host(out))
            return out
        return _device(self._rng.standard_normal(size, dtype=dtype))

    def random(self, size=None, dtype=np.float64, out=None):
        return _device(self._rng.random(size, dtype=dtype))


random = types.SimpleNamespace(default_rng=Generator, Generator=Generator)
cuda = types.SimpleNamespace(is_available=lambda: True)
