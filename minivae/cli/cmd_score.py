"""``minivae score``: the importance-weighted log-likelihood of data under a checkpoint: the data it was trained on
(rebuilt from the data record it keeps, any part overridden by a flag), another data set, or the rows of a
``.npy`` file (``--input``)."""

from __future__ import annotations

import sys

import numpy as np

from .. import data as datasets
from ..backend import default_rng, to_numpy
from ..resources import check_fits
from ..serialize import load_data_record
from ..train import NonFiniteError
from .flags import check_data_dir, checkpoint_model, requested_device
from .recipes import DATA_DIMS, check_data_record, data_record, describe, load_dataset
from .report import likelihood_lines
from .space import check_ring_fits


def cmd_score(args) -> int:
    model = checkpoint_model(args.checkpoint, requested_device(args))
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
        check_data_dir(args.data_dir, record["dataset"])
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
    for line in likelihood_lines(model, record, x, c, args.k, rng, f"{args.split if record else 'input'}",
                                 ll=ll, flag="--checkpoint" if record else "--input"):
        print(line)
    if args.per_example:
        np.savetxt(sys.stdout, to_numpy(ll), fmt="%.4f")
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
        print(f"note: the checkpoint does not record its data (a model saved from Python, not by minivae train); "
              f"assuming {describe(saved)} unless --dataset/--data-seed/--binarize say otherwise", file=sys.stderr)
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
