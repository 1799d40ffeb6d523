"""A training run's folder (``minivae train --out``): one run at a time, never mixed with another's.

A run writes ``model.npz`` (the checkpoint, after every epoch), ``history.json`` and ``samples.png``.
``train`` refuses a folder that holds another run's files unless told what to do with them:
``--overwrite`` starts afresh, ``--resume`` continues the run from its checkpoint (bit-identical on the same CPU
with as many BLAS threads to a run that was never interrupted, :func:`minivae.serialize.load_trainer`), taking
every flag it is not given from the checkpoint and refusing, by name, one given with another value.

``--overwrite`` is a small state machine (:class:`RunFolder`), each move an atomic rename:

1. *set aside*: the old run's files move into ``.previous/``, the checkpoint first;
2. *new run, no checkpoint yet*: a failure or a signal puts the old files back (the checkpoint last);
3. *new run with a checkpoint*: ``.previous/`` is kept, the new run is continued with ``--resume``;
4. *finished*: ``.previous/`` is removed, by whichever command finished the run (``train`` or ``--resume``).

SIGINT and SIGTERM are deferred while files move (:func:`signals_deferred`), and the command line ignores
every signal after the first (:func:`minivae.cli.main`), so a burst of Ctrl-C never stops a move halfway. Only
``SIGKILL`` (or a power cut) can leave the old run in ``.previous/`` with no new checkpoint; the next ``train``
into the folder then refuses to start and names ``--restore-previous``, which puts it back.

A lock file ``.lock``, created with ``O_CREAT | O_EXCL`` and holding the process id and its start time, keeps a
second run out of a folder in use. Its content is read defensively: anything that is not the id of a running
process (a dead process, a number no process can have such as 0, -1 or 10**30, garbage, a process id reused by
another program since, which its start time shows) is stale and taken over; a directory named ``.lock`` is
refused naming ``--out``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

from .checkpoint import pid_alive

CHECKPOINT, HISTORY, PICTURE, LOCK = "model.npz", "history.json", "samples.png", ".lock"
#: Where ``--overwrite`` keeps the previous run's files until the new run has finished.
PREVIOUS = ".previous"
#: In ``.previous/``: the names of the files set aside, written before the first moves.
LISTING = ".files.json"
RUN_FILES = (CHECKPOINT, HISTORY, PICTURE)  # the checkpoint first: set aside first, put back last
#: A lock file found empty is being written by the run that just created it, for at most this long.
LOCK_WRITE_SECONDS = 1.0


def stage(name: str) -> None:
    """A named point between two moves of the folder's files: ``set-aside``, ``training``, ``restore``,
    ``finish``. It does nothing; tests replace it to send signals (or stop the process) exactly there."""


@contextmanager
def signals_deferred():
    """SIGINT and SIGTERM wait until the block ends, then arrive as usual (the first of them; its handler decides
    about the rest): files are never half moved. A Python-level deferral: the kernel may hand a signal to any of
    the process's threads (BLAS's), so a signal mask on the main thread alone would not hold it."""
    pending = []

    def defer(signum, frame):
        pending.append(signum)

    try:
        previous = {sig: signal.signal(sig, defer) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread, where signals are not handled anyway
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            signal.raise_signal(pending[0])


def _pid_max() -> int:
    """The largest process id this system gives (Linux: ``/proc/sys/kernel/pid_max``; else 2**22)."""
    try:
        return min(int(Path("/proc/sys/kernel/pid_max").read_text()), 2 ** 31 - 1)
    except (OSError, ValueError):
        return 2 ** 22


def _start_time(pid: int):
    """When process ``pid`` started, in clock ticks since boot (Linux), or None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]  # field 22; the name in parentheses may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def _lock_owner(path: Path):
    """``(pid, start time or None)`` from a lock file, or None when it holds no process id a process can have."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    parts = text.split()
    if not parts or not re.fullmatch(r"[0-9]{1,10}", parts[0]):
        return None
    pid = int(parts[0])
    if not 1 <= pid <= _pid_max():
        return None  # 0 and -1 would address process groups; 10**30 no process at all
    start = parts[1] if len(parts) > 1 and re.fullmatch(r"[0-9]{1,20}", parts[1]) else None
    return pid, start


def _lock_live(owner) -> bool:
    """Whether the lock's owner still runs: its pid is alive and, where the lock records it, started then."""
    pid, start = owner
    if pid == os.getpid() or not pid_alive(pid):
        return False
    now = _start_time(pid)
    return start is None or now is None or now == start


