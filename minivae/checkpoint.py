"""Checkpoint files: named NumPy arrays plus JSON metadata, never pickle.

A checkpoint is an ordinary ``.npz`` archive (a zip of ``.npy`` files) that
holds every array under its own name, plus one extra member ``__meta__``: the
UTF-8 bytes, as a ``uint8`` array, of::

    {"format": "minivae-checkpoint", "version": 2,
     "meta": {...},                                  # whatever the caller saved
     "manifest": {"W": {"shape": [784, 400], "dtype": "float32"}, ...},
     "digest": "..."}

Why no pickle
-------------
``pickle`` (and ``numpy.load(..., allow_pickle=True)`` for object arrays)
rebuilds objects by *calling* functions named in the file, so opening a
checkpoint someone sent you could run any code they liked. Here only plain
numeric/bool/string arrays are written, everything else (configuration,
optimizer settings, step counts, the random generator's state) must be JSON,
and files are opened with ``allow_pickle=False``: a file that carries a pickle
is refused, never executed.

Why atomic (temporary file + fsync + replace)
---------------------------------------------
Writing straight onto ``path`` would, if the program crashed or the disk
filled up midway, leave a half-written file *in place of* the last good
checkpoint. So :func:`save_checkpoint` writes to a temporary file in the same
directory, ``fsync``\\ s it (the bytes are on disk, not just in the OS cache),
then ``os.replace``\\ s it onto ``path``. A rename within one file system is
atomic: a reader sees either the old file or the new one, never a mixture.
If anything fails before that, the temporary file is deleted and the old
checkpoint is left untouched.

The manifest lets :func:`load_checkpoint` notice a file whose arrays were
removed, added or altered after it was written, and the ``digest`` (the
SHA-256 of the metadata's JSON, the manifest and every array's bytes) one whose
configuration or values were edited, even with the zip rewritten around them;
every such problem raises :class:`CheckpointError` naming the file and what is
wrong. A file of another format version is refused: this one reads version
:data:`FORMAT_VERSION` only.

Faults
------
A save that is killed between writing its temporary file and renaming it
(``SIGKILL``, a power cut) leaves ``.{name}.{pid}.XXXX.tmp`` behind; the next
save of the same target removes the temporaries of processes that no longer
run (the process id in the name tells). A member that is not an ``.npy`` array, whose header claims more or fewer bytes than the member
holds, or that needs more than the machine has memory for, is refused from the headers, before any member is
inflated or allocated.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from .validate import check_file_path, check_path

__all__ = ["FORMAT_VERSION", "CheckpointError", "save_checkpoint", "load_checkpoint"]

#: The layout of the header described above; a file of any other version is refused.
FORMAT_VERSION = 2
_FORMAT = "minivae-checkpoint"
_META = "__meta__"


class CheckpointError(ValueError):
    """A file is not a readable minivae checkpoint (corrupt, tampered, too new...)."""


def _digest(meta_text: str, manifest: dict, arrays) -> str:
    """SHA-256 over the metadata (as canonical JSON), the manifest and each array's bytes, in manifest order."""
    digest = hashlib.sha256()
    digest.update(json.dumps(json.loads(meta_text), sort_keys=True).encode("utf-8"))
    digest.update(json.dumps(manifest, sort_keys=True).encode("utf-8"))
    for name in manifest:
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (or runs under another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path) -> list:
    """Delete the temporary files that saves of ``path`` left behind when they were killed; return their names.

    A temporary is ``.{name}.{pid}.XXXX.tmp``: it is stale when process ``pid`` no longer runs (a save in a
    process that still runs, another thread's included, is never touched, nor is a file without a process id:
    no save writes one).
    """
    directory, base = os.path.split(os.path.abspath(path))
    prefix, removed = f".{base}.", []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        pid = entry[len(prefix):].split(".", 1)[0]
        try:
            if pid.isdigit() and not pid_alive(int(pid)):
                os.unlink(os.path.join(directory, entry))
                removed.append(entry)
        except (OSError, ValueError, OverflowError):
            pass
    return removed


