"""The ``minivae`` command: ``train``, ``sample``, ``score`` and ``gradcheck``.

::

    minivae train --dataset digits --epochs 50 --out runs/digits
    minivae sample --checkpoint runs/digits/model.npz --n 64 --out samples.png
    minivae score --checkpoint runs/digits/model.npz --dataset digits --k 1000
    minivae gradcheck --likelihood gaussian_per_dim --activation tanh --samples 3

Errors never end in a traceback. A flag with a value that is wrong on its own
(``--epochs 0``, ``--lr -1``, ``--hidden 1.5``, an unknown ``--activation``) is
refused by argparse before anything runs: usage on stderr, exit status 2. A
problem found while running (a checkpoint that cannot be read, data that do not
fit the model, ``--batch-size`` larger than the data) is printed as
``minivae <command>: error: <flag or argument>: expected ..., got ...`` and
the command returns 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from . import data as datasets
from .backend import DEVICES, default_rng, resolve_device, to_device, to_numpy
from .gradcheck import model_gradient_errors
from .images import image_grid, write_png
from .layers import ACTIVATIONS
from .likelihoods import LIKELIHOODS
from .model import VAE, build_model, VAEConfig
from .ops import KERNELS
from .optim import OPTIMIZERS
from .serialize import load_model
from .train import NonFiniteError, Trainer

DATASETS = ("digits", "ring", "mnist")
IMAGE_SHAPES = {"digits": (8, 8), "mnist": (28, 28)}
#: The gradient check passes when every parameter's relative error is at most this (see tests/conftest.py).
GRADCHECK_TOL = 1e-6


# argparse types. argparse puts the flag in front of the message: "argument --epochs: expected ..., got '0'".


def _hidden(text: str) -> tuple:
    """``"128,64"`` -> (128, 64); ``""`` or ``"none"`` -> () (no hidden layer)."""
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 128,64, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"expected positive widths, got {text!r}")
    return widths


def _integer(minimum: int):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def _number(minimum: float, strict: bool = False):
    """An argparse type: a finite number >= ``minimum`` (> with ``strict``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(f"expected a finite number {'>' if strict else '>='} {minimum}, "
                                             f"got {text!r}")
        return value

    return parse


POSITIVE, NON_NEGATIVE = _integer(1), _integer(0)


def _device(args) -> str:
    """``--device`` resolved to ``cpu`` or ``cuda``; asking for a GPU that is not there names the flag."""
    try:
        return resolve_device(args.device)
    except RuntimeError as exc:
        raise ValueError(f"--{exc}") from None  # "--device: 'cuda' was requested but ..."


def _load_model(path: str, device: str):
    """The model in the checkpoint ``--checkpoint``, on ``device``; every failure names the flag."""
    try:
        return load_model(path, device)
    except FileNotFoundError:
        raise FileNotFoundError(f"--checkpoint: expected an existing checkpoint file, got {path!r}") from None
    except (OSError, ValueError) as exc:  # CheckpointError is a ValueError
        raise ValueError(f"--checkpoint: {exc}") from exc


def _output_path(text: str, suffixes: tuple) -> Path:
    """``--out``: a file with one of ``suffixes`` in an existing directory."""
    out = Path(text)
    if out.suffix not in suffixes:
        raise ValueError(f"--out: expected a path ending in {' or '.join(suffixes)}, got {text!r}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out: expected a file in an existing directory, got {text!r}")
    return out


def load_dataset(name: str, seed: int, conditional: bool = False, data_dir=None):
    """Train/validation/test splits as float arrays, with one-hot conditions for a CVAE."""
    if name == "ring":
        if conditional:
            raise ValueError("--conditional: expected a data set with labels (digits or mnist), got --dataset ring")
        x, labels = datasets.ring(6000, rng=seed), None
        split = datasets.train_val_test_split(x, None, rng=seed)
    elif name == "digits":
        x, labels = datasets.digits()
        split = datasets.train_val_test_split(x, labels, rng=seed)
    else:
        x, labels = datasets.load_mnist(data_dir, "train")
        x_test, test_labels = datasets.load_mnist(data_dir, "test")
        part = datasets.train_val_test_split(x, labels, val_fraction=1 / 6, test_fraction=0.0, rng=seed)
        split = datasets.DataSplit(part.train, part.val, x_test, part.train_labels, part.val_labels, test_labels)
    conditions = [None, None, None]
    if conditional:
        conditions = [datasets.one_hot(y, 10) for y in (split.train_labels, split.val_labels, split.test_labels)]
    return split, conditions


def _picture(model, dataset: str, x_test, c_test, rng) -> np.ndarray:
    """Samples on top; below, rows of test examples alternating with their reconstructions."""
    if dataset in IMAGE_SHAPES:
        cols = 10
        c_sample = None
        if model.conditional:
            c_sample = datasets.one_hot(np.tile(np.arange(10), 3), 10)  # each class in its own column
        samples = to_numpy(model.sample(30, c_sample, rng=rng))
        originals = x_test[:30]
        recon = to_numpy(model.reconstruct(originals, None if c_test is None else c_test[:30]))
        pairs = np.concatenate([np.stack([originals[i:i + cols], recon[i:i + cols]]).reshape(-1, originals.shape[1])
                                for i in range(0, 30, cols)])
        rows = np.concatenate([samples, np.ones((cols, samples.shape[1])), pairs])
        return image_grid(np.clip(rows, 0, 1), IMAGE_SHAPES[dataset], cols, scale=4 if dataset == "digits" else 1)
    # 2-D data: density images (2-D histograms) of the data and of the model's samples, side by side.
    samples = to_numpy(model.sample(len(x_test) * 10, rng=rng, mean=False))
    edges = np.linspace(-2.0, 2.0, 97)
    images = []
    for points in (x_test, samples):
        hist, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=[edges, edges])
        images.append(1.0 - hist / max(hist.max(), 1.0))
    return np.concatenate([images[0], np.zeros((96, 4)), images[1]], axis=1)[::-1]


