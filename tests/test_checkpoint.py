"""Tests for minivae.checkpoint: round trips, atomic writes, refusals."""

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minivae import checkpoint
from minivae.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint


def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _sample_arrays():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    return {
        "encoder/W": w,
        "encoder/W_fortran": np.asfortranarray(rng.standard_normal((3, 5))),
        "strided": w[:, ::2],
        "b": np.array([np.nan, -0.0, np.inf, 1e-310], dtype=np.float64),
        "steps": np.arange(-3, 3, dtype=np.int64),
        "counters": np.array([0, 2**63, 2**64 - 1], dtype=np.uint64),
        "scalar": np.array(1.5, dtype=np.float32),
        "empty": np.zeros((0, 7), dtype=np.float32),
        "mask": np.array([True, False]),
        "labels": np.array(["cat", "chien"]),
        "file": np.ones(2),  # would clash with numpy.savez's own argument
    }


def _sample_meta(rng):
    return {
        "config": {"latent_dim": 8, "hidden": [400, 200], "beta": 0.5, "name": "vae-α"},
        "optimizer": {"kind": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "amsgrad": False},
        "step": 1234,
        "best": None,
        "rng": rng.bit_generator.state,  # PCG64 state: 128-bit Python ints, fine in JSON
    }


def _rewrite(path, header=None, drop=(), replace=None):
    """Rewrite a checkpoint by hand (as an attacker or a bad disk might)."""
    with np.load(path) as npz:
        members = {name: npz[name] for name in npz.files if name not in drop}
    if header is not None:
        members["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    members.update(replace or {})
    with open(path, "wb") as fh:
        np.savez(fh, **members)


def _header(path):
    with np.load(path) as npz:
        return json.loads(npz["__meta__"].tobytes())


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, {"W": np.ones((2, 3), np.float32), "b": np.zeros(3)}, {"step": 1})
    return path


# --------------------------------------------------------------------------- round trips

def test_round_trip_is_bit_identical(tmp_path):
    arrays, rng = _sample_arrays(), np.random.default_rng(42)
    meta = _sample_meta(rng)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, arrays, meta)  # os.PathLike
    loaded, loaded_meta = load_checkpoint(str(path))  # str
    assert loaded.keys() == arrays.keys()
    for name, arr in arrays.items():
        assert _same_bits(loaded[name], arr), name
        assert loaded[name].flags.writeable
    assert loaded_meta == meta
    restored = np.random.default_rng()
    restored.bit_generator.state = loaded_meta["rng"]
    assert np.array_equal(restored.standard_normal(5), rng.standard_normal(5))


def test_manifest_is_written(saved):
    header = _header(saved)
    assert header["format"] == "minivae-checkpoint" and header["version"] == FORMAT_VERSION
    assert header["meta"] == {"step": 1}
    assert header["manifest"] == {"W": {"shape": [2, 3], "dtype": "float32"},
                                  "b": {"shape": [3], "dtype": "float64"}}


def test_overwrite_replaces_previous_file(saved):
    save_checkpoint(saved, {"x": np.arange(3)}, {"step": 2})
    arrays, meta = load_checkpoint(saved)
    assert list(arrays) == ["x"] and meta == {"step": 2}


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = tmp_path / "m.npz"
        save_checkpoint(path, {}, {})
        assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        path.chmod(0o600)
        save_checkpoint(path, {}, {})
        assert path.stat().st_mode & 0o777 == 0o600  # mode of the replaced file kept
    finally:
        os.umask(umask)


_float_arrays = st.dictionaries(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8)
    .filter(lambda name: name != "__meta__"),
    st.sampled_from([np.float16, np.float32, np.float64]).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))),
    max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(arrays=_float_arrays)
