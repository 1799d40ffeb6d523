r"""Data sets for the examples: a 2-D ring, the 8x8 digits, MNIST, and helpers.

Every loader returns ``x`` as a float64 array of shape (N, D), one example per
row, with pixel intensities scaled to [0, 1], and (where there are any) the
class labels as an int64 array of shape (N,).

* :func:`ring` -- the lecture's toy data: :math:`x = z/10 + z/\lVert z\rVert`
  with :math:`z \sim \mathcal N(0, I_2)`, a noisy circle a VAE with a 2-D
  latent space must learn to "unwrap".
* :func:`digits` -- scikit-learn's 1797 handwritten digits, 8x8 pixels (D = 64).
* :func:`load_mnist` -- MNIST (D = 784), read from the four standard IDX files
  (:func:`read_idx`), downloaded once into a cache directory and checked
  against SHA-256 digests before every use (a cached file too, not only a download).
* :func:`one_hot`, :func:`train_val_test_split`, :func:`binarize`,
  :func:`binarize_stochastic`, :func:`binarize_split` -- small transformations of the above.

The ring's exact density is :func:`minivae.ring_density.ring_log_density`.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import math
import numbers
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .validate import check_bool, check_choice, check_float, check_folder_path, check_int, check_path

# ----------------------------------------------------------------- checks


def _generator(rng) -> np.random.Generator:
    """``rng`` itself if it is a Generator, a fresh one if it is an int seed."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng: expected a numpy.random.Generator or an int seed >= 0, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected a numpy.random.Generator or an int seed, got {type(rng).__name__} {rng!r}")


def _check_float_array(name: str, x, unit_interval: bool = False) -> np.ndarray:
    """A finite float numpy array (any shape), optionally with every value in [0, 1]."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy float array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: expected finite values, got NaN or infinity")
    if unit_interval and x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name}: expected values in [0, 1], got values in [{x.min()}, {x.max()}]")
    return x


# ------------------------------------------------------------ toy data sets


def ring(n: int, noise: float = 0.05, *, rng) -> np.ndarray:
    r"""``n`` points near the unit circle: :math:`x = z/10 + z/\lVert z\rVert + \text{noise}\cdot\varepsilon`.

    With :math:`z, \varepsilon \sim \mathcal N(0, I_2)`. Without noise
    :math:`\lVert x\rVert = \lVert z\rVert/10 + 1 \ge 1`: a ring of radius just over one.

    Parameters
    ----------
    n : int >= 1, the number of points N.
    noise : float >= 0, the standard deviation of the added Gaussian noise.
    rng : numpy.random.Generator or int seed. ``z`` is drawn before
        ``epsilon``, so the same seed gives the same ``z`` whatever ``noise`` is.

    Returns
    -------
    x : float64 array, shape (N, 2).
    """
    n = check_int("n", n, minimum=1)
    noise = check_float("noise", noise, minimum=0.0)
    rng = _generator(rng)
    z = rng.standard_normal((n, 2))
    eps = rng.standard_normal((n, 2))
    return z / 10.0 + z / np.linalg.norm(z, axis=1, keepdims=True) + noise * eps


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits.

    Returns
    -------
    x : float64 array, shape (1797, 64), the pixels (0..16 in the source) divided by 16.
    labels : int64 array, shape (1797,), the digit 0..9 shown in each image.

    The table is read from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``: 64 pixels, then
    the label, a row per image) without importing scikit-learn, which takes most of a second; where that file is
    not found, from ``sklearn.datasets.load_digits()``, which reads the same file.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    if spec is None:
        raise ImportError("digits() needs scikit-learn: `pip install scikit-learn` (or `pip install minivae[dev]`)")
    table = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if table.is_file():
        with gzip.open(table, "rt") as rows:
            data = np.loadtxt(rows, delimiter=",")
        pixels, labels = data[:, :-1], data[:, -1]
    else:
        from sklearn.datasets import load_digits
        bunch = load_digits()
        pixels, labels = bunch.data, bunch.target
    x = _check_float_array("digits", np.asarray(pixels, dtype=np.float64) / 16.0, unit_interval=True)
    return x, np.asarray(labels, dtype=np.int64)


# ------------------------------------------------------------ transformations


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Integer labels (N,) in 0..n_classes-1 -> float64 indicator rows (N, n_classes)."""
    n_classes = check_int("n_classes", n_classes, minimum=1)
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
        got = f"dtype {labels.dtype}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise TypeError(f"labels: expected a numpy integer array, got {got}")
    if labels.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array of shape (N,), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels: expected integers in [0, {n_classes - 1}], "
                         f"got values in [{labels.min()}, {labels.max()}]")
    out = np.zeros((labels.shape[0], n_classes))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