def save_checkpoint(path, arrays: dict, meta: dict, *, argument: str = "path") -> None:
    """Write ``arrays`` and ``meta`` atomically to the ``.npz`` file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Target file, used exactly as given (no ``.npz`` is appended). Its parent
        directory must already exist; none is created.
    arrays : dict[str, numpy.ndarray]
        Named arrays (host arrays: move CuPy arrays to NumPy first). Names must
        be non-empty strings other than ``"__meta__"``.
    meta : dict
        JSON-serialisable metadata. It comes back as ``json.loads`` makes it:
        tuples become lists and dict keys become strings.

    Raises
    ------
    TypeError
        If an array has an object dtype (it could only be stored as a pickle),
        a name is not a string, or ``meta`` is not JSON-serialisable.
    ValueError
        If a name is empty or is ``"__meta__"``.
    FileNotFoundError
        If the parent directory of ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a directory.
    OSError
        If writing fails (a full disk, a read-only folder); the message names ``argument`` (the caller's name
        for ``path``) and the reason, and the previous file at ``path`` is left as it was.
    """
    path = str(check_path(argument, path))
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays: expected a dict of name -> array, got {type(arrays).__name__}")
    if not isinstance(meta, dict):
        raise TypeError(f"meta: expected a dict, got {type(meta).__name__}")
    members, manifest = {}, {}
    for name, value in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"array names must be strings, got {name!r}")
        if name in ("", _META):
            raise ValueError(f"array name {name!r} is empty or reserved for the checkpoint's metadata")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(f"array {name!r} has dtype {arr.dtype}, which can only be "
                            "stored as a pickle; checkpoints hold plain arrays only")
        members[name] = arr
        manifest[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}  # "float32", "<U5"
    meta_text = json.dumps(meta)
    header = {"format": _FORMAT, "version": FORMAT_VERSION, "meta": meta, "manifest": manifest,
              "digest": _digest(meta_text, manifest, members)}
    members[_META] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)

    check_file_path(argument, path)
    directory = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.{os.getpid()}.",
                                   suffix=".tmp")
    except OSError as exc:
        raise _named(exc, argument, path) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            # What numpy.savez does, minus its keyword arguments (an array
            # called "file" would clash with them) and with pickle switched off.
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, arr in members.items():
                    with zf.open(name + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, arr, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        readable_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None:  # ENOSPC, EROFS, EACCES ...: name what was saved
            raise _named(exc, argument, path) from exc
        raise
    _fsync_directory(directory)


def _named(exc: OSError, argument: str, path: str) -> OSError:
    """``exc`` (same class and errno) with a message naming ``argument`` and ``path`` and what was expected."""
    reason = exc.strerror or str(exc)
    return type(exc)(exc.errno, f"{argument}: expected a writable folder with room for the checkpoint, got "
                                f"{path!r}: {reason}; the previous file there, if any, is unchanged")


def readable_mode(tmp, path) -> None:
    """Give a temporary file the mode it should have once renamed to ``path``.

    mkstemp creates files readable by their owner only (0600). A checkpoint or a picture is for others to open
    too: the mode of the file it replaces, or 0644 (owner writes, all read) less what the umask withholds, as
    ``open`` would give.
    """
    if os.name != "posix":
        return
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)  # the only way to read the umask is to set it: put it back at once
        os.umask(umask)
        mode = 0o644 & ~umask
    os.chmod(tmp, mode)


