"""The folder's lock (minivae.runs.RunLock) reads its content defensively: anything that is not the id of a running
process is stale and taken over; a running process keeps its folder; a directory named ``.lock`` is refused naming
``--out``; never a traceback."""

import os
import subprocess
import sys

import pytest

from minivae import runs
from cli_run import run

RING = ["train", "--dataset", "ring", "--ring-points", "200", "--hidden", "8", "--epochs", "1", "--k", "2",
        "--no-progress"]




def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def back_dated(path):
    os.utime(path, (0, 0))  # an empty lock older than a run needs to write its pid


@pytest.mark.parametrize("content", [
    "10" * 15, str(2 ** 63), str(2 ** 31), "99999999999999999999999999999999", "0", "-1", "-12345", "1.5", "1e3",
    "garbage", "\x00\xff", "pid 12", "", " \n", "0x10", "+5", "\u0661\u0662",  # Arabic-Indic digits
], ids=repr)
def test_a_lock_naming_no_possible_process_is_stale_and_taken_over(tmp_path, content):
    lock = tmp_path / runs.LOCK
    lock.write_bytes(content.encode("utf-8", "surrogateescape"))
    back_dated(lock)
    with runs.RunLock(tmp_path) as held:
        assert held.held and lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()


def test_a_dead_process_and_a_reused_pid_are_stale_a_live_one_is_not(tmp_path):
    lock = tmp_path / runs.LOCK
    lock.write_text(f"{dead_pid()}\n")
    with runs.RunLock(tmp_path):
        pass
    parent = os.getppid()
    started = runs._start_time(parent)
    if started is not None:  # the pid runs, but another process than the one that wrote the lock
        lock.write_text(f"{parent} {int(started) + 1}\n")
        with runs.RunLock(tmp_path):
            pass
    for content in (f"{parent} {started}\n" if started else f"{parent}\n", f"{parent}\n"):
        lock.write_text(content)
        with pytest.raises(ValueError, match=rf"^--out: expected a folder no other run is writing.*process {parent}"):
            runs.RunLock(tmp_path).__enter__()
        assert lock.read_text() == content  # a live run's lock is left alone


def test_a_lock_being_written_is_waited_for_not_taken(tmp_path):
    lock = tmp_path / runs.LOCK
    lock.write_text("")  # just created by a run that is about to write its pid

    def write_pid_soon(*args, real=runs.time.sleep):
        lock.write_text(f"{os.getppid()}\n")
        real(*args)

    runs.time.sleep, real_sleep = write_pid_soon, runs.time.sleep
    try:
        with pytest.raises(ValueError, match=f"in use by process {os.getppid()}"):
            runs.RunLock(tmp_path).__enter__()
    finally:
        runs.time.sleep = real_sleep


@pytest.mark.parametrize("content", ["10" * 15, "0", "-1", "garbage"])
def test_train_takes_over_a_stale_lock_through_the_cli(tmp_path, content):
    out = tmp_path / "r"
    out.mkdir()
    (out / runs.LOCK).write_text(content)
    back_dated(out / runs.LOCK)
    code, _, err = run(*RING, "--out", out)
    assert code == 0, err
    assert not (out / runs.LOCK).exists()


def test_a_directory_named_lock_is_refused_naming_out(tmp_path):
    out = tmp_path / "r"
    (out / runs.LOCK).mkdir(parents=True)
    code, _, err = run(*RING, "--out", out)
    assert code == 2 and err.startswith("minivae train: error: --out: expected") and ".lock" in err, err
    assert "[Errno" not in err and (out / runs.LOCK).is_dir() and sorted(os.listdir(out)) == [runs.LOCK]


def test_the_lock_records_pid_and_start_time_and_goes_with_the_run(tmp_path):
    with runs.RunLock(tmp_path):
        pid, start = runs._lock_owner(tmp_path / runs.LOCK)
        assert pid == os.getpid() and start == runs._start_time(os.getpid())
    assert not (tmp_path / runs.LOCK).exists()
