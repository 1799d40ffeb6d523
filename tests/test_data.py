"""Tests for minivae.data: toy data, transformations, IDX files and the MNIST cache (all offline)."""

import gzip
import hashlib
import importlib.machinery
import struct

import numpy as np
import pytest

from minivae import data

# ------------------------------------------------------------------ ring


def test_ring_shape_dtype_and_reproducible():
    x = data.ring(500, rng=3)
    assert x.shape == (500, 2) and x.dtype == np.float64
    np.testing.assert_array_equal(x, data.ring(500, rng=3))
    np.testing.assert_array_equal(x, data.ring(500, rng=np.random.default_rng(3)))
    assert not np.array_equal(x, data.ring(500, rng=4))


def test_ring_without_noise_is_the_lecture_map():
    """x = z/10 + z/|z|, so |x| = |z|/10 + 1 >= 1, and x points the same way as z."""
    x = data.ring(2000, noise=0.0, rng=0)
    z = np.random.default_rng(0).standard_normal((2000, 2))  # ring draws z first
    np.testing.assert_allclose(x, z / 10 + z / np.linalg.norm(z, axis=1, keepdims=True), rtol=1e-12)
    norm = np.linalg.norm(x, axis=1)
    assert norm.min() >= 1.0
    np.testing.assert_allclose(norm, np.linalg.norm(z, axis=1) / 10 + 1, rtol=1e-12)


def test_ring_noise_is_added_to_the_same_z():
    clean, noisy = data.ring(4000, noise=0.0, rng=1), data.ring(4000, noise=0.2, rng=1)
    # the residual is 0.2 * N(0, 1) per coordinate: its std estimate is within a few % of 0.2
    assert abs((noisy - clean).std() - 0.2) < 0.01


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=-3, rng=0), ValueError, "n: expected an integer >= 1, got -3"),
    (dict(n=2.5, rng=0), TypeError, "n:"),
    (dict(n=True, rng=0), TypeError, "n:"),
    (dict(n=5, noise=-0.1, rng=0), ValueError, "noise:.*got -0.1"),
    (dict(n=5, noise=float("nan"), rng=0), ValueError, "noise:"),
    (dict(n=5, rng=None), TypeError, "rng:.*got NoneType"),
    (dict(n=5, rng=-1), ValueError, "rng:"),
    (dict(n=5, rng=np.random.RandomState(0)), TypeError, "rng:"),
])
def test_ring_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        data.ring(**kwargs)


# ------------------------------------------------------------------ digits


def test_digits():
    pytest.importorskip("sklearn")
    x, labels = data.digits()
    assert x.shape == (1797, 64) and x.dtype == np.float64
    assert x.min() == 0.0 and x.max() == 1.0
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert set(np.unique(labels)) == set(range(10))


def test_digits_are_scikit_learns_whether_read_from_its_file_or_through_load_digits(monkeypatch, tmp_path):
    # digits() reads the table scikit-learn ships without importing it; scikit-learn's own loader is the oracle,
    # and the fallback (no such file: another layout of the package) gives the same arrays
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bunch = sklearn_datasets.load_digits()
    x, labels = data.digits()
    np.testing.assert_array_equal(x, bunch.data / 16.0)
    np.testing.assert_array_equal(labels, bunch.target)
    elsewhere = importlib.machinery.ModuleSpec("sklearn", None, origin=str(tmp_path / "sklearn" / "__init__.py"))
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: elsewhere)
    x_fallback, labels_fallback = data.digits()
    np.testing.assert_array_equal(x_fallback, x)
    np.testing.assert_array_equal(labels_fallback, labels)
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        data.digits()


# ------------------------------------------------------------------ transformations


def test_one_hot():
    out = data.one_hot(np.array([2, 0, 1, 2]), 3)
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert out.dtype == np.float64
    assert data.one_hot(np.array([], dtype=np.int64), 4).shape == (0, 4)


@pytest.mark.parametrize("labels, n_classes, error, match", [
    (np.array([0, 3]), 3, ValueError, r"labels: expected integers in \[0, 2\], got values in \[0, 3\]"),
    (np.array([-1, 0]), 3, ValueError, "labels:"),
    (np.array([0.0, 1.0]), 3, TypeError, "labels:.*float64"),
    ([0, 1], 3, TypeError, "labels:.*list"),
    (np.array([[0, 1]]), 3, ValueError, "labels:.*shape"),
    (np.array([0, 1]), 0, ValueError, "n_classes:"),
])
def test_one_hot_bad_arguments(labels, n_classes, error, match):
    with pytest.raises(error, match=match):
        data.one_hot(labels, n_classes)


