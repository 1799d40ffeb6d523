"""``train --overwrite`` as a state machine (minivae.runs.RunFolder): real signals, repeated ones included, at each
stage between two moves of the folder's files; the old run is back byte for byte whenever the new one has no
checkpoint; a SIGKILL's leftovers are named and put back by ``--restore-previous``; ``.previous/`` goes once the new
run finishes, whichever command finished it."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


import pytest

from minivae import cli, runs
from minivae.cli import cmd_train
from minivae.serialize import load_trainer
from cli_run import run

RING = ["train", "--dataset", "ring", "--ring-points", "200", "--hidden", "8", "--epochs", "2", "--k", "2",
        "--no-progress"]
ROOT = Path(__file__).resolve().parent.parent
FILES = ("history.json", "model.npz", "samples.png")
INT, TERM = signal.SIGINT, signal.SIGTERM


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """A finished run (1 epoch), copied into each test's folder."""
    out = tmp_path_factory.mktemp("old") / "r"
    assert run(*RING, "--epochs", "1", "--seed", "7", "--out", out)[0] == 0
    return out


@pytest.fixture
def folder(old_run, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(old_run, out)
    return out




def contents(out: Path) -> dict:
    return {name: (out / name).read_bytes() for name in FILES if (out / name).exists()}


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def at(monkeypatch, actions: dict):
    """Replace ``runs.stage``: at each named stage, once, call its action."""
    done = set()

    def stage(name):
        if name in actions and name not in done:
            done.add(name)
            actions[name]()

    monkeypatch.setattr(runs, "stage", stage)


def send(*signals):
    def action():
        for sig in signals:
            os.kill(os.getpid(), sig)
    return action


def assert_old_run_back(out: Path, before: dict):
    assert contents(out) == before
    assert sorted(p.name for p in out.iterdir()) == list(FILES)  # no .previous/, no lock, no temporary


# ----------------------------------------------------------------------------- signals before the first checkpoint


@pytest.mark.parametrize("actions, status", [
    ({"set-aside": send(INT, INT)}, 130),                          # while the files move: deferred, one wins
    ({"set-aside": send(TERM, INT, TERM)}, 143),
    ({"training": send(INT), "restore": send(INT, TERM)}, 130),    # a second Ctrl-C while the old run goes back
    ({"training": send(TERM), "restore": send(INT, INT)}, 143),
], ids=["set-aside INT INT", "set-aside TERM INT TERM", "training INT, restore INT TERM",
        "training TERM, restore INT INT"])
def test_signals_before_the_new_checkpoint_put_the_old_run_back_with_one_true_line(folder, monkeypatch, actions,
                                                                                   status):
    before = contents(folder)
    at(monkeypatch, actions)
    code, _, err = run(*RING, "--epochs", "1", "--overwrite", "--out", folder)
    assert code == status, err
    assert err.strip().splitlines() == [err.strip()], err  # one line
    assert "nothing of this run was saved; the previous run is back in" in err and "--resume" not in err, err
    assert_old_run_back(folder, before)
    assert signal.getsignal(INT) is signal.default_int_handler  # the handlers are the caller's again


def test_two_ctrl_c_milliseconds_apart_in_a_real_process(folder, tmp_path):
    """A real ``python -m minivae`` held at the stage after the files are set aside; two SIGINTs 1 ms apart."""
    before = contents(folder)
    marker = tmp_path / "at-training"
    script = ("import sys, time, pathlib\nfrom minivae import runs\nfrom minivae.cli import main\n"
              "def stage(name, marker=pathlib.Path(sys.argv[1])):\n"
              "    if name == 'training':\n        marker.touch()\n        time.sleep(60)\n"
              "runs.stage = stage\nsys.argv[1:] = sys.argv[2:]\nsys.exit(main())\n")
    process = subprocess.Popen([sys.executable, "-c", script, str(marker), *RING, "--overwrite", "--out",
                                str(folder)], env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    assert (folder / runs.PREVIOUS / "model.npz").exists() and not (folder / "model.npz").exists()
    process.send_signal(INT)
    time.sleep(0.001)
    process.send_signal(INT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert err.strip() == f"minivae train: interrupted (SIGINT): nothing of this run was saved; the previous run is " \
                          f"back in {folder}", err
    assert_old_run_back(folder, before)


# ----------------------------------------------------------------------------- SIGKILL: what is left, put back


class Killed(BaseException):
    """Ends the command where a SIGKILL would, after the folder was copied as the kill would leave it."""


def kill_at(monkeypatch, stage_name, snapshot: Path, folder: Path, before_action=None):
    def action():
        shutil.copytree(folder, snapshot)  # each move is one rename: the copy is what a SIGKILL leaves
        (snapshot / ".lock").write_text(f"{dead_pid()}\n")
        raise Killed()
    actions = {stage_name: action}
    if before_action:
        actions.update(before_action)
    at(monkeypatch, actions)


@pytest.mark.parametrize("stage_name", ["set-aside", "training", "restore"])
def test_what_a_sigkill_leaves_before_the_new_checkpoint_is_named_and_restored(folder, tmp_path, monkeypatch,
                                                                            stage_name):
    before = contents(folder)
    snapshot = tmp_path / "killed"
    kill_at(monkeypatch, stage_name, snapshot, folder,
            {"training": send(INT)} if stage_name == "restore" else None)
    with pytest.raises(Killed):
        cli.main([str(a) for a in (*RING, "--overwrite", "--out", folder)])
    monkeypatch.setattr(runs, "stage", lambda name: None)
    assert (snapshot / runs.PREVIOUS).is_dir() and not (snapshot / "model.npz").exists()
    for extra in ([], ["--overwrite"], ["--resume"]):
        code, _, err = run(*RING, *extra, "--out", snapshot)
        assert code == 2 and "--restore-previous" in err, (extra, err)
    code, out_text, err = run("train", "--restore-previous", "--out", snapshot)
    assert code == 0 and "restored" in out_text, err
    assert_old_run_back(snapshot, before)
    code, _, err = run(*RING, "--out", snapshot)  # an ordinary folder holding a run again
    assert code == 2 and "--overwrite" in err and "--restore-previous" not in err


def test_a_real_sigkill_after_setting_aside_then_restore_previous(folder, tmp_path):
    before = contents(folder)
    script = ("import os, signal, sys\nfrom minivae import runs\nfrom minivae.cli import main\n"
              "runs.stage = lambda name: name == 'training' and os.kill(os.getpid(), signal.SIGKILL)\n"
              "sys.exit(main(sys.argv[1:]))\n")
    killed = subprocess.run([sys.executable, "-c", script, *RING, "--overwrite", "--out", str(folder)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    code, _, err = run(*RING, "--out", folder)
    assert code == 2 and "--restore-previous" in err and "--out" in err, err
    assert run("train", "--restore-previous", "--out", folder)[0] == 0
    assert_old_run_back(folder, before)


def test_restore_previous_without_a_previous_run_or_with_other_flags_is_refused(folder):
    code, _, err = run("train", "--restore-previous", "--out", folder)
    assert code == 2 and "--restore-previous" in err and ".previous" in err
    for flag in ("--overwrite", "--resume"):
        code, _, err = run("train", "--restore-previous", flag, "--out", folder)
        assert code == 2 and "--restore-previous" in err and flag in err


# ----------------------------------------------------------------------------- after the new run's first checkpoint


def interrupt_after_training(monkeypatch):
    """SIGINT once the new run has saved its checkpoints, before it has finished (the test log-likelihood)."""
    real = cmd_train.likelihood_lines

    def lines(*args, **kwargs):
        monkeypatch.setattr(cmd_train, "likelihood_lines", real)
        os.kill(os.getpid(), INT)
        return real(*args, **kwargs)

    monkeypatch.setattr(cmd_train, "likelihood_lines", lines)


def test_an_overwrite_interrupted_after_its_checkpoint_is_finished_by_resume_which_removes_previous(folder,
                                                                                                  monkeypatch):
    before = contents(folder)
    interrupt_after_training(monkeypatch)
    code, _, err = run(*RING, "--epochs", "2", "--overwrite", "--out", folder)
    assert code == 130 and "holds epoch 2; continue with --resume" in err and "--restore-previous" in err, err
    assert contents(folder / runs.PREVIOUS) == before
    code, _, err = run(*RING, "--out", folder)  # neither plain rerun nor silence
    assert code == 2 and "--resume" in err and "--restore-previous" in err and "--overwrite" in err, err
    code, _, err = run(*RING, "--epochs", "2", "--out", folder, "--resume")
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == list(FILES)  # .previous/ gone: the run finished
    assert load_trainer(folder / "model.npz").epoch == 2


def test_restore_previous_after_the_new_checkpoint_drops_the_unfinished_run(folder, monkeypatch):
    before = contents(folder)
    interrupt_after_training(monkeypatch)
    assert run(*RING, "--epochs", "2", "--overwrite", "--out", folder)[0] == 130
    assert (folder / "model.npz").read_bytes() != before["model.npz"]
    assert run("train", "--restore-previous", "--out", folder)[0] == 0
    assert_old_run_back(folder, before)


def test_an_overwrite_of_an_unfinished_overwrite_keeps_the_finished_run_to_restore(folder, monkeypatch):
    before = contents(folder)
    interrupt_after_training(monkeypatch)
    assert run(*RING, "--epochs", "2", "--overwrite", "--out", folder)[0] == 130
    code, _, err = run(*RING, "--epochs", "1", "--batch-size", "160", "--lr", "1e300", "--overwrite", "--out", folder)
    assert code == 2 and "--lr" in err and err.strip().endswith(f"the previous run is back in {folder}"), err
    assert_old_run_back(folder, before)


def test_a_signal_while_previous_is_removed_waits_until_it_is_gone(folder, monkeypatch):
    at(monkeypatch, {"finish": send(INT, INT)})
    code, _, err = run(*RING, "--epochs", "1", "--overwrite", "--out", folder)
    assert code == 130 and "holds epoch 1" in err and "Traceback" not in err, err
    assert sorted(p.name for p in folder.iterdir()) == list(FILES)
