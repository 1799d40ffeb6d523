"""What a learner waits for: the README's main job, the ring's recipe and the digits recipe's ``fit``, quiet and busy.

    python benchmarks/time_to_result.py             # 3 repeats of everything (a few minutes on 2 cores)
    python benchmarks/time_to_result.py --repeats 5
    python benchmarks/time_to_result.py --quick     # a smoke run: tiny epoch counts, one repeat, no target judged

Each run is a fresh process, timed from the outside (start to exit) for the two commands and inside for ``fit``:

  README main job   ``python -m minivae train --out DIR --overwrite`` (the digits, 100 epochs, k = 1000 scoring)
  ring              ``python -m minivae train --dataset ring --epochs 60 --out DIR`` (the ring's recipe, shortened)
  digits fit        the README's ``fit(model, split.train, x_val=split.val, epochs=100, batch_size=64, lr=2e-3)``
  PyTorch twin      the same model, loss and Adam in plain PyTorch (float32), trained and validated the same way
  NumPy floor       the digits fit's matrix products and Adam updates alone, nothing else: what no NumPy code of the
                    recipe goes below, so the twin's time over it bounds the ratio any NumPy ``fit`` could reach

The minivae runs take the BLAS's threads as a user's machine does (no OpenBLAS variable set: the library chooses,
``minivae.cores.blas_threads``) and, beside them, with ``OPENBLAS_NUM_THREADS=1``. PyTorch runs with its own
default threads. Every run is timed twice over: on a quiet machine, and with one core kept busy by another
process (a Python loop, started before and killed after), as beside a notebook or a browser. The table gives
medians over ``--repeats`` interleaved runs (the contenders in a rotating order) and marks each target met or not.

The workers run as on a user's machine: ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``, which some machines set to
hold old OpenBLAS builds to a known kernel, are removed from their environment (``--machine-blas`` keeps them), as
are ``OPENBLAS_NUM_THREADS``, ``GOTO_NUM_THREADS`` and ``OMP_NUM_THREADS`` except where a row sets one.
PyTorch is optional (``pip install torch==2.13.0`` takes the CPU build); without it its rows are skipped with a note.
The exit status is 1 when a run fails, 0 otherwise: the targets are marked, not enforced (times on a shared
machine move by tens of percent).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: Variables that pin OpenBLAS's kernel and cache size (a user's machine sets neither) and its thread count.
FORCED_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")

#: The targets: seconds for the main job, quiet and busy; the ring's time over its one-thread time; PyTorch's
#: digits fit over minivae's.
MAIN_JOB_S = {"quiet": 4.5, "busy": 8.0}
RING_OVER_ONE_THREAD = 1.1
TORCH_OVER_MINIVAE = 15.0

CONDITIONS = ("quiet", "busy")


# --------------------------------------------------------------------------- the digits fit, in a worker process


def fit_minivae(epochs: int) -> float:
    """Seconds of the README's ``fit`` on the digits (data and model made before the clock starts)."""
    from minivae import VAE, digits, fit, train_val_test_split

    x, labels = digits()
    split = train_val_test_split(x, labels, rng=0)
    model = VAE(data_dim=64, latent_dim=8, hidden=(128,), likelihood="bernoulli", seed=0)
    start = time.perf_counter()
    fit(model, split.train, x_val=split.val, epochs=epochs, batch_size=64, lr=2e-3, progress=False)
    return time.perf_counter() - start


def fit_torch(epochs: int) -> float:
    """Seconds of the same recipe in plain PyTorch: 64-128-8 ReLU, Bernoulli logits, S = 1, Adam at 2e-3, batch 64,
    float32, the validation negative ELBO after every epoch."""
    import torch
    from torch import nn

    from minivae import digits, train_val_test_split

    x, labels = digits()
    split = train_val_test_split(x, labels, rng=0)
    torch.manual_seed(0)
    D, H, K = 64, 128, 8
    encoder = nn.Sequential(nn.Linear(D, H), nn.ReLU(), nn.Linear(H, 2 * K))
    decoder = nn.Sequential(nn.Linear(K, H), nn.ReLU(), nn.Linear(H, D))
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=2e-3)
    x_train = torch.from_numpy(split.train.astype("float32"))
    x_val = torch.from_numpy(split.val.astype("float32"))

    def loss(xb):
        mu, log_var = encoder(xb).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        nll = nn.functional.binary_cross_entropy_with_logits(decoder(z), xb, reduction="none").sum(dim=1)
        kl = 0.5 * (mu ** 2 + log_var.exp() - 1.0 - log_var).sum(dim=1)
        return (nll + kl).mean()

    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(x_train.shape[0])
        for first in range(0, x_train.shape[0], 64):
            value = loss(x_train[order[first:first + 64]])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        with torch.no_grad():
            float(loss(x_val))
    return time.perf_counter() - start


