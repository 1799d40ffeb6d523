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
fit the model, ``--batch-size`` larger than the data, sizes that cannot fit in
memory, a full disk, a diverged run) is printed as
``minivae <command>: error: <flag or argument>: expected ..., got ...`` and
the command returns 2. A check that fails (``gradcheck``, ``exercise check``)
returns 1; Ctrl-C (SIGINT) prints one line and returns 130, SIGTERM 143.
Every flag is checked, against its meaning, the others and the sizes it implies,
before ``train`` creates anything on disk. ``train`` writes into ``--out`` only what
:mod:`minivae.runs` allows (``--overwrite``, ``--resume``, ``--restore-previous``, one
run at a time). docs/guarantees.md lists what survives which fault.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
from pathlib import Path

import numpy as np

from . import data as datasets
from . import runs
from .backend import DEVICES, default_rng, resolve_device, to_device, to_numpy
from .gradcheck import TOLERANCE, model_gradient_errors
from .images import image_grid, write_png
from .iwae import OBJECTIVES
from .layers import ACTIVATIONS, INITS
from .likelihoods import LIKELIHOODS, get_likelihood
from .engines import ENGINES
from .model import VAE, build_model, VAEConfig
from .ops import KERNELS
from .optim import OPTIMIZERS
from .reparam import LOG_VAR_LIMIT
from .resources import activation_bytes, check_fits, format_bytes, model_bytes, param_count
from .ring_density import ring_nll
from .schedules import schedule_in_epochs, steps_per_epoch
from .checkpoint import load_checkpoint
from .serialize import load_data_record, load_model, load_trainer
from .train import NonFiniteError, Trainer

DATASETS = ("digits", "ring", "mnist")
IMAGE_SHAPES = {"digits": (8, 8), "mnist": (28, 28)}

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


def _integer(minimum: int, maximum: int | None = None):
    """An argparse type: an integer >= ``minimum`` (and <= ``maximum``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum:g}]"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}")
        return value

    return parse


def _number(minimum: float, strict: bool = False, maximum: float | None = None, why: str = ""):
    """An argparse type: a finite number >= ``minimum`` (> with ``strict``), and <= ``maximum`` (``why`` says
    what the bound means)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(f"expected a finite number {'>' if strict else '>='} {minimum}, "
                                             f"got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected a number <= {maximum:g}{why}, got {text!r}")
        return value

    return parse


#: The most epochs any epoch-valued flag takes (--epochs, --warmup, --lr-warmup, --step-every): a million
#: passes over the data is beyond any run here, and keeps every count of steps an exact integer.
MAX_EPOCHS = 10 ** 6


POSITIVE, NON_NEGATIVE = _integer(1), _integer(0)
EPOCHS = _number(0.0, maximum=MAX_EPOCHS, why=" epochs (minivae.cli.MAX_EPOCHS)")
#: The fewest ring points that leave a validation and a test point (minivae.data.split_sizes).
RING_POINTS_MIN = next(n for n in range(1, 100) if min(datasets.split_sizes(n)) >= 1)
#: The largest --ring-noise: ten times the ring's radius; beyond it the points are noise, not a ring.
RING_NOISE_MAX = 10.0
#: Features of each data set, known before it is loaded.
DATA_DIMS = {"digits": 64, "mnist": 784, "ring": 2}


def _log_var(text: str) -> float:
    """``--init-log-var``: a log-variance inside the clamp [-LOG_VAR_LIMIT, LOG_VAR_LIMIT] (eq. logvar-clamp)."""
    value = _number(-LOG_VAR_LIMIT)(text)
    if value > LOG_VAR_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a log-variance in [-{LOG_VAR_LIMIT:g}, {LOG_VAR_LIMIT:g}], "
                                         f"got {text!r}")
    return value


def _variance(text: str) -> float:
    """``--fixed-variance``: a variance whose log lies inside the log-variance clamp (eq. logvar-clamp)."""
    value = _number(0.0, strict=True)(text)
    if not math.exp(-LOG_VAR_LIMIT) <= value <= math.exp(LOG_VAR_LIMIT):
        raise argparse.ArgumentTypeError(f"expected a variance in [exp(-{LOG_VAR_LIMIT:g}), exp({LOG_VAR_LIMIT:g})], "
                                         f"got {text!r}")
    return value


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


#: What ``train`` does on each data set when a flag is not given; a flag on the command line always wins.
#: digits and mnist keep the settings the README's commands were measured with. The ring's recipe aims at a
#: held-out importance-weighted NLL within 0.05 nat of the exact value on seeds 0-3, both latent dimensions
#: active (``benchmarks/ring.py``; the measured gaps are in docs/results.md). A decoder variance per example
#: (the ring is thin across and the model's mean cannot follow it exactly), S = 4 and a third hidden layer
#: each close part of the gap that 64-64, S = 1 and a shared variance leave (0.11-0.14 nat).
_IMAGES = dict(epochs=100, batch_size=64, lr=2e-3, warmup=0.0, latent=8, hidden=(128,), activation="relu",
               samples=1, likelihood="bernoulli", init_log_var=None, binarize="none", schedule="constant",
               init=VAEConfig.init)
TRAIN_DEFAULTS = {
    "digits": _IMAGES,
    "mnist": _IMAGES,
    "ring": dict(epochs=600, batch_size=128, lr=2e-3, warmup=20.0, latent=2, hidden=(64, 64, 64), activation="tanh",
                 samples=4, likelihood="gaussian_per_example", init_log_var=-4.0, binarize="none", schedule="cosine",
                 ring_points=10000, ring_noise=0.05, init="he"),  # its table is measured with "he" (docs/results.md)
}
#: ``train``'s defaults under an importance-weighted ``--objective`` (:mod:`minivae.iwae`), taken before the data
#: set's table: its samples are ``--k-train``, so ``--samples`` is 1. With the ring's table they are the ring's
#: recipe for the bound: ``minivae train --dataset ring --objective iwae-dreg`` ends within 0.02 nat of the exact
#: held-out NLL on seeds 0-3 (``benchmarks/ring.py --objective iwae-dreg``; the table is in docs/results.md).
IW_DEFAULTS = dict(samples=1, k_train=8)

#: The ring's size and noise when the ring is not being trained on (``score`` of an old checkpoint).
RING_POINTS, RING_NOISE = 6000, 0.05


#: ``train``'s defaults that are the same for every data set.
COMMON_DEFAULTS = dict(dataset="digits", data_seed=0, optimizer="adam", lr_warmup=0.0, seed=0, conditional=False,
                       objective="elbo")


def _apply_defaults(args) -> None:
    """Fill every ``train`` flag left at None from :data:`COMMON_DEFAULTS` and :data:`TRAIN_DEFAULTS` for
    ``--dataset``."""
    for key, value in COMMON_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.objective == "elbo":
        if args.k_train is None:
            args.k_train = 1
    else:
        for key, value in IW_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    table = TRAIN_DEFAULTS[args.dataset]
    for key, value in table.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.dataset != "ring":
        for flag in ("ring_points", "ring_noise"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')}: expected only with --dataset ring, "
                                 f"got it with --dataset {args.dataset}")
    elif args.binarize != "none":
        raise ValueError(f"--binarize: expected 'none' for the ring (its points are not grey levels), "
                         f"got {args.binarize!r}")