def test_split_sizes_disjoint_and_aligned():
    x = np.arange(200, dtype=np.float64).reshape(100, 2)
    labels = np.arange(100)
    s = data.train_val_test_split(x, labels, val_fraction=0.15, test_fraction=0.1, rng=0)
    assert (len(s.train), len(s.val), len(s.test)) == (75, 15, 10)
    for part, part_labels in [(s.train, s.train_labels), (s.val, s.val_labels), (s.test, s.test_labels)]:
        np.testing.assert_array_equal(part[:, 0], 2 * part_labels)  # rows stay with their labels
    assert sorted(np.concatenate([s.train_labels, s.val_labels, s.test_labels])) == list(range(100))
    assert not np.array_equal(s.train_labels, np.sort(s.train_labels))  # shuffled
    again = data.train_val_test_split(x, labels, val_fraction=0.15, test_fraction=0.1, rng=0)
    np.testing.assert_array_equal(s.test, again.test)
    unlabelled = data.train_val_test_split(x, rng=0)
    assert unlabelled.train_labels is None and unlabelled.train.shape == (80, 2)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(val_fraction=0.6, test_fraction=0.5), ValueError, "val_fraction, test_fraction:"),
    (dict(val_fraction=-0.1), ValueError, "val_fraction:"),
    (dict(test_fraction="0.1"), TypeError, "test_fraction:"),
    (dict(labels=np.arange(9)), ValueError, r"labels: expected shape \(10,\)"),
    (dict(rng="seed"), TypeError, "rng:"),
])
def test_split_bad_arguments(kwargs, error, match):
    kwargs = {"rng": 0, **kwargs}
    with pytest.raises(error, match=match):
        data.train_val_test_split(np.zeros((10, 3)), **kwargs)


def test_split_rejects_non_finite_and_non_arrays():
    with pytest.raises(ValueError, match="x: expected finite"):
        data.train_val_test_split(np.array([[np.nan, 0.0]] * 5), rng=0)
    with pytest.raises(TypeError, match="x:.*list"):
        data.train_val_test_split([[0.0, 1.0]] * 5, rng=0)


def test_binarize():
    x = np.array([[0.0, 0.2, 0.5, 0.51, 1.0]], dtype=np.float32)
    out = data.binarize(x)
    np.testing.assert_array_equal(out, [[0, 0, 0, 1, 1]])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(data.binarize(x, threshold=0.1), [[0, 1, 1, 1, 1]])