class DataSplit(NamedTuple):
    """Rows of ``x`` (and of ``labels``, ``None`` if none were given) in three disjoint parts."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None
    val_labels: np.ndarray | None
    test_labels: np.ndarray | None


def split_sizes(n: int, val_fraction: float = 0.1, test_fraction: float = 0.1) -> tuple:
    """The rows ``(train, validation, test)`` :func:`train_val_test_split` makes of ``n``: ``round(fraction * n)``
    for each held-out part, the rest for training (negative when nothing is left)."""
    n_val, n_test = round(val_fraction * n), round(test_fraction * n)
    return n - n_val - n_test, n_val, n_test


def train_val_test_split(x: np.ndarray, labels: np.ndarray | None = None, *, val_fraction: float = 0.1,
                         test_fraction: float = 0.1, rng) -> DataSplit:
    """Shuffle the rows of ``x`` (N, D) and cut them into training, validation and test parts.

    The validation and test parts get ``round(fraction * N)`` rows each, the
    training part the rest (at least one row). ``labels`` (N,), if given, is
    permuted with the same permutation, so ``labels[i]`` stays with ``x[i]``.
    All parts are new arrays. ``rng`` is a numpy.random.Generator or an int seed.
    """
    x = _check_float_array("x", x)
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D array of shape (N, D), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"x: expected at least one row, got an empty array of shape {x.shape}")
    if labels is not None:
        if not isinstance(labels, np.ndarray):
            raise TypeError(f"labels: expected a numpy array or None, got {type(labels).__name__}")
        if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
            raise ValueError(f"labels: expected shape ({x.shape[0]},) (one per row of x), got {labels.shape}")
    val_fraction = check_float("val_fraction", val_fraction, minimum=0.0, maximum=1.0)
    test_fraction = check_float("test_fraction", test_fraction, minimum=0.0, maximum=1.0)
    n = x.shape[0]
    _, n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    if n - n_val - n_test < 1:
        raise ValueError(f"val_fraction, test_fraction: expected to leave at least one training row of {n}, "
                         f"got {n_val} validation + {n_test} test rows")
    order = _generator(rng).permutation(n)
    parts = np.split(order, [n - n_val - n_test, n - n_test])  # train, val, test indices
    taken = [labels[p] if labels is not None else None for p in parts]
    return DataSplit(*(x[p] for p in parts), *taken)


def binarize(x: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Pixels in [0, 1] -> 1 where ``x > threshold``, else 0; same shape and float dtype as ``x``."""
    x = _check_float_array("x", x, unit_interval=True)
    threshold = check_float("threshold", threshold, minimum=0.0, maximum=1.0)
    return (x > threshold).astype(x.dtype)


def binarize_stochastic(x: np.ndarray, rng) -> np.ndarray:
    """Each pixel drawn as Bernoulli(x): 1 with probability ``x``, else 0; same shape and dtype as ``x``.

    ``rng`` is a numpy.random.Generator or an int seed. Since ``u ~ U[0, 1)``
    satisfies ``P(u < p) = p``, the sample is ``u < x``.
    """
    x = _check_float_array("x", x, unit_interval=True)
    return (_generator(rng).random(x.shape) < x).astype(x.dtype)


#: How grey levels in [0, 1] become data for a Bernoulli decoder (:func:`binarize_split`).
BINARIZE = ("none", "threshold", "stochastic")


