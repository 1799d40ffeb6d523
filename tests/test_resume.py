"""``train --resume`` continues exactly the run it names: every flag that shapes the rest of the run is taken from
the checkpoint when left out and refused by name when given another value; a cosine's length is fixed by the
``--epochs`` it started with (extending it is refused), a step schedule goes on decaying."""

import os
import shutil
import signal

import pytest

from minivae import runs, serialize, train
from minivae.checkpoint import load_checkpoint, save_checkpoint
from minivae.schedules import Cosine, StepDecay, Warmup
from minivae.serialize import load_trainer
from cli_run import run

BASE = ["train", "--dataset", "ring", "--ring-points", "200", "--hidden", "8", "--k", "2", "--no-progress"]
#: A run that sets every flag that shapes it to a value other than its default.
STEP_RUN = ["--schedule", "step", "--step-factor", "0.3", "--step-every", "0.5", "--lr-warmup", "0.5", "--lr", "0.01",
            "--warmup", "1", "--optimizer", "sgd", "--batch-size", "40", "--seed", "3", "--data-seed", "2",
            "--latent", "3", "--activation", "relu", "--samples", "2", "--init", "torch", "--init-log-var", "-2",
            "--likelihood", "gaussian_shared", "--ring-noise", "0.1"]


def test_resumed_flags_fill_what_is_left_out_from_plain_values():
    stored = {"lr": 0.002, "hidden": (64, 64), "epochs": 10, "seed": 0, "conditional": False}
    given = {"lr": None, "hidden": [64, 64], "epochs": 20, "seed": None, "conditional": None, "k": 7}
    assert runs.resumed_flags(given, stored, "c.npz") == {"lr": 0.002, "seed": 0, "conditional": False}
    assert runs.resumed_flags({}, stored, "c.npz") == stored  # nothing given: the run's own flags
    with pytest.raises(ValueError, match=r"^--lr: expected the resumed run's value 0.002 \(from c.npz\), got 0.01"):
        runs.resumed_flags({"lr": 0.01}, stored, "c.npz")
    with pytest.raises(ValueError, match=r"^--hidden: expected the resumed run's value 64,64 .* got 64"):
        runs.resumed_flags({"hidden": (64,)}, stored, "c.npz")


def interrupted_after_epoch(monkeypatch, epoch: int):
    """SIGINT right after the checkpoint of ``epoch`` is saved (a real signal, to this process)."""
    real = train.save_trainer

    def save(path, trainer, **kwargs):
        real(path, trainer, **kwargs)
        if trainer.epoch == epoch:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(train, "save_trainer", save)  # what Trainer.fit calls after every epoch


def same_run(a, b):
    ta, tb = load_trainer(a / "model.npz"), load_trainer(b / "model.npz")
    assert ta.epoch == tb.epoch and ta.step_count == tb.step_count
    assert ta.model.params.data.tobytes() == tb.model.params.data.tobytes()
    assert ta.schedule == tb.schedule and ta.history.to_dict() == tb.history.to_dict()


@pytest.mark.parametrize("flags", [STEP_RUN, ["--schedule", "cosine", "--lr-min", "1e-4", "--lr-warmup", "1",
                                               "--batch-size", "50", "--fixed-variance", "0.3"]],
                         ids=["step, sgd, warm-ups", "cosine, fixed variance"])
def test_a_resume_with_no_flags_but_out_continues_the_run_exactly(tmp_path, monkeypatch, flags):
    assert run(*BASE, *flags, "--epochs", "3", "--out", tmp_path / "straight")[0] == 0
    interrupted_after_epoch(monkeypatch, 1)
    code, _, err = run(*BASE, *flags, "--epochs", "3", "--out", tmp_path / "resumed")
    assert code == 130 and "holds epoch 1; continue with --resume" in err, err
    monkeypatch.undo()
    code, out, err = run("train", "--resume", "--no-progress", "--k", "2", "--out", tmp_path / "resumed")
    assert code == 0 and "resuming" in out and "after epoch 1" in out, err  # --epochs 3: the run's own
    same_run(tmp_path / "resumed", tmp_path / "straight")