def cmd_train(args) -> int:
    device = _device(args)
    if args.kernels == "fused" and device != "cuda":
        raise ValueError(f"--kernels: 'fused' runs CUDA kernels and needs --device cuda (or auto on a machine with a "
                         f"GPU), got --device {args.device} ({device})")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out: expected a directory (it is created if missing), got {args.out!r}: "
                         f"{exc.strerror}") from exc
    split, (c_train, c_val, c_test) = load_dataset(args.dataset, args.seed, args.conditional, args.data_dir)
    likelihood = args.likelihood or ("gaussian_shared" if args.dataset == "ring" else "bernoulli")
    if args.batch_size > split.train.shape[0]:
        raise ValueError(f"--batch-size: expected at most the number of training examples "
                         f"({split.train.shape[0]}), got {args.batch_size}")
    if likelihood == "bernoulli" and (split.train.min() < 0 or split.train.max() > 1):
        raise ValueError(f"--likelihood: expected a Gaussian likelihood for {args.dataset}, whose values lie "
                         f"outside [0, 1], got {likelihood!r}")
    config = VAEConfig(data_dim=split.train.shape[1], latent_dim=args.latent, hidden=args.hidden,
                       activation=args.activation, likelihood=likelihood, n_samples=args.samples,
                       condition_dim=10 if args.conditional else 0)
    model = build_model(config, seed=args.seed, device=device)
    trainer = Trainer(model, args.optimizer, lr=args.lr, batch_size=args.batch_size,
                      warmup_epochs=args.warmup, seed=args.seed, kernels=args.kernels)
    print(f"{model}\ntraining on {args.dataset}: {split.train.shape[0]} train, {split.val.shape[0]} validation, "
          f"{split.test.shape[0]} test examples")
    trainer.fit(split.train, c_train, epochs=args.epochs, x_val=split.val, c_val=c_val,
                progress=not args.no_progress, checkpoint=str(out / "model.npz"))
    (out / "history.json").write_text(json.dumps(trainer.history.to_dict(), indent=1))
    rng = default_rng(args.seed, device)
    write_png(out / "samples.png", _picture(model, args.dataset, split.test, c_test, rng))
    test_elbo = float(model.elbo(split.test, c_test, rng=rng).mean())
    test_ll = float(model.log_likelihood(split.test, k=args.k, c=c_test, rng=rng).mean())
    print(f"checkpoint: {out / 'model.npz'}\npicture:    {out / 'samples.png'}")
    print(f"test negative ELBO:                         {-test_elbo:.3f} nats per example")
    print(f"test log-likelihood (importance-weighted, k={args.k}): {test_ll:.3f} nats per example")
    return 0


