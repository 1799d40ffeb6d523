"""The stand-in's ``cupyx``: only ``allow_synchronize`` and its error (see ``tests/fake_cupy/cupy``)."""

from cupy import DeviceSynchronized, allow_synchronize  # noqa: F401
