r"""Minibatch training: shuffle, step, watch for non-finite values, keep a history.

Each step gathers a minibatch into reused buffers, computes the gradient of
the negative ELBO by hand and lets the optimizer update the flat parameter
buffer. Two engines compute the step (:mod:`minivae.engines`): ``"fast"``, the
default (:mod:`minivae.fast`, the allocation-free twin of
:meth:`minivae.model.VAE.loss_and_grads`), and ``"reference"``, which runs
:meth:`~minivae.model.VAE.forward`, :meth:`~minivae.model.VAE.backward` and the
optimizer's update as the derivations write them; a test pins the two step for step. KL warm-up multiplies the KL by
:math:`\beta_t = \min(1, t / T_{\text{warm-up}})` over the first steps, which
keeps the decoder from being ignored early on (posterior collapse).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from .backend import default_rng, generator_state, get_array_module, take_rows, to_numpy
from .checkpoint import save_checkpoint
from .cores import held_for
from .engines import check_engine, default_engine, make_step
from .fast import largest_product
from .kl import kl_per_dim
from .model import VAE
from .optim import OPTIMIZERS, make_optimizer
from .schedules import Constant, make_schedule, warmup_factor
from .validate import check_bool, check_file_path, check_float, check_int


class NonFiniteError(FloatingPointError):
    """A NaN or infinity where a finite number is needed: a diverged training run, or a model whose parameters or
    results are not finite (those callers pass their message as the only argument).

    Training raises it with the fields that say what and where: ``quantity`` (``"loss"``, ``"gradient"`` or
    ``"parameters"`` of one step; ``"training loss"`` or ``"validation loss"`` of an epoch), its ``value`` where
    one number was read (None for an array), the ``epoch`` and the ``step`` (both counted from 1; ``step`` is None
    for an epoch's loss) and ``unchecked``: on a GPU the verdicts are read only with the loss, so the fault may lie
    in any step since the last check. Its message is written from these fields here alone (:meth:`__str__`);
    :meth:`describe` is the part that says what was found, for callers that name their own flag.
    """

    def __init__(self, message: str | None = None, *, quantity: str | None = None, value: float | None = None,
                 step: int | None = None, epoch: int | None = None, unchecked: bool = False):
        super().__init__(*(() if message is None else (message,)))
        self.quantity, self.value, self.step, self.epoch, self.unchecked = quantity, value, step, epoch, unchecked

    @property
    def saved_epoch(self) -> int | None:
        """The last epoch a checkpoint of the run can hold: the one before the epoch that failed."""
        return None if self.epoch is None else self.epoch - 1

    def describe(self) -> str:
        """What was found not finite, and where, in words."""
        if self.quantity is None:
            return super().__str__()
        if self.quantity == "parameters":
            return (f"parameters that became NaN or infinite by step {self.step} (epoch {self.epoch}, after the "
                    "epoch's last update)")
        if self.step is None:
            return f"a {self.quantity} of {self.value} in epoch {self.epoch}"
        return (f"a non-finite {self.quantity} at step {self.step} (epoch {self.epoch})"
                + (" or in the steps since the last check" if self.unchecked else "")
                + ("" if self.value is None else f": {self.quantity}={self.value}"))

    def __str__(self) -> str:
        if self.quantity is None:
            return super().__str__()
        return (f"lr: expected a learning rate under which training stays finite, got {self.describe()}; lower the "
                f"learning rate (lr) or check the data; the last checkpoint, if any, holds epoch {self.saved_epoch}")


@dataclass
class History:
    r"""What each epoch of training did, in nats per example; one entry per epoch in every list.

    ``train_loss`` is the mean of the minimised loss :math:`\beta\,\mathrm{KL} + \text{NLL}` over the epoch's
    steps where it was computed (every ``log_every``-th and the last): the negative ELBO only once KL warm-up is
    over (:math:`\beta = 1`), below it during warm-up. ``train_kl`` and ``train_nll`` are its two terms, unweighted
    (the KL to the prior and the reconstruction term :math:`E_q[-\log p(x|z)]`), over the same steps, and
    ``train_kl_per_dim`` the KL split over the latent dimensions (K numbers per epoch; a dimension near 0 is
    unused: posterior collapse). ``val_loss`` is the negative ELBO (:math:`\beta = 1`) on the validation data,
    ``val_kl``, ``val_nll`` and ``val_kl_per_dim`` its parts. For a model trained on the importance-weighted bound
    (``config.objective``, :mod:`minivae.iwae`) both losses are the negative bound of ``k_train`` samples and the
    KLs (but not the per-dimension ones, which stay analytic) are its Monte Carlo estimates.
    """

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    train_kl: list = field(default_factory=list)
    train_nll: list = field(default_factory=list)
    train_kl_per_dim: list = field(default_factory=list)
    val_kl: list = field(default_factory=list)
    val_nll: list = field(default_factory=list)
    val_kl_per_dim: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {name: [list(v) if isinstance(v, list) else v for v in getattr(self, name)]
                for name in self.__dataclass_fields__}


class Trainer:
    """Trains a :class:`~minivae.model.VAE` or CVAE by minibatch gradient descent.

    Parameters
    ----------
    model : VAE
    optimizer : ``"adam"`` or ``"sgd"``
    lr : float, optional
        Learning rate, constant (default 1e-3). With a ``schedule``, leave it out: the schedule has its own.
    batch_size : int
    warmup_epochs : float
        Epochs over which the KL weight rises linearly from 0 to 1 (0: none).
    seed : int
        Seeds the shuffling and the noise, so a run is reproducible.
    kernels : ``"plain"`` or ``"fused"``
        The elementwise work of the step as array code, or as fused CUDA
        kernels (a model on ``device="cuda"`` only); see :mod:`minivae.ops`.
        Fused kernels are the fast engine's.
    schedule : :class:`~minivae.schedules.Schedule` or dict, optional
        The learning rate at every step (:mod:`minivae.schedules`), an instance or
        its spec (``{"name": "cosine", "lr": 1e-3, "total_steps": 5000}``); the
        optimizer's ``lr`` is set from it before every update. Default: ``Constant(lr)``.
    **optimizer_options
        E.g. ``momentum=0.9`` for SGD, ``beta1``, ``beta2``, ``eps`` for Adam.
    engine : ``"fast"``, ``"reference"`` or None
        Who computes the step (:mod:`minivae.engines`): the fast twin (None: the default for the ELBO; an
        importance-weighted objective trains with the reference only, its default), or the code the derivations
        walk through, :meth:`VAE.forward <minivae.model.VAE.forward>`, :meth:`VAE.backward
        <minivae.model.VAE.backward>` and the update of eq. ``adam`` (or ``sgd``) as written, nothing in place and
        on one thread, where a debugger's breakpoint is reached. The two train alike (``tests/test_engines.py``).
    """

    def __init__(self, model, optimizer: str = "adam", lr: float | None = None, batch_size: int = 128,
                 warmup_epochs: float = 0.0, seed: int = 0, kernels: str = "plain", *, schedule=None,
                 engine: str | None = None, **optimizer_options):
        if not isinstance(model, VAE):
            raise TypeError(f"model: expected a VAE or CVAE, got {type(model).__name__}")
        self.model = model
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.warmup_epochs = check_float("warmup_epochs", warmup_epochs, minimum=0.0)
        self.seed = check_int("seed", seed, 0)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        self.schedule = _resolve_schedule(schedule, lr)
        _check_optimizer_options(type(self).__name__, optimizer, optimizer_options)
        engine = default_engine(model) if engine is None else engine  # "fast" for the ELBO, else "reference"
        self.engine = check_engine(engine)
        self.engine_step = make_step(engine, model, kernels)  # FastStep or ReferenceStep
        self.kernels = kernels
        self.optimizer = make_optimizer(optimizer, model.params, engine, lr=self.schedule(0),
                                        ops=getattr(self.engine_step, "ops", None), **optimizer_options)
        self.rng = np.random.default_rng(seed)  # shuffling, and the noise on the CPU
        self.epoch = 0
        self.step_count = 0
        self.history = History()
        self.data = None  # how the training data were made (a JSON-able dict, e.g. the CLI's), saved in checkpoints
        self.flags = None  # the flags that shape the rest of the run (the CLI's, JSON-able), saved in checkpoints
        self.reseed_noise()
        self._unchecked = None  # on a GPU: the verdict on the gradients since the last check (see check_finite)
        self._finite = model.params.xp.empty(model.params.size, dtype=bool)  # isfinite(grad), reused every step
        self._products = {}  # batch size -> the step's largest matrix product (see _threads)

    def reseed_noise(self):
        """The generator of the step's noise: the trainer's own on the CPU, one on the GPU that draws there.

        A CuPy generator's state cannot be saved, so on the GPU it is seeded from
        (seed, step count): a resumed run draws a fresh, reproducible stream.
        """
        if self.model.device == "cpu":
            self.noise_rng = self.rng
        else:
            self.noise_rng = default_rng(np.random.SeedSequence([self.seed, self.step_count]), self.model.device)

    # ------------------------------------------------------------------ one step

    def beta(self, steps_per_epoch: int) -> float:
        r"""The KL weight at the current step: :math:`\beta_t = \min(1, (t + 1) / T)` over the first
        ``warmup_epochs`` epochs (:func:`minivae.schedules.warmup_factor`)."""
        return warmup_factor(self.step_count, self.warmup_epochs * steps_per_epoch)

    def train_step(self, x, c=None, beta: float = 1.0):
        """Forward, backward and update on one minibatch ``x`` (and ``c``). Returns the loss (0-d array)."""
        x, c = self.model.check_inputs(x, c)
        ws = self.engine_step.workspace(x.shape[0])
        ws.x[...] = x
        if c is not None:
            ws.enc_in[:, x.shape[1]:] = c
        with self._threads(ws.n):
            return self._step(ws, beta, need_loss=True)

    def workspace(self, batch_size: int):
        """The reused buffers of a step on ``batch_size`` rows, for :meth:`step` (a :class:`minivae.fast.Workspace`,
        or with the reference engine a :class:`minivae.engines.Batch`).

        Write a minibatch into ``ws.x`` (N, D) (a CVAE's condition into ``ws.enc_in[:, D:]``), then call
        ``step(ws)`` as often as wanted: :meth:`fit` does exactly this for every minibatch, without copying the
        batch again. The same buffers come back for the same batch size.
        """
        return self.engine_step.workspace(check_int("batch_size", batch_size, 1))

    def step(self, ws, beta: float = 1.0, need_loss: bool = False):
        """One training step (forward, backward, update) on the batch already in ``ws`` (:meth:`workspace`).

        ``beta`` weights the KL (1: the negative ELBO). The loss, a 0-d array on the model's device, is computed
        only with ``need_loss=True`` (the gradient does not need it); otherwise the step returns None.
        """
        beta, need_loss = check_float("beta", beta, minimum=0.0), check_bool("need_loss", need_loss)
        with self._threads(ws.n):
            return self._step(ws, beta, need_loss)

    def _threads(self, n: int):
        """The BLAS's threads for steps on ``n`` examples: one for small products (:func:`minivae.cores.held_for`).
        The product's size is worked out once per batch size; a GPU's steps use no BLAS (infinity: left alone)."""
        if n not in self._products:
            self._products[n] = largest_product(self.model, n) if self.model.device == "cpu" else math.inf
        return held_for(self._products[n])

    def _step(self, ws, beta: float, need_loss: bool):
        """The step on the batch already in the workspace ``ws`` (see :mod:`minivae.engines`)."""
        loss = self.engine_step(ws, self.noise_rng, beta=beta, need_loss=need_loss)
        self.check_finite(loss)
        self.optimizer.lr = self.schedule(self.step_count)  # a host float: the update's scalar argument, no sync
        self.optimizer.step()
        self.step_count += 1
        return loss

    def _check_params_finite(self) -> None:
        """Stop when the parameters hold NaN or infinity after an epoch's last update: an update can overflow even
        after a finite gradient (the last step of an epoch included), and nothing diverged is saved or reported."""
        xp = get_array_module(self.model.params.data)
        if not bool(xp.isfinite(self.model.params.data).all()):
            raise NonFiniteError(quantity="parameters", step=self.step_count, epoch=self.epoch + 1)

    def check_finite(self, loss):
        """Stop at a non-finite loss or gradient; one reduction watches the whole gradient buffer.

        On the CPU every step is checked. On a GPU, reading a value back waits for
        the device, so the verdicts are combined on the device and read only with
        the loss (every ``log_every`` steps); the error then names the steps since
        the last check.
        """
        xp = get_array_module(self.model.params.grad)
        grad_ok = xp.isfinite(self.model.params.grad, out=self._finite).all()  # a 0-d boolean array, not yet read
        if self.model.device != "cpu":
            self._unchecked = grad_ok if self._unchecked is None else self._unchecked & grad_ok
            if loss is None:
                return
            grad_ok, self._unchecked = self._unchecked, None
        loss_ok = loss is None or bool(xp.isfinite(loss))
        if not (loss_ok and bool(grad_ok)):
            raise NonFiniteError(quantity="gradient" if loss_ok else "loss", value=None if loss_ok else float(loss),
                                 step=self.step_count + 1, epoch=self.epoch + 1, unchecked=self.model.device != "cpu")

    # ------------------------------------------------------------------ epochs

    def fit(self, x, c=None, *, epochs: int = 10, x_val=None, c_val=None, progress: bool = True,
            log_every: int = 10, checkpoint: str | None = None) -> History:
        """Train for ``epochs`` more epochs; returns the (cumulative) :class:`History`.

        ``x`` (N, D) and optionally ``c`` (N, C); ``x_val``/``c_val`` are scored
        (negative ELBO, beta = 1) after every epoch. The training loss is
        computed every ``log_every`` steps and on each epoch's last step (the
        gradient does not need it); the history records their mean. With ``checkpoint`` a path,
        the model and the whole training state are saved there (atomically)
        after every epoch, so an interrupted run resumes with
        :func:`minivae.serialize.load_trainer` exactly where it stopped.
        """
        model = self.model
        epochs = check_int("epochs", epochs, 1)
        log_every = check_int("log_every", log_every, 1)
        x, c = model.check_inputs(x, c)
        if x_val is not None:
            x_val, c_val = model.check_inputs(x_val, c_val, name="x_val", c_name="c_val")
        elif c_val is not None:
            raise ValueError("c_val: expected None when x_val is None (there is nothing to condition), got an array")
        if checkpoint is not None:  # a path that cannot take the checkpoint, found before training, not after an epoch
            check_file_path("checkpoint", checkpoint)
        n = x.shape[0]
        if self.batch_size > n:
            raise ValueError(f"batch_size: expected at most the number of training examples ({n}), "
                             f"got {self.batch_size}")
        steps_per_epoch = math.ceil(n / self.batch_size)
        xp = get_array_module(x)
        D = model.config.data_dim
        bar = _progress(epochs * steps_per_epoch, progress)
        with self._threads(self.batch_size), (nullcontext() if bar is None else bar):  # tqdm closes on exit
            for _ in range(epochs):
                order = xp.asarray(self.rng.permutation(n))
                total, counted, terms = 0.0, 0, [0.0, 0.0, 0.0]  # loss; KL, NLL, KL per dimension
                for i in range(steps_per_epoch):
                    idx = order[i * self.batch_size:(i + 1) * self.batch_size]
                    ws = self.engine_step.workspace(idx.shape[0])
                    take_rows(x, idx, out=ws.x)  # the minibatch, into a reused buffer
                    if c is not None:
                        take_rows(c, idx, out=ws.enc_in[:, D:])
                    need_loss = (i + 1) % log_every == 0 or i + 1 == steps_per_epoch
                    loss = self._step(ws, self.beta(steps_per_epoch), need_loss)
                    if bar is not None:
                        bar.update(1)
                    if need_loss:
                        total, counted = total + loss * idx.shape[0], counted + idx.shape[0]
                        terms = [t + v * idx.shape[0] for t, v in zip(terms, self.engine_step.terms)]
                        if bar is not None:
                            bar.set_postfix(epoch=self.epoch + 1, loss=f"{float(loss):.3f}", refresh=False)
                self._check_params_finite()  # before anything is recorded
                train_loss = float(total) / counted
                val_parts = []  # recorded only once the epoch is known to be finite
                val_loss = None if x_val is None else self._evaluate(x_val, c_val, lambda *a: val_parts.append(a))
                for name, value in (("training", train_loss), ("validation", val_loss)):
                    if value is not None and not math.isfinite(value):
                        raise NonFiniteError(quantity=f"{name} loss", value=value, epoch=self.epoch + 1)
                self.epoch += 1
                self.history.train_loss.append(train_loss)
                self._record("train", *(to_numpy(t) / counted for t in terms))
                if x_val is not None:
                    self.history.val_loss.append(val_loss)
                    self._record(*val_parts[0])
                if checkpoint is not None:
                    save_trainer(checkpoint, self, argument="checkpoint")
        return self.history

    def _record(self, part: str, kl, nll, kl_per_dim) -> None:
        """Append one epoch's KL, reconstruction term and KL per dimension to the history's ``part`` lists."""
        getattr(self.history, f"{part}_kl").append(float(kl))
        getattr(self.history, f"{part}_nll").append(float(nll))
        getattr(self.history, f"{part}_kl_per_dim").append([float(v) for v in kl_per_dim])

    def evaluate(self, x, c=None, batch_size: int = 1024) -> float:
        """Mean negative ELBO (beta = 1) over ``x``; its noise comes from a fixed seed, so it is comparable across epochs."""
        return self._evaluate(x, c, None, batch_size)

    def _evaluate(self, x, c, record, batch_size: int = 1024) -> float:
        """:meth:`evaluate`; ``record("val", kl, nll, kl_per_dim)``, if given, receives the means of the parts."""
        batch_size = check_int("batch_size", batch_size, 1)
        x, c = self.model.check_inputs(x, c)
        rng = default_rng(self.seed + 1, self.model.device)
        total, kl, nll, n = 0.0, 0.0, 0.0, x.shape[0]
        kl_dims = np.zeros(self.model.config.latent_dim)
        for start in range(0, n, batch_size):
            xb, cb = x[start:start + batch_size], None if c is None else c[start:start + batch_size]
            loss = self.model.loss(xb, cb, rng=rng)
            rows = xb.shape[0]
            total, kl, nll = total + float(loss.total) * rows, kl + float(loss.kl) * rows, nll + float(loss.nll) * rows
            if record is not None:
                mu, log_var = self.model.encode(xb, cb)
                kl_dims += to_numpy(kl_per_dim(mu, log_var).sum(axis=0))
        if record is not None:
            record("val", kl / n, nll / n, kl_dims / n)
        return total / n


def _check_optimizer_options(caller: str, optimizer: str, options: dict) -> None:
    """Keywords left over for the optimizer must be its options: a typo names ``caller``, not ``__init__``."""
    import inspect

    accepted = [name for name, p in inspect.signature(OPTIMIZERS[optimizer]).parameters.items()
                if name not in ("params", "lr", "ops") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"{caller}: expected keyword arguments of {caller} or options of the {optimizer!r} "
                        f"optimizer {accepted}, got unexpected {', '.join(map(repr, unknown))}")


def _resolve_schedule(schedule, lr):
    """The trainer's schedule: ``Constant(lr)`` without one; with one, ``lr`` left out or equal to its own."""
    if schedule is None:
        return Constant(1e-3 if lr is None else lr)
    schedule = make_schedule(schedule)  # TypeError/ValueError naming `schedule`
    if lr is not None and check_float("lr", lr) != schedule.lr:
        raise ValueError(f"lr: expected None (or {schedule.lr}, the schedule's own) when a schedule is given, "
                         f"got {lr}; schedule={schedule!r}")
    return schedule


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="training", unit="step", leave=True)


