r"""Learning-rate schedules: the learning rate :math:`\eta_t` of the update at step :math:`t`.

A schedule is a small object called with the number of updates made so far,
``t = 0, 1, 2, ...``, that returns the learning rate of the next update as a
Python float (a host scalar, so that the fused CUDA update takes it as a
kernel argument and nothing waits for the device). The
:class:`~minivae.train.Trainer` sets ``optimizer.lr = schedule(step_count)``
before every update, for Adam and SGD alike.

The clock is the **step**, not the epoch: a schedule given in epochs is
converted with :func:`steps_per_epoch` (``ceil(N / batch_size)`` updates per
epoch), as :func:`epochs_to_steps` does and the command line does for its
flags. Derivations and pictures: ``docs/optimisation.md`` (eqs.
``lr-constant``, ``lr-step``, ``lr-cosine``, ``lr-warmup``).

Every schedule turns into a JSON-able dict with :meth:`Schedule.to_dict` and
back with :func:`make_schedule`, which is how checkpoints keep it: a resumed
run continues the schedule exactly where it stopped.

>>> from minivae.schedules import Cosine, Warmup
>>> s = Warmup(Cosine(1e-3, total_steps=1000, lr_min=1e-5), steps=100)
>>> round(s(0), 8), round(s(99), 8), s(1000)
(1e-05, 0.00097625, 1e-05)
"""

from __future__ import annotations

import math

from .validate import check_float, check_int

__all__ = ["Schedule", "Constant", "StepDecay", "Cosine", "Warmup", "warmup_factor", "SCHEDULES", "make_schedule",
           "steps_per_epoch", "epochs_to_steps", "schedule_in_epochs"]


class Schedule:
    """A learning rate for every step. Subclasses define :meth:`__call__`, :attr:`lr` and :meth:`to_dict`."""

    name = "schedule"
    lr: float  # the peak (starting) learning rate, eta_0

    def __call__(self, t: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.to_dict().items() if key != "name")
        return f"{type(self).__name__}({args})"


def _check_step(t) -> int:
    return check_int("t", t, 0)


class Constant(Schedule):
    r"""The same learning rate at every step (eq. ``lr-constant``): :math:`\eta_t = \eta_0`."""

    name = "constant"

    def __init__(self, lr: float):
        self.lr = check_float("lr", lr, minimum=0.0, strict_minimum=True)

    def __call__(self, t: int) -> float:
        _check_step(t)
        return self.lr

    def to_dict(self) -> dict:
        return {"name": self.name, "lr": self.lr}


class StepDecay(Schedule):
    r"""Multiply the learning rate by ``factor`` every ``every`` steps (eq. ``lr-step``).

    .. math::  \eta_t = \eta_0\, \gamma^{\lfloor t / n \rfloor},\qquad 0 < \gamma \le 1

    with :math:`n` = ``every`` and :math:`\gamma` = ``factor``. Steps ``0 .. n-1`` use
    :math:`\eta_0`, steps ``n .. 2n-1`` use :math:`\gamma \eta_0`, and so on.
    """

    name = "step"

    def __init__(self, lr: float, every: int, factor: float = 0.5):
        self.lr = check_float("lr", lr, minimum=0.0, strict_minimum=True)
        self.every = check_int("every", every, 1)
        self.factor = check_float("factor", factor, minimum=0.0, maximum=1.0, strict_minimum=True)

    def __call__(self, t: int) -> float:
        return self.lr * self.factor ** (_check_step(t) // self.every)  # eta_0 gamma^floor(t / n), eq. lr-step

    def to_dict(self) -> dict:
        return {"name": self.name, "lr": self.lr, "every": self.every, "factor": self.factor}


class Cosine(Schedule):
    r"""Half a cosine from ``lr`` down to ``lr_min`` over ``total_steps``, then ``lr_min`` (eq. ``lr-cosine``).

    .. math::  \eta_t = \eta_{\min} + \tfrac12 (\eta_0 - \eta_{\min})
               \big(1 + \cos(\pi \min(t, T) / T)\big)

    with :math:`T` = ``total_steps`` (Loshchilov & Hutter 2017, without restarts):
    :math:`\eta_0` at :math:`t = 0`, :math:`\eta_{\min}` from :math:`t = T` on.
    """

    name = "cosine"

    def __init__(self, lr: float, total_steps: int, lr_min: float = 0.0):
        self.lr = check_float("lr", lr, minimum=0.0, strict_minimum=True)
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.lr_min = check_float("lr_min", lr_min, minimum=0.0, maximum=self.lr)

    def __call__(self, t: int) -> float:
        progress = min(_check_step(t), self.total_steps) / self.total_steps  # min(t, T) / T
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1.0 + math.cos(math.pi * progress))  # eq. lr-cosine

    def to_dict(self) -> dict:
        return {"name": self.name, "lr": self.lr, "total_steps": self.total_steps, "lr_min": self.lr_min}


def warmup_factor(t: int, steps: float) -> float:
    r"""The linear warm-up's factor at step ``t`` (from 0) over ``steps`` steps: :math:`\min\big(1, (t + 1) / W\big)`
    (eq. ``lr-warmup``), 1 from the start when ``steps`` is 0. One form for the learning rate (:class:`Warmup`)
    and the KL weight (:meth:`minivae.train.Trainer.beta`); ``steps`` may be fractional (epochs times steps)."""
    return 1.0 if steps <= 0 else min(1.0, (t + 1) / steps)


