"""``train``'s flags before anything runs: those left out take the recipe's values (:mod:`minivae.cli.recipes`),
then every flag is checked against its meaning, the others and the sizes it implies, each refusal naming the
flag; and the flags that shape the rest of the run, which its checkpoint keeps for ``--resume``."""

from __future__ import annotations

from ..iwae import check_objective
from ..likelihoods import get_likelihood
from ..model import VAEConfig
from ..schedules import schedule_in_epochs, steps_per_epoch
from .flags import OBJECTIVE_FLAGS, check_data_dir
from .recipes import COMMON_DEFAULTS, DATA_DIMS, SCHEDULE_DEFAULTS, train_defaults, train_rows
from .space import check_ring_fits, check_training_fits


def apply_defaults(args) -> None:
    """Fill every ``train`` flag left at None from the tables for ``--dataset`` and ``--objective``
    (:func:`minivae.cli.recipes.train_defaults`); refuse the ring's flags elsewhere and ``--binarize`` on the
    ring."""
    for key in ("dataset", "objective"):
        if getattr(args, key) is None:
            setattr(args, key, COMMON_DEFAULTS[key])
    for key, value in train_defaults(args.dataset, args.objective).items():
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


def check_train_flags(args) -> None:
    """The flags against their meaning, each other and the sizes they imply, before anything is read or made."""
    check_schedule_flags(args)
    args.model_likelihood = _train_likelihood(args)
    if get_likelihood(args.model_likelihood).unit_interval and args.dataset == "ring":
        raise ValueError(f"--likelihood: expected a Gaussian likelihood for ring, whose values lie outside [0, 1], "
                         f"got {args.model_likelihood!r}")
    if args.binarize != "none" and not get_likelihood(args.model_likelihood).unit_interval:
        raise ValueError(f"--binarize: expected --likelihood bernoulli with binarized data (a Gaussian density of "
                         f"0/1 values is not their log-likelihood: it grows without bound as the variance shrinks), "
                         f"got --binarize {args.binarize} with --likelihood {args.model_likelihood}")
    check_objective(args.objective, args.samples, args.k_train, args.engine, OBJECTIVE_FLAGS)
    check_data_dir(args.data_dir, args.dataset)
    check_train_sizes(args)
    rows = train_rows(args.dataset, args.ring_points)
    if args.batch_size > rows:
        raise ValueError(f"--batch-size: expected at most the number of training examples ({rows}), "
                         f"got {args.batch_size}")


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


def check_schedule_flags(args) -> None:
    """The schedule's flags fit together (found before anything is read or written)."""
    for flag, value, needs in (("--lr-min", args.lr_min, "cosine"), ("--step-every", args.step_every, "step"),
                               ("--step-factor", args.step_factor, "step")):
        if value is not None and args.schedule != needs:
            raise ValueError(f"{flag}: expected only with --schedule {needs}, got --schedule {args.schedule}")
    if args.lr_min is not None and args.lr_min > args.lr:
        raise ValueError(f"--lr-min: expected at most --lr ({args.lr}), got {args.lr_min}")


def _schedule_flag(args, key: str):
    """The schedule's flag ``key`` as given, else its default (:data:`minivae.cli.recipes.SCHEDULE_DEFAULTS`)."""
    value = getattr(args, key)
    return SCHEDULE_DEFAULTS[key] if value is None else value


def lr_schedule(args, n_train: int):
    """The learning-rate schedule of ``--schedule``, ``--lr``, ``--lr-warmup``, ``--lr-min``, ``--step-every``,
    ``--step-factor``, in epochs of ``n_train`` examples (converted to steps, :mod:`minivae.schedules`)."""
    check_schedule_flags(args)
    return schedule_in_epochs(args.schedule, args.lr, epochs=args.epochs,
                              steps_per_epoch=steps_per_epoch(n_train, args.batch_size), warmup=args.lr_warmup,
                              lr_min=_schedule_flag(args, "lr_min"), every=_schedule_flag(args, "step_every"),
                              factor=_schedule_flag(args, "step_factor"))


def run_flags(args) -> dict:
    """The flags that shape the rest of the run and that the model, trainer and data record do not hold:
    saved in the checkpoint, so that ``--resume`` takes them (:func:`minivae.runs.stored_flags`). A schedule's
    own flags are None under another schedule."""
    flags = {"epochs": args.epochs, "lr_warmup": float(args.lr_warmup), "init_log_var": args.init_log_var}
    for key, schedule in (("lr_min", "cosine"), ("step_every", "step"), ("step_factor", "step")):
        flags[key] = _schedule_flag(args, key) if args.schedule == schedule else None
    return flags


def check_train_sizes(args) -> None:
    """Refuse, before anything is allocated, sizes that cannot fit in memory, naming the flag."""
    if args.dataset == "ring":
        check_ring_fits(args.ring_points, "--ring-points")
    config = VAEConfig(data_dim=DATA_DIMS[args.dataset], latent_dim=args.latent, hidden=args.hidden,
                       activation=args.activation,
                       likelihood=args.likelihood if args.fixed_variance is None else "gaussian_fixed",
                       n_samples=args.samples, condition_dim=10 if args.conditional else 0, init=args.init,
                       objective=args.objective, k_train=args.k_train)
    samples, flag = (args.samples, "--samples") if args.objective == "elbo" else (args.k_train, "--k-train")
    check_training_fits(config, args.batch_size, samples, flag)
