"""benchmarks/time_to_result.py runs as a reader would run it and marks every target; no time is asserted."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "time_to_result.py"
sys.path.insert(0, str(SCRIPT.parent))
import time_to_result  # noqa: E402

TARGETS = ("README main job at most", "ring within", "digits `fit` at least")


def cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_a_quick_run_prints_every_row_and_every_target_unjudged():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               OPENBLAS_CORETYPE="Haswell")
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--conditions", "quiet"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "OpenBLAS kernel variables in the workers: none (removed, as on a user machine)" in out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert cells(lines[0]) == ["what", "quiet"] and ["target", "quiet"] in [cells(line) for line in lines], out
    timings = lines[:[cells(line) for line in lines].index(["target", "quiet"])]
    for job in ("README main job", "ring --epochs 1", "digits `fit`, 1 epochs"):
        timed = [cells(line) for line in timings if job in line]  # minivae's threads, one thread, their ratio
        assert len(timed) == 3 and all(float(row[1].rstrip("sx ")) > 0 for row in timed), out
    floor = [cells(line) for line in timings if "products and Adam alone" in line]
    assert len(floor) == 1 and float(floor[0][1].rstrip(" s")) > 0, out
    for target in TARGETS:
        row = cells(next(line for line in lines if line.startswith(f"| {target}")))
        assert row[1].startswith("not judged (") or row[1] == "skipped: torch is not importable", row
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "PyTorch: skipped, torch is not importable" in out
    else:
        assert any("plain PyTorch twin" in line for line in lines)


def fake_times(main, ring_ratio, fit, torch_fit):
    t = {}
    for c in time_to_result.CONDITIONS:
        t.update({(c, "main", None): main[c], (c, "main", "1"): main[c], (c, "ring", None): 10 * ring_ratio[c],
                  (c, "ring", "1"): 10.0, (c, "fit", None): fit, (c, "fit", "1"): fit, (c, "torch", None): torch_fit,
                  (c, "floor", None): fit / 2})
    return t


@pytest.mark.parametrize("have_torch", [True, False])
def test_every_target_is_marked_met_or_not_in_both_conditions(have_torch):
    t = fake_times(main={"quiet": 4.4, "busy": 8.1}, ring_ratio={"quiet": 1.05, "busy": 1.2}, fit=1.0, torch_fit=16.0)
    lines = time_to_result.table(t, {"torch_threads": 2}, have_torch)
    assert cells(lines[0]) == ["what", "quiet", "one core busy"]
    marks = {target: cells(next(line for line in lines if line.startswith(f"| {target}")))[1:] for target in TARGETS}
    assert marks["README main job at most"] == ["met (4.40 s)", "not met (8.10 s)"]
    assert marks["ring within"] == ["met (1.05x)", "not met (1.20x)"]
    assert marks["digits `fit` at least"] == (["met (16.0x; the floor allows 32.0x)"] * 2 if have_torch else
                                              ["skipped: torch is not importable"] * 2)
    floor = next(line for line in lines if "products and Adam alone" in line)
    assert cells(floor)[1:] == ["0.50 s"] * 2


def test_the_workers_run_as_on_a_user_machine_or_on_one_blas_thread():
    machine = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "524288", "OMP_NUM_THREADS": "8", "PATH": "/bin"}
    old = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(machine)
        user, one = time_to_result.environment(None, False), time_to_result.environment("1", False)
        kept = time_to_result.environment(None, True)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert {k: v for k, v in user.items() if k != "PYTHONPATH"} == {"PATH": "/bin"}
    assert {k: v for k, v in one.items() if k != "PYTHONPATH"} == {"PATH": "/bin", "OPENBLAS_NUM_THREADS": "1"}
    assert kept["OPENBLAS_CORETYPE"] == "Haswell" and "OMP_NUM_THREADS" not in kept
    assert user["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)


def test_the_busy_core_is_a_process_that_is_gone_afterwards():
    with time_to_result.BusyCore(True) as busy:
        assert busy.process.poll() is None  # spinning
    assert busy.process.poll() is not None
    with time_to_result.BusyCore(False) as quiet:
        assert quiet.process is None