@pytest.fixture(scope="module")
def step_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("step") / "r"
    assert run(*BASE, *STEP_RUN, "--epochs", "1", "--out", out)[0] == 0
    return out


CHANGED = [("--schedule", "constant"), ("--schedule", "cosine"), ("--lr", "0.02"), ("--step-factor", "0.5"),
           ("--step-every", "1"), ("--lr-warmup", "0"), ("--lr-warmup", "1"), ("--lr-min", "0.001"),
           ("--warmup", "0"), ("--optimizer", "adam"), ("--batch-size", "32"), ("--seed", "0"), ("--data-seed", "0"),
           ("--ring-points", "300"), ("--ring-noise", "0.05"), ("--dataset", "digits"), ("--binarize", "threshold"),
           ("--latent", "2"), ("--hidden", "16"), ("--activation", "tanh"), ("--samples", "1"), ("--init", "he"),
           ("--likelihood", "gaussian_per_dim"), ("--init-log-var", "-3"), ("--fixed-variance", "1"),
           ("--conditional", None)]


@pytest.mark.parametrize("flag, value", CHANGED, ids=[f"{f} {v}" for f, v in CHANGED])
def test_a_flag_given_another_value_is_refused_by_name_and_the_run_untouched(step_run, flag, value):
    before = {p.name: p.read_bytes() for p in step_run.iterdir()}
    argv = ["train", "--out", step_run, "--resume", "--epochs", "2", flag, *([value] if value else [])]
    code, _, err = run(*argv)
    assert code == 2 and err.startswith(f"minivae train: error: {flag}: expected"), err
    assert {p.name: p.read_bytes() for p in step_run.iterdir()} == before


def test_every_flag_given_its_stored_value_is_accepted(tmp_path, step_run):
    out = tmp_path / "r"
    shutil.copytree(step_run, out)
    code, _, err = run(*BASE, *STEP_RUN, "--epochs", "2", "--out", out, "--resume")
    assert code == 0, err
    trainer = load_trainer(out / "model.npz")
    assert trainer.epoch == 2 and trainer.flags["epochs"] == 1  # the run's flags as it started
    # a step schedule goes on decaying: the warm-up's and the decay's steps as stored, the last update's rate
    assert trainer.schedule == Warmup(StepDecay(0.01, every=2, factor=0.3), steps=2)
    assert trainer.optimizer.lr == pytest.approx(0.01 * 0.3 ** ((trainer.step_count - 1) // 2))


def test_extending_a_cosine_is_refused_by_name_stopping_earlier_is_not(tmp_path):
    out = tmp_path / "r"
    assert run(*BASE, "--schedule", "cosine", "--epochs", "2", "--out", out)[0] == 0
    before = (out / "model.npz").read_bytes()
    code, _, err = run("train", "--out", out, "--resume", "--epochs", "3")
    assert code == 2 and err.startswith("minivae train: error: --epochs: expected at most 2"), err
    assert "cosine" in err and (out / "model.npz").read_bytes() == before
    for epochs in ("2", "1"):
        code, out_text, err = run("train", "--out", out, "--resume", "--epochs", epochs, "--no-progress", "--k", "2")
        assert code == 0 and "nothing to train" in out_text, err
    schedule = load_trainer(out / "model.npz").schedule
    assert isinstance(schedule, Cosine) and schedule.total_steps == 2 * 2  # 2 epochs of 160 points in batches of 128
    assert schedule(schedule.total_steps) == schedule.lr_min


def test_a_checkpoint_without_the_flags_record_still_resumes(tmp_path):
    out = tmp_path / "r"
    assert run(*BASE, "--schedule", "constant", "--epochs", "1", "--out", out)[0] == 0
    arrays, meta = load_checkpoint(out / "model.npz")
    del meta["flags"]  # as an older minivae wrote it
    save_checkpoint(out / "model.npz", arrays, meta)
    code, _, err = run(*BASE, "--epochs", "2", "--out", out, "--resume")
    assert code == 0, err
    code, _, err = run(*BASE, "--epochs", "3", "--out", out, "--resume", "--lr", "0.5")
    assert code == 2 and "--lr" in err
