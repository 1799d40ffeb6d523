"""Flags checked where they are parsed, against their meaning, each other and the sizes they imply, before anything
is made on disk (a refused ``train`` leaves no ``--out`` folder); ``score`` checks the same flags the same way, and a
checkpoint's data record like flags, naming ``--checkpoint``; checkpoint members are size-checked from their headers;
the collapse warning gives advice that fits the run, and no verdict from too few test examples."""

import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from minivae import data
from minivae.cli import cmd_train, recipes, report
from minivae.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minivae.model import VAE, VAEConfig
from minivae.serialize import save_model
from cli_run import run

RING = ["train", "--dataset", "ring", "--ring-points", "200", "--hidden", "8", "--epochs", "1", "--k", "2",
        "--no-progress"]




@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ring") / "r"
    assert run(*RING, "--out", out)[0] == 0
    return out / "model.npz"


TRAIN_REFUSED = [
    (["--lr-warmup", "1e308"], "--lr-warmup"),
    (["--lr-warmup", "2000000"], "--lr-warmup"),
    (["--schedule", "step", "--step-every", "1e308"], "--step-every"),
    (["--schedule", "step", "--step-every", "inf"], "--step-every"),
    (["--warmup", "1e308"], "--warmup"),
    (["--epochs", "10000000"], "--epochs"),
    (["--epochs", str(10 ** 400)], "--epochs"),
    (["--ring-points", "3"], "--ring-points"),
    (["--ring-points", str(recipes.RING_POINTS_MIN - 1)], "--ring-points"),
    (["--ring-points", str(10 ** 12)], "--ring-points"),
    (["--ring-points", str(10 ** 30)], "--ring-points"),
    (["--ring-noise", "1e200"], "--ring-noise"),
    (["--ring-noise", "11"], "--ring-noise"),
    (["--ring-noise", "nan"], "--ring-noise"),
    (["--ring-points", "20", "--batch-size", "17"], "--batch-size"),  # 16 training points
    (["--likelihood", "bernoulli"], "--likelihood"),
    (["--likelihood", "bernoulli", "--init-log-var", "-2"], "--init-log-var"),
    (["--likelihood", "gaussian_fixed", "--init-log-var", "-2"], "--init-log-var"),
    (["--fixed-variance", "0.5", "--init-log-var", "-2"], "--init-log-var"),
    (["--fixed-variance", "0.5", "--likelihood", "bernoulli"], "--fixed-variance"),
    (["--resume"], "--resume"),
    (["--resume", "--overwrite"], "--overwrite"),
    (["--lr-min", "0.1"], "--lr-min"),
    (["--step-factor", "0.5"], "--step-factor"),
    (["--data-dir", "somewhere"], "--data-dir"),
]


@pytest.mark.parametrize("argv, flag", TRAIN_REFUSED, ids=[" ".join(a) for a, _ in TRAIN_REFUSED])
def test_train_refuses_by_flag_and_leaves_no_folder(tmp_path, argv, flag):
    out = tmp_path / "new" / "run"
    code, _, err = run(*RING, *argv, "--out", out)
    assert code == 2 and flag in err and "expected" in err, err
    assert len(err.strip().splitlines()) == 1 or err.startswith("usage:"), err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("argv, flag", [
    (["--dataset", "digits", "--binarize", "threshold", "--likelihood", "gaussian_shared"], "--binarize"),
    (["--dataset", "digits", "--binarize", "stochastic", "--fixed-variance", "0.1"], "--binarize"),
    (["--dataset", "digits", "--likelihood", "bernoulli", "--init-log-var", "-1"], "--init-log-var"),
    (["--dataset", "digits", "--batch-size", "1439"], "--batch-size"),  # 1438 training digits
])
def test_image_flags_that_do_not_fit_together_are_refused(tmp_path, argv, flag):
    code, _, err = run("train", *argv, "--epochs", "1", "--out", tmp_path / "run")
    assert code == 2 and flag in err, err
    assert not (tmp_path / "run").exists()


def test_a_late_refusal_removes_the_folders_it_made(tmp_path, monkeypatch):
    def fails(*args, **kwargs):
        raise ValueError("--dataset: expected data, got none")
    monkeypatch.setattr(cmd_train, "load_dataset", fails)
    code, _, err = run(*RING, "--out", tmp_path / "a" / "b")
    assert code == 2 and "--dataset" in err
    assert list(tmp_path.iterdir()) == []


def test_the_smallest_ring_has_a_validation_and_a_test_point_and_trains(tmp_path):
    assert min(data.split_sizes(recipes.RING_POINTS_MIN)) >= 1 > min(data.split_sizes(recipes.RING_POINTS_MIN - 1))
    code, _, err = run(*RING, "--ring-points", recipes.RING_POINTS_MIN, "--batch-size", "1", "--out", tmp_path / "r")
    assert code == 0, err
    assert "no verdict on posterior collapse" in err and "COLLAPSE" not in err  # one test point judges nothing


# ----------------------------------------------------------------------------- score


@pytest.mark.parametrize("argv, flag", [
    (["--ring-points", "3"], "--ring-points"),
    (["--ring-points", str(10 ** 12)], "--ring-points"),
    (["--ring-noise", "1e200"], "--ring-noise"),
    (["--dataset", "digits"], "--dataset"),
    (["--binarize", "threshold"], "--binarize"),
])
def test_score_checks_the_same_flags_the_same_way(ring_run, argv, flag):
    code, out, err = run("score", "--checkpoint", ring_run, "--k", "2", *argv)
    assert code == 2 and flag in err and "expected" in err and "nats" not in out, err


def rewrite_data_record(path, target, **changes):
    arrays, meta = load_checkpoint(path)
    meta["data"] = {**meta["data"], **changes}
    save_checkpoint(target, arrays, meta)
    return target