def fit_floor(epochs: int) -> float:
    """Seconds of the digits ``fit``'s matrix products and Adam updates alone, on its model's own buffers: a floor no
    NumPy implementation of the recipe goes below, the Python around them and every elementwise pass left out.

    Each step takes the 11 products of a step (4 forward; 4 weight gradients and 3 input gradients backward, the
    first layer's input gradient not needed) on its batch's rows (64, the epoch's last 29), float32 into reused
    arrays, then minivae's Adam (its ten passes over the flat buffers); each epoch ends with the validation's 4
    forward products. The BLAS is held as ``fit`` holds it (:func:`minivae.cores.held_for`).
    """
    import numpy as np

    from minivae import VAE, Trainer, digits, train_val_test_split
    from minivae.cores import held_for
    from minivae.fast import largest_product

    x, labels = digits()
    split = train_val_test_split(x, labels, rng=0)
    model = VAE(data_dim=64, latent_dim=8, hidden=(128,), likelihood="bernoulli", seed=0)
    optimizer = Trainer(model, batch_size=64, lr=2e-3).optimizer
    W = [model.params.values[f"{net}.{layer}.W"] for net in ("encoder", "decoder") for layer in (0, 1)]
    dW = [np.empty_like(w) for w in W]
    n, batch = split.train.shape[0], 64
    x_train, x_val = split.train.astype(np.float32), split.val.astype(np.float32)

    def buffers(rows):  # every layer's output and its gradient, (rows, fan-out)
        return [np.zeros((rows, w.shape[1]), np.float32) for w in W], [np.zeros((rows, w.shape[0]), np.float32)
                                                                     for w in W]
    sizes = {rows: buffers(rows) for rows in {batch, n - (n - 1) // batch * batch, x_val.shape[0]}}
    z = {rows: np.zeros((rows, W[2].shape[0]), np.float32) for rows in sizes}
    mm = np.matmul
    start = time.perf_counter()
    with held_for(largest_product(model, batch)):
        for _ in range(epochs):
            for first in range(0, n, batch):
                xb = x_train[first:first + batch]
                out, din = sizes[xb.shape[0]]
                mm(xb, W[0], out=out[0])  # forward: encoder, head, decoder, output
                mm(out[0], W[1], out=out[1])
                mm(z[xb.shape[0]], W[2], out=out[2])
                mm(out[2], W[3], out=out[3])
                mm(out[2].T, out[3], out=dW[3])  # backward: weight and input gradients
                mm(out[3], W[3].T, out=din[3])
                mm(z[xb.shape[0]].T, din[3], out=dW[2])
                mm(din[3], W[2].T, out=din[2])
                mm(out[0].T, out[1], out=dW[1])
                mm(out[1], W[1].T, out=din[1])
                mm(xb.T, din[1], out=dW[0])
                optimizer.step()
            out, _ = sizes[x_val.shape[0]]
            mm(x_val, W[0], out=out[0])
            mm(out[0], W[1], out=out[1])
            mm(z[x_val.shape[0]], W[2], out=out[2])
            mm(out[2], W[3], out=out[3])
    return time.perf_counter() - start


def worker(kind: str, epochs: int) -> None:
    seconds = {"torch": fit_torch, "floor": fit_floor, "minivae": fit_minivae}[kind](epochs)
    extra = {}
    if kind == "torch":
        import torch

        extra["threads"] = torch.get_num_threads()
    print(json.dumps({"seconds": seconds, **extra}))


# --------------------------------------------------------------------------- the parent


def environment(threads: str | None, machine_blas: bool) -> dict:
    """A worker's environment: a user's (no thread variable), or ``OPENBLAS_NUM_THREADS=threads``."""
    dropped = THREAD_VARS + (() if machine_blas else FORCED_BLAS_VARS)
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = threads
    return env


def epochs(quick: bool) -> dict:
    """The epochs of each job: the README's and the shortened ring's, or a smoke run's."""
    return {"main": 2 if quick else 100, "ring": 1 if quick else 60, "fit": 1 if quick else 100}


def contenders(quick: bool, have_torch: bool) -> list[dict]:
    """Every run to time: a job, a command, its BLAS threads (None: the user's default) and how it is timed."""
    main_job = ["--epochs", "2", "--k", "10"] if quick else []
    ring_epochs, fit_epochs = str(epochs(quick)["ring"]), str(epochs(quick)["fit"])
    runs = []
    for threads in (None, "1"):
        runs.append(dict(job="main", threads=threads, timed="process",
                         command=["-m", "minivae", "train", "--out", "{out}", "--overwrite", *main_job]))
        runs.append(dict(job="ring", threads=threads, timed="process",
                         command=["-m", "minivae", "train", "--dataset", "ring", "--epochs", ring_epochs,
                                  "--out", "{out}", "--overwrite", *(["--k", "10"] if quick else [])]))
        runs.append(dict(job="fit", threads=threads, timed="worker",
                         command=[str(Path(__file__).resolve()), "--worker", "minivae", fit_epochs]))
    runs.append(dict(job="floor", threads=None, timed="worker",
                     command=[str(Path(__file__).resolve()), "--worker", "floor", fit_epochs]))
    if have_torch:
        runs.append(dict(job="torch", threads=None, timed="worker",
                         command=[str(Path(__file__).resolve()), "--worker", "torch", fit_epochs]))
    return runs


def run_once(run: dict, out: str, machine_blas: bool) -> dict:
    """One run in a fresh process: its seconds (and what the worker reported)."""
    command = [sys.executable, *(part.replace("{out}", out) for part in run["command"])]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=environment(run["threads"], machine_blas), capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    if run["timed"] == "worker":
        return json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": seconds}


class BusyCore:
    """Another process that keeps one core busy while it runs (a Python loop), killed on exit."""

    def __init__(self, busy: bool):
        self.busy = busy
        self.process = None

    def __enter__(self):
        if self.busy:
            self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.kill()
            self.process.wait()


def measure(runs: list[dict], repeats: int, machine_blas: bool, conditions=CONDITIONS) -> tuple[dict, dict]:
    """Median seconds of every run in every condition, ``{(condition, job, threads): seconds}``, and what the workers
    reported (PyTorch's threads)."""
    times, info = {}, {}
    with tempfile.TemporaryDirectory() as out:
        for condition in conditions:
            with BusyCore(condition == "busy"):
                for r in range(repeats):
                    for run in runs[r % len(runs):] + runs[:r % len(runs)]:  # a rotating order
                        result = run_once(run, out, machine_blas)
                        times.setdefault((condition, run["job"], run["threads"]), []).append(result["seconds"])
                        if "threads" in result:
                            info["torch_threads"] = result["threads"]
    return {key: statistics.median(values) for key, values in times.items()}, info


def verdict(met: bool | None, value: str) -> str:
    return f"{'met' if met else 'not met'} ({value})" if met is not None else f"not judged ({value})"


def table(t: dict, info: dict, have_torch: bool, quick: bool = False, conditions=CONDITIONS) -> list[str]:
    """The table of seconds and ratios, then the targets, as Markdown; a column per condition measured. The targets
    are marked met or not, except after a smoke run (``quick``), whose epochs are not the targets'."""
    judge = not quick
    heads = {"quiet": "quiet", "busy": "one core busy"}
    head = ["| what | " + " | ".join(heads[c] for c in conditions) + " |", "|" + " --- |" * (len(conditions) + 1)]
    lines = list(head)

    def row(name, values):
        lines.append(f"| {name} | " + " | ".join(values) + " |")

    n = epochs(quick)
    names = {"main": "README main job `minivae train --out DIR --overwrite`" + ("" if judge else f", {n['main']} epochs"),
             "ring": f"`minivae train --dataset ring --epochs {n['ring']}`", "fit": f"digits `fit`, {n['fit']} epochs"}
    for job, name in names.items():
        row(f"{name}, minivae's threads", [f"{t[(c, job, None)]:.2f} s" for c in conditions])
        row(f"{name}, `OPENBLAS_NUM_THREADS=1`", [f"{t[(c, job, '1')]:.2f} s" for c in conditions])
        row(f"{name}, minivae's threads / one thread", [f"{t[(c, job, None)] / t[(c, job, '1')]:.2f}x"
                                                        for c in conditions])
    if have_torch:
        row(f"digits, plain PyTorch twin ({info.get('torch_threads', '?')} threads)",
            [f"{t[(c, 'torch', None)]:.2f} s" for c in conditions])
        row("digits, PyTorch twin / minivae `fit`", [f"{t[(c, 'torch', None)] / t[(c, 'fit', None)]:.1f}x"
                                                     for c in conditions])
    row("digits `fit`'s products and Adam alone (a NumPy floor)", [f"{t[(c, 'floor', None)]:.2f} s" for c in conditions])
    if have_torch:
        row("digits, PyTorch twin / that floor (the most a NumPy `fit` could reach)",
            [f"{t[(c, 'torch', None)] / t[(c, 'floor', None)]:.1f}x" for c in conditions])
    lines += ["", head[0].replace("| what |", "| target |"), head[1]]
    row(f"README main job at most {MAIN_JOB_S['quiet']:g} s quiet, {MAIN_JOB_S['busy']:g} s busy",
        [verdict(t[(c, "main", None)] <= MAIN_JOB_S[c] if judge else None, f"{t[(c, 'main', None)]:.2f} s")
         for c in conditions])
    ratios = {c: t[(c, "ring", None)] / t[(c, "ring", "1")] for c in conditions}
    row(f"ring within {RING_OVER_ONE_THREAD:g}x of its one-thread time",
        [verdict(ratios[c] <= RING_OVER_ONE_THREAD if judge else None, f"{ratios[c]:.2f}x") for c in conditions])
    if have_torch:
        speedups = {c: t[(c, "torch", None)] / t[(c, "fit", None)] for c in conditions}
        row(f"digits `fit` at least {TORCH_OVER_MINIVAE:g}x faster than the PyTorch twin",
            [verdict(speedups[c] >= TORCH_OVER_MINIVAE if judge else None,
                     f"{speedups[c]:.1f}x; the floor allows {t[(c, 'torch', None)] / t[(c, 'floor', None)]:.1f}x")
             for c in conditions])
    else:
        row(f"digits `fit` at least {TORCH_OVER_MINIVAE:g}x faster than the PyTorch twin",
            ["skipped: torch is not importable"] * len(conditions))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each contender (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 epochs of the main job, 1 of the ring and of fit, one repeat; "
                             "the targets are not judged")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS),
                        help="quiet, and/or with one core kept busy (default both)")
    parser.add_argument("--machine-blas", action="store_true",
                        help=f"keep {' and '.join(FORCED_BLAS_VARS)} in the workers' environment")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "EPOCHS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return 0
    if args.repeats < 1:
        parser.error(f"--repeats: expected a positive integer, got {args.repeats}")
    repeats = 1 if args.quick else args.repeats
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    from threadpoolctl import threadpool_info

    import numpy  # noqa: F401  (so threadpoolctl sees its BLAS)

    kept = {name: os.environ[name] for name in FORCED_BLAS_VARS if args.machine_blas and name in os.environ}
    from minivae.cores import usable_cores

    print(f"cores: {usable_cores()}; "
          f"NumPy BLAS (this process): {[(i.get('internal_api'), i.get('num_threads'), i.get('architecture')) for i in threadpool_info()]}")
    print(f"OpenBLAS kernel variables in the workers: "
          f"{', '.join(f'{k}={v}' for k, v in kept.items()) or 'none (removed, as on a user machine)'}")
    print("PyTorch: " + ("the twin runs with its default threads" if have_torch else
                         "skipped, torch is not importable (pip install torch==2.13.0 for the CPU build)"))
    print(f"median of {repeats} run(s) each, every run a fresh process; busy: another process spins on one core"
          + ("; --quick: tiny epoch counts, the targets are not judged" if args.quick else "") + "\n")
    try:
        t, info = measure(contenders(args.quick, have_torch), repeats, args.machine_blas, args.conditions)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print("\n".join(table(t, info, have_torch, args.quick, args.conditions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
