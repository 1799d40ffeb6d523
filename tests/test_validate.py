"""Paths are checked in one place (:mod:`minivae.validate`), the same way for a library argument and a flag."""

import io

import numpy as np
import pytest

from minivae import data
from minivae.checkpoint import load_checkpoint, save_checkpoint
from minivae.model import VAE
from minivae.serialize import save_model
from minivae.train import fit
from minivae.validate import check_file_path, check_folder_path, check_path
from cli_run import run


@pytest.mark.parametrize("bad, error", [(None, TypeError), (3, TypeError), (io.BytesIO(), TypeError),
                                        ("", ValueError), (b"", ValueError)])
def test_a_path_is_a_str_or_path_like_and_not_empty(bad, error):
    with pytest.raises(error, match="^where: expected a"):
        check_path("where", bad)


def test_a_path_given_as_bytes_or_path_like_comes_back_as_a_path(tmp_path):
    assert check_path("where", bytes(tmp_path)) == tmp_path == check_path("where", tmp_path)


def test_a_file_path_is_not_a_directory_and_its_folder_exists(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"x")
    assert check_file_path("f", tmp_path / "a.npz", existing=True) == tmp_path / "a.npz"
    assert check_file_path("f", str(tmp_path / "new.npz")) == tmp_path / "new.npz"
    with pytest.raises(IsADirectoryError, match=f"^f: expected a file path, got '{tmp_path}', which is a directory"):
        check_file_path("f", tmp_path)
    with pytest.raises(FileNotFoundError, match=f"^f: expected a file in an existing folder, got .*whose folder "
                                                f"'{tmp_path / 'no'}' does not exist"):
        check_file_path("f", tmp_path / "no" / "a.npz")
    with pytest.raises(FileNotFoundError, match="^f: expected an existing file, got .*new.npz', which does not"):
        check_file_path("f", tmp_path / "new.npz", existing=True)
    with pytest.raises(ValueError, match=r"^f: expected a path ending in \.png or \.npy, got .*a\.npz'"):
        check_file_path("f", tmp_path / "a.npz", suffixes=(".png", ".npy"))


def test_a_folder_path_is_anything_but_a_file(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    assert check_folder_path("d", tmp_path / "missing") == tmp_path / "missing"
    assert check_folder_path("d", tmp_path) == tmp_path
    with pytest.raises(NotADirectoryError, match="^d: expected a folder \\(created if missing\\), got .*, which is a"):
        check_folder_path("d", tmp_path / "file")


def test_every_entry_point_refuses_a_directory_for_a_file_in_the_same_words(tmp_path):
    folder = tmp_path / "looks_like.png"
    folder.mkdir()
    model = VAE(2, 2, (3,), likelihood="gaussian_shared", seed=0)
    save_model(tmp_path / "m.npz", model)
    x = data.ring(10, rng=0)
    refusals = {"path": lambda: save_checkpoint(folder, {}, {}), "checkpoint": lambda: fit(
        model, x, batch_size=5, checkpoint=folder, progress=False)}
    for name, call in refusals.items():
        with pytest.raises(IsADirectoryError) as info:
            call()
        assert str(info.value) == f"{name}: expected a file path, got '{folder}', which is a directory"
    with pytest.raises(IsADirectoryError, match=f"^path: expected a file path, got '{folder}'"):
        load_checkpoint(folder)
    code, _, err = run("sample", "--checkpoint", tmp_path / "m.npz", "--out", folder)
    assert code == 2 and f"--out: expected a file path, got '{folder}', which is a directory" in err, err


def test_every_entry_point_refuses_a_file_for_a_folder_in_the_same_words(tmp_path):
    file = tmp_path / "mnist"
    file.write_bytes(b"not a folder")
    with pytest.raises(NotADirectoryError) as info:
        data.load_mnist(file, download=False)
    assert str(info.value) == f"cache_dir: expected a folder (created if missing), got '{file}', which is a file"
    with pytest.raises(NotADirectoryError, match="^directory: expected a folder"):
        data.download_file("train-images-idx3-ubyte.gz", file, mirrors=[])
    code, _, err = run("train", "--dataset", "mnist", "--data-dir", file, "--out", tmp_path / "r")
    assert code == 2 and f"--data-dir: expected a folder (created if missing), got '{file}', which is a file" in err
    assert not (tmp_path / "r").exists()