def cmd_sample(args) -> int:
    out = _output_path(args.out, (".png", ".npy"))
    model = _load_model(args.checkpoint, _device(args))
    rng = default_rng(args.seed, model.device)
    c = None
    n_classes = model.config.condition_dim
    if model.conditional:
        if args.label is None:
            labels = np.arange(args.n) % n_classes
        elif args.label >= n_classes:
            raise ValueError(f"--label: expected a class in 0..{n_classes - 1} (the model's conditions), "
                             f"got {args.label}")
        else:
            labels = np.full(args.n, args.label)
        c = datasets.one_hot(labels, n_classes)
    elif args.label is not None:
        raise ValueError("--label: expected only for a conditional model, got a label for an unconditional one")
    x = to_numpy(model.sample(args.n, c, rng=rng, mean=not args.draw))
    if out.suffix == ".npy":
        np.save(out, x)
    else:
        side = int(round(np.sqrt(model.config.data_dim)))
        if side * side != model.config.data_dim:
            raise ValueError(f"--out: expected a .npy path for data of {model.config.data_dim} features (a PNG "
                             f"needs square images), got {args.out!r}")
        write_png(out, image_grid(np.clip(x, 0, 1), (side, side), min(args.n, 10), scale=max(1, 32 // side)))
    print(f"wrote {args.n} samples to {out}")
    return 0


def _load_input(path: str, model) -> np.ndarray:
    """``--input``: a .npy file holding data (N, D) for ``model``; never unpickles."""
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"--input: expected an existing .npy file, got {path!r}") from None
    except (OSError, ValueError) as exc:  # not a .npy file, or one holding Python objects
        raise ValueError(f"--input: expected a .npy file holding a float array, got {path!r} ({exc})") from exc
    if not isinstance(x, np.ndarray):  # an .npz archive
        x.close()
        raise ValueError(f"--input: expected a .npy file holding one array, got an .npz archive {path!r}")
    return model._check_x(x, "--input")


def cmd_score(args) -> int:
    model = _load_model(args.checkpoint, _device(args))
    rng = default_rng(args.seed, model.device)
    if args.input is not None:
        if model.conditional:
            raise ValueError("--input: expected an unconditional model (a conditional one needs labels: score it "
                             "with --dataset), got a conditional checkpoint")
        x, c = _load_input(args.input, model), None
    else:
        split, conditions = load_dataset(args.dataset, args.data_seed, model.conditional, args.data_dir)
        index = ("train", "val", "test").index(args.split)
        x, c = split[index], conditions[index]
        if x.shape[1] != model.config.data_dim:
            raise ValueError(f"--dataset: expected data with {model.config.data_dim} features (the model's "
                             f"data_dim), got {args.dataset} with {x.shape[1]}")
    ll = model.log_likelihood(x, k=args.k, c=c, rng=rng)
    elbo = model.elbo(x, c, rng=rng)
    print(f"{x.shape[0]} examples")
    print(f"mean ELBO:                                  {float(elbo.mean()):.3f} nats")
    print(f"mean log-likelihood (importance-weighted, k={args.k}): {float(ll.mean()):.3f} nats")
    if args.per_example:
        np.savetxt(sys.stdout, to_numpy(ll), fmt="%.4f")
    return 0


def cmd_gradcheck(args) -> int:
    rng = np.random.default_rng(args.seed)
    model = VAE(args.data_dim, args.latent, args.hidden, activation=args.activation, likelihood=args.likelihood,
                n_samples=args.samples, condition_dim=args.condition_dim, dtype="float64", seed=args.seed,
                device=_device(args))
    # non-zero everywhere, biases too; drawn on the host, so the check is the same on either device
    model.params.data[:] = to_device(rng.normal(0.0, 0.5, model.params.size), model.device)
    x = rng.random((args.batch, args.data_dim))
    if args.likelihood == "bernoulli":
        x = np.round(x)
    c = datasets.one_hot(rng.integers(0, args.condition_dim, args.batch), args.condition_dim) \
        if args.condition_dim else None
    noise = rng.standard_normal((args.samples, args.batch, args.latent))
    errors = model_gradient_errors(model, x, c, noise=noise, beta=args.beta)
    print(f"{model}\ncentral differences in float64, step 1e-6; relative error = max|a - n| / max(max|a|, max|n|)")
    print(f"{'parameter':<22} {'shape':<12} {'max relative error':>18}")
    for name, err in errors.items():
        print(f"{name:<22} {str(model.params.shapes[name]):<12} {err:>18.2e}")
    worst = max(errors.values())
    verdict = "PASS" if worst <= GRADCHECK_TOL else "FAIL"
    print(f"{verdict}: largest error {worst:.2e} (tolerance {GRADCHECK_TOL:.0e})")
    return 0 if verdict == "PASS" else 1


def cmd_exercise(args) -> int:
    """List the exercises, print one's stub, or check a learner's file (``minivae/exercises/``)."""
    from .exercises import EXERCISES, check_file, get_exercise

    if args.action == "list":
        for name, exercise in EXERCISES.items():
            print(f"{name:<11} {exercise.function:<24} {exercise.summary}")
        print("\nminivae exercise show NAME > my_NAME.py  prints a stub to fill in; "
              "minivae exercise check NAME my_NAME.py  checks it")
        return 0
    if args.name is None:
        raise ValueError(f"NAME: expected an exercise name after {args.action!r}, one of {sorted(EXERCISES)}")
    exercise = get_exercise(args.name)
    if args.action == "show":
        print(exercise.stub.read_text(encoding="utf-8"), end="")
        if args.answer:
            print("\n" + exercise.answer(), end="")
        return 0
    if args.file is None:
        raise ValueError(f"FILE: expected the Python file defining {exercise.function}() to check, got none")
    report = check_file(args.name, args.file)
    print(report.text(), end="")
    if args.answer:
        print("\n" + exercise.answer(), end="")
    return 0 if report.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minivae", description="A hand-derived variational autoencoder in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_flags(p, latent, hidden, activation):
        p.add_argument("--latent", type=POSITIVE, default=latent, help="latent size K")
        p.add_argument("--hidden", type=_hidden, default=hidden, help="hidden widths, e.g. 128,64 ('none': linear)")
        p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=activation)
        p.add_argument("--samples", type=POSITIVE, default=1, help="Monte Carlo samples S of z per example")
        p.add_argument("--seed", type=NON_NEGATIVE, default=0)

    def device_flag(p):
        p.add_argument("--device", choices=DEVICES, default="cpu",
                       help="cpu (NumPy), cuda (CuPy on an NVIDIA GPU) or auto (the GPU if there is one)")

    t = sub.add_parser("train", help="train a VAE, save a checkpoint and a picture, print the test log-likelihood")
    t.add_argument("--dataset", choices=DATASETS, default="digits")
    t.add_argument("--data-dir", default=None, help="where MNIST's IDX files are kept (downloaded on first use)")
    t.add_argument("--epochs", type=POSITIVE, default=100)
    t.add_argument("--batch-size", type=POSITIVE, default=64)
    t.add_argument("--lr", type=_number(0.0, strict=True), default=2e-3)
    t.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    t.add_argument("--warmup", type=_number(0.0), default=0.0, help="KL warm-up epochs")
    t.add_argument("--likelihood", choices=LIKELIHOODS, default=None,
                   help="default: bernoulli for images, gaussian_shared for the ring")
    t.add_argument("--conditional", action="store_true", help="train a conditional VAE on one-hot labels")
    t.add_argument("--k", type=POSITIVE, default=1000, help="importance samples for the test log-likelihood")
    t.add_argument("--out", default="runs/minivae", help="output directory")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--kernels", choices=KERNELS, default="plain",
                   help="the step's elementwise work as array code, or as fused CUDA kernels (needs --device cuda)")
    model_flags(t, 8, (128,), "relu")
    device_flag(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate new examples from a checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--n", type=POSITIVE, default=50)
    s.add_argument("--label", type=NON_NEGATIVE, default=None, help="class to generate (conditional models)")
    s.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of its mean")
    s.add_argument("--out", default="samples.png", help=".png picture or .npy array")
    s.add_argument("--seed", type=NON_NEGATIVE, default=0)
    device_flag(s)
    s.set_defaults(func=cmd_sample)

    c = sub.add_parser("score", help="importance-weighted log-likelihood of data under a checkpoint")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--dataset", choices=DATASETS, default="digits")
    c.add_argument("--data-dir", default=None)
    c.add_argument("--split", choices=("train", "val", "test"), default="test")
    c.add_argument("--data-seed", type=NON_NEGATIVE, default=0,
                   help="the --seed the model was trained with (same split)")
    c.add_argument("--input", default=None, help="score the rows of this .npy file instead of a data set")
    c.add_argument("--k", type=POSITIVE, default=1000)
    c.add_argument("--per-example", action="store_true", help="also print each example's log-likelihood")
    c.add_argument("--seed", type=NON_NEGATIVE, default=0)
    device_flag(c)
    c.set_defaults(func=cmd_score)

    g = sub.add_parser("gradcheck", help="compare every hand-written gradient with central differences")
    g.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli")
    g.add_argument("--data-dim", type=POSITIVE, default=6)
    g.add_argument("--batch", type=POSITIVE, default=4)
    g.add_argument("--condition-dim", type=NON_NEGATIVE, default=0, help="> 0 checks a conditional VAE")
    g.add_argument("--beta", type=_number(0.0), default=1.0)
    model_flags(g, 3, (5, 4), "tanh")
    device_flag(g)
    g.set_defaults(func=cmd_gradcheck)

    e = sub.add_parser("exercise", help="derive a backward pass yourself; checked by finite differences")
    e.add_argument("action", choices=("list", "show", "check"))
    e.add_argument("name", nargs="?", default=None, help="the exercise, as `minivae exercise list` names it")
    e.add_argument("file", nargs="?", default=None, help="check: the Python file with your function")
    e.add_argument("--answer", action="store_true", help="also print the worked answer")
    e.set_defaults(func=cmd_exercise)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, NonFiniteError) as exc:  # OSError: files, downloads
        print(f"minivae {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
