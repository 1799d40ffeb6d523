"""The array backend: NumPy on the CPU, CuPy on an NVIDIA GPU.

This is the only module that imports CuPy. Library code never asks "is this
CuPy?"; it asks for the array module of its inputs::

    xp = get_array_module(x)
    y = xp.exp(x)

and the same line of maths runs on either device. CuPy stays optional: when
it is missing, or installed on a machine without a usable GPU, everything
runs on the CPU and asking for ``device="cuda"`` raises an error that says
which of the two is the case.
"""

from __future__ import annotations

import numpy as np

DEVICES = ("cpu", "cuda", "auto")

try:  # CuPy is optional.
    import cupy as _cupy
except ImportError as exc:  # pragma: no cover - depends on the machine
    _cupy = None
    _CUPY_IMPORT_ERROR = str(exc)
else:  # pragma: no cover - depends on the machine
    _CUPY_IMPORT_ERROR = None


#: Elements one block of a blocked computation may hold, per purpose and device: the one place these sizes are
#: chosen. On the CPU a block's temporaries should stay small enough that the allocator reuses them (and they stay
#: in cache); on a GPU every block is a few kernel launches of ~10 us of host time each, so a block should be as
#: large as memory allows: at 2^24 elements (64 MiB in float32 per temporary) the loss of a batch-8192 step at
#: D = 784 is one block, and a scoring pass of 256 examples at D = 784 takes 83 samples a chunk.
#: ``"loss"``: the Bernoulli loss of a training step, in row blocks (``minivae.ops.LOSS_BLOCK_ELEMENTS``);
#: ``"scoring"``: the importance samples of :func:`minivae.scoring.log_likelihood`, in chunks
#: (``minivae.scoring.CHUNK_ELEMENTS``).
BLOCK_ELEMENTS = {"loss": {"cpu": 1 << 16, "cuda": 1 << 24}, "scoring": {"cpu": 1 << 20, "cuda": 1 << 24}}


def cuda_status() -> tuple[bool, str]:
    """Whether the CUDA backend can be used, and why not when it cannot."""
    if _cupy is None:
        return False, f"CuPy is not installed ({_CUPY_IMPORT_ERROR}); install minivae[cuda12] or minivae[cuda13]"
    try:
        available = bool(_cupy.cuda.is_available())
    except Exception as exc:  # pragma: no cover - driver errors vary
        return False, f"CuPy is installed but CUDA failed to initialise: {exc}"
    if not available:
        return False, "CuPy is installed but no CUDA GPU is available on this machine"
    return True, "CUDA GPU available"


def resolve_device(device: str) -> str:
    """Turn ``"cpu" | "cuda" | "auto"`` into ``"cpu"`` or ``"cuda"``.

    ``"auto"`` picks the GPU when one is usable. ``"cuda"`` without a usable
    GPU raises ``RuntimeError`` saying whether CuPy or the GPU is missing.
    """
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device: expected one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return "cpu"
    ok, why = cuda_status()
    if device == "auto":
        return "cuda" if ok else "cpu"
    if not ok:
        raise RuntimeError(f"device: 'cuda' was requested but {why}")
    return "cuda"


def array_module(device: str):
    """The array module (``numpy`` or ``cupy``) for a resolved device name."""
    return _cupy if resolve_device(device) == "cuda" else np


def get_array_module(*arrays):
    """The array module of the given arrays: ``cupy`` if any is a CuPy array."""
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    return np


def device_of(array) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "cpu" if get_array_module(array) is np else "cuda"


def to_numpy(array) -> np.ndarray:
    """A NumPy copy of ``array`` (a device-to-host transfer for CuPy arrays)."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)


def to_device(array, device: str, dtype=None):
    """``array`` on ``device`` (``"cpu"`` or ``"cuda"``), optionally cast.

    No copy when it is already there in that dtype; a host-device transfer otherwise.
    """
    xp = array_module(device)
    if xp is np:
        array = to_numpy(array)
    return xp.asarray(array, dtype=dtype)


def default_rng(seed, device: str = "cpu"):
    """A seeded random generator that draws on ``device``.

    ``seed`` is an int or a :class:`numpy.random.SeedSequence`. NumPy and
    CuPy generators seeded alike give different streams: tests that compare
    devices draw their noise on the host and pass it in.
    """
    xp = array_module(device)
    return xp.random.default_rng(seed)


def generator_device(rng) -> str | None:
    """``"cpu"`` for a NumPy generator, ``"cuda"`` for a CuPy one, ``None`` for anything else."""
    if isinstance(rng, np.random.Generator):
        return "cpu"
    if _cupy is not None and isinstance(rng, _cupy.random.Generator):
        return "cuda"
    return None


def generator_state(rng):
    """A JSON-able state that restores a NumPy generator exactly; ``None`` for CuPy's, whose state cannot be read."""
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else None


def take_rows(x, idx, out):
    """``out[...] = x[idx]``: gather minibatch rows into a reused buffer.

    NumPy's ``take(..., mode="clip")`` writes straight into ``out`` (its
    default mode would gather into a temporary first); CuPy's ``take`` has no
    mode and gathers in one kernel.
    """
    if isinstance(x, np.ndarray):
        np.take(x, idx, axis=0, out=out, mode="clip")
    else:  # pragma: no cover - needs a GPU
        out[...] = x[idx]
    return out


def raw_module(source: str, options: tuple):
    """``cupy.RawModule(code=source, options=options)``: CUDA C++ compiled at run time by NVRTC.

    Used by :mod:`minivae.fused`, which thereby never imports CuPy itself. Raises ``RuntimeError`` saying why
    when CuPy or a GPU is unavailable.
    """
    ok, why = cuda_status()
    if not ok:
        raise RuntimeError(f"kernels: the fused CUDA kernels need a GPU, but {why}")
    return _cupy.RawModule(code=source, options=tuple(options))
