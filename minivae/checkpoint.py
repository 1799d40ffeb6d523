"""Checkpoint files: named NumPy arrays plus JSON metadata, never pickle.

A checkpoint is an ordinary ``.npz`` archive (a zip of ``.npy`` files) that
holds every array under its own name, plus one extra member ``__meta__``: the
UTF-8 bytes, as a ``uint8`` array, of::

    {"format": "minivae-checkpoint", "version": 1,
     "meta": {...},                                  # whatever the caller saved
     "manifest": {"W": {"shape": [784, 400], "dtype": "float32"}, ...}}

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
removed, added or altered after it was written; every such problem raises
:class:`CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["FORMAT_VERSION", "CheckpointError", "save_checkpoint", "load_checkpoint"]

FORMAT_VERSION = 1
_FORMAT = "minivae-checkpoint"
_META = "__meta__"


class CheckpointError(ValueError):
    """A file is not a readable minivae checkpoint (corrupt, tampered, too new...)."""


def _check_path(path) -> str:
    """``path`` as a str; a clear TypeError for anything that is not a path (None, an int, an open file)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike path, got {type(path).__name__} {path!r}")
    return os.fsdecode(os.fspath(path))


def save_checkpoint(path, arrays: dict, meta: dict) -> None:
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
    """
    path = _check_path(path)
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
    header = {"format": _FORMAT, "version": FORMAT_VERSION, "meta": meta, "manifest": manifest}
    members[_META] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save checkpoint {path!r}: expected an existing directory, "
                                f"got {directory!r}, which does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
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
        _copy_permissions(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _copy_permissions(path: str, tmp: str) -> None:
    # mkstemp creates files readable by their owner only (0600). Give the new
    # checkpoint the mode of the file it replaces, or owner-write, all-read.
    if os.name != "posix":
        return
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644  # owner writes, everyone reads
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
    path = _check_path(path)

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"cannot load checkpoint {path!r}: {problem}")

    with open(path, "rb") as fh:  # a missing file raises FileNotFoundError here
        if fh.read(2) != b"PK":
            raise fail("not an .npz file (it does not start with the zip signature)")
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as npz:
                if _META not in npz.files:
                    raise fail(f"no {_META!r} entry, so it was not written by save_checkpoint")
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
    return arrays, header["meta"]


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
        raise fail(f"written by a newer minivae: format version {version}, "
                   f"this version reads up to {FORMAT_VERSION}")
    manifest = header.get("manifest")
    if not isinstance(manifest, dict) or not isinstance(header.get("meta"), dict) or not all(
            isinstance(e, dict) and isinstance(e.get("dtype"), str) and isinstance(e.get("shape"), list)
            for e in manifest.values()):
        raise fail(f"{_META!r} lacks a valid 'manifest' or 'meta'")
    return header
