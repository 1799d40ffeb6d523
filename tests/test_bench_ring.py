"""benchmarks/ring.py runs as a reader would run it and prints its table: a smoke run (--quick, one epoch)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_ring_benchmark_prints_a_row_per_seed_and_notes_a_missing_torch():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ring.py"), "--quick", "--torch"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert "| seed | exact NLL | model IW-NLL (k) | gap | active units | time (s) | within 0.05 nat |" in out, done.stderr
    row = [line for line in out.splitlines() if line.startswith("| 0 |")][0].split("|")
    assert float(row[2]) > 0 and "(5)" in row[3]
    assert float(row[4]) > 0.05 and row[7].strip() == "FAIL", out  # one epoch does not learn the ring
    assert done.returncode == 1 and "0 of 1 seeds pass" in out
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "PyTorch: skipped, torch is not importable" in out
    else:
        assert "plain PyTorch" in out


def test_the_ring_benchmark_trains_on_the_bound_with_its_own_pass_mark():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ring.py"), "--quick", "--objective", "iwae-dreg"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert "--objective iwae-dreg" in done.stdout and "within 0.02 nat |" in done.stdout, done.stderr
    refused = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ring.py"), "--quick", "--objective", "iwae",
                              "--torch"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "--torch: expected with --objective elbo" in refused.stderr

