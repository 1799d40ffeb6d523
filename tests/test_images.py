"""Tests for minivae.images: the PNG writer (read back independently) and the grids."""

import os
import struct
import zlib

import numpy as np
import pytest

from minivae import images


def read_png_gray(path):
    """Parse an 8-bit grayscale, non-interlaced PNG with filter type 0 rows, checking every CRC."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos:pos + 4])
        kind, body = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", raw[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"] and chunks[-1][1] == b""
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 0, 0, 0, 0)
    rows = np.frombuffer(zlib.decompress(chunks[1][1]), dtype=np.uint8).reshape(height, width + 1)
    assert (rows[:, 0] == 0).all()  # filter byte "none" on every row
    return rows[:, 1:]


def test_png_roundtrip_uint8(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, size=(7, 13), dtype=np.uint8)
    path = images.write_png(tmp_path / "a.png", image)
    assert path == tmp_path / "a.png"
    np.testing.assert_array_equal(read_png_gray(path), image)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left behind


def test_png_roundtrip_float(tmp_path):
    image = np.linspace(0, 1, 256).reshape(16, 16)
    images.write_png(str(tmp_path / "f.png"), image)
    expected = np.round(image * 255).astype(np.uint8)
    np.testing.assert_array_equal(read_png_gray(tmp_path / "f.png"), expected)
    np.testing.assert_array_equal(expected.ravel(), np.arange(256))


def test_png_read_by_matplotlib(tmp_path):
    mpimg = pytest.importorskip("matplotlib.image")
    image = np.random.default_rng(1).integers(0, 256, size=(5, 9), dtype=np.uint8)
    images.write_png(tmp_path / "m.png", image)
    back = mpimg.imread(tmp_path / "m.png")  # float32 in [0, 1] for an 8-bit PNG
    back = back[..., 0] if back.ndim == 3 else back
    np.testing.assert_array_equal(np.round(back * 255).astype(np.uint8), image)


def test_png_overwrites_atomically(tmp_path):
    path = tmp_path / "x.png"
    images.write_png(path, np.zeros((2, 2)))
    images.write_png(path, np.ones((3, 1)))
    np.testing.assert_array_equal(read_png_gray(path), np.full((3, 1), 255))



@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_png_is_readable_by_others_less_the_umask(tmp_path):
    # mkstemp makes 0600 files: a picture written through it must not stay private to its owner
    path = tmp_path / "samples.png"
    old = os.umask(0o022)
    try:
        images.write_png(path, np.zeros((2, 2)))
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        images.write_png(tmp_path / "private.png", np.zeros((2, 2)))
        assert (tmp_path / "private.png").stat().st_mode & 0o777 == 0o600  # the umask withholds group and others
        path.chmod(0o640)
        images.write_png(path, np.ones((2, 2)))
        assert path.stat().st_mode & 0o777 == 0o640  # the mode of the file replaced is kept
    finally:
        os.umask(old)


@pytest.mark.parametrize("image, error, match", [
    (np.zeros((2, 2, 3)), ValueError, r"image: expected a non-empty 2-D array.*\(2, 2, 3\)"),
    (np.zeros((0, 4)), ValueError, "image: expected a non-empty 2-D"),
    (np.array([[0.0, 1.5]]), ValueError, r"image: expected finite values in \[0, 1\]"),
    (np.array([[np.nan, 0.5]]), ValueError, "image:"),
    (np.zeros((2, 2), dtype=np.int64), TypeError, "image:.*got dtype int64"),
    ([[0.0]], TypeError, "image:.*list"),
])
def test_png_bad_image(tmp_path, image, error, match):
    with pytest.raises(error, match=match):
        images.write_png(tmp_path / "bad.png", image)
    assert list(tmp_path.iterdir()) == []


def test_png_bad_path():
    with pytest.raises(TypeError, match="path:"):
        images.write_png(None, np.zeros((2, 2)))


@pytest.mark.parametrize("n, n_cols, pad, shape", [
    (6, 3, 1, (2 * 4 + 1, 3 * 5 + 2)),
    (7, 3, 1, (3 * 4 + 2, 3 * 5 + 2)),
    (2, 5, 2, (4, 2 * 5 + 2)),  # fewer images than columns: one row of two
    (4, 1, 0, (16, 5)),
])
def test_tile_shape(n, n_cols, pad, shape):
    assert images.tile(np.zeros((n, 4, 5)), n_cols, pad=pad).shape == shape


def test_tile_places_images_and_padding():
    stack = np.arange(3 * 2 * 2, dtype=np.float64).reshape(3, 2, 2) / 11
    grid = images.tile(stack, 2, pad=1, pad_value=1.0)
    assert grid.shape == (5, 5)
    np.testing.assert_array_equal(grid[0:2, 0:2], stack[0])
    np.testing.assert_array_equal(grid[0:2, 3:5], stack[1])
    np.testing.assert_array_equal(grid[3:5, 0:2], stack[2])
    assert (grid[2, :] == 1).all() and (grid[:, 2] == 1).all() and (grid[3:5, 3:5] == 1).all()
    grid8 = images.tile((stack * 11).astype(np.uint8), 2, pad_value=255)
    assert grid8.dtype == np.uint8 and grid8[2, 0] == 255


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((np.zeros((2, 4)), 2), {}, ValueError, r"images: expected a non-empty 3-D array.*\(2, 4\)"),
    ((np.zeros((2, 4, 4), dtype=bool), 2), {}, TypeError, "images:.*bool"),
    ((np.zeros((2, 4, 4)), 0), {}, ValueError, "n_cols: expected an integer >= 1, got 0"),
    ((np.zeros((2, 4, 4)), 2), {"pad": -1}, ValueError, "pad:"),
    ((np.zeros((2, 4, 4)), 2), {"pad_value": "white"}, TypeError, "pad_value:"),
    ((np.zeros((2, 4, 4), np.uint8), 2), {"pad_value": 1.5}, ValueError, "pad_value:.*uint8"),
    ((np.zeros((2, 4, 4), np.uint8), 2), {"pad_value": 256}, ValueError, "pad_value:"),
])
def test_tile_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        images.tile(*args, **kwargs)


def test_image_grid_reshapes_rows_and_scales():
    x = np.arange(5 * 6, dtype=np.float64).reshape(5, 6) / 30  # five 2x3 images
    grid = images.image_grid(x, (2, 3), n_cols=2, pad=0)
    assert grid.shape == (3 * 2, 2 * 3)
    np.testing.assert_array_equal(grid[2:4, 3:6], x[3].reshape(2, 3))
    big = images.image_grid(x, (2, 3), n_cols=2, pad=0, scale=4)
    assert big.shape == (24, 24)
    np.testing.assert_array_equal(big[::4, ::4], grid)
    np.testing.assert_array_equal(big[8:12, 12:16], np.full((4, 4), x[3, 0]))


@pytest.mark.parametrize("image_shape, kwargs, error, match", [
    ((2, 2), {}, ValueError, r"image_shape: expected h\*w = 6"),
    ([2, 3], {}, TypeError, "image_shape: expected a tuple"),
    ((2, 3), {"scale": 0}, ValueError, "scale:"),
])
def test_image_grid_bad_arguments(image_shape, kwargs, error, match):
    with pytest.raises(error, match=match):
        images.image_grid(np.zeros((4, 6)), image_shape, 2, **kwargs)
