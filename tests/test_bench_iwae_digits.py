"""benchmarks/iwae_digits.py runs as a reader would run it and prints its table: a smoke run (--quick, one epoch)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_digits_bound_benchmark_prints_a_row_per_objective():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "iwae_digits.py"), "--quick"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    row = [line for line in done.stdout.splitlines() if line.startswith("| 0 |")][0].split("|")
    assert all(float(cell.split()[0]) > 0 for cell in row[2:5]) and "on" in done.stdout.splitlines()[-1]
