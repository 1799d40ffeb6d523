"""Nothing lost, nothing silently wrong: divergence, reruns into one folder, the filesystem, resource limits,
data provenance and the checkpoint's digest, through what a user runs (``minivae.cli.main``) and calls."""

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from minivae import data
from minivae.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minivae.model import VAE
from minivae.serialize import load_model, load_trainer, save_model
from minivae.train import NonFiniteError, Trainer, fit
from cli_run import run

RING = ["train", "--dataset", "ring", "--ring-points", "200", "--hidden", "8", "--epochs", "2", "--k", "2",
        "--no-progress"]
X = data.ring(40, rng=0)




# ----------------------------------------------------------------------------- 1. divergence


def test_divergence_on_the_last_step_of_an_epoch_is_not_saved_nor_reported(tmp_path):
    # one step per epoch: the update of the epoch's only (and last) step overflows the parameters
    code, out, err = run(*RING, "--epochs", "1", "--batch-size", "160", "--lr", "1e300", "--out", tmp_path / "d")
    assert code == 2, err
    assert "--lr" in err and "expected" in err and "1e+300" in err and "nan" not in out.lower()
    assert "with parameters that became NaN or infinite by step 1 (epoch 1, after the epoch's last update); " \
           "lower it; nothing of this run was saved" in err, err  # the fields of training's error, read by the CLI
    assert not (tmp_path / "d" / "model.npz").exists() and not (tmp_path / "d" / "history.json").exists()


def test_the_command_names_the_epoch_a_diverged_run_kept(tmp_path, monkeypatch):
    real = Trainer.fit

    def diverging(self, *args, **kwargs):  # trains as asked, then the next step's loss overflows
        real(self, *args, **kwargs)
        raise NonFiniteError(quantity="loss", value=math.inf, step=self.step_count + 1, epoch=self.epoch + 1)

    monkeypatch.setattr(Trainer, "fit", diverging)
    code, _, err = run(*RING, "--out", tmp_path / "d")  # two epochs
    assert code == 2
    assert re.search(r"--lr: expected a learning rate under which training stays finite, got --lr 0\.002, with a "
                     r"non-finite loss at step \d+ \(epoch 3\): loss=inf; lower it; the last good checkpoint, "
                     r"epoch 2, is kept in ", err), err


def test_fit_refuses_to_save_a_diverged_last_step_and_keeps_the_last_good_epoch(tmp_path):
    model = VAE(2, 2, (8,), likelihood="gaussian_shared", seed=0)
    trainer = Trainer(model, "sgd", lr=1e-2, batch_size=40, momentum=0.0)  # one step per epoch
    path = tmp_path / "run.npz"
    trainer.fit(X, epochs=1, progress=False, checkpoint=str(path))
    good = model.params.data.copy()
    trainer.optimizer.step = lambda real=trainer.optimizer.step: (real(), model.params.data.__setitem__(0, np.inf))
    with pytest.raises(NonFiniteError, match="^lr: expected") as info:
        trainer.fit(X, epochs=1, x_val=X, progress=False, checkpoint=str(path))
    assert "step 2" in str(info.value) and "epoch 1" in str(info.value)
    assert len(trainer.history.train_loss) == 1 and len(trainer.history.val_loss) == 0  # no NaN recorded
    np.testing.assert_array_equal(load_model(path).params.data, good)
    json.dumps(load_trainer(path).history.to_dict(), allow_nan=False)  # valid JSON


def test_a_non_finite_model_is_neither_saved_nor_loaded(tmp_path):
    model = VAE(2, 2, (4,), likelihood="gaussian_shared", seed=0)
    model.params.data[3] = np.nan
    with pytest.raises(NonFiniteError, match="model: expected finite parameters"):
        save_model(tmp_path / "m.npz", model)
    assert not (tmp_path / "m.npz").exists()
    arrays = {"params": model.params.data.copy()}  # written behind save_model's back
    meta = {"kind": "model", "model": {"config": model.config.to_dict(), "dtype": "float32", "seed": 0, "rng": None}}
    save_checkpoint(tmp_path / "m.npz", arrays, meta)
    with pytest.raises(CheckpointError, match=r"m\.npz.*params: expected finite values"):
        load_model(tmp_path / "m.npz")
    code, _, err = run("sample", "--checkpoint", tmp_path / "m.npz", "--out", tmp_path / "s.npy")
    assert code == 2 and "--checkpoint" in err and not (tmp_path / "s.npy").exists()


