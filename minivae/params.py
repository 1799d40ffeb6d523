"""All parameters in one flat buffer, all gradients in another, with named views.

An optimizer then updates every parameter with a handful of whole-buffer
operations instead of a Python loop over arrays, and saving a model is saving
one array. The named views (``params["decoder.0.W"]``) are ordinary arrays
that share memory with the buffer: writing into a view writes the buffer.
"""

from __future__ import annotations

import math

import numpy as np


class ParamBuffer:
    """Flat storage for named parameter arrays and their gradients.

    Parameters
    ----------
    shapes : dict[str, tuple]
        Name -> shape, in the order the parameters are laid out.
    dtype : numpy dtype
        float32 for training, float64 for gradient checks.
    xp : module
        ``numpy`` or ``cupy`` (see :mod:`minivae.backend`).
    """

    def __init__(self, shapes: dict, dtype, xp=np):
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        self.dtype = np.dtype(dtype)
        self.xp = xp
        sizes = [math.prod(shape) for shape in self.shapes.values()]
        self.size = sum(sizes)
        self.data = xp.zeros(self.size, dtype=self.dtype)  # every parameter
        self.grad = xp.zeros(self.size, dtype=self.dtype)  # dL/d(every parameter)
        self.offsets = {}
        offset = 0
        for name, size in zip(self.shapes, sizes):
            self.offsets[name] = (offset, offset + size)
            offset += size
        self.values = self.views(self.data)
        self.grads = self.views(self.grad)

    def views(self, flat) -> dict:
        """Named views of any flat array of the buffer's size, laid out as the parameters are (a second gradient
        buffer, say)."""
        return {name: flat[start:stop].reshape(self.shapes[name]) for name, (start, stop) in self.offsets.items()}

    def __getitem__(self, name):
        return self.values[name]

    def __iter__(self):
        return iter(self.shapes)

    def __len__(self):
        return len(self.shapes)

    def names(self) -> list:
        return list(self.shapes)
