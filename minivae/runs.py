"""A training run's folder (``minivae train --out``): one run at a time, never mixed with another's.

A run writes ``model.npz`` (the checkpoint, after every epoch), ``history.json`` and ``samples.png``.
``train`` refuses a folder that holds another run's files unless told what to do with them:
``--overwrite`` starts afresh and removes them (they are kept in ``.previous/`` until the new run finishes,
and put back if it fails before saving a checkpoint of its own), ``--resume`` continues the run from its checkpoint
(bit-identical on the same CPU with as many BLAS threads to a run that was never interrupted,
:func:`minivae.serialize.load_trainer`),
refusing flags that would change its model or data. A lock file ``.lock``, created with
``O_CREAT | O_EXCL`` and holding the process id, keeps a second run out of a folder in use; the lock of a
process that no longer runs (killed with ``SIGKILL``) is stale and taken over.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

from .checkpoint import _pid_alive

CHECKPOINT, HISTORY, PICTURE, LOCK = "model.npz", "history.json", "samples.png", ".lock"
#: Where ``--overwrite`` keeps the previous run's files until the new run has finished (or has a checkpoint).
PREVIOUS = ".previous"
RUN_FILES = (CHECKPOINT, HISTORY, PICTURE)


class RunLock:
    """``with RunLock(folder):`` -- the folder is this process's until the block ends (even by a signal)."""

    def __init__(self, folder: Path, flag: str = "--out"):
        self.path, self.flag, self.held = Path(folder) / LOCK, flag, False

    def __enter__(self):
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = _read_pid(self.path)
                if pid is not None and pid != os.getpid() and _pid_alive(pid):
                    raise ValueError(f"{self.flag}: expected a folder no other run is writing to, got "
                                     f"{str(self.path.parent)!r}, in use by process {pid} (its lock {self.path}); "
                                     "wait for it, or delete the lock if that process is not minivae") from None
                try:  # stale: its process is gone
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            except OSError as exc:  # read-only, no permission, full
                raise type(exc)(exc.errno, f"{self.flag}: expected a writable folder, got "
                                           f"{str(self.path.parent)!r}: {exc.strerror}") from exc
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError as exc:
                os.close(fd)
                self.path.unlink()
                raise type(exc)(exc.errno, f"{self.flag}: expected a writable folder with free space, got "
                                           f"{str(self.path.parent)!r}: {exc.strerror}") from exc
            os.close(fd)
            self.held = True
            return self
        raise OSError(errno.EBUSY, f"{self.flag}: expected to take the lock {self.path}, got it taken by others "
                                   "three times in a row")

    def __exit__(self, *exc_info):
        if self.held and _read_pid(self.path) == os.getpid():
            try:
                self.path.unlink()
            except OSError:
                pass
        self.held = False
        return False


def _read_pid(path: Path):
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None  # being written, or not ours: stale once its writer is gone


def prepare(folder: Path, overwrite: bool, resume: bool) -> None:
    """Check ``--out`` against ``--overwrite`` / ``--resume`` (under the lock); with ``overwrite``, remove the old
    run's files so nothing of it mixes with the new one."""
    if overwrite and resume:
        raise ValueError("--overwrite: expected either --overwrite (start afresh) or --resume (continue), "
                         "got both")
    for name in RUN_FILES:
        if (folder / name).exists() and not (folder / name).is_file():
            raise IsADirectoryError(f"--out: expected {name} in {str(folder)!r} to be a file (or absent), "
                                    "got a directory")
    present = [name for name in RUN_FILES if (folder / name).exists()]
    if resume:
        if CHECKPOINT not in present:
            raise FileNotFoundError(f"--resume: expected the checkpoint of an earlier run, "
                                    f"{str(folder / CHECKPOINT)!r}, got no such file")
        return
    if present and not overwrite:
        raise FileExistsError(f"--out: expected a folder without another run's files, got {str(folder)!r} holding "
                              f"{', '.join(present)}; pass --resume to continue that run or --overwrite to "
                              "remove its files and start afresh")
    if not present:
        return None
    aside = folder / PREVIOUS
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for name in present:
        os.replace(folder / name, aside / name)
    return aside


def settle_previous(folder: Path, aside, done: bool) -> None:
    """After an ``--overwrite`` run: drop the previous run's files once the new run finished; if it failed
    before saving a checkpoint of its own, put them back, so a failed rerun never destroys a result."""
    if aside is None:
        return
    if done:
        shutil.rmtree(aside, ignore_errors=True)
    elif not (folder / CHECKPOINT).exists():
        for name in RUN_FILES:
            if (aside / name).exists() and not (folder / name).exists():
                os.replace(aside / name, folder / name)
        shutil.rmtree(aside, ignore_errors=True)


def write_json(path: Path, value) -> None:
    """``value`` as strict JSON (NaN refused), written atomically: a reader sees the old file or the new one."""
    text = json.dumps(value, indent=1, allow_nan=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def _base(schedule: dict) -> dict:
    """The schedule under any warm-up: the one ``--schedule`` and ``--lr`` name."""
    while schedule.get("name") == "warmup":
        schedule = schedule["after"]
    return schedule


def mismatches(args, trainer, record: dict, config) -> list:
    """The flags of this ``train --resume`` that would change the stored run's model, data or training."""
    stored = trainer.model.config
    pairs = [("--dataset", record.get("dataset"), (trainer.data or {}).get("dataset")),
             ("--data-seed", record.get("data_seed"), (trainer.data or {}).get("data_seed")),
             ("--binarize", record.get("binarize"), (trainer.data or {}).get("binarize")),
             ("--ring-points", record.get("ring_points"), (trainer.data or {}).get("ring_points")),
             ("--ring-noise", record.get("ring_noise"), (trainer.data or {}).get("ring_noise")),
             ("--latent", config.latent_dim, stored.latent_dim),
             ("--hidden", tuple(config.hidden), tuple(stored.hidden)),
             ("--activation", config.activation, stored.activation),
             ("--likelihood", config.likelihood, stored.likelihood),
             ("--fixed-variance", config.fixed_variance, stored.fixed_variance),
             ("--samples", config.n_samples, stored.n_samples),
             ("--conditional", config.condition_dim, stored.condition_dim),
             ("--init", config.init, stored.init),
             ("--seed", args.seed, trainer.seed),
             ("--batch-size", args.batch_size, trainer.batch_size),
             ("--optimizer", args.optimizer, trainer.optimizer.name),
             ("--warmup", float(args.warmup), float(trainer.warmup_epochs)),
             ("--schedule", args.schedule, _base(trainer.schedule.to_dict()).get("name")),
             ("--lr", float(args.lr), float(_base(trainer.schedule.to_dict()).get("lr", args.lr)))]
    return [(flag, now, then) for flag, now, then in pairs if now != then]


__all__ = ["RunLock", "prepare", "write_json", "mismatches", "RUN_FILES"]
