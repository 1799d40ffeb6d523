"""Saving and loading models and training runs, on top of :mod:`minivae.checkpoint`.

A model file holds the flat parameter buffer and, as JSON, the model's
configuration, dtype, seed and random generator state. Files hold NumPy
arrays whatever the device: a model saved on the GPU loads on the CPU and the
other way round (``device=`` on every loader). CuPy's generators cannot
report their state, so a generator that drew on the GPU is not saved; on
loading, the model's generator is seeded afresh from its seed, and the
trainer's noise generator from (seed, step count). A training file adds the
optimizer's moment buffers, its step count and hyperparameters, the trainer's
learning-rate schedule and generator state, the epoch and the loss history, so that training N epochs,
saving, loading and training M more gives exactly the parameters of N + M
uninterrupted epochs. It also records the engine that trained the run
(:mod:`minivae.engines`); a run resumes with either engine, the same maths. Files never execute code on load and are
written atomically (see :mod:`minivae.checkpoint`).

A training run is saved by :func:`minivae.train.save_trainer` (also importable from here), beside the trainer
whose :meth:`~minivae.train.Trainer.fit` checkpoints every epoch; loading it builds a trainer, here.
"""

from __future__ import annotations



import numpy as np

from .backend import resolve_device, to_device
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .engines import check_engine
from .model import VAE, VAEConfig, build_model
from .resources import available_memory, format_bytes, model_bytes, param_count
from .train import History, Trainer, check_finite_model, model_state, save_trainer
from .validate import check_int