# ---------------------------------------------------------------------- saving (loading: minivae.serialize)


def non_finite_parameters(params) -> list:
    """The names of the parameters in ``params`` (a ParamBuffer) holding NaN or infinity."""
    host = to_numpy(params.data)
    if np.isfinite(host).all():
        return []
    return [name for name, (start, stop) in params.offsets.items() if not np.isfinite(host[start:stop]).all()]


def check_finite_model(model, argument: str) -> None:
    """Refuse to save a diverged model: a file never holds NaN or infinite parameters; ``argument`` names it."""
    bad = non_finite_parameters(model.params)
    if bad:
        raise NonFiniteError(f"{argument}: expected finite parameters, got NaN or infinity in {bad}; the model "
                             "diverged (lower the learning rate, lr) and is not saved")


def model_state(model) -> tuple[dict, dict]:
    """What a file holds of a model: its arrays (the flat parameter buffer, on the host) and its JSON part
    (configuration, dtype, seed, generator state)."""
    arrays = {"params": to_numpy(model.params.data)}
    meta = {"config": model.config.to_dict(), "dtype": model.dtype.name, "seed": model.seed,
            "rng": generator_state(model.rng)}  # None for a generator on the GPU
    return arrays, meta


def save_trainer(path, trainer: Trainer, *, argument: str = "path") -> None:
    """Save the model and the whole training state, so training resumes exactly.

    A diverged state (NaN or infinite parameters or losses in the history) is refused, never saved;
    ``argument`` is the caller's name for ``path`` in error messages.
    """
    if not isinstance(trainer, Trainer):
        raise TypeError(f"trainer: expected a Trainer, got {type(trainer).__name__}")
    check_finite_model(trainer.model, "trainer")
    for name, values in trainer.history.to_dict().items():
        if not all(math.isfinite(v) for v in values if isinstance(v, float)):
            raise NonFiniteError(f"trainer: expected a finite history, got NaN or infinity in {name}; the model "
                                 "diverged (lower the learning rate, lr) and is not saved")
    arrays, model_meta = model_state(trainer.model)
    opt = trainer.optimizer
    for key, value in opt.state().items():
        arrays[f"optimizer.{key}"] = to_numpy(value)
    meta = {
        "kind": "training",
        "model": model_meta,
        "optimizer": {"name": opt.name, "hyperparameters": opt.hyperparameters(), "t": opt.t},
        "trainer": {"batch_size": trainer.batch_size, "warmup_epochs": trainer.warmup_epochs,
                    "seed": trainer.seed, "epoch": trainer.epoch, "step_count": trainer.step_count,
                    "engine": trainer.engine,
                    "schedule": trainer.schedule.to_dict(),  # with step_count: the next learning rates, exactly
                    "rng": trainer.rng.bit_generator.state, "history": trainer.history.to_dict()},
    }
    if trainer.data is not None:  # how the training data were made (the CLI's record): score rebuilds them
        meta["data"] = trainer.data
    if trainer.flags is not None:  # the run's other flags (the CLI's): a resumed run takes them
        meta["flags"] = trainer.flags
    save_checkpoint(path, arrays, meta, argument=argument)