def test_a_training_checkpoint_with_non_finite_optimizer_moments_is_refused(tmp_path):
    trainer = Trainer(VAE(2, 2, (4,), likelihood="gaussian_shared"), batch_size=40)
    trainer.fit(X, epochs=1, progress=False, checkpoint=str(tmp_path / "t.npz"))
    arrays, meta = load_checkpoint(tmp_path / "t.npz")
    arrays["optimizer.v"][0] = np.inf
    save_checkpoint(tmp_path / "t.npz", arrays, meta)
    with pytest.raises(CheckpointError, match=r"t\.npz.*optimizer\.v: expected finite values"):
        load_trainer(tmp_path / "t.npz")


def test_score_never_prints_nan(tmp_path):
    model = VAE(2, 2, (4,), likelihood="gaussian_shared", seed=0)
    save_model(tmp_path / "m.npz", model)
    np.save(tmp_path / "far.npy", np.full((3, 2), 1e30))  # finite data the model gives no finite density
    code, out, err = run("score", "--checkpoint", tmp_path / "m.npz", "--input", tmp_path / "far.npy", "--k", "2")
    assert code == 2 and "--input" in err and "nats" not in out, (out, err)


# ----------------------------------------------------------------------------- 2. reruns


def test_a_second_run_into_the_same_folder_is_refused_and_keeps_the_first(tmp_path):
    out = tmp_path / "r"
    assert run(*RING, "--out", out)[0] == 0
    first = (out / "model.npz").read_bytes()
    code, _, err = run(*RING, "--lr", "1e300", "--out", out)
    assert code == 2 and "--out" in err and "--overwrite" in err and "--resume" in err
    assert (out / "model.npz").read_bytes() == first


def test_an_overwrite_that_diverges_puts_the_previous_run_back(tmp_path):
    out = tmp_path / "r"
    assert run(*RING, "--out", out)[0] == 0
    before = {name: (out / name).read_bytes() for name in ("model.npz", "history.json", "samples.png")}
    code, _, err = run(*RING, "--epochs", "1", "--batch-size", "160", "--lr", "1e300", "--overwrite", "--out", out)
    assert code == 2 and "--lr" in err
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "model.npz", "samples.png"]


def test_an_overwrite_replaces_every_file_of_the_old_run(tmp_path):
    out = tmp_path / "r"
    assert run(*RING, "--epochs", "3", "--out", out)[0] == 0
    assert run(*RING, "--epochs", "1", "--overwrite", "--out", out)[0] == 0
    assert len(json.loads((out / "history.json").read_text())["train_loss"]) == 1
    assert load_trainer(out / "model.npz").epoch == 1
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "model.npz", "samples.png"]


def test_resume_continues_and_refuses_flags_that_change_the_run(tmp_path):
    out = tmp_path / "r"
    assert run(*RING, "--epochs", "1", "--schedule", "constant", "--out", out)[0] == 0  # a cosine cannot be extended
    for flag, value in (("--latent", "3"), ("--hidden", "16"), ("--seed", "1"), ("--data-seed", "4"),
                        ("--ring-points", "300"), ("--batch-size", "32"), ("--likelihood", "gaussian_per_dim")):
        code, _, err = run(*RING, "--out", out, "--resume", flag, value)  # the last of a repeated flag wins
        assert code == 2 and err.count(flag) >= 1 and "expected" in err, (flag, err)
    code, out_text, err = run(*RING, "--epochs", "3", "--out", out, "--resume")
    assert code == 0, err
    assert "resuming" in out_text and load_trainer(out / "model.npz").epoch == 3
    code, _, err = run(*RING, "--out", tmp_path / "none", "--resume")
    assert code == 2 and "--resume" in err
    code, _, err = run(*RING, "--out", out, "--resume", "--overwrite")
    assert code == 2 and "--overwrite" in err and "--resume" in err


def test_a_folder_in_use_by_a_live_run_is_refused_and_a_dead_runs_lock_taken_over(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / ".lock").write_text(f"{os.getppid()}\n")  # a process that runs: our parent
    code, _, err = run(*RING, "--out", out)
    assert code == 2 and "--out" in err and str(os.getppid()) in err
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(f"{dead.pid}\n")
    assert run(*RING, "--out", out)[0] == 0
    assert not (out / ".lock").exists()


# ----------------------------------------------------------------------------- 3. resource limits


