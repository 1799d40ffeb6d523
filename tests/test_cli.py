"""Every command of the ``minivae`` CLI, end to end, in a temporary directory."""

import json

import numpy as np
import pytest

from minivae.cli import main
from minivae.images import write_png  # noqa: F401  (the CLI writes PNGs without matplotlib)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--dataset", "digits", "--epochs", "3", "--k", "20", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


def test_train_writes_checkpoint_picture_history_and_prints_log_likelihood(trained, capsys):
    assert (trained / "model.npz").is_file()
    assert (trained / "samples.png").read_bytes()[:8] == PNG_SIGNATURE
    history = json.loads((trained / "history.json").read_text())
    assert len(history["train_loss"]) == 3 and len(history["val_loss"]) == 3


def test_train_output_names_the_results(tmp_path, capsys):
    code = main(["train", "--dataset", "ring", "--epochs", "2", "--k", "10", "--hidden", "16",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test log-likelihood (importance-weighted, k=10)" in out and "test negative ELBO" in out
    assert (tmp_path / "samples.png").read_bytes()[:8] == PNG_SIGNATURE


def test_conditional_train_and_labelled_sampling(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert main(["train", "--conditional", "--epochs", "2", "--k", "5", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    assert main(["sample", "--checkpoint", str(tmp_path / "model.npz"), "--label", "3", "--n", "4",
                 "--out", str(tmp_path / "threes.npy")]) == 0
    assert np.load(tmp_path / "threes.npy").shape == (4, 64)


def test_sample_png_and_npy(trained, tmp_path):
    assert main(["sample", "--checkpoint", str(trained / "model.npz"), "--n", "12", "--out",
                 str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG_SIGNATURE
    assert main(["sample", "--checkpoint", str(trained / "model.npz"), "--n", "5", "--draw", "--out",
                 str(tmp_path / "s.npy")]) == 0
    drawn = np.load(tmp_path / "s.npy")
    assert drawn.shape == (5, 64) and set(np.unique(drawn)) <= {0.0, 1.0}


def test_score_a_split_and_a_file(trained, tmp_path, capsys):
    assert main(["score", "--checkpoint", str(trained / "model.npz"), "--k", "10"]) == 0
    assert "mean log-likelihood (importance-weighted, k=10)" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, 64)))
    assert main(["score", "--checkpoint", str(trained / "model.npz"), "--input", str(tmp_path / "x.npy"),
                 "--k", "5", "--per-example"]) == 0
    assert "3 examples" in capsys.readouterr().out


def test_gradcheck_prints_every_parameter_and_passes(capsys):
    assert main(["gradcheck", "--likelihood", "gaussian_per_example", "--samples", "3", "--condition-dim", "2"]) == 0
    out = capsys.readouterr().out
    for name in ("encoder.0.W", "encoder.2.b", "decoder.2.W", "decoder.0.b"):
        assert name in out
    assert "PASS" in out


def test_errors_are_reported_without_a_traceback(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "missing.npz")]) == 2
    assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--hidden", "12,x"])