def fit(model, x, c=None, *, epochs: int = 10, batch_size: int = 128, optimizer: str = "adam",
        lr: float | None = None, warmup_epochs: float = 0.0, seed: int = 0, x_val=None, c_val=None,
        progress: bool = True, checkpoint: str | None = None, kernels: str = "plain", schedule=None,
        engine: str | None = None, **optimizer_options) -> History:
    """Train ``model`` in place (a one-call wrapper around :class:`Trainer`).

    ``lr`` defaults to 1e-3, constant; ``schedule`` (a :class:`~minivae.schedules.Schedule` or its dict spec)
    replaces it by a learning rate per step. Its steps count updates: ``epochs * steps_per_epoch(N, batch_size)``
    of them in this call (:func:`minivae.schedules.steps_per_epoch`). ``engine="reference"`` trains through
    :meth:`VAE.forward <minivae.model.VAE.forward>` and :meth:`VAE.backward <minivae.model.VAE.backward>`
    (:class:`Trainer`, :mod:`minivae.engines`).
    """
    if optimizer in OPTIMIZERS:
        _check_optimizer_options("fit", optimizer, optimizer_options)
    trainer = Trainer(model, optimizer, lr=lr, batch_size=batch_size, warmup_epochs=warmup_epochs, seed=seed,
                      kernels=kernels, schedule=schedule, engine=engine, **optimizer_options)
    return trainer.fit(x, c, epochs=epochs, x_val=x_val, c_val=c_val, progress=progress, checkpoint=checkpoint)