def data_record(dataset: str, data_seed: int, binarize: str = "none", ring_points: int = RING_POINTS,
                ring_noise: float = RING_NOISE) -> dict:
    """How a data set and its split are made: what a checkpoint records and ``score`` rebuilds."""
    record = {"dataset": dataset, "data_seed": data_seed, "binarize": binarize}
    if dataset == "ring":
        record.update(ring_points=ring_points, ring_noise=ring_noise)
    return record


def check_data_record(record, flag: str) -> dict:
    """A data record (:func:`data_record`, as a checkpoint stores it) checked as the flags it stands for would
    be, every problem naming ``flag`` (``--checkpoint``): nothing is loaded, downloaded or allocated for a record
    that names an unknown data set, a seed that is not one, or a ring that cannot fit in memory."""
    def bad(what: str, value) -> ValueError:
        return ValueError(f"{flag}: expected a data record with {what}, got {value!r}")

    if not isinstance(record, dict):
        raise bad("the fields dataset, data_seed and binarize (a dict)", record)
    if record.get("dataset") not in DATASETS:
        raise bad(f"a dataset among {list(DATASETS)}", record.get("dataset"))
    seed = record.get("data_seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise bad("an integer data_seed >= 0", seed)
    if record.get("binarize") not in datasets.BINARIZE:
        raise bad(f"binarize among {list(datasets.BINARIZE)}", record.get("binarize"))
    if record["dataset"] == "ring":
        points, noise = record.get("ring_points"), record.get("ring_noise")
        if isinstance(points, bool) or not isinstance(points, int) or points < RING_POINTS_MIN:
            raise bad(f"an integer ring_points >= {RING_POINTS_MIN}", points)
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 < noise <= RING_NOISE_MAX:
            raise bad(f"a ring_noise in (0, {RING_NOISE_MAX:g}]", noise)
        if record["binarize"] != "none":
            raise bad("binarize 'none' for the ring", record["binarize"])
        check_ring_fits(points, flag)
    return record


def check_ring_fits(points: int, flag: str) -> None:
    """A ring of ``points`` points, its split and the scores of its test part fit in memory (before any is made)."""
    check_fits(flag, points * 2 * 8 * 8, f"{points} ring points and their splits")


def describe(record: dict) -> str:
    """``record`` in words, e.g. ``ring (10000 points, noise 0.05), data seed 0``."""
    what = record["dataset"]
    if what == "ring":
        what += f" ({record['ring_points']} points, noise {record['ring_noise']:g})"
    elif record["binarize"] != "none":
        what += f" (binarized: {record['binarize']})"
    return f"{what}, data seed {record['data_seed']}"


def load_dataset(record: dict, conditional: bool = False, data_dir=None):
    """Train/validation/test splits as float arrays, with one-hot conditions for a CVAE.

    ``record`` (:func:`data_record`) fixes everything: the ring's points and the split come from its data seed
    alone, whatever seeds the model. With ``binarize="stochastic"`` the training part stays grey (a fresh draw
    every epoch) and the held-out parts are drawn once from the data seed (:func:`minivae.data.binarize_split`).
    """
    name, seed = record["dataset"], record["data_seed"]
    if name == "ring":
        if conditional:
            raise ValueError("--conditional: expected a data set with labels (digits or mnist), got --dataset ring")
        x, labels = datasets.ring(record["ring_points"], record["ring_noise"], rng=seed), None
        split = datasets.train_val_test_split(x, None, rng=seed)
    elif name == "digits":
        x, labels = datasets.digits()
        split = datasets.train_val_test_split(x, labels, rng=seed)
    else:
        x, labels = datasets.load_mnist(data_dir, "train")
        x_test, test_labels = datasets.load_mnist(data_dir, "test")
        part = datasets.train_val_test_split(x, labels, val_fraction=1 / 6, test_fraction=0.0, rng=seed)
        split = datasets.DataSplit(part.train, part.val, x_test, part.train_labels, part.val_labels, test_labels)
    split = datasets.binarize_split(split, record["binarize"], np.random.default_rng([seed, 1]))
    conditions = [None, None, None]
    if conditional:
        conditions = [datasets.one_hot(y, 10) for y in (split.train_labels, split.val_labels, split.test_labels)]
    return split, conditions


def _likelihood_lines(model, record: dict, x, c, k: int, rng, what: str, ll=None, flag: str = "--checkpoint") -> list:
    """The held-out negative ELBO and log-likelihood, each line saying what the number is.

    A Bernoulli decoder on grey levels gives a cross-entropy score, not a log-density; on the ring the exact
    NLL (:func:`minivae.ring_density.ring_log_density`) is printed beside the model's, with the gap.
    """
    if ll is None:
        ll = model.log_likelihood(x, k=k, c=c, rng=rng)
    ll = float(ll.mean())
    rows = range(0, x.shape[0], 1024)  # in batches: no (N, D) temporaries for a large N
    elbo = sum(float(model.elbo(x[i:i + 1024], None if c is None else c[i:i + 1024], rng=rng).sum())
               for i in rows) / x.shape[0]
    if not (math.isfinite(ll) and math.isfinite(elbo)):
        raise NonFiniteError(f"{flag}: expected a model that gives the {what} data a finite log-likelihood and "
                             f"ELBO, got {ll} and {elbo}; nothing is reported")
    grey = model.config.likelihood == "bernoulli" and any(bool(((x[i:i + 1024] > 0) & (x[i:i + 1024] < 1)).any())
                                                          for i in rows)
    if grey:
        return [f"{what} negative ELBO:                         {-elbo:.3f} nats per example (a Bernoulli "
                f"cross-entropy of grey levels, not a log-density of the data; --binarize gives one)",
                f"{what} importance-weighted Bernoulli score, k={k}: {ll:.3f} nats per example (grey levels: "
                f"NOT a log-likelihood of the data)"]
    lines = [f"{what} negative ELBO:                         {-elbo:.3f} nats per example",
             f"{what} log-likelihood (importance-weighted, k={k}): {ll:.3f} nats per example"]
    if record.get("dataset") == "ring" and x.shape[1] == 2:
        exact = ring_nll(to_numpy(x).astype(np.float64), record["ring_noise"])
        gap = -ll - exact
        lines.append(f"{what} NLL: exact {exact:.3f}, model (k={k}) {-ll:.3f}, gap {gap:.3f} nats per point"
                     + ("" if gap <= RING_TOLERANCE else f"  (more than {RING_TOLERANCE} nat: the model has not "
                                                          "learned the ring)"))
    return lines


#: A ring model whose held-out NLL is further than this from the exact value is reported as not learned.
RING_TOLERANCE = 0.05


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


def _schedule(args, n_train: int):
    """The learning-rate schedule of ``--schedule``, ``--lr``, ``--lr-warmup``, ``--lr-min``, ``--step-every``,
    ``--step-factor``, in epochs of ``n_train`` examples (converted to steps, :mod:`minivae.schedules`)."""
    _check_schedule_flags(args)
    return schedule_in_epochs(args.schedule, args.lr, epochs=args.epochs,
                              steps_per_epoch=steps_per_epoch(n_train, args.batch_size), warmup=args.lr_warmup,
                              lr_min=args.lr_min or 0.0, every=args.step_every or 10.0,
                              factor=0.5 if args.step_factor is None else args.step_factor)


def _check_schedule_flags(args) -> None:
    """The schedule's flags fit together (found before anything is read or written)."""
    for flag, value, needs in (("--lr-min", args.lr_min, "cosine"), ("--step-every", args.step_every, "step"),
                               ("--step-factor", args.step_factor, "step")):
        if value is not None and args.schedule != needs:
            raise ValueError(f"{flag}: expected only with --schedule {needs}, got --schedule {args.schedule}")
    if args.lr_min is not None and args.lr_min > args.lr:
        raise ValueError(f"--lr-min: expected at most --lr ({args.lr}), got {args.lr_min}")


def _fraction(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    value = _number(0.0, strict=True)(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def cmd_train(args) -> int:
    device = _device(args)
    if args.kernels == "fused" and args.engine == "reference":
        raise ValueError("--kernels: expected 'plain' with --engine reference (fused kernels belong to the fast "
                         "engine), got 'fused'")
    if args.kernels == "fused" and device != "cuda":
        raise ValueError(f"--kernels: 'fused' runs CUDA kernels and needs --device cuda (or auto on a machine with a "
                         f"GPU), got --device {args.device} ({device})")
    out = Path(args.out)
    if args.restore_previous:
        return _restore_previous(args, out)
    # Every check before anything is created on disk: a refused command leaves no trace.
    args.given = {key for key, value in vars(args).items() if value is not None}
    if args.overwrite and args.resume:
        raise ValueError("--overwrite: expected either --overwrite (start afresh) or --resume (continue), got both")
    args.resumed = _load_resumed(args, out, device) if args.resume else None
    _apply_defaults(args)
    _check_train_flags(args)
    created = _make_folder(out, args.out)
    try:
        with runs.RunLock(out):
            folder = runs.RunFolder(out)
            args.interrupted = lambda: folder.describe(_saved_epoch)
            try:
                folder.prepare(args.overwrite, args.resume)
                runs.stage("training")
                code = _train(args, device, out)
                folder.finish()
                return code
            except BaseException as exc:
                folder.fail()
                if folder.restored and type(exc) in (ValueError, NonFiniteError):  # say what is on disk
                    raise type(exc)(f"{exc}; the previous run is back in {out}") from exc
                raise
    finally:
        for made in created:  # a refused or failed run into a folder it made leaves no empty folder
            try:
                made.rmdir()
            except OSError:
                break


def _make_folder(out: Path, text: str) -> list:
    """Create ``--out`` (and its missing parents); return the folders made, innermost first."""
    missing = [folder for folder in (out, *out.parents) if not folder.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out: expected a directory (it is created if missing), got {text!r}: "
                         f"{exc.strerror}") from exc
    return missing


def _restore_previous(args, out: Path) -> int:
    """``--restore-previous``: put back the run an interrupted ``--overwrite`` set aside."""
    if args.overwrite or args.resume:
        raise ValueError(f"--restore-previous: expected on its own (it trains nothing), got it with "
                         f"{'--overwrite' if args.overwrite else '--resume'}")
    if not (out / runs.PREVIOUS).is_dir():
        raise FileNotFoundError(f"--restore-previous: expected {str(out / runs.PREVIOUS)!r}, where --overwrite sets "
                                "a previous run aside, got no such folder")
    with runs.RunLock(out):
        back = runs.RunFolder(out).restore()
    print(f"restored {', '.join(back) or 'nothing'} from {out / runs.PREVIOUS} into {out}")
    return 0


def _load_resumed(args, out: Path, device: str):
    """``--resume``: the stored run, its flags filling those left out and refusing those given differently."""
    checkpoint = out / runs.CHECKPOINT
    if not checkpoint.is_file():
        hint = (f"; {runs.PREVIOUS}/ holds a run an interrupted --overwrite set aside: --restore-previous puts it "
                "back") if (out / runs.PREVIOUS).is_dir() else ""
        raise FileNotFoundError(f"--resume: expected the checkpoint of an earlier run, {str(checkpoint)!r}, got no "
                                f"such {'file' if out.is_dir() else 'folder'}{hint}")
    try:
        trainer = load_trainer(checkpoint, device, args.kernels, args.engine)  # None: the run's own engine
    except (OSError, ValueError) as exc:
        if args.engine == "fast":  # a bound's run is refused the fast engine: say so by the flag's name
            objective = _stored_objective(checkpoint)
            if objective not in (None, "elbo"):
                raise ValueError(f"--engine: expected reference for the resumed run's --objective {objective} "
                                 f"(the fast engine computes the ELBO only), got fast") from exc
        raise ValueError(f"--resume: expected a loadable training checkpoint, got {exc}") from exc
    if trainer.data is not None:
        check_data_record(trainer.data, f"--resume: the checkpoint {checkpoint}")
    runs.take_stored_flags(args, runs.stored_flags(trainer), checkpoint)
    return trainer


def _stored_objective(checkpoint):
    """The objective of the model in ``checkpoint``, or None when it cannot be read."""
    try:
        return load_model(checkpoint).config.objective
    except (OSError, ValueError):
        return None


def _train_rows(args) -> int:
    """Training examples of ``--dataset``, known before it is loaded (:func:`minivae.data.split_sizes`)."""
    if args.dataset == "ring":
        return datasets.split_sizes(args.ring_points)[0]
    if args.dataset == "digits":
        return datasets.split_sizes(1797)[0]  # scikit-learn's 8x8 digits
    return datasets.split_sizes(60000, 1 / 6, 0.0)[0]  # MNIST's training file, a sixth for validation


def _check_train_flags(args) -> None:
    """The flags against their meaning, each other and the sizes they imply, before anything is read or made."""
    _check_schedule_flags(args)
    args.model_likelihood = _train_likelihood(args)
    if args.model_likelihood == "bernoulli" and args.dataset == "ring":
        raise ValueError(f"--likelihood: expected a Gaussian likelihood for ring, whose values lie outside [0, 1], "
                         f"got {args.model_likelihood!r}")
    if args.binarize != "none" and args.model_likelihood != "bernoulli":
        raise ValueError(f"--binarize: expected --likelihood bernoulli with binarized data (a Gaussian density of "
                         f"0/1 values is not their log-likelihood: it grows without bound as the variance shrinks), "
                         f"got --binarize {args.binarize} with --likelihood {args.model_likelihood}")
    if args.objective == "elbo" and args.k_train != 1:
        raise ValueError(f"--k-train: expected 1 with --objective elbo (the ELBO's samples are --samples), "
                         f"got {args.k_train}")
    if args.objective != "elbo" and args.samples != 1:
        raise ValueError(f"--samples: expected 1 with --objective {args.objective} (its samples are --k-train), "
                         f"got {args.samples}")
    if args.objective != "elbo" and args.engine == "fast":
        raise ValueError(f"--engine: expected reference with --objective {args.objective} (the fast engine "
                         f"computes the ELBO only), got fast")
    _check_data_dir(args, args.dataset)
    _check_train_sizes(args)
    rows = _train_rows(args)
    if args.batch_size > rows:
        raise ValueError(f"--batch-size: expected at most the number of training examples ({rows}), "
                         f"got {args.batch_size}")


def _run_flags(args) -> dict:
    """The flags that shape the rest of the run and that the model, trainer and data record do not hold:
    saved in the checkpoint, so that ``--resume`` takes them (:func:`minivae.runs.stored_flags`)."""
    return {"epochs": args.epochs, "lr_warmup": float(args.lr_warmup), "init_log_var": args.init_log_var,
            "lr_min": (args.lr_min or 0.0) if args.schedule == "cosine" else None,
            "step_every": (args.step_every or 10.0) if args.schedule == "step" else None,
            "step_factor": (0.5 if args.step_factor is None else args.step_factor) if args.schedule == "step"
            else None}


def _check_cosine_length(args, trainer, n_train: int) -> None:
    """A cosine's length is the ``--epochs`` its run started with: a resumed run may stop earlier, not go on."""
    schedule = trainer.schedule
    while getattr(schedule, "name", None) == "warmup":
        schedule = schedule.after
    if getattr(schedule, "name", None) != "cosine":
        return
    per_epoch = steps_per_epoch(n_train, trainer.batch_size)
    if args.epochs * per_epoch > schedule.total_steps:
        started = (trainer.flags or {}).get("epochs") or schedule.total_steps / per_epoch
        raise ValueError(f"--epochs: expected at most {started:g}, the epochs of this cosine run (its learning rate "
                         f"falls to --lr-min over the --epochs it started with, and is neither stretched nor "
                         f"continued), got {args.epochs}; train longer in a new run (--overwrite or another --out)")


def _train(args, device: str, out: Path) -> int:
    """``train`` in the folder ``out``, which this process holds (:class:`minivae.runs.RunLock`)."""
    record = data_record(args.dataset, args.data_seed, args.binarize, args.ring_points, args.ring_noise)
    split, (c_train, c_val, c_test) = load_dataset(record, args.conditional, args.data_dir)
    likelihood = args.model_likelihood
    if args.batch_size > split.train.shape[0]:
        raise ValueError(f"--batch-size: expected at most the number of training examples "
                         f"({split.train.shape[0]}), got {args.batch_size}")
    if likelihood == "bernoulli" and (split.train.min() < 0 or split.train.max() > 1):
        raise ValueError(f"--likelihood: expected a Gaussian likelihood for {args.dataset}, whose values lie "
                         f"outside [0, 1], got {likelihood!r}")
    config = VAEConfig(data_dim=split.train.shape[1], latent_dim=args.latent, hidden=args.hidden,
                       activation=args.activation, likelihood=likelihood, n_samples=args.samples,
                       condition_dim=10 if args.conditional else 0, init=args.init,
                       fixed_variance=1.0 if args.fixed_variance is None else args.fixed_variance,
                       objective=args.objective, k_train=args.k_train)
    checkpoint = out / runs.CHECKPOINT
    _check_free_space(out, config)
    if args.resume:
        trainer = args.resumed  # its schedule as stored: the run continues it exactly
        if config != trainer.model.config:  # a checkpoint without a data record, resumed on other data
            raise ValueError(f"--resume: expected data for the stored model {trainer.model.config}, got "
                             f"{describe(record)}, which makes {config}; give the run's --dataset")
        _check_cosine_length(args, trainer, split.train.shape[0])
        print(f"resuming {checkpoint} after epoch {trainer.epoch}")
        model = trainer.model
    else:
        model = build_model(config, seed=args.seed, device=device)
        if args.init_log_var is not None:
            set_decoder_log_var(model, args.init_log_var)
        trainer = Trainer(model, args.optimizer, batch_size=args.batch_size, warmup_epochs=args.warmup,
                          seed=args.seed, kernels=args.kernels, schedule=_schedule(args, split.train.shape[0]),
                          engine=args.engine)  # None: fast for the ELBO, reference for the bound
        trainer.data = record  # saved with every checkpoint: score rebuilds the same data and split
        trainer.flags = _run_flags(args)  # and --resume takes the run's other flags from it
    print(f"{model}\ntraining on {describe(record)}: {split.train.shape[0]} train, {split.val.shape[0]} validation, "
          f"{split.test.shape[0]} test examples")
    epochs = args.epochs - trainer.epoch
    if epochs <= 0:
        print(f"the run already has {trainer.epoch} epochs (--epochs {args.epochs}): nothing to train")
    try:
        if epochs > 0 and args.binarize == "stochastic":  # a fresh x ~ Bernoulli(grey) every epoch, from the seed
            draws = np.random.default_rng([args.seed, 2])
            for _ in range(trainer.epoch):  # the draws of the epochs already trained: the same stream on resume
                datasets.binarize_stochastic(split.train, draws)
            for _ in range(epochs):
                trainer.fit(datasets.binarize_stochastic(split.train, draws), c_train, epochs=1, x_val=split.val,
                            c_val=c_val, progress=False, checkpoint=str(checkpoint))
                if not args.no_progress:
                    print(f"epoch {trainer.epoch}: training loss {trainer.history.train_loss[-1]:.3f}",
                          file=sys.stderr)
        elif epochs > 0:
            trainer.fit(split.train, c_train, epochs=epochs, x_val=split.val, c_val=c_val,
                        progress=not args.no_progress, checkpoint=str(checkpoint))
    except NonFiniteError as exc:
        detail = str(exc).split(", got ", 1)[-1].split("; lower", 1)[0]
        kept = (f"the last good checkpoint, epoch {trainer.epoch}, is kept in {checkpoint}" if checkpoint.is_file()
                else "nothing of this run was saved")
        raise NonFiniteError(f"--lr: expected a learning rate under which training stays finite, got --lr "
                             f"{args.lr:g}, with {detail}; lower it; {kept}") from exc
    except OSError as exc:
        raise _out_error(exc, args.out, f"the checkpoint; {args.interrupted()}") from exc
    rng = default_rng(args.seed, device)
    lines = _likelihood_lines(model, record, split.test, c_test, args.k, rng, "test", flag="--lr")  # or an error
    try:
        runs.write_json(out / runs.HISTORY, trainer.history.to_dict())
        write_png(out / runs.PICTURE, _picture(model, args.dataset, split.test, c_test, rng))
    except OSError as exc:
        raise _out_error(exc, args.out, f"{runs.HISTORY} and {runs.PICTURE} (the checkpoint is saved)") from exc
    print(f"checkpoint: {checkpoint}\npicture:    {out / runs.PICTURE}")
    for line in lines:
        print(line)
    _report_active_units(model, split.test, c_test, args.dataset)
    return 0


def _out_error(exc: OSError, out: str, what: str) -> OSError:
    """An error writing into ``--out`` (a full disk, a read-only folder), naming the flag and the reason."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc  # the reason below any message of ours
    reason = cause.strerror or str(cause)
    return type(exc)(exc.errno, f"--out: expected a writable folder with room for {what}, got {out!r}: {reason}")


def _saved_epoch(checkpoint: Path) -> str:
    """What an interrupted ``train`` leaves: the epoch its checkpoint holds (read from the file)."""
    try:
        epoch = load_checkpoint(checkpoint)[1]["trainer"]["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no epoch was completed, nothing of this run was saved"
    return f"the checkpoint {checkpoint} holds epoch {epoch}; continue with --resume"


def _check_data_dir(args, dataset: str) -> None:
    """``--data-dir``: only with MNIST, and a folder (created if missing), not a file."""
    if args.data_dir is None:
        return
    if dataset != "mnist":
        raise ValueError(f"--data-dir: expected only with --dataset mnist (where MNIST's files are kept), got it "
                         f"with --dataset {dataset}")
    if Path(args.data_dir).exists() and not Path(args.data_dir).is_dir():
        raise NotADirectoryError(f"--data-dir: expected a folder (created if missing), got {args.data_dir!r}, "
                                 "which is a file")


def _check_train_sizes(args) -> None:
    """Refuse, before anything is allocated, sizes that cannot fit in memory, naming the flag."""
    D = DATA_DIMS[args.dataset]
    if args.dataset == "ring":
        check_ring_fits(args.ring_points, "--ring-points")
    config = VAEConfig(data_dim=D, latent_dim=args.latent, hidden=args.hidden, activation=args.activation,
                       likelihood=args.likelihood if args.fixed_variance is None else "gaussian_fixed",
                       n_samples=args.samples, condition_dim=10 if args.conditional else 0, init=args.init,
                       objective=args.objective, k_train=args.k_train)
    check_fits("--hidden/--latent", model_bytes(config, training=True),
               f"{param_count(config)} parameters with their gradients and optimizer moments")
    samples, flag = (args.samples, "--samples") if args.objective == "elbo" else (args.k_train, "--k-train")
    check_fits(f"--batch-size/{flag}", activation_bytes(config, args.batch_size, samples),
               f"the activations of a batch of {args.batch_size} with {samples} samples")


def _check_free_space(out: Path, config) -> None:
    """``--out`` has room for a checkpoint (and its temporary copy while it is replaced)."""
    needed = 2 * (param_count(config) * 4 * 3 + (1 << 16))  # params and two optimizer moments, float32; twice
    try:
        stat = os.statvfs(out)
    except (OSError, AttributeError):
        return
    free = stat.f_bavail * stat.f_frsize
    if free < needed:
        raise OSError(errno.ENOSPC, f"--out: expected a folder with at least {format_bytes(needed)} free for the "
                                    f"checkpoint, got {str(out)!r} with {format_bytes(free)} free")


def _train_likelihood(args) -> str:
    """The likelihood from ``--likelihood``, ``--fixed-variance`` and the table; conflicts name the flag."""
    given = args.likelihood if "likelihood" in args.given else None
    init_given = "init_log_var" in args.given
    if args.fixed_variance is not None:
        if given is not None and given != "gaussian_fixed":
            raise ValueError(f"--fixed-variance: expected with --likelihood gaussian_fixed (or no --likelihood), "
                             f"got --likelihood {given}")
        if init_given:
            raise ValueError("--init-log-var: expected a likelihood with a learned variance, got --fixed-variance "
                             f"{args.fixed_variance:g} (the variance is then held fixed)")
        args.init_log_var = None
        return "gaussian_fixed"
    likelihood = given or args.likelihood
    if not get_likelihood(likelihood).learned_variance:
        if init_given:
            raise ValueError(f"--init-log-var: expected a likelihood with a learned variance (gaussian_shared, "
                             f"gaussian_per_dim or gaussian_per_example), got {likelihood!r}")
        args.init_log_var = None
    return likelihood


def set_decoder_log_var(model, log_var: float) -> None:
    """Start the decoder's log-variance at ``log_var``: the shared or per-dimension parameter, or for
    ``gaussian_per_example`` the bias of the decoder's log-variance outputs (its weights then add around it)."""
    likelihood = model.likelihood
    if not likelihood.learned_variance:
        raise ValueError(f"--init-log-var: expected a likelihood with a learned variance, got {likelihood.name!r}")
    if likelihood.log_var_in_output:  # [mean, log_var] side by side: the second half of the last layer's bias
        last = len(model.layer_sizes()["decoder"]) - 2
        model.params[f"decoder.{last}.b"][model.config.data_dim:] = log_var
    else:
        model.params["likelihood.log_var"][...] = log_var


#: The fewest test examples on which a collapse verdict is given: the sample variance of N points has a relative
#: standard error of sqrt(2 / (N - 1)) for Gaussian data, a third or less from N = 20.
COLLAPSE_MIN_EXAMPLES = 20


def collapse_advice(config) -> str:
    """What may wake a collapsed latent space, among the flags that fit this model."""
    remedies = ["KL warm-up (--warmup)"]
    likelihood = get_likelihood(config.likelihood, config.fixed_variance)
    if likelihood.learned_variance:
        remedies.append("a smaller starting decoder variance (--init-log-var)")
    elif likelihood.log_var_shape(1, 1, 1) is not None:  # a variance, held fixed
        remedies.append("a smaller fixed decoder variance (--fixed-variance)")
    return f"Try {', '.join(remedies)} or more epochs."


def _report_active_units(model, x, c, dataset: str) -> None:
    """Print the active latent units on ``x``; warn on stderr when fewer than the data need are active."""
    active = model.active_units(x, c)
    K = model.config.latent_dim
    activity = ", ".join(f"{a:.3g}" for a in active.activity)
    print(f"active latent units: {active.count} of {K} (Cov_x E_q[z_k] > {active.threshold:g}: {activity})")
    needed = 2 if dataset == "ring" else 1  # the ring is a 2-D manifold; any data set needs at least one
    if active.count >= min(needed, K):
        return
    if x.shape[0] < COLLAPSE_MIN_EXAMPLES:
        print(f"note: no verdict on posterior collapse: the test split has {x.shape[0]} examples, too few to "
              f"estimate the latent units' activity (at least {COLLAPSE_MIN_EXAMPLES})", file=sys.stderr)
        return
    what = "POSTERIOR COLLAPSE" if active.count == 0 else "PARTIAL POSTERIOR COLLAPSE"
    print(f"minivae train: warning: {what}: only {active.count} of {K} latent units are active (the data "
          f"need at least {needed}); the decoder ignores z. {collapse_advice(model.config)}", file=sys.stderr)


def cmd_sample(args) -> int:
    out = _output_path(args.out, (".png", ".npy"))
    model = _load_model(args.checkpoint, _device(args))
    check_fits("--n", activation_bytes(model.config, args.n, 1, model.dtype.itemsize) + args.n * 4 *
               model.config.data_dim * 8, f"{args.n} samples of {model.config.data_dim} features")
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
    if not np.isfinite(x).all():
        raise NonFiniteError(f"--checkpoint: expected a model whose samples are finite, got NaN or infinity in "
                             f"{int((~np.isfinite(x)).any(axis=1).sum())} of {args.n} samples; nothing was written")
    side = int(round(np.sqrt(model.config.data_dim)))
    if out.suffix == ".png" and side * side != model.config.data_dim:
        raise ValueError(f"--out: expected a .npy path for data of {model.config.data_dim} features (a PNG "
                         f"needs square images), got {args.out!r}")
    try:
        if out.suffix == ".npy":
            np.save(out, x)
        else:
            write_png(out, image_grid(np.clip(x, 0, 1), (side, side), min(args.n, 10), scale=max(1, 32 // side)))
    except OSError as exc:
        raise _out_error(exc, args.out, f"{args.n} samples") from exc
    print(f"wrote {args.n} samples to {out}")
    return 0


def _load_input(path: str, model) -> np.ndarray:
    """``--input``: a .npy file holding data (N, D) for ``model``; never unpickles."""
    try:
        x = np.load(path, allow_pickle=False, mmap_mode="r")  # the header is checked against the file's size
        if isinstance(x, np.ndarray):
            check_fits("--input", 3 * x.nbytes, f"the array {path!r} of shape {x.shape} {x.dtype}")
            x = np.array(x)
    except FileNotFoundError:
        raise FileNotFoundError(f"--input: expected an existing .npy file, got {path!r}") from None
    except (OSError, ValueError) as exc:  # not a .npy file, or one holding Python objects
        raise ValueError(f"--input: expected a .npy file holding a float array, got {path!r} ({exc})") from exc
    if not isinstance(x, np.ndarray):  # an .npz archive
        x.close()
        raise ValueError(f"--input: expected a .npy file holding one array, got an .npz archive {path!r}")
    return model.check_inputs(x, name="--input")[0]


def _score_record(args, model) -> dict:
    """The data ``score`` rebuilds: the checkpoint's record, each flag given overriding its part."""
    try:
        saved = load_data_record(args.checkpoint)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--checkpoint: {exc}") from exc
    if saved is None:
        saved = data_record("digits" if model.config.data_dim == 64 else "ring" if model.config.data_dim == 2
                            else "mnist", 0)
        print(f"note: the checkpoint does not record its data (written by an older minivae); assuming "
              f"{describe(saved)} unless --dataset/--data-seed/--binarize say otherwise", file=sys.stderr)
    else:
        check_data_record(saved, "--checkpoint")
    dataset = args.dataset or saved["dataset"]
    if dataset == saved["dataset"]:
        record = dict(saved)
    else:  # another data set than the model's: its own defaults
        record = data_record(dataset, saved["data_seed"])
    for key in ("data_seed", "binarize", "ring_points", "ring_noise"):
        value = getattr(args, key)
        if value is not None:
            if key.startswith("ring") and dataset != "ring":
                raise ValueError(f"--{key.replace('_', '-')}: expected only with the ring, got --dataset {dataset}")
            if key == "binarize" and dataset == "ring" and value != "none":
                raise ValueError(f"--binarize: expected 'none' for the ring, got {value!r}")
            record[key] = value
    if dataset == "ring":
        check_ring_fits(record["ring_points"], "--ring-points" if args.ring_points is not None else "--checkpoint")
    flag = "--dataset" if args.dataset is not None else "--checkpoint"
    if DATA_DIMS[dataset] != model.config.data_dim:
        raise ValueError(f"{flag}: expected data with {model.config.data_dim} features (the model's data_dim), "
                         f"got {dataset} with {DATA_DIMS[dataset]}")
    if model.conditional and (dataset == "ring" or model.config.condition_dim != 10):
        raise ValueError(f"--checkpoint: expected a conditional model with one condition per class of {dataset} "
                         f"({'none: the ring has no labels' if dataset == 'ring' else 10}), got one with "
                         f"{model.config.condition_dim}")
    if record["binarize"] != "none" and model.config.likelihood != "bernoulli":
        raise ValueError(f"{'--binarize' if args.binarize is not None else '--checkpoint'}: expected a Bernoulli "
                         f"model for binarized data (a Gaussian density of 0/1 values is not their log-likelihood), "
                         f"got a {model.config.likelihood} model with --binarize {record['binarize']}")
    return record


def cmd_score(args) -> int:
    model = _load_model(args.checkpoint, _device(args))
    rng = default_rng(args.seed, model.device)
    record = {}
    if args.input is not None:
        for flag in ("dataset", "split", "data_seed", "binarize", "ring_points", "ring_noise", "data_dir"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')}: expected only when scoring a data set, got it with "
                                 f"--input (which scores the rows of {args.input!r}); give one or the other")
        if model.conditional:
            raise ValueError("--input: expected an unconditional model (a conditional one needs labels: score it "
                             "with --dataset), got a conditional checkpoint")
        x, c = _load_input(args.input, model), None
        print(f"{x.shape[0]} examples from {args.input}")
    else:
        record = _score_record(args, model)
        _check_data_dir(args, record["dataset"])
        args.split = args.split or "test"
        split, conditions = load_dataset(record, model.conditional, args.data_dir)
        index = ("train", "val", "test").index(args.split)
        x, c = split[index], conditions[index]
        if x.shape[1] != model.config.data_dim:
            raise ValueError(f"--dataset: expected data with {model.config.data_dim} features (the model's "
                             f"data_dim), got {record['dataset']} with {x.shape[1]}")
        if args.split == "train" and record["binarize"] == "stochastic":
            x = datasets.binarize_stochastic(x, np.random.default_rng([record["data_seed"], 3]))
        print(f"scoring the {args.split} split of {describe(record)}: {x.shape[0]} examples")
    ll = model.log_likelihood(x, k=args.k, c=c, rng=rng)
    if not bool(np.isfinite(to_numpy(ll)).all()):
        bad = int((~np.isfinite(to_numpy(ll))).sum())
        raise NonFiniteError(f"{'--input' if record == {} else '--checkpoint'}: expected data to which the model "
                             f"gives a finite log-likelihood, got NaN or infinity for {bad} of {x.shape[0]} "
                             "examples; nothing is reported")
    for line in _likelihood_lines(model, record, x, c, args.k, rng, f"{args.split if record else 'input'}",
                                  ll=ll, flag="--checkpoint" if record else "--input"):
        print(line)
    if args.per_example:
        np.savetxt(sys.stdout, to_numpy(ll), fmt="%.4f")
    return 0


def cmd_gradcheck(args) -> int:
    if args.objective == "elbo" and args.k_train is not None:
        raise ValueError(f"--k-train: expected only with --objective iwae, got {args.k_train} with --objective elbo")
    k_train = 1 if args.objective == "elbo" else args.k_train or 4
    if args.objective != "elbo" and args.samples != 1:
        raise ValueError(f"--samples: expected 1 with --objective {args.objective} (its samples are --k-train), "
                         f"got {args.samples}")
    samples, flag = (args.samples, "--samples") if args.objective == "elbo" else (k_train, "--k-train")
    config = VAEConfig(data_dim=args.data_dim, latent_dim=args.latent, hidden=args.hidden, likelihood=args.likelihood,
                       n_samples=args.samples, condition_dim=args.condition_dim, activation=args.activation,
                       objective=args.objective, k_train=k_train)
    check_fits("--data-dim/--hidden/--latent", model_bytes(config, 8) * 2,
               f"{param_count(config)} float64 parameters")
    check_fits(f"--batch/{flag}", activation_bytes(config, args.batch, samples, 8),
               f"a batch of {args.batch} with {samples} samples in float64")
    rng = np.random.default_rng(args.seed)
    model = VAE(args.data_dim, args.latent, args.hidden, activation=args.activation, likelihood=args.likelihood,
                n_samples=args.samples, condition_dim=args.condition_dim, objective=args.objective, k_train=k_train,
                dtype="float64", seed=args.seed, device=_device(args))
    # non-zero everywhere, biases too; drawn on the host, so the check is the same on either device
    model.params.data[:] = to_device(rng.normal(0.0, 0.5, model.params.size), model.device)
    x = rng.random((args.batch, args.data_dim))
    if model.likelihood.unit_interval:  # binary data for a Bernoulli decoder
        x = np.round(x)
    c = datasets.one_hot(rng.integers(0, args.condition_dim, args.batch), args.condition_dim) \
        if args.condition_dim else None
    noise = rng.standard_normal((samples, args.batch, args.latent))
    errors = model_gradient_errors(model, x, c, noise=noise, beta=args.beta)
    print(f"{model}\ncentral differences in float64, step 1e-6; relative error = max|a - n| / max(max|a|, max|n|)")
    print(f"{'parameter':<22} {'shape':<12} {'max relative error':>18}")
    for name, err in errors.items():
        print(f"{name:<22} {str(model.params.shapes[name]):<12} {err:>18.2e}")
    worst = max(errors.values())
    verdict = "PASS" if worst <= TOLERANCE else "FAIL"
    print(f"{verdict}: largest error {worst:.2e} (tolerance {TOLERANCE:.0e})")
    return 0 if verdict == "PASS" else 1


def cmd_exercise(args) -> int:
    """List the exercises, print one's stub, or check a learner's file (``minivae/exercises/``)."""
    from .exercises import EXERCISES, check_file, get_exercise

    if args.action == "list":
        for name, exercise in EXERCISES.items():
            print(f"{name:<14} {exercise.function:<27} {exercise.summary}")
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
    limit = {} if args.timeout is None else {"timeout": args.timeout}
    report = check_file(args.name, args.file, **limit)  # the file runs in a child process, within the time limit
    if report.error:  # it could not be loaded or run: one line, exit 2
        raise ValueError(f"FILE: {report.error}" if not report.error.startswith("FILE:") else report.error)
    if report.printed:
        print(f"{Path(args.file).name} printed:\n" + report.printed + "\n", end="")
    print(report.text(), end="")
    if args.answer:
        print("\n" + exercise.answer(), end="")
    return report.status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minivae", description="A hand-derived variational autoencoder in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_flags(p, latent, hidden, activation, samples=1):
        p.add_argument("--latent", type=POSITIVE, default=latent, help="latent size K")
        p.add_argument("--hidden", type=_hidden, default=hidden, help="hidden widths, e.g. 128,64 ('none': linear)")
        p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=activation)
        p.add_argument("--samples", type=POSITIVE, default=samples, help="Monte Carlo samples S of z per example")
        p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="the model's seed: initial weights, noise, order")

    def data_flags(p):
        p.add_argument("--data-seed", type=NON_NEGATIVE, default=None,
                       help="fixes the ring's points and the train/validation/test split, whatever --seed is "
                            "(default 0; score: the checkpoint's)")
        p.add_argument("--ring-points", type=_integer(RING_POINTS_MIN), default=None,
                       help=f"points in the ring data set (at least {RING_POINTS_MIN}: one for validation and one "
                            "for test)")
        p.add_argument("--ring-noise", type=_number(0.0, strict=True, maximum=RING_NOISE_MAX,
                                                    why=" (ten times the ring's radius)"), default=None,
                       help="standard deviation of the ring's added noise")
        p.add_argument("--binarize", choices=datasets.BINARIZE, default=None,
                       help="grey levels as they are (none), x > 0.5 (threshold), or x ~ Bernoulli(grey) "
                            "(stochastic: afresh each training epoch, once for validation and test)")

    def device_flag(p):
        p.add_argument("--device", choices=DEVICES, default="cpu",
                       help="cpu (NumPy), cuda (CuPy on an NVIDIA GPU) or auto (the GPU if there is one)")

    t = sub.add_parser("train", help="train a VAE, save a checkpoint and a picture, print the test log-likelihood",
                       description="Flags not given take the data set's defaults (minivae.cli.TRAIN_DEFAULTS).")
    t.add_argument("--dataset", choices=DATASETS, default=None, help="default: digits")
    t.add_argument("--data-dir", default=None, help="where MNIST's IDX files are kept (downloaded on first use)")
    data_flags(t)
    t.add_argument("--epochs", type=_integer(1, MAX_EPOCHS), default=None)
    t.add_argument("--batch-size", type=POSITIVE, default=None)
    t.add_argument("--lr", type=_number(0.0, strict=True), default=None)
    t.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None, help="default: adam")
    t.add_argument("--schedule", choices=("constant", "step", "cosine"), default=None,
                   help="learning rate: constant --lr; step: times --step-factor every --step-every epochs; "
                        "cosine: from --lr down to --lr-min over --epochs")
    t.add_argument("--lr-warmup", type=EPOCHS, default=None, metavar="EPOCHS",
                   help="learning-rate warm-up: rises linearly from 0 over these epochs (0: none)")
    t.add_argument("--lr-min", type=_number(0.0), default=None, help="cosine's final learning rate (default 0)")
    t.add_argument("--step-every", type=_number(0.0, strict=True, maximum=MAX_EPOCHS,
                                                why=" epochs (minivae.cli.MAX_EPOCHS)"), default=None, metavar="EPOCHS",
                   help="step schedule: epochs between decays (default 10)")
    t.add_argument("--step-factor", type=_fraction, default=None, help="step schedule: factor in (0, 1] (default 0.5)")
    t.add_argument("--warmup", type=EPOCHS, default=None, help="KL warm-up epochs")
    t.add_argument("--likelihood", choices=LIKELIHOODS, default=None,
                   help="default: bernoulli for images, gaussian_shared for the ring")
    t.add_argument("--init-log-var", type=_log_var, default=None,
                   help="the decoder's starting log-variance (learned-variance Gaussian likelihoods)")
    t.add_argument("--fixed-variance", type=_variance, default=None,
                   help="hold the decoder's variance fixed at this value (likelihood gaussian_fixed)")
    t.add_argument("--conditional", action="store_true", default=None,
                   help="train a conditional VAE on one-hot labels")
    t.add_argument("--k", type=POSITIVE, default=1000, help="importance samples for the test log-likelihood")
    t.add_argument("--out", default="runs/minivae", help="output directory")
    t.add_argument("--overwrite", action="store_true",
                   help="--out holds another run: remove its files and start afresh")
    t.add_argument("--resume", action="store_true",
                   help="--out holds an interrupted run: continue it from its checkpoint up to --epochs (default: "
                        "the run's own); every other flag left out is the run's, one given must match it "
                        "(--engine may differ)")
    t.add_argument("--restore-previous", action="store_true",
                   help="put back the run an interrupted --overwrite set aside in --out/.previous/, and stop")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--kernels", choices=KERNELS, default="plain",
                   help="the step's elementwise work as array code, or as fused CUDA kernels (needs --device cuda)")
    t.add_argument("--engine", choices=ENGINES, default=None,
                   help="who computes the step: fast (the default for --objective elbo), or reference (the default, "
                        "and the only engine, for an importance-weighted --objective), through VAE.forward, "
                        "VAE.backward and Adam as the docs derive them; with --resume, default: the run's own")
    model_flags(t, None, None, None, None)
    t.add_argument("--objective", choices=OBJECTIVES, default=None,
                   help="what training minimises: elbo (default), iwae (the importance-weighted bound of --k-train "
                        "samples) or iwae-dreg (the same bound, the doubly reparameterised encoder gradient); the "
                        "bound trains with --engine reference")
    t.add_argument("--k-train", type=POSITIVE, default=None, metavar="K",
                   help=f"importance samples per example of the training bound (--objective iwae or iwae-dreg; "
                        f"default {IW_DEFAULTS['k_train']}, 1 for elbo)")
    t.add_argument("--init", choices=INITS, default=None,
                   help="initial weights: he (normal, variance 2/fan-in, zero biases) or torch (nn.Linear's uniform); "
                        "default: the data set's (torch, he for the ring)")
    device_flag(t)
    t.set_defaults(func=cmd_train, seed=None)  # None: 0, or the resumed run's

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
    c.add_argument("--dataset", choices=DATASETS, default=None, help="default: the data the model was trained on")
    c.add_argument("--data-dir", default=None)
    c.add_argument("--split", choices=("train", "val", "test"), default=None, help="default: test")
    data_flags(c)  # None: as the checkpoint records
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
    g.add_argument("--objective", choices=("elbo", "iwae"), default="elbo",
                   help="the loss checked: the negative ELBO, or the importance-weighted bound of --k-train samples "
                        "(iwae-dreg is not the gradient of a loss: tests/test_iwae.py checks it against its surrogate)")
    g.add_argument("--k-train", type=POSITIVE, default=None, metavar="K",
                   help="importance samples of the bound (--objective iwae; default 4)")
    model_flags(g, 3, (5, 4), "tanh")
    device_flag(g)
    g.set_defaults(func=cmd_gradcheck)

    e = sub.add_parser("exercise", help="derive a backward pass yourself; checked by finite differences")
    e.add_argument("action", choices=("list", "show", "check"))
    e.add_argument("name", nargs="?", default=None, help="the exercise, as `minivae exercise list` names it")
    e.add_argument("file", nargs="?", default=None, help="check: the Python file with your function")
    e.add_argument("--answer", action="store_true", help="also print the worked answer")
    e.add_argument("--timeout", type=_number(0.0, strict=True), default=None,
                   help="check: seconds your file may take to load and answer every case (default 60)")
    e.set_defaults(func=cmd_exercise)
    return parser


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so files are closed, temporaries removed, locks released."""


def _on_signal(signum, frame):
    """The first SIGINT or SIGTERM ends the command; those that follow are ignored while it cleans up (puts a
    previous run back, releases its lock, prints its one line), so a burst of Ctrl-C cannot cut that short."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore)  # a Python no-op, not SIG_IGN: one already pending must find a handler
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _ignore(signum, frame):
    """A signal that follows the first: the command is already ending."""


#: What to make smaller when a command runs out of memory.
REDUCE = {"train": "--batch-size, --hidden, --latent, --samples or --ring-points", "sample": "--n",
          "score": "--k or the data (--input, --dataset)", "gradcheck": "--batch, --data-dim, --hidden or --samples",
          "exercise": "nothing: report it"}

#: Exit statuses: 0 success, 1 a check that failed (gradcheck, exercise check), 2 an error or a diverged run,
#: 128 + the signal's number when interrupted (130 SIGINT, 143 SIGTERM).
EXIT_OK, EXIT_FAILED_CHECK, EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


def main(argv=None) -> int:
    """Run one command (``argv``: the words after ``minivae``; None: the program's own arguments). The first
    SIGINT or SIGTERM ends it with one line; run as the program (``argv`` None), it goes on ignoring those that
    follow until the process exits, while a caller from Python gets its own handlers back."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.interrupted = lambda: "nothing was written"
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    except ValueError:  # not the main thread: the signals keep their handlers
        pass
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # results are checked for finiteness
            return args.func(args)
    except (ValueError, TypeError, OSError, NonFiniteError) as exc:  # OSError: files, downloads
        named = isinstance(exc, OSError) and exc.strerror and ": expected" in exc.strerror  # "[Errno 28] " dropped
        print(f"minivae {args.command}: error: {exc.strerror if named else exc}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError as exc:
        detail = str(exc) if str(exc).startswith("--") else (f"out of memory ({exc or 'MemoryError'}); "
                                                               f"reduce {REDUCE[args.command]}")
        print(f"minivae {args.command}: error: {detail}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"minivae {args.command}: interrupted (SIGINT): {args.interrupted()}", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print(f"minivae {args.command}: terminated (SIGTERM): {args.interrupted()}", file=sys.stderr)
        return EXIT_SIGTERM
    finally:
        ended_by_signal = signal.getsignal(signal.SIGINT) is _ignore
        for sig, handler in previous.items():
            # As the program, ended by a signal: SIG_IGN, which Python keeps while it shuts down (it puts back
            # SIG_DFL in place of a Python handler, and a late Ctrl-C would then kill it mid-exit).
            signal.signal(sig, handler if argv is not None or not ended_by_signal else signal.SIG_IGN)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
