"""``minivae train``: train a VAE into the folder ``--out``, save its checkpoint after every epoch, its history and
a picture, and print its held-out likelihood and active latent units.

Every flag is checked (:mod:`minivae.cli.train_flags`) before anything is created on disk, and the folder is
written only as :mod:`minivae.runs` allows: one run at a time, another run's files only with ``--overwrite``
(set aside until the new run finishes) or ``--resume`` (continued, its flags taken from its checkpoint).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .. import data as datasets
from .. import runs
from ..backend import default_rng
from ..checkpoint import load_checkpoint
from ..images import write_png
from ..likelihoods import get_likelihood
from ..model import VAEConfig, build_model
from ..schedules import steps_per_epoch
from ..serialize import load_model, load_trainer
from ..train import NonFiniteError, Trainer
from .flags import requested_device
from .recipes import check_data_record, data_record, describe, load_dataset
from .report import likelihood_lines, picture, report_active_units
from .space import check_free_space, out_error
from .train_flags import apply_defaults, check_train_flags, lr_schedule, run_flags


def cmd_train(args) -> int:
    device = requested_device(args)
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
    apply_defaults(args)
    check_train_flags(args)
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
    for dest, value in runs.resumed_flags(vars(args), runs.stored_flags(trainer), checkpoint).items():
        setattr(args, dest, value)
    return trainer


def _stored_objective(checkpoint):
    """The objective of the model in ``checkpoint``, or None when it cannot be read."""
    try:
        return load_model(checkpoint).config.objective
    except (OSError, ValueError):
        return None


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
    if get_likelihood(likelihood).unit_interval and (split.train.min() < 0 or split.train.max() > 1):
        raise ValueError(f"--likelihood: expected a Gaussian likelihood for {args.dataset}, whose values lie "
                         f"outside [0, 1], got {likelihood!r}")
    config = VAEConfig(data_dim=split.train.shape[1], latent_dim=args.latent, hidden=args.hidden,
                       activation=args.activation, likelihood=likelihood, n_samples=args.samples,
                       condition_dim=10 if args.conditional else 0, init=args.init,
                       fixed_variance=1.0 if args.fixed_variance is None else args.fixed_variance,
                       objective=args.objective, k_train=args.k_train)
    checkpoint = out / runs.CHECKPOINT
    check_free_space(out, config)
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
                          seed=args.seed, kernels=args.kernels, schedule=lr_schedule(args, split.train.shape[0]),
                          engine=args.engine)  # None: fast for the ELBO, reference for the bound
        trainer.data = record  # saved with every checkpoint: score rebuilds the same data and split
        trainer.flags = run_flags(args)  # and --resume takes the run's other flags from it
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
        if exc.quantity is None:  # not a divergence: the message names what it is about
            raise
        kept = (f"the last good checkpoint, epoch {exc.saved_epoch}, is kept in {checkpoint}" if checkpoint.is_file()
                else "nothing of this run was saved")
        raise NonFiniteError(f"--lr: expected a learning rate under which training stays finite, got --lr "
                             f"{args.lr:g}, with {exc.describe()}; lower it; {kept}") from exc
    except OSError as exc:
        raise out_error(exc, args.out, f"the checkpoint; {args.interrupted()}") from exc
    rng = default_rng(args.seed, device)
    lines = likelihood_lines(model, record, split.test, c_test, args.k, rng, "test", flag="--lr")  # or an error
    try:
        runs.write_json(out / runs.HISTORY, trainer.history.to_dict())
        write_png(out / runs.PICTURE, picture(model, args.dataset, split.test, c_test, rng))
    except OSError as exc:
        raise out_error(exc, args.out, f"{runs.HISTORY} and {runs.PICTURE} (the checkpoint is saved)") from exc
    print(f"checkpoint: {checkpoint}\npicture:    {out / runs.PICTURE}")
    for line in lines:
        print(line)
    report_active_units(model, split.test, c_test, args.dataset)
    return 0


def _saved_epoch(checkpoint: Path) -> str:
    """What an interrupted ``train`` leaves: the epoch its checkpoint holds (read from the file)."""
    try:
        epoch = load_checkpoint(checkpoint)[1]["trainer"]["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no epoch was completed, nothing of this run was saved"
    return f"the checkpoint {checkpoint} holds epoch {epoch}; continue with --resume"


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