def _fsync_directory(directory: str) -> None:
    # Make the rename itself durable (POSIX). Best effort: the new file is
    # already in place, so a failure here is not worth an exception.
    if os.name != "posix":
        return
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.

    Returns
    -------
    arrays : dict[str, numpy.ndarray]
        Every array, fully read into memory (the file is closed on return).
    meta : dict
        The metadata passed to :func:`save_checkpoint`.

    Raises
    ------
    OSError
        If ``path`` cannot be opened at all (e.g. FileNotFoundError).
    CheckpointError
        If the file is not an ``.npz``, is truncated or corrupt, carries a
        pickle, was written by a newer minivae, or does not match its manifest.
    """
    path = str(check_file_path("path", path, existing=True))

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"cannot load checkpoint {path!r}: {problem}")

    with open(path, "rb") as fh:
        if fh.read(2) != b"PK":
            raise fail("not an .npz file (it does not start with the zip signature)")
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as npz:
                if _META not in npz.files:
                    raise fail(f"no {_META!r} entry, so it was not written by save_checkpoint")
                _check_member_sizes(npz.zip, fail)
                header = _read_header(_read_member(npz, _META, fail), fail)
                manifest = header["manifest"]
                missing = sorted(set(manifest) - set(npz.files))
                extra = sorted(set(npz.files) - set(manifest) - {_META})
                if missing:
                    raise fail(f"arrays listed in the manifest are missing: {missing}")
                if extra:
                    raise fail(f"arrays not listed in the manifest were found: {extra}")
                arrays = {name: _read_member(npz, name, fail) for name in manifest}
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise fail(f"truncated or corrupt file ({type(exc).__name__}: {exc})") from exc

    for name, arr in arrays.items():
        expected = {"shape": manifest[name]["shape"], "dtype": manifest[name]["dtype"]}
        found = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
        if found != expected:
            raise fail(f"array {name!r} has shape {found['shape']} and dtype {found['dtype']}, but the "
                       f"manifest says shape {expected['shape']} and dtype {expected['dtype']} "
                       "(the file was altered after it was written)")
    digest = _digest(json.dumps(header["meta"]), manifest, arrays)
    if header.get("digest") != digest:
        raise fail(f"its digest does not match its contents: expected {header.get('digest')!r} (stored), got "
                   f"{digest!r} (the configuration or the arrays were edited after it was written)")
    return arrays, header["meta"]


def _check_member_sizes(archive: zipfile.ZipFile, fail) -> None:
    """Refuse, from the zip's and the ``.npy`` headers alone, before inflating any member: one that is not an
    ``.npy`` array, one holding more or fewer bytes than its array's header claims (a crafted 1 KB file claiming
    terabytes, or a member that inflates to gigabytes behind a small array), and members that together need more
    than the memory available. A zip member never inflates past the size its header declares."""
    from .resources import available_memory, format_bytes

    total = 0
    for info in archive.infolist():
        with archive.open(info) as member:
            try:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0  # 3.0 differs from 2.0 only in the header's encoding
                shape, _, dtype = read(member)
            except (ValueError, EOFError, OSError, SyntaxError, TypeError):
                raise fail(f"entry {info.filename!r} is not a .npy array") from None
            header = member.tell()
        if dtype.hasobject:
            raise fail(f"array {info.filename[:-4]!r} carries a pickle (object dtype), which could run arbitrary "
                       "code, so the file is refused")
        claimed = math.prod(shape) * dtype.itemsize
        if claimed + header != info.file_size:
            raise fail(f"array {info.filename!r} claims shape {list(shape)} {dtype} ({format_bytes(claimed)}), "
                       f"but holds {format_bytes(info.file_size - header)}")
        total += info.file_size
    available = available_memory()
    if total > available:
        raise fail(f"its arrays need {format_bytes(total)}, more than the {format_bytes(available)} of memory "
                   "available")


def _read_member(npz, name: str, fail) -> np.ndarray:
    try:
        arr = npz[name]
    except ValueError as exc:
        if "pickle" in str(exc):
            raise fail(f"array {name!r} carries a pickle (object dtype), which could run "
                       "arbitrary code, so the file is refused") from exc
        raise
    if not isinstance(arr, np.ndarray):  # a zip member that is not an .npy file
        raise fail(f"entry {name!r} is not a .npy array")
    return arr


def _read_header(raw: np.ndarray, fail) -> dict:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise fail(f"{_META!r} should be a 1-d uint8 array, got {raw.dtype} with shape {raw.shape}")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(f"{_META!r} is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        found = header.get("format") if isinstance(header, dict) else header
        raise fail(f"format is {found!r}, expected {_FORMAT!r}")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail(f"invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise fail(f"written by a newer minivae: format version {version}, this version reads version "
                   f"{FORMAT_VERSION}")
    if version != FORMAT_VERSION:
        raise fail(f"format version {version}, which no minivae writes: this version reads version {FORMAT_VERSION}")
    manifest = header.get("manifest")
    if not isinstance(manifest, dict) or not isinstance(header.get("meta"), dict) or not all(
            isinstance(e, dict) and isinstance(e.get("dtype"), str) and isinstance(e.get("shape"), list)
            for e in manifest.values()):
        raise fail(f"{_META!r} lacks a valid 'manifest' or 'meta'")
    return header
