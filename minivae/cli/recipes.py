"""The data sets the command line knows and how ``train`` trains on each: the recipes (:data:`TRAIN_DEFAULTS`
and the tables beside it, from which every flag left out takes its value and its help its stated default), the
data record a checkpoint keeps, and the data it stands for, loaded and split.
"""

from __future__ import annotations

import numpy as np

from .. import data as datasets
from ..model import VAEConfig
from .space import check_ring_fits

DATASETS = ("digits", "ring", "mnist")
#: Features of each data set, known before it is loaded.
DATA_DIMS = {"digits": 64, "mnist": 784, "ring": 2}
#: Each image data set's picture shape (height, width).
IMAGE_SHAPES = {"digits": (8, 8), "mnist": (28, 28)}
#: The fewest ring points that leave a validation and a test point (minivae.data.split_sizes).
RING_POINTS_MIN = next(n for n in range(1, 100) if min(datasets.split_sizes(n)) >= 1)
#: The largest --ring-noise: ten times the ring's radius; beyond it the points are noise, not a ring.
RING_NOISE_MAX = 10.0

#: What ``train`` does on each data set when a flag is not given; a flag on the command line always wins, and
#: each flag's help states these values (written from this table). digits and mnist: the settings of the
#: README's commands and figures. The ring: a held-out importance-weighted NLL within 0.05 nat of the exact value
#: on seeds 0-3, both latent dimensions active (``benchmarks/ring.py``; the gaps are in docs/results.md). Its
#: decoder variance is per example because the ring is thin across and the model's mean cannot follow it exactly;
#: S = 4 and a third hidden layer narrow the gap further (64-64 with S = 1 and a shared variance end 0.11-0.14 nat
#: away).
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
#: ``train``'s defaults under the ELBO (``--objective elbo``), taken before the data set's table: its samples are
#: ``--samples``, so ``--k-train`` is 1.
ELBO_DEFAULTS = dict(k_train=1)
#: ``train``'s defaults under an importance-weighted ``--objective`` (:mod:`minivae.iwae`), taken before the data
#: set's table: its samples are ``--k-train``, so ``--samples`` is 1. With the ring's table they are the ring's
#: recipe for the bound: ``minivae train --dataset ring --objective iwae-dreg`` ends within 0.02 nat of the exact
#: held-out NLL on seeds 0-3 (``benchmarks/ring.py --objective iwae-dreg``; the table is in docs/results.md).
IW_DEFAULTS = dict(samples=1, k_train=8)
#: ``train``'s defaults that are the same for every data set and objective.
COMMON_DEFAULTS = dict(dataset="digits", data_seed=0, optimizer="adam", lr_warmup=0.0, seed=0, conditional=False,
                       objective="elbo")
#: The learning-rate schedule's own flags, when their ``--schedule`` is chosen and they are not given (with another
#: schedule they are refused).
SCHEDULE_DEFAULTS = dict(lr_min=0.0, step_every=10.0, step_factor=0.5)

#: The ring's size and noise where no checkpoint records them (``score --dataset ring`` of a model whose
#: checkpoint records other data, or none).
RING_POINTS, RING_NOISE = 6000, 0.05


def train_defaults(dataset: str, objective: str) -> dict:
    """Every flag's value when left out of ``train --dataset dataset --objective objective``: the common table,
    then the objective's, then the data set's (the first that has the flag wins)."""
    objective_table = ELBO_DEFAULTS if objective == "elbo" else IW_DEFAULTS
    return {**TRAIN_DEFAULTS[dataset], **objective_table, **COMMON_DEFAULTS}


def train_rows(dataset: str, ring_points: int | None) -> int:
    """Training examples of ``dataset``, known before it is loaded (:func:`minivae.data.split_sizes`)."""
    if dataset == "ring":
        return datasets.split_sizes(ring_points)[0]
    if dataset == "digits":
        return datasets.split_sizes(1797)[0]  # scikit-learn's 8x8 digits
    return datasets.split_sizes(60000, 1 / 6, 0.0)[0]  # MNIST's training file, a sixth for validation


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