def binarize_split(split: DataSplit, mode: str, rng) -> DataSplit:
    r"""``split`` with its pixels made binary by ``mode``, so a Bernoulli decoder's log-likelihood is one.

    * ``"none"``: unchanged. A Bernoulli "log-likelihood" of grey levels is then a cross-entropy score,
      :math:`\sum_d x_d \log p_d + (1 - x_d)\log(1 - p_d)`, not the log-density of any distribution of the data.
    * ``"threshold"``: every part through :func:`binarize` (``x > 0.5``).
    * ``"stochastic"``: the validation and test parts drawn once, :math:`x \sim \mathrm{Bernoulli}(\text{grey})`,
      from ``rng`` (a Generator or an int seed: fix it and the held-out data are fixed); the training part is
      returned grey, for a fresh draw every epoch (:func:`binarize_stochastic`), as the literature does.
    """
    if not isinstance(split, DataSplit):
        raise TypeError(f"split: expected a DataSplit, got {type(split).__name__}")
    mode = check_choice("mode", mode, BINARIZE)
    if mode == "none":
        return split
    if mode == "threshold":
        return split._replace(train=binarize(split.train), val=binarize(split.val), test=binarize(split.test))
    rng = _generator(rng)
    val = binarize_stochastic(split.val, rng)  # val first, then test: the same seed gives the same parts
    return split._replace(val=val, test=binarize_stochastic(split.test, rng))


# ------------------------------------------------------------ IDX files and MNIST

#: IDX type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, bottom of the page).
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read an IDX file, plain or gzip-compressed (recognised by its first bytes 1f 8b, not its name).

    Layout: two zero bytes, a type code (see ``IDX_DTYPES``), the number of
    dimensions, each dimension as a big-endian uint32, then the values big-endian.
    Returns the array in native byte order; a malformed file raises ValueError.
    """
    path = check_path("path", path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: expected gzip data (it starts with 1f 8b), "
                             f"got corrupt gzip data ({error})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise ValueError(f"{path}: not an IDX file, expected magic bytes 00 00, got {raw[:2].hex(' ') or 'nothing'}")
    if raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{raw[2]:02X}, expected one of "
                         f"{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)}")
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header, expected {ndim} dimensions in {header} bytes, got {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header < expected:
        raise ValueError(f"{path}: truncated data, expected {expected} bytes for shape {shape}, "
                         f"got {len(raw) - header}")
    if len(raw) - header > expected:
        raise ValueError(f"{path}: expected {expected} bytes of data for shape {shape}, "
                         f"got {len(raw) - header - expected} trailing bytes after them")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{path}: expected finite values, got NaN or infinity")
    return array


MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

#: SHA-256 of the gzipped files as distributed by the mirrors below (9 912 422,
#: 28 881, 1 648 877 and 4 542 bytes). For cross-checking, their well-known
#: MD5 digests are f68b3c2d..., d53e105e..., 9fb629c4..., ec29112d...
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/")


def sha256(path) -> str:
    """Hex SHA-256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, checksums: dict) -> None:
    """Refuse the file ``path`` unless its SHA-256 is ``checksums[path.name]``: a corrupt, truncated or replaced
    cache is never read as data."""
    expected = checksums.get(path.name)
    if expected is None:
        raise ValueError(f"checksums: expected a SHA-256 digest for {path.name!r}, got none for it")
    got = sha256(path)
    if got != expected:
        raise ValueError(f"{path}: expected SHA-256 {expected}, got {got}: the cached file is corrupt or was "
                         "replaced; delete it and it is downloaded again")


def _urlopen_fetch(url: str, dest: Path) -> None:
    """Copy ``url`` (https://, http:// or file://) into the file ``dest``."""
    import urllib.request  # here: its HTTP and e-mail modules are a tenth of `import minivae`, needed by a download

    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f)


