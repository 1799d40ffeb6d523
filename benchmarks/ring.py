"""Does ``minivae train --dataset ring`` learn the ring? Seeds 0-3 with the command's defaults, against the truth.

    python benchmarks/ring.py                 # the four seeds, as a user runs them (a few minutes)
    python benchmarks/ring.py --seeds 0 1     # some of the seeds (also --seeds 0,1)
    python benchmarks/ring.py --quick         # a smoke run: seed 0, one epoch, k = 5 (it does not learn the ring)
    python benchmarks/ring.py --torch         # also a plain PyTorch VAE with the same recipe, if torch imports
    python benchmarks/ring.py --init torch    # the recipe from other initial weights (the ring's default is "he")
    python benchmarks/ring.py --objective iwae-dreg   # trained on the importance-weighted bound (its own defaults)

Each seed runs ``python -m minivae train --dataset ring --seed S`` (plus any ``--epochs``/``--k``/``--init`` given
here) in a fresh process, exactly as a user would, and reads what the command prints: the exact held-out negative
log-likelihood of the test points (:func:`minivae.ring_density.ring_log_density`), the model's importance-weighted
estimate with k samples, their gap, and the active latent units. A seed passes when the gap is at most 0.05 nat
and both latent dimensions are active; the exit status is 1 when a seed fails. The data (points, split) are fixed
by the data seed, 0, whatever the model seed is, so every row scores the same test points. With ``--objective iwae``
or ``iwae-dreg`` the runs train on the importance-weighted bound with the command's defaults for it
(:data:`minivae.cli.recipes.IW_DEFAULTS` over the ring's), and the pass mark is the tighter 0.02 nat that recipe aims
at.

The child processes run with one BLAS thread (``--threads``): the ring's matrices are 128 x 64, too small for
threads to help, and on a machine whose cores are busy OpenBLAS's spinning threads make each step 10-20 times
slower.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOLERANCE = 0.05  # nats: the pass mark, minivae.cli.report.RING_TOLERANCE
IW_TOLERANCE = 0.02  # nats: the pass mark of the recipes trained on the importance-weighted bound


def run_minivae(seed: int, extra: list, threads: int) -> dict:
    """One ``minivae train --dataset ring`` run; the numbers it printed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.update({name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "minivae", "train", "--dataset", "ring", "--seed", str(seed),
                               "--no-progress", "--out", out, *extra], cwd=REPO, env=env, capture_output=True,
                              text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"seed {seed}: minivae train failed ({done.returncode}):\n{done.stderr}")
    nll = re.search(r"test NLL: exact (\S+), model \(k=(\d+)\) (\S+), gap (\S+)", done.stdout)
    active = re.search(r"active latent units: (\d+) of (\d+)", done.stdout)
    return {"exact": float(nll.group(1).rstrip(",")), "k": int(nll.group(2)), "model": float(nll.group(3).rstrip(",")),
            "gap": float(nll.group(4)), "active": int(active.group(1)), "latent": int(active.group(2)),
            "seconds": seconds}


# --------------------------------------------------------------------------- a plain PyTorch VAE, same recipe


def run_torch(torch, seed: int, recipe: dict, k: int) -> dict:
    """The CLI's ring recipe in plain PyTorch (nn.Linear's default initialisation, torch.optim.Adam, float32)."""
    import math

    import numpy as np

    from minivae import data
    from minivae.ring_density import ring_log_density

    split = data.train_val_test_split(data.ring(recipe["ring_points"], recipe["ring_noise"], rng=0), rng=0)
    torch.manual_seed(seed)
    K, S = recipe["latent"], recipe["samples"]
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[recipe["activation"]]

    def mlp(sizes):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [torch.nn.Linear(a, b)] + ([act()] if i < len(sizes) - 2 else [])
        return torch.nn.Sequential(*layers)

    per_example = recipe["likelihood"] == "gaussian_per_example"  # the decoder gives [mean, log-variance]
    if not per_example and recipe["likelihood"] != "gaussian_shared":
        raise SystemExit(f"--torch: the twin has gaussian_shared and gaussian_per_example, "
                         f"got {recipe['likelihood']!r}")
    enc, dec = mlp([2, *recipe["hidden"], 2 * K]), mlp([K, *reversed(recipe["hidden"]), 4 if per_example else 2])
    shared_log_var = torch.nn.Parameter(torch.tensor(float(recipe["init_log_var"])))
    if per_example:  # as minivae's --init-log-var: the bias of the log-variance outputs
        with torch.no_grad():
            dec[-1].bias[2:] = float(recipe["init_log_var"])
    params = [*enc.parameters(), *dec.parameters(), *([] if per_example else [shared_log_var])]

    def decode(z):
        out = dec(z)
        return (out[..., :2], out[..., 2:]) if per_example else (out, shared_log_var)

    opt = torch.optim.Adam(params, lr=recipe["lr"])
    x_train = torch.tensor(split.train, dtype=torch.float32)
    n, batch = x_train.shape[0], recipe["batch_size"]
    steps_per_epoch = math.ceil(n / batch)
    warmup_steps = recipe["warmup"] * steps_per_epoch
    step = 0
    start = time.perf_counter()
    for _ in range(recipe["epochs"]):
        for idx in torch.randperm(n).split(batch):
            xb = x_train[idx]
            mu, lv = enc(xb).chunk(2, dim=1)
            z = mu + torch.exp(0.5 * lv) * torch.randn(S, *mu.shape)
            mean, log_var = decode(z)
            nll = 0.5 * (((xb - mean) ** 2) * torch.exp(-log_var) + log_var + math.log(2 * math.pi)).sum(-1)
            kl = 0.5 * (mu**2 + torch.exp(lv) - 1 - lv).sum(-1)
            beta = 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
            loss = beta * kl.mean() + nll.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    seconds = time.perf_counter() - start
    with torch.no_grad():
        x = torch.tensor(split.test, dtype=torch.float32)
        mu, lv = enc(x).chunk(2, dim=1)
        std = torch.exp(0.5 * lv)
        z = mu + std * torch.randn(k, *mu.shape)
        mean, log_var = decode(z)
        log_px = -0.5 * (((x - mean) ** 2) * torch.exp(-log_var) + log_var + math.log(2 * math.pi)).sum(-1)
        log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
        log_q = -0.5 * (((z - mu) / std) ** 2 + lv + math.log(2 * math.pi)).sum(-1)
        ll = torch.logsumexp(log_px + log_pz - log_q, dim=0) - math.log(k)
        active = int((mu.var(dim=0, unbiased=False) > 0.01).sum())
    exact = float(-ring_log_density(split.test, recipe["ring_noise"]).mean())
    model = float(-ll.double().mean())
    return {"exact": exact, "k": k, "model": model, "gap": model - exact, "active": active, "latent": K,
            "seconds": seconds}


