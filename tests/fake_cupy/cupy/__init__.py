"""A stand-in for CuPy, over NumPy, that checks device discipline on a machine without a GPU.

It is *not* CuPy and proves nothing about CUDA: ``tests/test_device_discipline.py``
puts it on the path of a child process so that ``device="cuda"`` runs the
library's GPU code path (everything but the fused kernels, which need NVRTC)
on arrays of a distinct type, ``cupy.ndarray``. Like CuPy, it refuses an
operation that mixes a device array with a host (NumPy) array, so library code
that builds a NumPy array in the middle of a GPU computation, which would fail
or transfer silently on a real GPU, fails here too. Results of operations on
device arrays stay device arrays; ``asnumpy`` brings one back.

Two things a GPU makes costly are modelled, for ``tests/test_devices.py``:

- **Launches.** Every operation on device arrays (a ufunc, a reduction, a NumPy function, a random draw, an
  assignment into a device array) counts as one kernel launch in :data:`LAUNCHES`, by name, roughly as CuPy
  launches them (a reduction or a matrix product is one launch; allocation and views are none). A fused
  kernel's launcher counts its own.
- **Synchronisation.** Reading a device value on the host (``float``, ``bool``, ``int``, ``item``, ``get``,
  ``asnumpy``, ``tolist``) waits for the GPU; inside ``allow_synchronize(False)`` (``cupyx.allow_synchronize``)
  it raises :class:`DeviceSynchronized`, as CuPy does.
"""

import collections
import contextlib
import sys
import types

import numpy as np

#: Kernel launches so far, by operation name (``LAUNCHES.clear()`` to start counting).
LAUNCHES = collections.Counter()
#: Functions that allocate or describe arrays without launching a kernel.
NO_LAUNCH = {"empty", "empty_like", "get_array_module", "shares_memory", "asnumpy", "result_type", "dtype",
             "may_share_memory", "ndim", "shape"}
_sync_allowed = [True]


class DeviceSynchronized(RuntimeError):
    """A device value was read on the host inside ``allow_synchronize(False)``."""


@contextlib.contextmanager
def allow_synchronize(allow):
    """``cupyx.allow_synchronize``: with ``False``, reading a device value on the host raises."""
    _sync_allowed.append(bool(allow))
    try:
        yield
    finally:
        _sync_allowed.pop()


def _synchronize(what):
    if not _sync_allowed[-1]:
        raise DeviceSynchronized(f"fake cupy: {what} read a device value on the host (a synchronisation)")


class ndarray(np.ndarray):  # noqa: N801 - CuPy's name
    """A "device" array: a NumPy array that refuses to meet a host array in one operation."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _refuse_host(ufunc.__name__, inputs + tuple(kwargs.get("out", ()) or ()))
        LAUNCHES[ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"] += 1
        inputs = tuple(_host(a) for a in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_host(o) for o in kwargs["out"])
        return _device(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        _refuse_host(func.__name__, list(args) + list(kwargs.values()))
        if func.__name__ not in NO_LAUNCH:
            LAUNCHES[func.__name__] += 1
        return _device(func(*_host(args), **{k: _host(v) for k, v in kwargs.items()}))

    def __setitem__(self, key, value):
        _refuse_host("__setitem__", [value])
        LAUNCHES["copy"] += 1
        self.view(np.ndarray)[key] = _host(value)

    def astype(self, dtype, *args, **kwargs):
        LAUNCHES["astype"] += 1
        return _device(self.view(np.ndarray).astype(dtype, *args, **kwargs))

    def copy(self, *args, **kwargs):
        LAUNCHES["copy"] += 1
        return _device(self.view(np.ndarray).copy(*args, **kwargs))

    def get(self):
        _synchronize("get")
        return np.array(self.view(np.ndarray))

    def item(self, *args):
        _synchronize("item")
        return self.view(np.ndarray).item(*args)

    def tolist(self):
        _synchronize("tolist")
        return self.view(np.ndarray).tolist()

    def __float__(self):
        _synchronize("float")
        return float(self.view(np.ndarray))

    def __int__(self):
        _synchronize("int")
        return int(self.view(np.ndarray))

    def __bool__(self):
        _synchronize("bool")
        return bool(self.view(np.ndarray))

    def __index__(self):
        _synchronize("index")
        return self.view(np.ndarray).__index__()


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
    if isinstance(a, ndarray):
        _synchronize("asnumpy")
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
            if name not in NO_LAUNCH:
                LAUNCHES[name] += 1
            return _device(value(*_host(args), **{k: _host(v) for k, v in kwargs.items()}))
        return on_device
    return value


class Generator:
    """Draws into device arrays; the stream is NumPy's (CuPy's differs, which the library must not rely on)."""

    def __init__(self, seed=None):
        self._rng = np.random.default_rng(seed)
        self.bit_generator = self._rng.bit_generator

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        LAUNCHES["standard_normal"] += 1
        if out is not None:
            self._rng.standard_normal(dtype=dtype, out=_host(out))
            return out
        return _device(self._rng.standard_normal(size, dtype=dtype))

    def random(self, size=None, dtype=np.float64, out=None):
        LAUNCHES["random"] += 1
        return _device(self._rng.random(size, dtype=dtype))


random = types.SimpleNamespace(default_rng=Generator, Generator=Generator)
cuda = types.SimpleNamespace(is_available=lambda: True)
