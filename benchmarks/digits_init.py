"""Which initial weights train the digits better: minivae's "he" against PyTorch's nn.Linear default ("torch").

    python benchmarks/digits_init.py               # 3 seeds x 2 inits, 200 epochs (a few minutes on 2 cores)
    python benchmarks/digits_init.py --quick       # a smoke run: 2 epochs, one seed, k = 20

The exit status is 1 when a score is not finite, or when, at the recipe's 200 epochs, the
better init is not the models' default (minivae.layers.DEFAULT_INIT) or minivae's "torch"
mean is more than 0.1 nat from the PyTorch twin's.

The recipe of a plain PyTorch VAE: 64-128-8 with ReLU, Bernoulli decoder from
logits, Adam at 1e-3, batch 64, 200 epochs, float64, on the digits' training split
(1437 images; data.train_val_test_split(..., rng=0)). Each run is scored on the
held-out test split (180 images) by the same code: the negative ELBO averaged over
``--elbo-samples`` draws of z per image (so the ELBO's own Monte Carlo noise is
small) and the importance-weighted negative log-likelihood with ``--k`` samples.

With PyTorch importable, a twin trained by torch.optim.Adam from nn.Linear's own
initialisation runs beside them, copied into a minivae model to be scored the same
way; without it that row is skipped with a note (``pip install torch==2.13.0``
gives a CPU build). The grey levels are scored with a Bernoulli likelihood, as in
that recipe: the numbers compare models, but they are not the log-density of any
distribution over grey-level images.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minivae import VAE, data, fit  # noqa: E402
from minivae.layers import DEFAULT_INIT, INITS  # noqa: E402

D, H, K = 64, 128, 8
RECIPE_EPOCHS = 200  # the default is chosen at the recipe's length; shorter runs are smoke runs
TWIN_TOLERANCE = 0.1  # nats: the "torch" mean against the PyTorch twin's (3 seeds each, seed sd about 0.02)


def score(model, x, k: int, elbo_samples: int, seed: int) -> tuple[float, float]:
    """(held-out negative ELBO, importance-weighted negative log-likelihood), nats per image."""
    rng = np.random.default_rng(1000 + seed)
    neg_elbo = -float(model.elbo(x, rng=rng, n_samples=elbo_samples).mean())
    nll = -float(model.log_likelihood(x, k=k, rng=rng).mean())
    return neg_elbo, nll


def train_minivae(split, init: str, seed: int, epochs: int):
    model = VAE(D, K, (H,), likelihood="bernoulli", init=init, dtype="float64", seed=seed)
    fit(model, split.train, epochs=epochs, batch_size=64, lr=1e-3, seed=seed, progress=False)
    return model


def train_torch(split, seed: int, epochs: int):
    """The same VAE in PyTorch (float64, nn.Linear's default initialisation), copied into a minivae model."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    enc1, enc2, dec1, dec2 = (nn.Linear(a, b, dtype=torch.float64) for a, b in ((D, H), (H, 2 * K), (K, H), (H, D)))
    params = [p for layer in (enc1, enc2, dec1, dec2) for p in layer.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    x_all = torch.from_numpy(split.train)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(x_all.shape[0], generator=generator)
        for start in range(0, x_all.shape[0], 64):
            x = x_all[order[start:start + 64]]
            mu, log_var = enc2(torch.relu(enc1(x))).chunk(2, dim=1)
            z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, dtype=torch.float64, generator=generator)
            logits = dec2(torch.relu(dec1(z)))
            nll = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
            kl = 0.5 * (mu ** 2 + log_var.exp() - 1.0 - log_var).sum(dim=1)
            loss = (nll + kl).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model = VAE(D, K, (H,), likelihood="bernoulli", dtype="float64", seed=seed)
    for net, layers in (("encoder", (enc1, enc2)), ("decoder", (dec1, dec2))):
        for i, layer in enumerate(layers):  # nn.Linear keeps W as (out, in); minivae as (in, out)
            model.params[f"{net}.{i}.W"][...] = layer.weight.detach().numpy().T
            model.params[f"{net}.{i}.b"][...] = layer.bias.detach().numpy()
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--k", type=int, default=1000, help="importance samples for the held-out NLL")
    parser.add_argument("--elbo-samples", type=int, default=100, help="draws of z per image for the held-out ELBO")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch twin")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 epochs, one seed, k = 20")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds, args.k, args.elbo_samples = 2, args.seeds[:1], 20, 5

    x, labels = data.digits()
    split = data.train_val_test_split(x, labels, rng=0)
    contenders = [(f"minivae {init}", lambda seed, init=init: train_minivae(split, init, seed, args.epochs))
                  for init in INITS]
    if args.no_torch:
        print("PyTorch twin: skipped (--no-torch)")
    else:
        try:
            import torch

            torch.set_num_threads(2)
            contenders.append((f"torch {torch.__version__}", lambda seed: train_torch(split, seed, args.epochs)))
        except ImportError:
            print("PyTorch twin: skipped, torch is not importable (pip install torch==2.13.0 for a CPU build)")
    print(f"digits: {split.train.shape[0]} train, {split.test.shape[0]} held-out (test) images; {D}-{H}-{K} ReLU, "
          f"Bernoulli logits, Adam 1e-3, batch 64, {args.epochs} epochs, float64; "
          f"-ELBO over {args.elbo_samples} draws of z, NLL importance-weighted with k = {args.k}\n")
    header = f"{'model':<16} {'seed':>4} {'-ELBO':>8} {'NLL':>8} {'time':>7}"
    print(header)
    print("-" * len(header))
    results = {}
    for name, train in contenders:
        for seed in args.seeds:
            start = time.perf_counter()
            model = train(seed)
            elapsed = time.perf_counter() - start
            neg_elbo, nll = score(model, split.test, args.k, args.elbo_samples, seed)
            results.setdefault(name, []).append((neg_elbo, nll))
            print(f"{name:<16} {seed:>4} {neg_elbo:8.3f} {nll:8.3f} {elapsed:6.1f}s", flush=True)

    print(f"\nover seeds {args.seeds} (nats per image, lower is better): mean +- standard deviation [min, max]")
    print(f"{'model':<16} {'-ELBO':>33} {'NLL':>33}")
    for name, rows in results.items():
        print(f"{name:<16} {spread([r[0] for r in rows]):>33} {spread([r[1] for r in rows]):>33}")

    if not all(np.isfinite(value) for rows in results.values() for row in rows for value in row):
        print("\nFAIL: a score is not finite")
        return 1
    means = {name: statistics.fmean(r[0] for r in rows) for name, rows in results.items()}
    best, other = sorted(INITS, key=lambda init: means[f"minivae {init}"])
    margin = means[f"minivae {other}"] - means[f"minivae {best}"]
    print(f"\nbetter held-out -ELBO at {args.epochs} epochs: init={best!r}, by {margin:.3f} nat on the mean")
    if args.epochs != RECIPE_EPOCHS:
        print(f"(a {args.epochs}-epoch run: not checked against the default, init={DEFAULT_INIT!r})")
        return 0
    failed = False
    twin = [name for name in means if name.startswith("torch ")]
    if twin:
        difference = means["minivae torch"] - means[twin[0]]
        failed = abs(difference) > TWIN_TOLERANCE
        print(f"minivae init='torch' against the PyTorch twin: {difference:+.3f} nat on the mean -ELBO "
              f"({'FAIL: more' if failed else 'within'} {TWIN_TOLERANCE} nat)")
    if best != DEFAULT_INIT:
        print(f"FAIL: the default is init={DEFAULT_INIT!r} (minivae.layers.DEFAULT_INIT), not the better one")
        return 1
    print(f"the default, init={DEFAULT_INIT!r}, is the better one")
    return int(failed)


def spread(values: list) -> str:
    """``mean +- sd [min, max]`` of a few numbers (sd 0 for one)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} +- {sd:.3f} [{min(values):.3f}, {max(values):.3f}]"


if __name__ == "__main__":
    sys.exit(main())