def test_binarize_stochastic_mean_matches_x():
    p = np.array([0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
    draws = 20000
    samples = data.binarize_stochastic(np.tile(p, (draws, 1)), rng=7)
    assert samples.dtype == np.float64 and set(np.unique(samples)) <= {0.0, 1.0}
    # the mean of `draws` Bernoulli(p) has standard error sqrt(p(1-p)/draws) <= 0.0036; allow 5 of them
    se = np.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(samples.mean(axis=0) - p) <= 5 * se + 1e-12)
    assert samples[:, 0].max() == 0.0 and samples[:, -1].min() == 1.0  # p = 0 and p = 1 are exact


@pytest.mark.parametrize("func", [data.binarize, lambda x: data.binarize_stochastic(x, rng=0)])
@pytest.mark.parametrize("x, error, match", [
    (np.array([0.5, 1.2]), ValueError, r"x: expected values in \[0, 1\]"),
    (np.array([-0.1, 0.5]), ValueError, r"x: expected values in \[0, 1\]"),
    (np.array([np.nan, 0.5]), ValueError, "x: expected finite"),
    (np.array([0, 1], dtype=np.uint8), TypeError, "x: expected a float array, got dtype uint8"),
    ([0.0, 1.0], TypeError, "x:"),
])
def test_binarize_bad_input(func, x, error, match):
    with pytest.raises(error, match=match):
        func(x)


def test_binarize_bad_threshold():
    with pytest.raises(ValueError, match="threshold:"):
        data.binarize(np.zeros(3), threshold=1.5)


# ------------------------------------------------------------------ IDX


def idx_bytes(array, code):
    """The IDX encoding of ``array``, written independently of read_idx."""
    big = array.astype(array.dtype.newbyteorder(">"))
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()


IDX_CASES = [
    (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08),
    (np.array([-128, -1, 0, 127], dtype=np.int8), 0x09),
    (np.array([[-30000, 2], [3, 30000]], dtype=np.int16), 0x0B),
    (np.arange(-6, 6, dtype=np.int32).reshape(3, 2, 1, 2), 0x0C),
    (np.array([[1.5, -2.25, 3e30]], dtype=np.float32), 0x0D),
    (np.array([np.pi, -1e-300]), 0x0E),
    (np.zeros((0, 28, 28), dtype=np.uint8), 0x08),
]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("array, code", IDX_CASES)
def test_read_idx_roundtrip(tmp_path, array, code, compress):
    raw = idx_bytes(array, code)
    path = tmp_path / "file.idx"  # no .gz suffix: gzip is recognised by its magic bytes
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = data.read_idx(path)
    assert out.dtype == array.dtype and out.dtype.isnative and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("raw, match", [
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x05", "magic bytes 00 00, got 01 00"),
    (b"", "magic bytes 00 00, got nothing"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x05", "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x02" + struct.pack(">I", 3), "truncated header"),
    (idx_bytes(np.arange(10, dtype=np.uint8), 0x08)[:-1], "truncated data, expected 10 bytes"),
    (idx_bytes(np.arange(10, dtype=np.int32), 0x0C) + b"\x00\x00", "2 trailing bytes"),
    (idx_bytes(np.array([1.0, np.inf]), 0x0E), "finite"),
    (gzip.compress(idx_bytes(np.arange(10, dtype=np.uint8), 0x08), mtime=0)[:-6], "corrupt gzip"),
])
def test_read_idx_malformed(tmp_path, raw, match):
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as info:
        data.read_idx(path)
    assert "bad.idx" in str(info.value)  # the message names the file


def test_read_idx_bad_path_type():
    with pytest.raises(TypeError, match="path:"):
        data.read_idx(3)


# ------------------------------------------------------------------ MNIST cache and download


def fake_mnist(directory, split="train", n=5, seed=0):
    """Tiny gzipped IDX files under MNIST's names; returns the images and labels written."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    image_name, label_name = data.MNIST_FILES[split]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / image_name).write_bytes(gzip.compress(idx_bytes(images, 0x08)))
    (directory / label_name).write_bytes(gzip.compress(idx_bytes(labels, 0x08)))
    return images, labels


def sha256_table(directory, split="train"):
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in data.MNIST_FILES[split]}


def no_network(url, dest):
    raise AssertionError(f"tried to fetch {url}")


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_from_cache(tmp_path, split):
    images, labels = fake_mnist(tmp_path, split)
    table = sha256_table(tmp_path, split)
    x, y = data.load_mnist(tmp_path, split=split, download=False, checksums=table)
    assert x.shape == (5, 784) and x.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(x, images.reshape(5, 784) / 255.0)
    np.testing.assert_array_equal(y, labels)
    assert x[0, 0] == 0.0 and x[0, 1] == 1.0
    x2, _ = data.load_mnist(str(tmp_path), split=split, fetch=no_network, checksums=table)  # not fetched again
    np.testing.assert_array_equal(x, x2)


def test_mnist_dir_env_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVAE_DATA", str(tmp_path))
    assert data.mnist_dir() == tmp_path / "mnist"
    fake_mnist(tmp_path / "mnist", "test")
    table = sha256_table(tmp_path / "mnist", "test")
    assert data.load_mnist(split="test", download=False, checksums=table)[0].shape == (5, 784)
    monkeypatch.delenv("MINIVAE_DATA")
    assert data.mnist_dir().parts[-3:] == (".cache", "minivae", "mnist")


def test_load_mnist_missing_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"train-images-idx3-ubyte.gz: not found in {tmp_path}"):
        data.load_mnist(tmp_path, download=False)


def test_download_from_file_mirror(tmp_path):
    """The real urllib path, offline: a file:// mirror."""
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    images, labels = fake_mnist(mirror)
    x, y = data.load_mnist(cache, mirrors=[mirror.as_uri() + "/"], checksums=sha256_table(mirror))
    np.testing.assert_array_equal(y, labels)
    assert sorted(p.name for p in cache.iterdir()) == sorted(data.MNIST_FILES["train"])  # no temp files left


def test_download_tries_the_next_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    fake_mnist(mirror)
    calls = []

    def fetch(url, dest):
        calls.append(url)
        if url.startswith("https://down.example/"):
            raise OSError("connection refused")
        dest.write_bytes((mirror / url.rsplit("/", 1)[1]).read_bytes())

    name = "train-labels-idx1-ubyte.gz"
    path = data.download_file(name, tmp_path / "cache", mirrors=["https://down.example", "https://up.example/"],
                              checksums=sha256_table(mirror), fetch=fetch)
    assert calls == ["https://down.example/" + name, "https://up.example/" + name]
    assert path.read_bytes() == (mirror / name).read_bytes()


def test_download_checksum_mismatch_keeps_nothing(tmp_path):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    fake_mnist(mirror)
    checksums = sha256_table(mirror)
    good = checksums["train-images-idx3-ubyte.gz"]
    checksums["train-images-idx3-ubyte.gz"] = "0" * 64
    with pytest.raises(ValueError, match=f"train-images-idx3-ubyte.gz: SHA-256 mismatch.*expected 0{{64}}, got {good}"):
        data.load_mnist(cache, mirrors=[mirror.as_uri()], checksums=checksums)
    assert list(cache.iterdir()) == []


def test_download_all_mirrors_fail(tmp_path):
    def fetch(url, dest):
        dest.write_bytes(b"partial")
        raise OSError("timed out")

    with pytest.raises(OSError, match="could not download from any mirror.*timed out"):
        data.download_file("t10k-labels-idx1-ubyte.gz", tmp_path, mirrors=["https://a.example/"], fetch=fetch)
    assert list(tmp_path.iterdir()) == []


def test_download_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="name:.*'notes.txt'"):
        data.download_file("notes.txt", tmp_path, fetch=no_network)


def test_default_checksum_table_covers_the_four_files():
    names = {name for pair in data.MNIST_FILES.values() for name in pair}
    assert set(data.MNIST_SHA256) == names
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in data.MNIST_SHA256.values())


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(split="validation"), ValueError, r"split: expected one of \['train', 'test'\], got 'validation'"),
    (dict(download="yes"), TypeError, "download: expected a bool"),
    (dict(cache_dir=5), TypeError, "cache_dir:"),
])
def test_load_mnist_bad_arguments(tmp_path, kwargs, error, match):
    kwargs = {"cache_dir": tmp_path, **kwargs}
    with pytest.raises(error, match=match):
        data.load_mnist(**kwargs)


