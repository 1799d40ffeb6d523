"""benchmarks/engines.py runs as a reader would run it and prints its tables: a smoke run (--quick, one epoch)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_engines_benchmark_prints_both_engines_per_seed_their_medians_and_the_time_ratio():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "engines.py"), "--quick"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert "| seed | engine | held-out -ELBO (nats) | fit time (s) |" in out, done.stderr
    rows = [line.split("|") for line in out.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert sorted((row[1].strip(), row[2].strip()) for row in rows) == [
        ("0", "fast"), ("0", "reference"), ("1", "fast"), ("1", "reference")]
    scores = {(row[1].strip(), row[2].strip()): float(row[3]) for row in rows}
    assert all(0 < score < 64 for score in scores.values())  # nats per 8x8 image
    for seed in "01":  # one epoch in float32: the engines' rounding has not yet drifted apart
        assert abs(scores[seed, "fast"] - scores[seed, "reference"]) < 1e-2
    assert "| engine | median -ELBO | seed spread (max - min) | median fit time (s) |" in out
    assert "time ratio reference / fast:" in out
    verdict = [line for line in out.splitlines() if line.startswith("median -ELBO, reference - fast")][0]
    # after one epoch the engines agree to rounding (+0.000 nats), seeds 0 and 1 differ by 0.005: within, exit 0
    assert verdict.endswith(": within the seed spread") and done.returncode == 0, out
