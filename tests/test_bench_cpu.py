"""benchmarks/bench_cpu.py runs, as a reader would run it, and prints every table; no time is asserted.

A smoke test: one repeat at one batch size. With PyTorch absent (as in CI) its columns are skipped with a note.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minivae.cores import usable_cores
from minivae.fast import STEP_MIN_ROWS

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "bench_cpu.py"


sys.path.insert(0, str(SCRIPT.parent))
import bench_cpu  # noqa: E402

#: The forced OpenBLAS setting of some development machines, set in the tests' runs of the benchmark.
FORCED = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "524288"}


def run_script(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               **FORCED)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


#: Column titles of more than one word, as one word each, so that a row splits as its header does.
TITLES = {"minivae/best torch": "ratio", "before/best torch": "before-ratio", "now/before, paired": "paired"}


def rows(out, title):
    """The rows of the table under ``title``: a dict per row, keyed by the header's words."""
    lines = out[out.index(title):].splitlines()
    header = lines[1]
    for words, word in TITLES.items():
        header = header.replace(words, word)
    table = []
    for line in lines[2:]:
        if not line.strip():
            break
        table.append(dict(zip(header.split(), line.replace("x (", "x(").split())))  # "1.02x (0.98-1.05)": one value
    return header.split(), table


def number(text):
    return float(text.replace(",", "").rstrip("x"))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run of every table, with this checkout also timed as ``--against``'s "before" through a link (so
    that the workers' check of where minivae came from is exercised)."""
    before = tmp_path_factory.mktemp("against") / "before"
    before.symlink_to(REPO, target_is_directory=True)
    result = run_script("--quick", "--repeats", "1", "--batches", "64", "--against", str(before))
    assert result.returncode == 0, f"exit status {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_workers_run_without_the_forced_blas_kernel_and_say_so(quick_run):
    assert "OpenBLAS kernel variables in the NumPy workers: none (removed, as on a user machine)" in quick_run
    assert "NumPy BLAS: [('openblas'" in quick_run, quick_run  # the kernel the workers got is printed
    assert "CPU vector extensions (NumPy): " in quick_run
    # the workers run 2 BLAS threads: scoring splits its batches over both, if this machine has two cores
    cpus = usable_cores()
    step = f"each batch of at least {2 * STEP_MIN_ROWS} examples" if cpus > 1 else "no batch"
    assert f"scoring splits each batch over {min(2, cpus)} thread(s), its training step {step}," in quick_run, quick_run


def test_worker_environment_drops_only_the_forced_blas_variables():
    machine = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "524288", "PATH": "/bin", "OMP_NUM_THREADS": "8"}
    env = bench_cpu.worker_environment(machine, 2)
    assert env == {"PATH": "/bin", "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    kept = bench_cpu.worker_environment(machine, 1, machine_blas=True)
    assert kept == dict(machine, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    assert machine["OMP_NUM_THREADS"] == "8"  # the caller's mapping is not changed


WORKER_INFO = """
import json, sys
import bench_cpu
pool = bench_cpu.Pool(1, machine_blas=sys.argv[1] == "kept")
try:
    print(json.dumps(pool.ask("minivae", "info", None, ())))
finally:
    pool.close()
"""


@pytest.mark.parametrize("machine_blas", [False, True])
def test_a_worker_process_gets_the_environment_it_reports(machine_blas):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SCRIPT.parent), str(REPO)]), **FORCED)
    result = subprocess.run([sys.executable, "-c", WORKER_INFO, "kept" if machine_blas else "removed"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.splitlines()[-1])
    assert info["blas_env"] == (FORCED if machine_blas else {name: None for name in FORCED})
    architectures = [arch for api, _, arch in info["blas"] if api == "openblas"]
    if machine_blas and "AVX2" in info["cpu"].split():  # OpenBLAS obeys the forced core type
        assert [a.lower() for a in architectures] == ["haswell"], info


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
    torch_adam = values[10]
    assert (torch_adam == "-") == ("PyTorch: not installed" in quick_run)


def test_memory_scaling_and_scoring_tables_are_printed(quick_run):
    _, memory = rows(quick_run, "minivae step memory")
    assert [row["batch"] for row in memory] == ["128", "4096"]
    lines = quick_run[quick_run.index("minivae step memory"):].splitlines()[2:4]
    for line in lines:  # batch, peak KiB, peak with the loss KiB, growth KiB, page faults per step
        batch, peak, peak_with_loss = int(line.split()[0]), float(line.split()[1]), float(line.split()[3])
        assert 0 < peak and 0 < peak_with_loss, line
        if batch == 4096:  # no temporary as large as the logits (4096, 784): the loss is taken in row blocks
            assert max(peak, peak_with_loss) < 4096 * 784 * 4 / 1024, line
    _, scaling = rows(quick_run, "Scaling of the minivae step")
    assert len(scaling) >= 2 and all(number(row["ms/step"]) > 0 for row in scaling)
    assert "Importance-weighted log-likelihood" in quick_run and "minivae " in quick_run


def test_another_checkout_is_timed_in_the_same_repeats_and_compared_pair_by_pair(quick_run):
    header, table = rows(quick_run, "Training step, 784-400-20")
    assert header[:4] == ["batch", "minivae", "gemm-floor", "before"] and header[-1] == "paired", header
    row = table[0]
    assert number(row["before"]) > 0
    paired = re.fullmatch(r"(\d+\.\d+)x\((\d+\.\d+)-(\d+\.\d+)\)", row["paired"])
    assert paired and float(paired.group(2)) <= float(paired.group(1)) <= float(paired.group(3)), row
    # one repeat: its ratio is the two contenders' examples a second, now over before
    assert float(paired.group(1)) == pytest.approx(number(row["minivae"]) / number(row["before"]), rel=0.01)
    assert (row["before-ratio"] == "-") == ("PyTorch: not installed" in quick_run), row
    assert re.search(r"before \d+\.\d+ s.*now/before, paired \d+\.\d+x", quick_run), quick_run


def test_a_checkout_without_minivae_is_refused_by_name(tmp_path):
    result = run_script("--against", str(tmp_path))
    assert result.returncode == 2 and "--against: expected a checkout of minivae" in result.stderr, result.stderr


@pytest.mark.parametrize("bad", [["--batches", "zero"], ["--repeats", "0"], ["--threads", "-1"],
                                 ["--tables", "speed"]])
def test_bad_arguments_are_refused_by_the_parser(bad):
    result = run_script(*bad)
    assert result.returncode == 2 and "usage: bench_cpu.py" in result.stderr, result.stderr