def test_load_mnist_rejects_wrong_image_shape(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(idx_bytes(np.zeros((5, 8, 8), np.uint8), 0x08))
    with pytest.raises(ValueError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        data.load_mnist(tmp_path, download=False, checksums=sha256_table(tmp_path))


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "replace"])
def test_a_cached_file_is_checked_against_its_digest_before_every_use(tmp_path, damage):
    fake_mnist(tmp_path, "test")
    table = sha256_table(tmp_path, "test")
    data.load_mnist(tmp_path, "test", download=False, checksums=table)  # good files load
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(path.read_bytes())
    if damage == "flip a byte":
        raw[-3] ^= 0x01  # still valid gzip? maybe not: either way the digest must catch it first
    elif damage == "truncate":
        del raw[-10:]
    else:
        raw = gzip.compress(idx_bytes(np.full((5, 28, 28), 7, np.uint8), 0x08))  # a valid file, other data
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: expected SHA-256 [0-9a-f]{64}, got") as info:
        data.load_mnist(tmp_path, "test", download=False, checksums=table)
    assert "delete it" in str(info.value)


def test_a_cache_dir_that_is_a_file_is_refused_by_name(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="cache_dir: expected a folder.*which is a file"):
        data.load_mnist(tmp_path / "file", "test", download=False)


def test_binarize_split_modes():
    grey = np.random.default_rng(0).random((40, 6))
    split = data.train_val_test_split(grey, rng=0)
    assert data.binarize_split(split, "none", 0) is split
    hard = data.binarize_split(split, "threshold", 0)
    for part, original in zip(hard[:3], split[:3]):
        np.testing.assert_array_equal(part, original > 0.5)
    drawn = data.binarize_split(split, "stochastic", 7)
    assert drawn.train is split.train  # grey: drawn afresh every epoch by the trainer's caller
    for part in (drawn.val, drawn.test):
        assert set(np.unique(part)) <= {0.0, 1.0}
    again = data.binarize_split(split, "stochastic", 7)
    np.testing.assert_array_equal(again.val, drawn.val)  # a fixed seed fixes the held-out draws
    np.testing.assert_array_equal(again.test, drawn.test)
    assert not np.array_equal(data.binarize_split(split, "stochastic", 8).test, drawn.test)


def test_binarize_split_refuses_bad_input():
    split = data.train_val_test_split(np.random.default_rng(0).random((10, 2)), rng=0)
    with pytest.raises(ValueError, match="^mode: expected"):
        data.binarize_split(split, "soft", 0)
    with pytest.raises(TypeError, match="^split: expected a DataSplit"):
        data.binarize_split(split.train, "threshold", 0)