@pytest.mark.parametrize("argv, flag", [
    (["train", "--dataset", "ring", "--ring-points", "10000000000000", "--out", "{tmp}/o"], "--ring-points"),
    (["train", "--dataset", "ring", "--hidden", "100000000000", "--out", "{tmp}/o"], "--hidden"),
    (["train", "--dataset", "ring", "--latent", "100000000000", "--out", "{tmp}/o"], "--latent"),
    (["train", "--dataset", "ring", "--samples", "100000000000", "--out", "{tmp}/o"], "--samples"),
    (["sample", "--checkpoint", "{tmp}/m.npz", "--n", "100000000000000", "--out", "{tmp}/s.npy"], "--n"),
    (["gradcheck", "--batch", "100000000000000"], "--batch"),
    (["gradcheck", "--hidden", "10000000000"], "--hidden"),
])
def test_sizes_that_cannot_fit_are_refused_by_flag_before_allocating(tmp_path, argv, flag):
    save_model(tmp_path / "m.npz", VAE(64, 2, (8,), seed=0))
    code, _, err = run(*[a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and flag in err and "memory" in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_memory_error_never_escapes_the_cli(tmp_path, monkeypatch):
    save_model(tmp_path / "m.npz", VAE(64, 2, (8,), seed=0))

    def no_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(VAE, "sample", no_memory)
    code, _, err = run("sample", "--checkpoint", tmp_path / "m.npz", "--out", tmp_path / "s.npy")
    assert code == 2 and "out of memory" in err and "--n" in err


def test_a_crafted_small_checkpoint_claiming_terabytes_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    save_model(path, VAE(4, 2, (3,), seed=0))
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (10 ** 12,)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    members["params.npy"] = buffer.getvalue() + b"\0" * 64
    with zipfile.ZipFile(path, "w") as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    assert path.stat().st_size < 4096
    with pytest.raises(CheckpointError, match=r"bomb\.npz.*claims shape \[1000000000000\]"):
        load_checkpoint(path)
    code, _, err = run("score", "--checkpoint", path, "--k", "2")
    assert code == 2 and "--checkpoint" in err


def test_a_checkpoint_whose_config_claims_terabytes_is_refused_before_building(tmp_path):
    path = tmp_path / "big.npz"
    model = VAE(4, 2, (3,), seed=0)
    meta = {"kind": "model", "model": {"config": {**model.config.to_dict(), "hidden": [10 ** 7, 10 ** 7]},
                                       "dtype": "float32", "seed": 0, "rng": None}}
    save_checkpoint(path, {"params": model.params.data.copy()}, meta)
    with pytest.raises(CheckpointError, match=r"big\.npz.*params: expected shape"):
        load_model(path)


def test_log_likelihood_never_builds_an_n_by_d_copy(monkeypatch):
    model = VAE(4, 2, (3,), likelihood="gaussian_shared", seed=0)  # float32: a float64 x would be cast
    x = np.random.default_rng(0).random((1000, 4))
    seen = []
    real = model.check_inputs

    def watch(x, c=None, **options):
        if options.get("values", True):  # a batch whose values are checked, cast and moved
            seen.append(x.shape[0])
        return real(x, c, **options)

    monkeypatch.setattr(model, "check_inputs", watch)
    model.log_likelihood(x, k=2, batch_size=100)
    assert max(seen) == 100


# ----------------------------------------------------------------------------- 5. the filesystem


def test_output_paths_that_are_not_folders_or_files_are_refused_by_flag(tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = run(*RING, "--out", tmp_path / "file")
    assert code == 2 and "--out" in err
    (tmp_path / "r" / "model.npz").mkdir(parents=True)
    code, _, err = run(*RING, "--out", tmp_path / "r")
    assert code == 2 and "--out" in err and "directory" in err
    code, _, err = run("train", "--dataset", "mnist", "--data-dir", tmp_path / "file", "--out", tmp_path / "m")
    assert code == 2 and "--data-dir" in err and "file" in err


@pytest.mark.parametrize("call, name", [
    (lambda d: fit(VAE(2, 2, (4,), likelihood="gaussian_shared"), X, batch_size=20, progress=False,
                   checkpoint=""), "checkpoint"),
    (lambda d: fit(VAE(2, 2, (4,), likelihood="gaussian_shared"), X, batch_size=20, progress=False,
                   checkpoint=str(d)), "checkpoint"),
    (lambda d: save_model("", VAE(2, 2, (4,))), "path"),
    (lambda d: save_model(d, VAE(2, 2, (4,))), "path"),
    (lambda d: load_model(""), "path"),
    (lambda d: load_model(d), "path"),
])
def test_api_paths_that_are_empty_or_directories_are_refused_by_argument(tmp_path, call, name):
    with pytest.raises((ValueError, OSError)) as info:
        call(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{name}: expected") and "got" in message and "[Errno" not in message, message


def test_a_read_only_folder_is_refused_by_flag(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:  # chmod does not restrict root: a read-only file system does
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
        if made.returncode != 0:
            pytest.skip("running as root, where chmod does not restrict writing, and mounting a read-only tmpfs "
                        f"is not permitted: {made.stderr.decode().strip()}")
        undo = ["umount", str(folder)]
    else:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    try:
        code, _, err = run(*RING, "--out", folder)
    finally:
        subprocess.run(undo, capture_output=True)
    assert code == 2 and "--out: expected a writable folder" in err and not err.startswith("[Errno"), err


@pytest.fixture
def full_disk(tmp_path):
    """A real, tiny tmpfs (root only, where mounting is allowed): 256 KiB, nearly filled."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_is_an_error_naming_the_flag_and_keeps_the_previous_checkpoint(full_disk, monkeypatch):
    out = full_disk / "r"
    assert run(*RING, "--hidden", "64", "--epochs", "1", "--schedule", "constant", "--out", out)[0] == 0
    good = (out / "model.npz").read_bytes()
    reserve = full_disk / "reserve"
    reserve.write_bytes(b"\0" * 4096)  # freed below: room for the lock file, not for a checkpoint
    filler = full_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        for size in (4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    code, _, err = run(*RING, "--hidden", "64", "--epochs", "3", "--out", out, "--resume")
    assert code == 2 and "--out: expected" in err and "free" in err and not err.startswith("[Errno"), err
    assert (out / "model.npz").read_bytes() == good
    monkeypatch.setattr("minivae.cli.cmd_train.check_free_space", lambda out, config: None)  # now the save itself fails
    reserve.unlink()
    code, _, err = run(*RING, "--hidden", "64", "--epochs", "3", "--out", out, "--resume")
    assert code == 2 and err.startswith("minivae train: error: --out: expected a writable folder"), err
    assert "No space left on device" in err and "[Errno" not in err and "holds epoch 1" in err, err
    assert (out / "model.npz").read_bytes() == good
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(OSError, match=r"^\[Errno 28\] path: expected a writable folder"):
        save_model(out / "other.npz", VAE(2, 2, (64, 64)))
    with pytest.raises(OSError, match=r"^\[Errno 28\] checkpoint: expected a writable folder"):
        fit(VAE(2, 2, (64, 64), likelihood="gaussian_shared"), X, batch_size=40, progress=False,
            checkpoint=str(out / "fit.npz"))
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


# ----------------------------------------------------------------------------- 6. data are what they claim


def test_score_uses_the_models_data_seed_and_split_by_default_and_says_so(tmp_path):
    out = tmp_path / "r"
    assert run(*RING, "--seed", "3", "--data-seed", "5", "--out", out)[0] == 0
    code, text, _ = run("score", "--checkpoint", out / "model.npz", "--k", "2")
    assert code == 0 and "scoring the test split of ring (200 points, noise 0.05), data seed 5: 20 examples" in text
    code, val, _ = run("score", "--checkpoint", out / "model.npz", "--k", "2", "--split", "val")
    assert code == 0 and "scoring the val split of ring (200 points, noise 0.05), data seed 5" in val


@pytest.mark.parametrize("flag", [["--dataset", "ring"], ["--split", "val"], ["--data-seed", "2"],
                                  ["--binarize", "none"], ["--data-dir", "x"]])
def test_flags_that_do_nothing_with_input_are_refused_naming_both(tmp_path, flag):
    save_model(tmp_path / "m.npz", VAE(2, 2, (4,), likelihood="gaussian_shared"))
    np.save(tmp_path / "x.npy", X)
    code, _, err = run("score", "--checkpoint", tmp_path / "m.npz", "--input", tmp_path / "x.npy", *flag)
    assert code == 2 and flag[0] in err and "--input" in err, err


def test_data_dir_without_mnist_is_refused_naming_both(tmp_path):
    code, _, err = run(*RING, "--data-dir", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and "--data-dir" in err and "--dataset" in err


# ----------------------------------------------------------------------------- 7. the config is protected


def test_editing_the_stored_likelihood_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, VAE(4, 2, (3,), likelihood="gaussian_shared", seed=0))
    with np.load(path) as npz:
        members = {name: npz[name] for name in npz.files}
    header = json.loads(members["__meta__"].tobytes())
    header["meta"]["model"]["config"]["likelihood"] = "gaussian_fixed"  # gaussian_shared's log_var: same shapes?
    members["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **members)
    with pytest.raises(CheckpointError, match="digest does not match"):
        load_model(path)


def test_values_overflowing_float32_are_reported_as_overflowing():
    model = VAE(2, 2, (4,), likelihood="gaussian_shared")
    with pytest.raises(ValueError, match=r"x: expected values within float32's range .* got values up to 1e\+39"):
        model.loss(np.array([[1e39, 0.0]]))


def test_a_typo_in_a_fit_keyword_names_fit():
    with pytest.raises(TypeError, match=r"^fit: expected keyword arguments .* got unexpected 'epoch'"):
        fit(VAE(2, 2, (4,), likelihood="gaussian_shared"), X, epoch=3, progress=False)
    with pytest.raises(TypeError, match=r"^Trainer: .* got unexpected 'momentum'"):
        Trainer(VAE(2, 2, (4,)), "adam", momentum=0.9)