class Warmup(Schedule):
    r"""A linear warm-up over the first ``steps`` steps, multiplying any schedule (eq. ``lr-warmup``).

    .. math::  \eta_t = \min\big(1, (t + 1) / W\big)\, \eta^{\text{after}}_t

    with :math:`W` = ``steps`` and :math:`\eta^{\text{after}}` the wrapped schedule ``after``, which runs on the
    same clock (it is not delayed by :math:`W`): the first update uses :math:`\eta^{\text{after}}_0 / W`, update
    :math:`W` (``t = W - 1``) the full :math:`\eta^{\text{after}}_{W-1}`. Same form as the KL warm-up
    (:meth:`minivae.train.Trainer.beta`).
    """

    name = "warmup"

    def __init__(self, after: Schedule, steps: int):
        if not isinstance(after, Schedule) or isinstance(after, Warmup):
            raise TypeError(f"after: expected a Constant, StepDecay or Cosine schedule, got {type(after).__name__} "
                            f"{after!r}")
        self.after = after
        self.steps = check_int("steps", steps, 1)

    @property
    def lr(self) -> float:
        return self.after.lr

    def __call__(self, t: int) -> float:
        t = _check_step(t)
        return warmup_factor(t, self.steps) * self.after(t)  # eq. lr-warmup

    def to_dict(self) -> dict:
        return {"name": self.name, "steps": self.steps, "after": self.after.to_dict()}

    def __repr__(self):
        return f"Warmup({self.after!r}, steps={self.steps})"


SCHEDULES = {cls.name: cls for cls in (Constant, StepDecay, Cosine, Warmup)}


def make_schedule(spec) -> Schedule:
    """A schedule from a spec: a :class:`Schedule` (returned as is) or a dict as :meth:`Schedule.to_dict` gives.

    >>> make_schedule({"name": "step", "lr": 0.01, "every": 100, "factor": 0.1})
    StepDecay(lr=0.01, every=100, factor=0.1)
    """
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, dict):
        raise TypeError(f"schedule: expected a Schedule (Constant, StepDecay, Cosine, Warmup) or a dict such as "
                        f"{{'name': 'cosine', 'lr': 0.001, 'total_steps': 1000}}, got {type(spec).__name__} {spec!r}")
    options = dict(spec)
    name = options.pop("name", None)
    if name not in SCHEDULES:
        raise ValueError(f"schedule: expected a 'name' among {sorted(SCHEDULES)}, got {name!r}")
    if name == "warmup" and "after" in options:
        options["after"] = make_schedule(options["after"])
    try:
        return SCHEDULES[name](**options)
    except TypeError as exc:  # a missing or unknown key; a bad value raises its own error naming the field
        if "positional argument" in str(exc) or "keyword argument" in str(exc):
            raise TypeError(f"schedule: bad keys for {name!r}: {exc}") from None
        raise


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Updates per epoch, :math:`\\lceil N / B \\rceil` (the last batch may be smaller), as the trainer takes them."""
    n_examples = check_int("n_examples", n_examples, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    return math.ceil(n_examples / batch_size)


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    """``epochs`` (a float, e.g. 2.5) as a whole number of steps, rounded to the nearest."""
    epochs = check_float("epochs", epochs, minimum=0.0)
    return int(round(epochs * check_int("steps_per_epoch", steps_per_epoch, 1)))


def schedule_in_epochs(name: str, lr: float, *, epochs: float, steps_per_epoch: int, warmup: float = 0.0,
                       lr_min: float = 0.0, every: float | None = None, factor: float = 0.5) -> Schedule:
    """A schedule described in epochs (as the command line takes it), built in steps.

    ``name`` is ``"constant"``, ``"step"`` (``factor`` every ``every`` epochs) or ``"cosine"`` (from ``lr``
    to ``lr_min`` over ``epochs``); ``warmup > 0`` wraps it in a :class:`Warmup` of that many epochs (at
    least one step). Epochs become steps with :func:`epochs_to_steps`.

    >>> schedule_in_epochs("cosine", 1e-3, epochs=10, steps_per_epoch=20, warmup=1)
    Warmup(Cosine(lr=0.001, total_steps=200, lr_min=0.0), steps=20)
    """
    if name == "constant":
        schedule = Constant(lr)
    elif name == "cosine":
        schedule = Cosine(lr, max(1, epochs_to_steps(epochs, steps_per_epoch)), lr_min)
    elif name == "step":
        if every is None:
            raise ValueError("every: expected the number of epochs between decays for a step schedule, got None")
        every_steps = epochs_to_steps(check_float("every", every, minimum=0.0, strict_minimum=True), steps_per_epoch)
        schedule = StepDecay(lr, max(1, every_steps), factor)
    else:
        raise ValueError(f"name: expected one of ['constant', 'cosine', 'step'], got {name!r}")
    warmup = check_float("warmup", warmup, minimum=0.0)
    return Warmup(schedule, max(1, epochs_to_steps(warmup, steps_per_epoch))) if warmup > 0 else schedule
