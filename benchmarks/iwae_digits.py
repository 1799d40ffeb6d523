"""Does training on the importance-weighted bound beat the ELBO on binarized digits? Seeds 0-2, each objective.

    python benchmarks/iwae_digits.py             # seeds 0-2, elbo, iwae and iwae-dreg (a minute or two)
    python benchmarks/iwae_digits.py --quick     # a smoke run: seed 0, one epoch, k = 5

Each run is ``python -m minivae train --dataset digits --binarize stochastic --seed S --objective O`` in a fresh
process, with the command's defaults otherwise (the digits recipe's architecture and epochs; ``--k-train 8`` for the
bound), and reads the held-out importance-weighted log-likelihood (k = 1000) it prints. A seed counts when either
bound-trained model's held-out NLL is below the ELBO-trained one's; the table gives the differences. The ring's
table is ``benchmarks/ring.py --objective iwae-dreg``.
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
OBJECTIVES = ("elbo", "iwae", "iwae-dreg")


def held_out_nll(seed: int, objective: str, extra: list, threads: int) -> tuple:
    """One ``minivae train --dataset digits --binarize stochastic`` run: its held-out IW NLL and seconds."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.update({name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "minivae", "train", "--dataset", "digits", "--binarize",
                               "stochastic", "--seed", str(seed), "--objective", objective, "--no-progress", "--out",
                               out, *extra], cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"seed {seed} {objective}: minivae train failed ({done.returncode}):\n{done.stderr}")
    found = re.search(r"test log-likelihood \(importance-weighted, k=(\d+)\): (\S+) nats", done.stdout)
    return -float(found.group(2)), seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", default=["0,1,2"], help="model seeds, e.g. 0 1 2 or 0,1,2")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads in each run")
    parser.add_argument("--quick", action="store_true", help="a smoke run: seed 0, one epoch, k = 5")
    args = parser.parse_args(argv)
    extra = ["--epochs", "1", "--k", "5"] if args.quick else []
    seeds = [0] if args.quick else [int(s) for text in args.seeds for s in text.split(",") if s]
    print(f"minivae train --dataset digits --binarize stochastic --seed S --objective O {' '.join(extra)} "
          f"(the command's defaults otherwise), {args.threads} BLAS thread(s)\n")
    print("| seed | " + " | ".join(f"{o} NLL (s)" for o in OBJECTIVES) + " | iwae - elbo | iwae-dreg - elbo |")
    print("|---:|" + "---:|" * (len(OBJECTIVES) + 2))
    better = 0
    for seed in seeds:
        runs = {objective: held_out_nll(seed, objective, extra, args.threads) for objective in OBJECTIVES}
        nll = {objective: value for objective, (value, _) in runs.items()}
        cells = " | ".join(f"{nll[o]:.3f} ({runs[o][1]:.0f})" for o in OBJECTIVES)
        print(f"| {seed} | {cells} | {nll['iwae'] - nll['elbo']:+.3f} | {nll['iwae-dreg'] - nll['elbo']:+.3f} |")
        better += min(nll["iwae"], nll["iwae-dreg"]) < nll["elbo"]
    print(f"\nheld-out NLL in nats (importance-weighted, k = {5 if args.quick else 1000}); a bound-trained model "
          f"is better than the ELBO-trained one on {better} of {len(seeds)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
