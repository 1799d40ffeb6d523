"""Memory: how much there is, how much a request needs, and a clear refusal when it cannot fit.

Sizes that cannot fit are refused *before* anything is allocated, naming the flag or argument
that asked for them: an estimate of the bytes from the shapes is compared with the memory
available now (``MemAvailable`` in ``/proc/meminfo``, else the physical memory from
``os.sysconf``). The estimates count the arrays that stay alive together; they are meant to
catch requests that are wrong by orders of magnitude, not to predict the peak to the byte.
"""

from __future__ import annotations

import math
import os


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (Linux: ``MemAvailable``), else physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 1 << 62  # unknown: let the allocation itself decide


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def check_fits(argument: str, nbytes: float, what: str) -> None:
    """Raise ``MemoryError`` naming ``argument`` when ``nbytes`` (needed for ``what``) exceed the memory available.

    A ``MemoryError`` rather than a ``ValueError``: the request may be fine on a larger machine.
    """
    available = available_memory()
    if not math.isfinite(nbytes) or nbytes > available:
        raise MemoryError(f"{argument}: expected a size that fits in memory ({format_bytes(available)} available), "
                          f"got one needing about {format_bytes(nbytes)} for {what}")


def param_count(config) -> int:
    """The number of parameters of a model with :class:`~minivae.model.VAEConfig` ``config``, without building it."""
    return sum(math.prod(shape) for shape in config.param_shapes().values())


def model_bytes(config, itemsize: int = 4, training: bool = False) -> int:
    """Bytes of a model's flat buffers: parameters and gradients, and with ``training`` an optimizer's two moments."""
    return param_count(config) * itemsize * (4 if training else 2)


def activation_bytes(config, rows: int, samples: int = 1, itemsize: int = 4) -> int:
    """A rough bound on the activations a forward and backward pass over ``rows`` examples keeps alive."""
    widths = [config.data_dim + config.condition_dim, *config.hidden, *config.decoder_widths, 2 * config.latent_dim,
              2 * config.data_dim]
    return 4 * rows * max(1, samples) * sum(widths) * itemsize


__all__ = ["available_memory", "format_bytes", "check_fits", "param_count", "model_bytes", "activation_bytes"]
