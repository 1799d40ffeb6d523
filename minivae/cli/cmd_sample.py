"""``minivae sample``: new examples from a checkpoint, as a picture (``.png``) or an array (``.npy``)."""

from __future__ import annotations

import numpy as np

from .. import data as datasets
from ..backend import default_rng, to_numpy
from ..images import image_grid, write_png
from ..train import NonFiniteError
from ..validate import check_file_path
from .flags import checkpoint_model, requested_device
from .space import check_samples_fit, out_error


def cmd_sample(args) -> int:
    out = check_file_path("--out", args.out, suffixes=(".png", ".npy"))
    model = checkpoint_model(args.checkpoint, requested_device(args))
    check_samples_fit(model.config, args.n, model.dtype.itemsize)
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
        raise out_error(exc, args.out, f"{args.n} samples") from exc
    print(f"wrote {args.n} samples to {out}")
    return 0