def save_model(path, model) -> None:
    """Save a model's parameters, configuration and generator state to ``path`` (atomically).

    A model with NaN or infinite parameters is refused (:class:`~minivae.train.NonFiniteError`), never saved.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model: expected a VAE or CVAE, got {type(model).__name__}")
    check_finite_model(model, "model")
    arrays, meta = model_state(model)
    save_checkpoint(path, arrays, {"kind": "model", "model": meta})


def _restore_model(path, arrays: dict, meta, device: str):
    if not isinstance(meta, dict):
        raise CheckpointError(f"cannot load checkpoint '{path}': it holds no model")
    try:
        config = VAEConfig(**meta["config"])
        seed = check_int("seed", meta["seed"], 0)
        itemsize = np.dtype(meta["dtype"]).itemsize
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"cannot load checkpoint '{path}': bad model configuration: {exc}") from exc
    params = arrays.get("params")
    if params is None:
        raise CheckpointError(f"cannot load checkpoint '{path}': it holds no 'params' array")
    count = param_count(config)  # before building: a configuration can claim terabytes
    if params.shape != (count,) or params.dtype != np.dtype(meta["dtype"]):
        raise CheckpointError(f"cannot load checkpoint '{path}': params: expected shape ({count},) {meta['dtype']} "
                              f"for this configuration, got {params.shape} {params.dtype}")
    if model_bytes(config, itemsize) > available_memory():
        raise CheckpointError(f"cannot load checkpoint '{path}': its model needs "
                              f"{format_bytes(model_bytes(config, itemsize))}, more than the "
                              f"{format_bytes(available_memory())} of memory available")
    try:
        model = build_model(config, dtype=meta["dtype"], seed=seed, device=device)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot load checkpoint '{path}': bad model configuration: {exc}") from exc
    if params.shape != model.params.data.shape or params.dtype != model.dtype:
        raise CheckpointError(
            f"cannot load checkpoint '{path}': params: expected shape {model.params.data.shape} "
            f"{model.dtype} for this configuration, got {params.shape} {params.dtype}")
    if not np.isfinite(params).all():
        raise CheckpointError(f"cannot load checkpoint '{path}': params: expected finite values, got NaN or "
                              "infinity (a diverged model)")
    model.params.data[...] = to_device(params, model.device)
    try:
        if meta["rng"] is not None and model.device == "cpu":  # else: seeded from the seed, above
            model.rng.bit_generator.state = meta["rng"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot load checkpoint '{path}': bad generator state: {exc}") from exc
    return model


def load_model(path, device: str = "cpu"):
    """Load a model saved by :func:`save_model` or :func:`save_trainer`, onto ``device``."""
    device = resolve_device(device)
    arrays, meta = load_checkpoint(path)
    return _restore_model(path, arrays, meta.get("model"), device)


def load_trainer(path, device: str = "cpu", kernels: str = "plain", engine: str | None = None) -> Trainer:
    """Load a training run saved by :func:`save_trainer` onto ``device`` (the model is ``trainer.model``).

    ``engine`` trains the resumed run: ``None`` for the one the file records, or either of
    :data:`minivae.engines.ENGINES`, whichever saved it: the optimizers of both engines keep
    Adam's moments as the same sums in the file (eq. ``adam-sums``).

    On the CPU the run resumes exactly where it stopped. A run on a GPU resumes
    with a fresh noise stream seeded from (seed, step count), see the module docstring.
    """
    device = resolve_device(device)
    if engine is not None:
        check_engine(engine)
    arrays, meta = load_checkpoint(path)
    if meta.get("kind") != "training":
        raise CheckpointError(f"cannot load checkpoint '{path}': expected a training checkpoint, "
                              f"got kind {meta.get('kind')!r}")
    model = _restore_model(path, arrays, meta.get("model"), device)
    try:
        opt, state = meta["optimizer"], meta["trainer"]
        hyperparameters = dict(opt["hyperparameters"])
        lr = hyperparameters.pop("lr")  # the last update's; the schedule gives the next ones
        trainer = Trainer(model, opt["name"], batch_size=state["batch_size"], warmup_epochs=state["warmup_epochs"],
                          seed=state["seed"], kernels=kernels, schedule=state["schedule"],
                          engine=state["engine"] if engine is None else engine, **hyperparameters)
        trainer.optimizer.lr = lr
        moments = {key: arrays[f"optimizer.{key}"] for key in trainer.optimizer.state()}
        for key, value in moments.items():  # a wrong shape could broadcast silently into the buffer
            if value.shape != model.params.data.shape or value.dtype != model.dtype:
                raise ValueError(f"optimizer.{key}: expected shape {model.params.data.shape} {model.dtype}, "
                                 f"got {value.shape} {value.dtype}")
            if not np.isfinite(value).all():
                raise ValueError(f"optimizer.{key}: expected finite values, got NaN or infinity")
        trainer.optimizer.load_state({key: to_device(value, device) for key, value in moments.items()},
                                     check_int("optimizer.t", opt["t"], 0))
        trainer.epoch = check_int("trainer.epoch", state["epoch"], 0)
        trainer.step_count = check_int("trainer.step_count", state["step_count"], 0)
        trainer.rng.bit_generator.state = state["rng"]
        trainer.reseed_noise()  # on the GPU, from (seed, step count); on the CPU it is trainer.rng, just restored
        trainer.history = History(**state["history"])
        trainer.data = meta.get("data")
        trainer.flags = meta.get("flags")
        if trainer.flags is not None and not isinstance(trainer.flags, dict):
            raise ValueError(f"flags: expected a dict, got {trainer.flags!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot load checkpoint '{path}': bad training state: {exc}") from exc
    return trainer


def load_data_record(path) -> dict | None:
    """The record of how a training checkpoint's data were made (a dict), or None if it has none (a run trained without
    a data record, or a model saved by :func:`save_model`)."""
    _, meta = load_checkpoint(path)
    record = meta.get("data")
    if record is not None and not isinstance(record, dict):
        raise CheckpointError(f"cannot load checkpoint '{path}': its data record is not a dict: {record!r}")
    return record


__all__ = ["save_model", "load_model", "save_trainer", "load_trainer", "load_data_record", "CheckpointError"]
