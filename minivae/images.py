"""Pictures without matplotlib: a grayscale PNG writer and image grids.

A PNG file is an 8-byte signature followed by chunks, each ``length (4
bytes, big-endian) | type (4 ASCII letters) | data | CRC-32 of type and
data``. A grayscale image needs three: ``IHDR`` (width, height, bit depth 8,
colour type 0 = gray), ``IDAT`` (the zlib-compressed rows, each preceded by a
filter byte, 0 = none) and an empty ``IEND``. That is all :func:`write_png`
writes, with nothing but ``zlib`` and ``struct``, so the command line can save
samples with only numpy installed.
"""

from __future__ import annotations

import math
import numbers
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from .checkpoint import readable_mode
from .validate import check_file_path, check_int

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 over type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _to_uint8(image) -> np.ndarray:
    """A 2-D uint8 image as is, or a 2-D float image in [0, 1] scaled to 0..255 and rounded."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image: expected a 2-D numpy array, got {type(image).__name__}")
    if image.ndim != 2 or 0 in image.shape:
        raise ValueError(f"image: expected a non-empty 2-D array of shape (height, width), got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind != "f":
        raise TypeError(f"image: expected a float array in [0, 1] or a uint8 array, got dtype {image.dtype}")
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise ValueError(f"image: expected finite values in [0, 1], got values in [{image.min()}, {image.max()}]")
    return np.round(image * 255.0).astype(np.uint8)


def write_png(path, image: np.ndarray) -> Path:
    """Write ``image`` (height, width), float in [0, 1] or uint8, as an 8-bit grayscale PNG.

    0 is black, 1 (or 255) white. The file is written next to ``path`` under a
    temporary name and renamed into place, so ``path`` is never half-written.
    The directory must exist (FileNotFoundError otherwise). Returns ``path`` as a Path.
    """
    path = check_file_path("path", path)
    pixels = _to_uint8(image)
    height, width = pixels.shape
    rows = np.hstack([np.zeros((height, 1), np.uint8), pixels])  # filter byte 0 before every row
    png = (PNG_SIGNATURE
           + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
           + _chunk(b"IEND", b""))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(png)
        readable_mode(tmp, path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def tile(images: np.ndarray, n_cols: int, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Lay ``images`` (N, h, w) out row by row in a grid of ``min(n_cols, N)`` columns.

    Neighbouring tiles are ``pad`` pixels apart; the gaps and the unused cells
    of the last row are ``pad_value``. The result has ``images``' dtype and shape
    ``(r*h + (r-1)*pad, c*w + (c-1)*pad)`` with ``c = min(n_cols, N)``, ``r = ceil(N / c)``.
    """
    if not isinstance(images, np.ndarray) or images.dtype.kind not in "fiu":
        got = f"dtype {images.dtype}" if isinstance(images, np.ndarray) else type(images).__name__
        raise TypeError(f"images: expected a numeric numpy array, got {got}")
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"images: expected a non-empty 3-D array of shape (N, h, w), got shape {images.shape}")
    n_cols = check_int("n_cols", n_cols, minimum=1)
    pad = check_int("pad", pad, minimum=0)
    if isinstance(pad_value, bool) or not isinstance(pad_value, numbers.Real):
        raise TypeError(f"pad_value: expected a real number, got {type(pad_value).__name__} {pad_value!r}")
    if not math.isfinite(pad_value) or images.dtype.kind in "iu" and not (
            float(pad_value).is_integer() and np.iinfo(images.dtype).min <= pad_value <= np.iinfo(images.dtype).max):
        raise ValueError(f"pad_value: expected a finite number that {images.dtype} can hold, got {pad_value!r}")
    n, h, w = images.shape
    cols = min(n_cols, n)
    rows = math.ceil(n / cols)
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad), pad_value, dtype=images.dtype)
    for i, image in enumerate(images):
        top, left = (i // cols) * (h + pad), (i % cols) * (w + pad)
        grid[top:top + h, left:left + w] = image
    return grid


def image_grid(x: np.ndarray, image_shape: tuple[int, int], n_cols: int, *, pad: int = 1,
               pad_value: float = 1.0, scale: int = 1) -> np.ndarray:
    """Flat rows ``x`` (N, h*w) -> one grid image, each pixel repeated ``scale`` x ``scale`` times.

    ``image_shape`` is (h, w); the rows are reshaped in C (row-major) order, as
    :func:`minivae.data.load_mnist` and :func:`minivae.data.digits` flatten them.
    See :func:`tile` for ``n_cols``, ``pad`` and ``pad_value``.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        got = f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"x: expected a 2-D numpy array of shape (N, h*w), got {got}")
    if not isinstance(image_shape, tuple) or len(image_shape) != 2:
        raise TypeError(f"image_shape: expected a tuple (h, w), got {image_shape!r}")
    h, w = (check_int("image_shape", side, minimum=1) for side in image_shape)
    if h * w != x.shape[1]:
        raise ValueError(f"image_shape: expected h*w = {x.shape[1]} (the columns of x), got {image_shape}")
    scale = check_int("scale", scale, minimum=1)
    grid = tile(x.reshape(-1, h, w), n_cols, pad=pad, pad_value=pad_value)
    return np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