class RunLock:
    """``with RunLock(folder):`` -- the folder is this process's until the block ends (even by a signal)."""

    def __init__(self, folder: Path, flag: str = "--out"):
        self.path, self.flag, self.held = Path(folder) / LOCK, flag, False

    def __enter__(self):
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._check_existing()
                continue
            except OSError as exc:  # read-only, no permission, full
                raise type(exc)(exc.errno, f"{self.flag}: expected a writable folder, got "
                                           f"{str(self.path.parent)!r}: {exc.strerror}") from exc
            try:
                os.write(fd, f"{os.getpid()} {_start_time(os.getpid()) or ''}\n".encode())
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

    def _check_existing(self) -> None:
        """Refuse a lock held by a running process; remove a stale one (its process is gone, or it never was)."""
        if self.path.is_dir() or (self.path.exists() and not self.path.is_file()):
            raise IsADirectoryError(errno.EISDIR, f"{self.flag}: expected a folder whose {LOCK} is a lock file "
                                                  f"(or absent), got {str(self.path.parent)!r} holding a directory "
                                                  f"named {LOCK}; minivae never makes one: remove it")
        owner = _lock_owner(self.path)
        deadline = time.monotonic() + LOCK_WRITE_SECONDS
        while owner is None and _is_young_and_empty(self.path) and time.monotonic() < deadline:
            time.sleep(0.02)  # created by a run that has not yet written its pid
            owner = _lock_owner(self.path)
        if owner is not None and _lock_live(owner):
            raise ValueError(f"{self.flag}: expected a folder no other run is writing to, got "
                             f"{str(self.path.parent)!r}, in use by process {owner[0]} (its lock {self.path}); "
                             "wait for it, or delete the lock if that process is not minivae") from None
        try:  # stale: its process is gone, or the file names none
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise type(exc)(exc.errno, f"{self.flag}: expected to remove the stale lock {self.path}, got "
                                       f"{exc.strerror}") from exc

    def __exit__(self, *exc_info):
        owner = _lock_owner(self.path) if self.held else None
        if owner is not None and owner[0] == os.getpid():
            try:
                self.path.unlink()
            except OSError:
                pass
        self.held = False
        return False


