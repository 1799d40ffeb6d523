"""benchmarks/bench_cpu.py runs, as a reader would run it, and prints every table; no time is asserted.

A smoke test: one repeat at one batch size. With PyTorch absent (as in CI) its columns are skipped with a note.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "bench_cpu.py"


def run_script(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def rows(out, title):
    """The rows of the table under ``title``: a dict per row, keyed by the header's words."""
    lines = out[out.index(title):].splitlines()
    header = lines[1].replace("minivae/best torch", "ratio").split()
    table = []
    for line in lines[2:]:
        if not line.strip():
            break
        table.append(dict(zip(header, line.split())))
    return header, table


def number(text):
    return float(text.replace(",", "").rstrip("x"))


@pytest.fixture(scope="module")
def quick_run():
    result = run_script("--quick", "--repeats", "1", "--batches", "64")
    assert result.returncode == 0, f"exit status {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_step_table_has_every_contender_and_a_positive_efficiency(quick_run):
    header, table = rows(quick_run, "Training step, 784-400-20")
    assert [row["batch"] for row in table] == ["64"], quick_run
    row = table[0]
    assert number(row["minivae"]) > 0 and number(row["gemm-floor"]) > 0
    efficiency = number(row["efficiency"])
    assert efficiency == pytest.approx(number(row["minivae"]) / number(row["gemm-floor"]), rel=0.02, abs=0.006)
    if "PyTorch: not installed" in quick_run:
        assert "torch-eager" not in header
    else:
        assert {"torch-eager", "torch-fused"} <= set(header) and number(row["torch-fused"]) > 0


def test_the_breakdown_adds_up(quick_run):
    # its header words: batch step products fwd+bwd guard adam sqrt multiply parts summed rest torch fused adam
    lines = quick_run[quick_run.index("Where the step's time goes"):].splitlines()
    values = lines[2].split()
    assert values[0] == "64", quick_run
    step, products, fwd_bwd, guard, adam, sqrt, multiply, summed, rest = map(float, values[1:10])
    assert min(step, products, fwd_bwd, guard, adam, sqrt, multiply) > 0
    assert summed == pytest.approx(fwd_bwd + guard + adam, abs=0.015)
    assert rest == pytest.approx(step - summed, abs=0.015)
    assert sqrt < adam and multiply < adam  # two of Adam's ten passes, each alone
    torch_adam = values[10]
    assert (torch_adam == "-") == ("PyTorch: not installed" in quick_run)


def test_memory_scaling_and_scoring_tables_are_printed(quick_run):
    _, memory = rows(quick_run, "minivae step memory")
    assert [row["batch"] for row in memory] == ["128", "4096"]
    lines = quick_run[quick_run.index("minivae step memory"):].splitlines()[2:4]
    for line in lines:  # batch, peak KiB, peak with the loss KiB, growth KiB, page faults per step
        batch, peak, peak_with_loss = int(line.split()[0]), float(line.split()[1]), float(line.split()[3])
        assert 0 < peak <= peak_with_loss, line
        if batch == 4096:  # the loss is taken in row blocks: less than one logits-sized (4096, 784) temporary
            assert peak_with_loss < 4096 * 784 * 4 / 1024, line
    _, scaling = rows(quick_run, "Scaling of the minivae step")
    assert len(scaling) >= 2 and all(number(row["ms/step"]) > 0 for row in scaling)
    assert "Importance-weighted log-likelihood" in quick_run and "minivae " in quick_run


@pytest.mark.parametrize("bad", [["--batches", "zero"], ["--repeats", "0"], ["--threads", "-1"]])
def test_bad_arguments_are_refused_by_the_parser(bad):
    result = run_script(*bad)
    assert result.returncode == 2 and "usage: bench_cpu.py" in result.stderr, result.stderr