def print_table(title: str, rows: list, tolerance: float = TOLERANCE) -> None:
    print(f"\n{title}\n")
    print(f"| seed | exact NLL | model IW-NLL (k) | gap | active units | time (s) | within {tolerance} nat |")
    print("|---:|---:|---:|---:|---:|---:|:---:|")
    for seed, r in rows:
        ok = r["gap"] <= tolerance and r["active"] == r["latent"]
        print(f"| {seed} | {r['exact']:.3f} | {r['model']:.3f} ({r['k']}) | {r['gap']:.3f} | {r['active']} of "
              f"{r['latent']} | {r['seconds']:.0f} | {'pass' if ok else 'FAIL'} |")
    passed = sum(r["gap"] <= tolerance and r["active"] == r["latent"] for _, r in rows)
    print(f"\n{passed} of {len(rows)} seeds pass")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", default=["0,1,2,3"], help="model seeds, e.g. 0 1 2 3 or 0,1,2,3")
    parser.add_argument("--epochs", type=int, default=None, help="override the ring's default epochs (smoke runs)")
    parser.add_argument("--k", type=int, default=None, help="importance samples (default: the command's)")
    parser.add_argument("--init", choices=("he", "torch"), default=None,
                        help="initial weights (default: the command's)")
    parser.add_argument("--objective", choices=("elbo", "iwae", "iwae-dreg"), default="elbo",
                        help="what the runs train on (the bound's runs: their own ring defaults, pass mark 0.02 nat)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads in each run")
    parser.add_argument("--torch", action="store_true", help="also run the recipe in plain PyTorch")
    parser.add_argument("--quick", action="store_true", help="a smoke run: seed 0, one epoch, k = 5")
    args = parser.parse_args(argv)
    if args.torch and args.objective != "elbo":
        parser.error(f"--torch: expected with --objective elbo (the PyTorch twin trains the ELBO), "
                     f"got --objective {args.objective}")
    if args.quick:
        args.seeds, args.epochs, args.k = ["0"], 1, 5
    seeds = [int(s) for text in args.seeds for s in text.split(",") if s]
    extra = [*(["--epochs", str(args.epochs)] if args.epochs else []), *(["--k", str(args.k)] if args.k else []),
             *(["--init", args.init] if args.init else []),
             *(["--objective", args.objective] if args.objective != "elbo" else [])]
    tolerance = TOLERANCE if args.objective == "elbo" else IW_TOLERANCE
    print(f"minivae train --dataset ring --seed S {' '.join(extra)} (the command's defaults otherwise), "
          f"{args.threads} BLAS thread(s)")
    rows = [(seed, run_minivae(seed, extra, args.threads)) for seed in seeds]
    print_table("minivae, the command's ring defaults" + (f", but --init {args.init}" if args.init else "")
                + (f", --objective {args.objective}" if args.objective != "elbo" else ""), rows, tolerance)
    failed = any(r["gap"] > tolerance or r["active"] != r["latent"] for _, r in rows)
    if args.torch:
        try:
            import torch
        except ImportError:
            print("\nPyTorch: skipped, torch is not importable (pip install torch)")
            return int(failed)
        sys.path.insert(0, str(REPO))
        from minivae.cli.recipes import TRAIN_DEFAULTS

        recipe = dict(TRAIN_DEFAULTS["ring"])
        if args.epochs:
            recipe["epochs"] = args.epochs
        torch.set_num_threads(args.threads)
        k = args.k or 1000
        print_table(f"plain PyTorch {torch.__version__}, the same recipe (nn.Linear's initialisation)",
                    [(seed, run_torch(torch, seed, recipe, k)) for seed in seeds])
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
