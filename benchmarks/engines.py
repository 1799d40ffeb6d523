"""The two engines on the digits recipe: the same held-out negative ELBO, and what the fast one saves in time.

    python benchmarks/engines.py                # 3 seeds x 2 engines, the README's digits defaults (100 epochs)
    python benchmarks/engines.py --seeds 0 1    # some of the seeds (also --seeds 0,1)
    python benchmarks/engines.py --quick        # a smoke run: seeds 0 and 1, one epoch, 5 draws of z

Each run trains ``minivae train``'s digits recipe (``TRAIN_DEFAULTS["digits"]`` in ``minivae/cli/recipes.py``: 64-128-8
ReLU, Bernoulli decoder from logits, Adam at 2e-3, batch 64, 100 epochs, float32, data seed 0's split) with
:func:`minivae.fit` and ``engine="fast"`` or ``engine="reference"`` (:mod:`minivae.engines`), in a fresh process
of its own, the engines interleaved (seed 0: fast then reference, seed 1: reference then fast, ...). It prints
the held-out (test split, 180 images) negative ELBO, averaged over ``--elbo-samples`` draws of z per image, and
the seconds ``fit`` took, then each engine's median and the ratio of the median times.

The two engines compute the same steps (``tests/test_engines.py`` pins them to 1e-10 in float64); in float32
their roundings differ, and over thousands of steps two runs of one seed drift apart as two seeds do. So
the verdict: the engines' median held-out negative ELBOs differ by at most the seed spread (the larger of
the two engines' max - min over the seeds); the exit status is 1 when they do not, or when a score is not
finite. The workers run with ``--threads`` BLAS threads (default 1: the recipe's matrices are too small for
threads to help, docs/performance.md) and without the machine's forced OpenBLAS core type.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENGINES = ("fast", "reference")


def worker(engine: str, seed: int, epochs: int, elbo_samples: int) -> dict:
    """Train the digits recipe with ``engine`` in this process; its held-out negative ELBO and training time."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from minivae import fit
    from minivae.cli.recipes import TRAIN_DEFAULTS, data_record, load_dataset
    from minivae.model import VAE

    recipe = TRAIN_DEFAULTS["digits"]
    split, _ = load_dataset(data_record("digits", 0))
    model = VAE(split.train.shape[1], recipe["latent"], recipe["hidden"], activation=recipe["activation"],
                likelihood=recipe["likelihood"], n_samples=recipe["samples"], init=recipe["init"], seed=seed)
    start = time.perf_counter()
    fit(model, split.train, epochs=epochs, batch_size=recipe["batch_size"], lr=recipe["lr"],
        warmup_epochs=recipe["warmup"], seed=seed, progress=False, engine=engine)
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(1000 + seed)
    neg_elbo = -float(model.elbo(split.test, rng=rng, n_samples=elbo_samples).mean())
    return {"engine": engine, "seed": seed, "neg_elbo": neg_elbo, "seconds": seconds}


def run_worker(engine: str, seed: int, epochs: int, elbo_samples: int, threads: int) -> dict:
    """:func:`worker` in a fresh process."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update({name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    done = subprocess.run([sys.executable, __file__, "--worker", engine, str(seed), str(epochs), str(elbo_samples)],
                          cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{engine}, seed {seed}: the worker failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", default=["0,1,2"], help="model seeds, e.g. 0 1 2 or 0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's (100)")
    parser.add_argument("--elbo-samples", type=int, default=100, help="draws of z per held-out image")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads in each worker")
    parser.add_argument("--quick", action="store_true", help="a smoke run: seeds 0 and 1, one epoch, 5 draws")
    parser.add_argument("--worker", nargs=4, metavar=("ENGINE", "SEED", "EPOCHS", "ELBO_SAMPLES"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        engine, seed, epochs, elbo_samples = args.worker
        print(json.dumps(worker(engine, int(seed), int(epochs), int(elbo_samples))))
        return 0
    if args.quick:
        args.seeds, args.epochs, args.elbo_samples = ["0,1"], 1, 5
    sys.path.insert(0, str(REPO))
    from minivae.cli.recipes import TRAIN_DEFAULTS

    epochs = args.epochs or TRAIN_DEFAULTS["digits"]["epochs"]
    seeds = [int(s) for text in args.seeds for s in text.split(",") if s]
    print(f"digits recipe (minivae train's defaults), {epochs} epochs, float32, {args.threads} BLAS thread(s); "
          f"held-out negative ELBO over {args.elbo_samples} draws of z per test image; each run in its own "
          f"process, the engines interleaved\n")
    rows = []
    for i, seed in enumerate(seeds):
        for engine in (ENGINES if i % 2 == 0 else ENGINES[::-1]):
            rows.append(run_worker(engine, seed, epochs, args.elbo_samples, args.threads))
    print("| seed | engine | held-out -ELBO (nats) | fit time (s) |")
    print("|---:|:---|---:|---:|")
    for r in sorted(rows, key=lambda r: (r["seed"], ENGINES.index(r["engine"]))):
        print(f"| {r['seed']} | {r['engine']} | {r['neg_elbo']:.3f} | {r['seconds']:.2f} |")
    summary = {}
    for engine in ENGINES:
        mine = [r for r in rows if r["engine"] == engine]
        scores = [r["neg_elbo"] for r in mine]
        summary[engine] = {"elbo": statistics.median(scores), "spread": max(scores) - min(scores),
                           "seconds": statistics.median(r["seconds"] for r in mine)}
    print("\n| engine | median -ELBO | seed spread (max - min) | median fit time (s) |")
    print("|:---|---:|---:|---:|")
    for engine, s in summary.items():
        print(f"| {engine} | {s['elbo']:.3f} | {s['spread']:.3f} | {s['seconds']:.2f} |")
    ratio = summary["reference"]["seconds"] / summary["fast"]["seconds"]
    gap = abs(summary["reference"]["elbo"] - summary["fast"]["elbo"])
    spread = max(s["spread"] for s in summary.values())
    within = gap <= spread
    print(f"\ntime ratio reference / fast: {ratio:.2f}")
    print(f"median -ELBO, reference - fast: {summary['reference']['elbo'] - summary['fast']['elbo']:+.3f} nats; "
          f"seed spread {spread:.3f}: {'within' if within else 'NOT within'} the seed spread")
    finite = all(math.isfinite(r["neg_elbo"]) for r in rows)
    if not finite:
        print("a held-out score is not finite")
    return int(not (within and finite))


if __name__ == "__main__":
    sys.exit(main())