@pytest.mark.parametrize("changes", [
    {"dataset": "imagenet"}, {"dataset": None}, {"dataset": "mnist"}, {"data_seed": 1.5}, {"data_seed": "0"},
    {"data_seed": True}, {"data_seed": -1}, {"binarize": "maybe"}, {"ring_points": 10 ** 12},
    {"ring_points": 2}, {"ring_points": 300.0}, {"ring_noise": 1e200}, {"ring_noise": -1}, {"ring_noise": "0.05"},
], ids=repr)
def test_a_checkpoints_data_record_is_checked_like_flags(ring_run, tmp_path, monkeypatch, changes):
    def no_download(*args, **kwargs):
        raise AssertionError("nothing is downloaded for a bad record")
    monkeypatch.setattr(data, "load_mnist", no_download)
    path = rewrite_data_record(ring_run, tmp_path / "m.npz", **changes)
    code, out, err = run("score", "--checkpoint", path, "--k", "2")
    assert code == 2 and err.startswith("minivae score: error: --checkpoint: expected"), err
    assert "nats" not in out


def test_scoring_a_cvae_whose_conditions_do_not_fit_the_data_names_the_checkpoint(tmp_path):
    save_model(tmp_path / "c.npz", VAE(64, 2, (8,), condition_dim=3, seed=0))
    code, _, err = run("score", "--checkpoint", tmp_path / "c.npz", "--dataset", "digits", "--k", "2")
    assert code == 2 and "minivae score: error: --checkpoint: expected a conditional model" in err, err
    save_model(tmp_path / "r.npz", VAE(2, 2, (8,), likelihood="gaussian_shared", condition_dim=10, seed=0))
    code, _, err = run("score", "--checkpoint", tmp_path / "r.npz", "--dataset", "ring", "--k", "2")
    assert code == 2 and "--checkpoint" in err and "ring" in err, err


# ----------------------------------------------------------------------------- zip members


def replace_member(path, target, name, payload: bytes, compress=True):
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as dest:
        for info in source.infolist():
            if info.filename != name:
                dest.writestr(info, source.read(info))
        dest.writestr(name, payload, zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
    return target


BIG = 64 << 20  # inflates to 64 MiB from a few tens of KiB


def header(shape, dtype="<f4"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("name, payload", [
    ("__meta__.npy", b"\0" * BIG),                          # not an .npy array at all
    ("params.npy", header((10,)) + b"\0" * BIG),             # a small array followed by much more
    ("params.npy", header((BIG // 4 + 10,)) + b"\0" * BIG),  # an array larger than the member
], ids=["not npy", "trailing bytes", "truncated"])
def test_zip_members_are_size_checked_from_their_headers_before_inflating(ring_run, tmp_path, name, payload):
    path = replace_member(ring_run, tmp_path / "m.npz", name, payload)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=name.removesuffix(".npy")):
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < BIG // 8, f"{peak} bytes taken before the refusal"
    code, _, err = run("score", "--checkpoint", path, "--k", "2")
    assert code == 2 and "--checkpoint" in err


def test_members_that_together_exceed_memory_are_refused(ring_run, tmp_path, monkeypatch):
    monkeypatch.setattr("minivae.resources.available_memory", lambda: 1000)
    with pytest.raises(CheckpointError, match="more than the 1000 bytes of memory available"):
        load_checkpoint(ring_run)


# ----------------------------------------------------------------------------- advice that fits


@pytest.mark.parametrize("likelihood, fixed_variance, suggested, not_suggested", [
    ("gaussian_shared", 1.0, "--init-log-var", "--fixed-variance"),
    ("gaussian_per_example", 1.0, "--init-log-var", "--fixed-variance"),
    ("gaussian_fixed", 0.5, "--fixed-variance", "--init-log-var"),
    ("bernoulli", 1.0, "--warmup", "--init-log-var"),
])
def test_the_collapse_advice_names_only_flags_that_fit_the_model(likelihood, fixed_variance, suggested,
                                                                 not_suggested):
    config = VAEConfig(data_dim=2, latent_dim=2, hidden=(4,), likelihood=likelihood, fixed_variance=fixed_variance)
    advice = report.collapse_advice(config)
    assert suggested in advice and not_suggested not in advice and "--warmup" in advice


@pytest.mark.parametrize("rows, verdict", [(1, False), (report.COLLAPSE_MIN_EXAMPLES - 1, False),
                                           (report.COLLAPSE_MIN_EXAMPLES, True)])
def test_no_collapse_verdict_from_too_few_test_examples(capsys, rows, verdict):
    model = VAE(2, 2, (4,), likelihood="gaussian_fixed", seed=0)
    model.params.data[:] = 0.0  # every posterior mean 0: nothing active, on any number of rows
    report.report_active_units(model, data.ring(rows, rng=0), None, "ring")
    err = capsys.readouterr().err
    assert ("POSTERIOR COLLAPSE" in err) == verdict and ("no verdict" in err) != verdict, err
    assert "--init-log-var" not in err and (not verdict or "--fixed-variance" in err)


def test_a_fixed_variance_run_is_never_told_to_use_init_log_var(tmp_path, monkeypatch):
    monkeypatch.setattr(VAE, "active_units", lambda self, x, c=None: type(
        "Active", (), {"count": 0, "activity": np.zeros(2), "threshold": 0.01})())
    code, _, err = run(*RING, "--fixed-variance", "0.5", "--out", tmp_path / "r")
    assert code == 0 and "POSTERIOR COLLAPSE" in err and "--init-log-var" not in err, err
    assert json.loads((tmp_path / "r" / "history.json").read_text())