def test_round_trip_property(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("prop") / "p.npz"
    save_checkpoint(path, arrays, {"n": len(arrays)})
    loaded, meta = load_checkpoint(path)
    assert meta == {"n": len(arrays)} and loaded.keys() == arrays.keys()
    assert all(_same_bits(loaded[k], v) for k, v in arrays.items())


# --------------------------------------------------------------------------- atomicity

def _fail_in_write_array(monkeypatch, exc):
    real, calls = np.lib.format.write_array, []

    def flaky(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # first array already in the temporary file
            fp.write(b"\x93NUMPY partial")
            raise exc
        return real(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", flaky)


def _raise(exc):
    def boom(*args, **kwargs):
        raise exc
    return boom


@pytest.mark.parametrize("where", ["write", "interrupt", "fsync", "replace"])
def test_failed_save_leaves_previous_file_intact(saved, monkeypatch, where):
    before = saved.read_bytes()
    error = KeyboardInterrupt if where == "interrupt" else OSError
    if where in ("write", "interrupt"):
        _fail_in_write_array(monkeypatch, error("disk full"))
    else:
        monkeypatch.setattr(checkpoint.os, where, _raise(OSError("disk full")))
    with pytest.raises(error, match="disk full"):
        save_checkpoint(saved, {"W": np.zeros((5, 5)), "b": np.ones(5), "c": np.ones(1)}, {"step": 2})
    monkeypatch.undo()
    assert os.listdir(saved.parent) == [saved.name]  # no temporary file left behind
    assert saved.read_bytes() == before
    arrays, meta = load_checkpoint(saved)
    assert meta == {"step": 1} and np.array_equal(arrays["W"], np.ones((2, 3)))


def test_missing_parent_directory_is_not_created(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "m.npz"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        save_checkpoint(target, {}, {})
    assert str(target.parent) in str(info.value)
    assert not (tmp_path / "no").exists()


# --------------------------------------------------------------------------- save refusals

@pytest.mark.parametrize("arrays, meta, error, fragment", [
    ({"bad": np.array([1, "x", None], dtype=object)}, {}, TypeError, "'bad'.*pickle"),
    ({"__meta__": np.zeros(1)}, {}, ValueError, "reserved"),
    ({"": np.zeros(1)}, {}, ValueError, "empty"),
    ({3: np.zeros(1)}, {}, TypeError, "strings"),
    ({"x": np.zeros(1)}, {"f": np.float32(1.0)}, TypeError, "JSON serializable"),
])
def test_save_refusals(tmp_path, arrays, meta, error, fragment):
    with pytest.raises(error, match=fragment):
        save_checkpoint(tmp_path / "m.npz", arrays, meta)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- load refusals

class _Exploit:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_array_is_refused_without_running_it(tmp_path):
    path, marker = tmp_path / "evil.npz", tmp_path / "pwned"
    evil = np.array([_Exploit(marker)], dtype=object)
    header = {"format": "minivae-checkpoint", "version": FORMAT_VERSION, "meta": {},
              "manifest": {"evil": {"shape": [1], "dtype": "object"}}}
    meta_bytes = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, __meta__=meta_bytes, evil=evil)  # allow_pickle defaults to True here
    with pytest.raises(CheckpointError, match="carries a pickle") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    # Sanity check that the payload is live: numpy's unsafe mode does run it.
    with np.load(path, allow_pickle=True) as npz:
        npz["evil"]
    assert marker.exists()


def test_newer_version_is_refused(saved):
    header = _header(saved)
    header["version"] = 3
    _rewrite(saved, header=header)
    with pytest.raises(CheckpointError, match="newer minivae: format version 3, this version reads version 2"):
        load_checkpoint(saved)


def test_a_file_without_a_digest_is_refused(saved):
    header = _header(saved)
    del header["digest"]
    header["version"] = 1
    _rewrite(saved, header=header)
    with pytest.raises(CheckpointError, match="format version 1, which no minivae writes: this version reads "
                                              "version 2"):
        load_checkpoint(saved)
    header["version"] = 2
    _rewrite(saved, header=header)
    with pytest.raises(CheckpointError, match="its digest does not match its contents: expected None"):
        load_checkpoint(saved)


@pytest.mark.parametrize("tamper, fragment", [
    (lambda h: h["manifest"]["W"].update(shape=[3, 2]), "'W' has shape \\[2, 3\\].*manifest says shape \\[3, 2\\]"),
    (lambda h: h["manifest"]["b"].update(dtype="float32"), "'b' has .*dtype float64.*dtype float32"),
    (lambda h: h.update(format="something-else"), "format is 'something-else'"),
    (lambda h: h.update(version="1"), "invalid format version"),
    (lambda h: h.pop("manifest"), "lacks a valid 'manifest'"),
])
def test_tampered_header_is_refused(saved, tamper, fragment):
    header = _header(saved)
    tamper(header)
    _rewrite(saved, header=header)
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint(saved)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"replace": {"W": np.ones((2, 4), np.float32)}}, "'W' has shape \\[2, 4\\]"),
    ({"drop": ["b"]}, "missing: \\['b'\\]"),
    ({"replace": {"extra": np.zeros(2)}}, "not listed in the manifest.*\\['extra'\\]"),
    ({"drop": ["__meta__"]}, "no '__meta__' entry"),
])
def test_tampered_arrays_are_refused(saved, kwargs, fragment):
    _rewrite(saved, **kwargs)
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint(saved)


def test_bad_json_is_refused(saved):
    _rewrite(saved, replace={"__meta__": np.frombuffer(b"{not json", dtype=np.uint8)})
    with pytest.raises(CheckpointError, match="not valid UTF-8 JSON"):
        load_checkpoint(saved)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.1])
def test_truncated_file_is_refused(saved, cut):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(saved)
    assert str(saved) in str(info.value)


def test_corrupted_bytes_are_refused(saved):
    data = bytearray(saved.read_bytes())
    offset = data.index(b"\x93NUMPY", data.index(b"W.npy")) + 130  # inside W's data
    data[offset] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt.*CRC"):
        load_checkpoint(saved)


@pytest.mark.parametrize("content, fragment", [
    (b"\x00garbage" + np.random.default_rng(1).bytes(300), "not an .npz file"),
    (b"PK" + np.random.default_rng(2).bytes(300), "truncated or corrupt"),
    (b"", "not an .npz file"),
])
def test_non_npz_file_is_refused(tmp_path, content, fragment):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint(path)


def test_plain_npy_file_is_refused(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(CheckpointError, match="not an .npz file"):
        load_checkpoint(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.npz")


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)
