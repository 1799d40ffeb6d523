"""benchmarks/bench_gpu.py runs anywhere: on a machine without a GPU it says why in one line and exits 0.

The script is run as a subprocess, as a reader would run it. Its harness (contenders, interleaved timing, the
tables, the targets) is also run on the CPU with ``--dry-run-on-cpu``, so that it is exercised on every machine,
not only where a GPU is present. No time is asserted: these are smoke tests.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minivae.backend import cuda_status

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "bench_gpu.py"
CUDA_OK, CUDA_WHY = cuda_status()
TABLE_HEADER = "Training step, 784-400-20 ReLU, Bernoulli, S = 1, Adam, float32 (examples/s"


def run_script(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.setdefault("OMP_NUM_THREADS", "1")  # the dry run's NumPy and PyTorch share this process: one thread each
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_quick_run_exits_0_and_says_why_without_a_gpu():
    result = run_script("--quick")
    assert result.returncode == 0, f"exit status {result.returncode}:\n{result.stdout}\n{result.stderr}"
    if CUDA_OK:  # a GPU is here: the quick run measured, and printed its table
        assert TABLE_HEADER in result.stdout, result.stdout
        return
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one line saying why nothing was measured, got:\n{result.stdout}"
    assert "no usable GPU" in lines[0] and CUDA_WHY in lines[0], lines[0]


def test_the_harness_runs_on_the_cpu_and_prints_every_table():
    result = run_script("--dry-run-on-cpu", "--quick", "--repeats", "2", "--batches", "64")
    assert result.returncode == 0, f"exit status {result.returncode}:\n{result.stdout}\n{result.stderr}"
    out = result.stdout
    assert out.startswith("DRY RUN ON THE CPU"), out
    for expected in (TABLE_HEADER, "Milliseconds per step", "GPU operations", "Targets"):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    # the fused kernels are refused on the CPU, with the library's reason, and the other contenders still run
    assert "minivae-fused at batch 64 does not run here: ValueError: kernels: 'fused' runs CUDA kernels" in out, out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["64"]]
    assert len(rows) == 2, f"expected a row for batch 64 in each table, got:\n{out}"
    header = next(line.split() for line in out.splitlines() if line.split()[:1] == ["batch"])
    rate = dict(zip(header[1:], rows[0][1:]))
    assert rate["minivae-fused"] == "-"
    for name in ("minivae-plain", "cublas-floor"):
        assert float(rate[name].replace(",", "")) > 0, f"{name}: {rate[name]}"


@pytest.mark.parametrize("bad", [["--batches", "zero"], ["--repeats", "0"], ["--repeats"]])
def test_bad_arguments_are_refused_by_the_parser(bad):
    result = run_script(*bad)
    assert result.returncode == 2 and "usage: bench_gpu.py" in result.stderr, result.stderr


def test_the_warm_up_runs_the_loss_path_before_anything_is_timed(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import bench_gpu
    from minivae.ops import PlainOps

    events, bernoulli_grad = [], PlainOps.bernoulli_grad

    def recording(self, logits, x, scale, dlogits, need_loss):
        events.append("loss" if need_loss else "gradient")
        return bernoulli_grad(self, logits, x, scale, dlogits, need_loss)

    monkeypatch.setattr(PlainOps, "bernoulli_grad", recording)
    monkeypatch.setattr(bench_gpu.Contender, "seconds_per_step", lambda self, n=None: events.append("timed") or 1e-3)
    bench_gpu.Contender("minivae-plain", 16, "cpu", None, 0.01)
    assert "loss" in events[:events.index("timed")], events
