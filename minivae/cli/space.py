"""Memory and disk for the command line: sizes that cannot fit are refused before anything is allocated, a run's
folder is checked for room before it is written to, and a write that fails names the flag and the reason.

The sizes come from :mod:`minivae.resources`; a refusal names the flag to make smaller (``--hidden/--latent``,
``--batch-size/--samples``, ``--n``, ``--ring-points``) and is an error like any other (exit status 2).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..resources import activation_bytes, check_fits, format_bytes, model_bytes, param_count


def check_ring_fits(points: int, flag: str) -> None:
    """A ring of ``points`` points, its split and the scores of its test part fit in memory (before any is made)."""
    check_fits(flag, points * 2 * 8 * 8, f"{points} ring points and their splits")


def check_training_fits(config, batch_size: int, samples: int, samples_flag: str) -> None:
    """The model of ``config`` with its gradients and optimizer moments, and the activations of a batch of
    ``batch_size`` with ``samples`` samples (given as ``samples_flag``), fit in memory."""
    check_fits("--hidden/--latent", model_bytes(config, training=True),
               f"{param_count(config)} parameters with their gradients and optimizer moments")
    check_fits(f"--batch-size/{samples_flag}", activation_bytes(config, batch_size, samples),
               f"the activations of a batch of {batch_size} with {samples} samples")


def check_samples_fit(config, n: int, itemsize: int) -> None:
    """``sample --n``: the activations of ``n`` samples and the samples themselves (float64, a few copies)."""
    check_fits("--n", activation_bytes(config, n, 1, itemsize) + n * 4 * config.data_dim * 8,
               f"{n} samples of {config.data_dim} features")


def check_gradcheck_fits(config, batch: int, samples: int, samples_flag: str) -> None:
    """``gradcheck``: the float64 model (and its finite-difference copy) and the activations of ``batch``."""
    check_fits("--data-dim/--hidden/--latent", model_bytes(config, 8) * 2,
               f"{param_count(config)} float64 parameters")
    check_fits(f"--batch/{samples_flag}", activation_bytes(config, batch, samples, 8),
               f"a batch of {batch} with {samples} samples in float64")


def check_free_space(out: Path, config) -> None:
    """``--out`` has room for a checkpoint (and its temporary copy while it is replaced)."""
    needed = 2 * (param_count(config) * 4 * 3 + (1 << 16))  # params and two optimizer moments, float32; twice
    try:
        stat = os.statvfs(out)
    except (OSError, AttributeError):
        return
    free = stat.f_bavail * stat.f_frsize
    if free < needed:
        raise OSError(errno.ENOSPC, f"--out: expected a folder with at least {format_bytes(needed)} free for the "
                                    f"checkpoint, got {str(out)!r} with {format_bytes(free)} free")


def out_error(exc: OSError, out: str, what: str) -> OSError:
    """An error writing into ``--out`` (a full disk, a read-only folder), naming the flag and the reason."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc  # the reason below any message of ours
    reason = cause.strerror or str(cause)
    return type(exc)(exc.errno, f"--out: expected a writable folder with room for {what}, got {out!r}: {reason}")
