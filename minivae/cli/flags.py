"""The command line's flags: each flag's type, and the flags that name something to find.

A type refuses a value that is wrong on its own before anything runs: argparse puts the flag in front of the
message, ``argument --epochs: expected an integer >= 1, got '0'``, prints the usage and exits with status 2.
:func:`requested_device`, :func:`checkpoint_model` and :func:`check_data_dir` turn ``--device``,
``--checkpoint`` and ``--data-dir`` into what they name, every failure naming the flag.
"""

from __future__ import annotations

import argparse
import math

from ..backend import resolve_device
from ..reparam import LOG_VAR_LIMIT
from ..serialize import load_model
from ..validate import check_folder_path

#: The flags that name :func:`minivae.iwae.check_objective`'s arguments in its messages.
OBJECTIVE_FLAGS = {"objective": "--objective", "n_samples": "--samples", "k_train": "--k-train", "engine": "--engine"}

#: The most epochs any epoch-valued flag takes (--epochs, --warmup, --lr-warmup, --step-every): a million
#: passes over the data is beyond any run here, and keeps every count of steps an exact integer.
MAX_EPOCHS = 10 ** 6


def hidden_widths(text: str) -> tuple:
    """``"128,64"`` -> (128, 64); ``""`` or ``"none"`` -> () (no hidden layer)."""
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 128,64, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"expected positive widths, got {text!r}")
    return widths


def integer(minimum: int, maximum: int | None = None):
    """An argparse type: an integer >= ``minimum`` (and <= ``maximum``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum:g}]"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}")
        return value

    return parse


def number(minimum: float, strict: bool = False, maximum: float | None = None, why: str = ""):
    """An argparse type: a finite number >= ``minimum`` (> with ``strict``), and <= ``maximum`` (``why`` says
    what the bound means)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(f"expected a finite number {'>' if strict else '>='} {minimum}, "
                                             f"got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected a number <= {maximum:g}{why}, got {text!r}")
        return value

    return parse


POSITIVE, NON_NEGATIVE = integer(1), integer(0)
#: A number of epochs (it may be a fraction of one).
EPOCHS = number(0.0, maximum=MAX_EPOCHS, why=" epochs (minivae.cli.flags.MAX_EPOCHS)")


def fraction(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    value = number(0.0, strict=True)(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def log_var(text: str) -> float:
    """``--init-log-var``: a log-variance inside the clamp [-LOG_VAR_LIMIT, LOG_VAR_LIMIT] (eq. logvar-clamp)."""
    value = number(-LOG_VAR_LIMIT)(text)
    if value > LOG_VAR_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a log-variance in [-{LOG_VAR_LIMIT:g}, {LOG_VAR_LIMIT:g}], "
                                         f"got {text!r}")
    return value


def variance(text: str) -> float:
    """``--fixed-variance``: a variance whose log lies inside the log-variance clamp (eq. logvar-clamp)."""
    value = number(0.0, strict=True)(text)
    if not math.exp(-LOG_VAR_LIMIT) <= value <= math.exp(LOG_VAR_LIMIT):
        raise argparse.ArgumentTypeError(f"expected a variance in [exp(-{LOG_VAR_LIMIT:g}), exp({LOG_VAR_LIMIT:g})], "
                                         f"got {text!r}")
    return value


def requested_device(args) -> str:
    """``--device`` resolved to ``cpu`` or ``cuda``; asking for a GPU that is not there names the flag."""
    try:
        return resolve_device(args.device)
    except RuntimeError as exc:
        raise ValueError(f"--{exc}") from None  # "--device: 'cuda' was requested but ..."


def checkpoint_model(path: str, device: str):
    """The model in the checkpoint ``--checkpoint``, on ``device``; every failure names the flag."""
    try:
        return load_model(path, device)
    except FileNotFoundError:
        raise FileNotFoundError(f"--checkpoint: expected an existing checkpoint file, got {path!r}") from None
    except (OSError, ValueError) as exc:  # CheckpointError is a ValueError
        raise ValueError(f"--checkpoint: {exc}") from exc


def check_data_dir(data_dir, dataset: str) -> None:
    """``--data-dir``: only with MNIST, and a folder (created if missing), not a file."""
    if data_dir is None:
        return
    if dataset != "mnist":
        raise ValueError(f"--data-dir: expected only with --dataset mnist (where MNIST's files are kept), got it "
                         f"with --dataset {dataset}")
    check_folder_path("--data-dir", data_dir)
