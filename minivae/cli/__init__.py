"""The ``minivae`` command: ``train``, ``sample``, ``score``, ``gradcheck`` and ``exercise``.

::

    minivae train --dataset digits --epochs 50 --out runs/digits
    minivae sample --checkpoint runs/digits/model.npz --n 64 --out samples.png
    minivae score --checkpoint runs/digits/model.npz --dataset digits --k 1000
    minivae gradcheck --likelihood gaussian_per_dim --activation tanh --samples 3
    minivae exercise check kl my_kl.py

Errors never end in a traceback. A flag with a value that is wrong on its own
(``--epochs 0``, ``--lr -1``, ``--hidden 1.5``, an unknown ``--activation``) is
refused by argparse before anything runs: usage on stderr, exit status 2. A
problem found while running (a checkpoint that cannot be read, data that do not
fit the model, ``--batch-size`` larger than the data, sizes that cannot fit in
memory, a full disk, a diverged run) is printed as
``minivae <command>: error: <flag or argument>: expected ..., got ...`` and
the command returns 2. A check that fails (``gradcheck``, ``exercise check``)
returns 1; Ctrl-C (SIGINT) prints one line and returns 130, SIGTERM 143.
Every flag is checked, against its meaning, the others and the sizes it implies,
before ``train`` creates anything on disk. ``train`` writes into ``--out`` only what
:mod:`minivae.runs` allows (``--overwrite``, ``--resume``, ``--restore-previous``, one
run at a time). docs/guarantees.md lists what survives which fault.

The modules: :mod:`~minivae.cli.parser` (the commands and their flags), :mod:`~minivae.cli.flags` (the flags'
types), :mod:`~minivae.cli.recipes` (the data sets, ``train``'s defaults, the data records), one module per
command (:mod:`~minivae.cli.cmd_train` with :mod:`~minivae.cli.train_flags`, :mod:`~minivae.cli.cmd_sample`,
:mod:`~minivae.cli.cmd_score`, :mod:`~minivae.cli.cmd_gradcheck`, :mod:`~minivae.cli.cmd_exercise`),
:mod:`~minivae.cli.report` (what they print and draw) and :mod:`~minivae.cli.space` (memory and disk); this
one runs a command and handles the signals.
"""

from __future__ import annotations

import signal
import sys

import numpy as np

from ..train import NonFiniteError
from .parser import build_parser

#: Exit statuses besides 0 (success) and 1 (a check that failed: ``gradcheck``, ``exercise check``): an error or
#: a diverged run, and 128 + the signal's number when interrupted.
EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM = 2, 130, 143
#: What to make smaller when a command runs out of memory.
REDUCE = {"train": "--batch-size, --hidden, --latent, --samples or --ring-points", "sample": "--n",
          "score": "--k or the data (--input, --dataset)", "gradcheck": "--batch, --data-dim, --hidden or --samples",
          "exercise": "nothing: report it"}


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so files are closed, temporaries removed, locks released."""


def _on_signal(signum, frame):
    """The first SIGINT or SIGTERM ends the command; those that follow are ignored while it cleans up (puts a
    previous run back, releases its lock, prints its one line), so a burst of Ctrl-C cannot cut that short."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore)  # a Python no-op, not SIG_IGN: one already pending must find a handler
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _ignore(signum, frame):
    """A signal that follows the first: the command is already ending."""


def main(argv=None) -> int:
    """Run one command (``argv``: the words after ``minivae``; None: the program's own arguments). The first
    SIGINT or SIGTERM ends it with one line; run as the program (``argv`` None), it goes on ignoring those that
    follow until the process exits, while a caller from Python gets its own handlers back."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.interrupted = lambda: "nothing was written"
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    except ValueError:  # not the main thread: the signals keep their handlers
        pass
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # results are checked for finiteness
            return args.func(args)
    except (ValueError, TypeError, OSError, NonFiniteError) as exc:  # OSError: files, downloads
        named = isinstance(exc, OSError) and exc.strerror and ": expected" in exc.strerror  # "[Errno 28] " dropped
        print(f"minivae {args.command}: error: {exc.strerror if named else exc}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError as exc:
        detail = str(exc) if str(exc).startswith("--") else (f"out of memory ({exc or 'MemoryError'}); "
                                                               f"reduce {REDUCE[args.command]}")
        print(f"minivae {args.command}: error: {detail}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"minivae {args.command}: interrupted (SIGINT): {args.interrupted()}", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print(f"minivae {args.command}: terminated (SIGTERM): {args.interrupted()}", file=sys.stderr)
        return EXIT_SIGTERM
    finally:
        ended_by_signal = signal.getsignal(signal.SIGINT) is _ignore
        for sig, handler in previous.items():
            # As the program, ended by a signal: SIG_IGN, which Python keeps while it shuts down (it puts back
            # SIG_DFL in place of a Python handler, and a late Ctrl-C would then kill it mid-exit).
            signal.signal(sig, handler if argv is not None or not ended_by_signal else signal.SIG_IGN)