def download_file(name: str, directory, *, mirrors=MNIST_MIRRORS, checksums=MNIST_SHA256, fetch=None) -> Path:
    """Download ``name`` into ``directory``, trying ``mirrors`` in turn; return its path.

    The file is fetched into a temporary file next to its destination, its
    SHA-256 is compared with ``checksums[name]`` and only then is it moved into
    place (``os.replace``, atomic), so a half-written or wrong file is never
    left under ``name``. ``fetch(url, dest)`` copies one URL into a file (the
    default uses urllib); tests pass their own, or a ``file://`` mirror.
    A digest mismatch raises ValueError; no mirror answering raises OSError.
    """
    directory = check_folder_path("directory", directory)
    mirrors, checksums, fetch = _check_sources(mirrors, checksums, fetch)
    if name not in checksums:
        raise ValueError(f"name: expected a file with a known checksum {sorted(checksums)}, got {name!r}")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    errors = []
    try:
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                fetch(url, Path(tmp))
            except OSError as error:  # urllib.error.URLError is an OSError
                errors.append(f"{url}: {error}")
                continue
            got = sha256(tmp)
            if got != checksums[name]:
                raise ValueError(f"{name}: SHA-256 mismatch for the download from {url}, "
                                 f"expected {checksums[name]}, got {got}; the file was not kept")
            os.replace(tmp, directory / name)
            return directory / name
        raise OSError(f"{name}: could not download from any mirror: " + "; ".join(errors or ["no mirrors given"]))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_sources(mirrors, checksums, fetch):
    """The download arguments: URL prefixes (a list, not one string), a name -> digest dict, a callable or None."""
    if isinstance(mirrors, (str, bytes)) or not isinstance(mirrors, (list, tuple)) or not all(
            isinstance(url, str) for url in mirrors):
        raise TypeError(f"mirrors: expected a list or tuple of URL strings, got {type(mirrors).__name__} {mirrors!r}")
    if not isinstance(checksums, dict):
        raise TypeError(f"checksums: expected a dict of file name -> SHA-256 hex digest, "
                        f"got {type(checksums).__name__}")
    if fetch is not None and not callable(fetch):
        raise TypeError(f"fetch: expected a callable fetch(url, dest) or None, got {type(fetch).__name__}")
    return tuple(mirrors), checksums, _urlopen_fetch if fetch is None else fetch


def mnist_dir(cache_dir=None) -> Path:
    """``cache_dir`` if given, else ``$MINIVAE_DATA/mnist`` if that variable is set, else ``~/.cache/minivae/mnist``."""
    if cache_dir is not None:
        return check_path("cache_dir", cache_dir)
    root = os.environ.get("MINIVAE_DATA")
    return Path(root) / "mnist" if root else Path.home() / ".cache" / "minivae" / "mnist"


def load_mnist(cache_dir=None, split: str = "train", download: bool = True, *, mirrors=MNIST_MIRRORS,
               checksums=MNIST_SHA256, fetch=None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's 60 000 training or 10 000 test digits, 28x28 pixels.

    Parameters
    ----------
    cache_dir : str, os.PathLike or None; where the IDX files are kept (see :func:`mnist_dir`).
    split : "train" or "test".
    download : bool; fetch missing files (see :func:`download_file`, which also
        takes ``mirrors``, ``checksums`` and ``fetch``). If False, a missing
        file raises FileNotFoundError.

    Returns
    -------
    x : float64 array, shape (N, 784), pixels 0..255 divided by 255, row-major.
    labels : int64 array, shape (N,), the digits 0..9.
    """
    split = check_choice("split", split, tuple(MNIST_FILES))
    download = check_bool("download", download)
    _check_sources(mirrors, checksums, fetch)
    directory = check_folder_path("cache_dir", mnist_dir(cache_dir))
    paths = []
    for name in MNIST_FILES[split]:
        if not (directory / name).is_file():
            if not download:
                raise FileNotFoundError(f"{name}: not found in {directory} (download=False)")
            download_file(name, directory, mirrors=mirrors, checksums=checksums, fetch=fetch)
        else:  # a cached file is checked before every use, not only after its download
            check_sha256(directory / name, checksums)
        paths.append(directory / name)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{paths[0]}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1] or (labels.size and labels.max() > 9):
        raise ValueError(f"{paths[1]}: expected {images.shape[0]} uint8 labels in 0..9, "
                         f"got {labels.dtype} {labels.shape}")
    return images.reshape(-1, 784) / 255.0, labels.astype(np.int64)