def _is_young_and_empty(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_size == 0 and time.time() - info.st_mtime < LOCK_WRITE_SECONDS


class RunFolder:
    """The files of ``--out`` through one ``train``: set aside, put back, or let go (see the module docstring).

    ``owns_previous`` is true once this command is responsible for ``.previous/``: it put the previous run
    there, or took over an unfinished ``--overwrite`` run; it then puts that run back if it fails before a
    checkpoint of its own, and removes it once it finishes.
    """

    def __init__(self, folder: Path):
        self.folder, self.aside = Path(folder), Path(folder) / PREVIOUS
        self.prepared = self.restored = self.owns_previous = False

    def _present(self, where: Path) -> list:
        return [name for name in RUN_FILES if (where / name).exists()]

    def prepare(self, overwrite: bool, resume: bool) -> None:
        """Check ``--out`` against ``--overwrite`` / ``--resume`` (under the lock) and, with ``overwrite``, set
        the old run's files aside so nothing of it mixes with the new one."""
        folder = self.folder
        if overwrite and resume:
            raise ValueError("--overwrite: expected either --overwrite (start afresh) or --resume (continue), "
                             "got both")
        for name in RUN_FILES:
            if (folder / name).exists() and not (folder / name).is_file():
                raise IsADirectoryError(f"--out: expected {name} in {str(folder)!r} to be a file (or absent), "
                                        "got a directory")
        if self.aside.exists() and not self.aside.is_dir():
            raise NotADirectoryError(f"--out: expected {PREVIOUS} in {str(folder)!r} to be a folder (or absent), "
                                     "got a file")
        if self.aside.is_dir() and not self._present(self.aside):
            shutil.rmtree(self.aside, ignore_errors=True)  # emptied, or made just before a kill: nothing to keep
        present = self._present(folder)
        if self.aside.is_dir():
            self._prepare_with_previous(present, overwrite, resume)
        elif resume:
            if CHECKPOINT not in present:
                raise FileNotFoundError(f"--resume: expected the checkpoint of an earlier run, "
                                        f"{str(folder / CHECKPOINT)!r}, got no such file")
        elif present and not overwrite:
            raise FileExistsError(f"--out: expected a folder without another run's files, got {str(folder)!r} "
                                  f"holding {', '.join(present)}; pass --resume to continue that run or --overwrite "
                                  "to set its files aside and start afresh")
        elif present:
            with signals_deferred():
                self.aside.mkdir()
                self.owns_previous = True  # from here on, a failure puts back whatever has moved
                write_json(self.aside / LISTING, present)  # what is the old run's, wherever a kill leaves it
                for name in present:  # the checkpoint first: a folder without one is never taken for the new run
                    os.replace(folder / name, self.aside / name)
                    stage("set-aside")
                self.prepared = True
            return
        self.prepared = True

    def _prepare_with_previous(self, present: list, overwrite: bool, resume: bool) -> None:
        """``.previous/`` holds a run an ``--overwrite`` set aside and that run did not finish."""
        where = f"{str(self.folder)!r}, whose previous run an interrupted --overwrite set aside in {PREVIOUS}/"
        if CHECKPOINT not in present:
            raise FileExistsError(f"--out: expected a folder without a set-aside run, got {where} before the new "
                                  "run saved a checkpoint; pass --restore-previous to put it back")
        if resume:  # finishing the new run: .previous/ goes once it is done
            self.owns_previous = self.prepared = True
            return
        if not overwrite:
            raise FileExistsError(f"--out: expected a folder without another run's files, got {where} and an "
                                  f"unfinished new run ({', '.join(present)}); pass --resume to finish the new "
                                  "run, --restore-previous to put the previous one back, or --overwrite to start "
                                  "afresh")
        with signals_deferred():  # the unfinished run goes; the finished one in .previous/ stays the one to restore
            for name in present:
                (self.folder / name).unlink()
            self.owns_previous = self.prepared = True

    def fail(self) -> None:
        """The run stopped (an error, a signal) before finishing: without a checkpoint of its own, put the
        previous run back."""
        if self.owns_previous and self.aside.is_dir() and not (self.folder / CHECKPOINT).exists():
            self.restore()

    def finish(self) -> None:
        """The run finished: the previous run's files go."""
        if self.owns_previous or (self.prepared and self.aside.is_dir()):
            with signals_deferred():
                stage("finish")
                shutil.rmtree(self.aside, ignore_errors=True)

    def restore(self) -> list:
        """Put the run in ``.previous/`` back in place (the checkpoint last), dropping an unfinished new run's
        files; return the names put back. Run again after a kill, it completes what was left."""
        if not self.aside.is_dir():
            raise FileNotFoundError(f"--restore-previous: expected {str(self.aside)!r}, where --overwrite sets a "
                                    "previous run aside, got no such folder")
        back = self._present(self.aside)
        try:
            old = json.loads((self.aside / LISTING).read_text())
        except (OSError, ValueError):
            old = back
        with signals_deferred():
            if CHECKPOINT in back:
                (self.folder / CHECKPOINT).unlink(missing_ok=True)  # from here on the folder reads "to restore"
            for name in RUN_FILES[1:]:
                if name in back:
                    os.replace(self.aside / name, self.folder / name)
                elif name not in old:  # the new run's (a listed one not in .previous/ was never moved)
                    (self.folder / name).unlink(missing_ok=True)
                stage("restore")
            if CHECKPOINT in back:
                os.replace(self.aside / CHECKPOINT, self.folder / CHECKPOINT)
            shutil.rmtree(self.aside, ignore_errors=True)
            self.restored, self.owns_previous = True, False
        return back

    def describe(self, saved_epoch) -> str:
        """What an interrupted ``train`` leaves in the folder, in words; ``saved_epoch(path)`` describes a
        checkpoint of this run."""
        if self.restored:
            return f"nothing of this run was saved; the previous run is back in {self.folder}"
        if not self.prepared:
            return f"nothing in {self.folder} was changed"
        checkpoint = self.folder / CHECKPOINT
        if not checkpoint.exists():
            return "no epoch was completed, nothing of this run was saved"
        text = saved_epoch(checkpoint)
        if self.aside.is_dir():
            text += (f" (the previous run stays in {self.aside} until this one finishes; --restore-previous puts "
                     "it back)")
        return text


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


def stored_flags(trainer) -> dict:
    """The ``train`` flags (argparse's names) the checkpoint's run was started with: its model, data, optimizer,
    batch size, seed, warm-ups, schedule and each of its flags, ``--epochs`` and ``--init-log-var``. A flag an
    older checkpoint cannot tell is absent."""
    config = trainer.model.config
    flags = {"latent": config.latent_dim, "hidden": tuple(config.hidden), "activation": config.activation,
             "samples": config.n_samples, "likelihood": config.likelihood, "init": config.init,
             "objective": config.objective, "k_train": config.k_train,
             "conditional": config.condition_dim > 0, "seed": trainer.seed, "batch_size": trainer.batch_size,
             "optimizer": trainer.optimizer.name, "warmup": float(trainer.warmup_epochs),
             "fixed_variance": config.fixed_variance if config.likelihood == "gaussian_fixed" else None}
    base = _base(trainer.schedule.to_dict())
    flags.update(schedule=base["name"], lr=float(base["lr"]))
    flags.update({key: value for key, value in (trainer.data or {}).items()
                  if key in ("dataset", "data_seed", "binarize", "ring_points", "ring_noise")})
    flags.update(trainer.flags or {})  # epochs, lr_warmup, lr_min, step_every, step_factor, init_log_var
    return flags


#: Flags a resumed run may change: how long it runs (a cosine only up to its length, checked by the caller).
MAY_CHANGE = ("epochs",)


def resumed_flags(given: dict, stored: dict, checkpoint) -> dict:
    """The values that the flags left out take from the resumed run: ``given`` maps each flag (by argparse's
    name, ``batch_size``) to its value on the command line, None when left out; ``stored`` is
    :func:`stored_flags`. Returns ``{flag: stored value}`` for every stored flag left out; a flag given another
    value than the run's is refused by name (``checkpoint`` says where the run's value comes from)."""
    taken = {}
    for dest, then in stored.items():
        now = given.get(dest)
        if now is None:
            taken[dest] = then
        elif dest not in MAY_CHANGE and _differs(now, then):
            raise ValueError(f"--{dest.replace('_', '-')}: expected the resumed run's value {_shown(then)} (from "
                             f"{checkpoint}), got {_shown(now)}; leave it out to take the stored value (only "
                             "--epochs, --k, --kernels, --device and --no-progress may change)")
    return taken


def _differs(now, then) -> bool:
    if then is None:
        return True
    if isinstance(then, (list, tuple)):
        return tuple(now) != tuple(then)
    if isinstance(then, bool) or isinstance(now, bool):
        return bool(now) != bool(then)
    if isinstance(then, (int, float)) and isinstance(now, (int, float)):
        return float(now) != float(then)
    return now != then


def _shown(value) -> str:
    if value is None:
        return "(not given)"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return repr(value)


__all__ = ["RunLock", "RunFolder", "signals_deferred", "write_json", "stored_flags", "resumed_flags",
           "RUN_FILES"]
