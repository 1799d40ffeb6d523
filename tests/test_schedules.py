"""Learning-rate schedules: closed forms at chosen steps, bounds and monotonicity, the trainer's use, resuming.

The closed forms (docs/optimisation.md, eqs. lr-constant, lr-step, lr-cosine, lr-warmup) are evaluated by hand at
a few steps; hypothesis checks the bounds every schedule must keep at any step.
"""

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import data
from minivae.model import VAE
from minivae.schedules import (Constant, Cosine, StepDecay, Warmup, epochs_to_steps, make_schedule,
                               steps_per_epoch)
from minivae.serialize import load_trainer, save_trainer
from minivae.train import Trainer, fit


def test_constant_is_constant():
    s = Constant(3e-3)
    assert [s(t) for t in (0, 1, 10**6)] == [3e-3] * 3


def test_step_decay_at_chosen_steps():
    s = StepDecay(0.1, every=10, factor=0.5)
    assert s(0) == s(9) == 0.1  # floor(t / 10) = 0
    assert s(10) == s(19) == 0.05
    assert s(20) == 0.025
    assert s(95) == pytest.approx(0.1 * 0.5 ** 9, rel=1e-15)


def test_cosine_at_chosen_steps():
    s = Cosine(1.0, total_steps=100, lr_min=0.1)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(0.55, rel=1e-15)  # cos(pi/2) = 0: halfway between
    assert s(25) == pytest.approx(0.1 + 0.45 * (1 + math.sqrt(0.5)), rel=1e-15)
    assert s(100) == pytest.approx(0.1, rel=1e-15) and s(10**6) == s(100)  # the floor after T


def test_warmup_multiplies_the_schedule_on_the_same_clock():
    s = Warmup(StepDecay(0.2, every=4, factor=0.5), steps=8)
    assert s(0) == pytest.approx(0.2 / 8)  # (0 + 1) / 8 of the first step's rate
    assert s(3) == pytest.approx(0.2 * 4 / 8)
    assert s(4) == pytest.approx(0.1 * 5 / 8)  # the step decay has already acted once
    assert s(7) == pytest.approx(0.1) and s(8) == pytest.approx(0.05)
    assert s.lr == 0.2


SCHEDULE = st.one_of(
    st.builds(Constant, st.floats(1e-6, 1.0)),
    st.builds(StepDecay, st.floats(1e-6, 1.0), st.integers(1, 50), st.floats(0.01, 1.0)),
    st.builds(lambda lr, T, frac: Cosine(lr, T, lr * frac), st.floats(1e-6, 1.0), st.integers(1, 500),
              st.floats(0.0, 1.0)))


@given(schedule=SCHEDULE, warm=st.integers(0, 50), t=st.integers(0, 2000))
def test_every_schedule_stays_within_its_bounds_and_never_rises_after_the_warmup(schedule, warm, t):
    floor = schedule.lr_min if isinstance(schedule, Cosine) else 0.0
    s = Warmup(schedule, warm) if warm else schedule
    assert 0.0 <= s(t) <= schedule.lr * (1 + 1e-15)
    assert s(t) >= (floor if t >= warm else 0.0) * (1 - 1e-12)
    if t >= warm:  # non-increasing once the warm-up is over
        assert s(t + 1) <= s(t) * (1 + 1e-15)
    else:  # below the wrapped schedule during the warm-up
        assert s(t) <= schedule(t)
    assert isinstance(s(t), float)


@given(schedule=SCHEDULE, warm=st.integers(0, 5))
def test_spec_round_trip(schedule, warm):
    s = Warmup(schedule, warm) if warm else schedule
    back = make_schedule(s.to_dict())
    assert back == s and [back(t) for t in range(30)] == [s(t) for t in range(30)]


@pytest.mark.parametrize("make, message", [
    (lambda: Constant(0.0), "lr: expected a number > 0.0"),
    (lambda: Constant("0.1"), "lr: expected a real number"),
    (lambda: StepDecay(0.1, every=0), "every: expected an integer >= 1"),
    (lambda: StepDecay(0.1, every=5, factor=1.5), "factor: expected a number <= 1.0"),
    (lambda: StepDecay(0.1, every=5, factor=0.0), "factor: expected a number > 0.0"),
    (lambda: Cosine(0.1, total_steps=0), "total_steps: expected an integer >= 1"),
    (lambda: Cosine(0.1, total_steps=10, lr_min=0.2), "lr_min: expected a number <= 0.1"),
    (lambda: Warmup(Constant(0.1), steps=0), "steps: expected an integer >= 1"),
    (lambda: Warmup(0.1, steps=3), "after: expected a Constant, StepDecay or Cosine schedule"),
    (lambda: Constant(0.1)(-1), "t: expected an integer >= 0"),
    (lambda: make_schedule("cosine"), "schedule: expected a Schedule"),
    (lambda: make_schedule({"name": "linear", "lr": 0.1}), "schedule: expected a 'name' among"),
    (lambda: make_schedule({"name": "cosine", "lr": 0.1}), "schedule: bad keys for 'cosine'"),
    (lambda: steps_per_epoch(0, 4), "n_examples: expected an integer >= 1"),
    (lambda: epochs_to_steps(-1.0, 4), "epochs: expected a number >= 0.0"),
])
def test_bad_input_names_the_argument(make, message):
    with pytest.raises((TypeError, ValueError), match=message.replace("(", r"\(")):
        make()


def test_epochs_convert_to_steps():
    assert steps_per_epoch(100, 32) == 4 and epochs_to_steps(2.5, 4) == 10 and epochs_to_steps(0, 4) == 0


class RecordingOps:
    """Wraps the trainer's ops and records the scalar learning rate each Adam update receives."""

    def __init__(self, ops):
        self.ops, self.lr_t = ops, []

    def adam(self, *args):
        self.lr_t.append(args[7])
        return self.ops.adam(*args)


def test_the_optimizer_receives_the_schedules_rate_at_every_step():
    x = data.ring(64, rng=0)
    schedule = Warmup(Cosine(1e-2, total_steps=12, lr_min=1e-4), steps=3)
    trainer = Trainer(VAE(2, 2, (4,), likelihood="gaussian_shared"), "adam", batch_size=16, schedule=schedule)
    trainer.optimizer.ops = recording = RecordingOps(trainer.optimizer.ops)
    trainer.fit(x, epochs=4, progress=False)
    b1, b2 = trainer.optimizer.beta1, trainer.optimizer.beta2
    expected = [schedule(t) * math.sqrt((1 - b2 ** (t + 1)) / (1 - b2)) / ((1 - b1 ** (t + 1)) / (1 - b1))
                for t in range(16)]  # lr_t = eta_t sqrt(S_2) / S_1, eq. adam-sums
    assert all(isinstance(value, float) for value in recording.lr_t)  # host scalars: no device round trip
    np.testing.assert_allclose(recording.lr_t, expected, rtol=1e-14)
    assert trainer.optimizer.lr == schedule(15)


def test_sgd_follows_the_schedule():
    x = data.ring(32, rng=0)
    schedule = StepDecay(0.05, every=2, factor=0.1)
    trainer = Trainer(VAE(2, 2, (4,), likelihood="gaussian_shared", dtype="float64"), "sgd", batch_size=32,
                      momentum=0.0,
                      schedule=schedule)
    before = trainer.model.params.data.copy()
    for t in range(3):
        start = trainer.model.params.data.copy()
        trainer.train_step(x)
        step = start - trainer.model.params.data
        np.testing.assert_allclose(step, schedule(t) * trainer.model.params.grad, rtol=1e-12, atol=1e-15)
    assert not np.array_equal(before, trainer.model.params.data)


def test_trainer_and_fit_take_a_spec_and_refuse_a_second_learning_rate():
    model = VAE(2, 2, (4,), likelihood="gaussian_shared")
    spec = {"name": "warmup", "steps": 5, "after": {"name": "cosine", "lr": 0.01, "total_steps": 20}}
    assert Trainer(model, schedule=spec).schedule == Warmup(Cosine(0.01, 20), 5)
    assert Trainer(model, lr=0.01, schedule=spec).schedule.lr == 0.01  # the same rate twice is no conflict
    assert Trainer(model).schedule == Constant(1e-3) and Trainer(model, lr=0.1).schedule == Constant(0.1)
    with pytest.raises(ValueError, match=r"lr: expected None \(or 0.01, the schedule's own\).*got 0.002"):
        Trainer(model, lr=2e-3, schedule=spec)
    with pytest.raises(TypeError, match="schedule: expected a Schedule"):
        fit(model, data.ring(32, rng=0), schedule="cosine", progress=False)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_resumed_run_continues_the_schedule_bit_for_bit(tmp_path, optimizer):
    x = data.ring(120, rng=0)  # 8 steps per epoch at batch 16
    schedule = Warmup(Cosine(2e-2, total_steps=40, lr_min=1e-3), steps=6)

    def trainer():
        return Trainer(VAE(2, 2, (8,), likelihood="gaussian_shared", seed=4), optimizer, batch_size=16,
                       warmup_epochs=2, seed=9, schedule=schedule)

    straight = trainer()
    straight.fit(x, epochs=5, x_val=x[:20], progress=False)
    first = trainer()
    first.fit(x, epochs=2, x_val=x[:20], progress=False)
    save_trainer(tmp_path / "run.npz", first)
    resumed = load_trainer(tmp_path / "run.npz")
    assert resumed.schedule == schedule and resumed.optimizer.lr == first.optimizer.lr
    resumed.fit(x, epochs=3, x_val=x[:20], progress=False)
    np.testing.assert_array_equal(resumed.model.params.data, straight.model.params.data)
    assert resumed.history == straight.history and resumed.optimizer.lr == straight.optimizer.lr == schedule(39)


def test_the_command_line_trains_with_a_schedule_in_epochs_and_saves_it(tmp_path, capsys):
    from minivae.cli import main

    assert main(["train", "--dataset", "ring", "--ring-points", "6000", "--epochs", "3", "--batch-size", "600",
                 "--hidden", "8", "--k", "5",
                 "--schedule", "cosine", "--lr", "0.01", "--lr-min", "0.001", "--lr-warmup", "1",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    trainer = load_trainer(tmp_path / "model.npz")  # 4800 training points: 8 steps per epoch
    assert trainer.schedule == Warmup(Cosine(0.01, total_steps=24, lr_min=0.001), steps=8)
    assert trainer.optimizer.lr == trainer.schedule(23) and trainer.schedule(24) == pytest.approx(0.001)
    assert main(["train", "--schedule", "step", "--lr-min", "0.1", "--out", str(tmp_path)]) == 2
    assert "--lr-min: expected only with --schedule cosine, got --schedule step" in capsys.readouterr().err
    assert main(["train", "--schedule", "cosine", "--lr", "0.01", "--lr-min", "0.1", "--out", str(tmp_path)]) == 2
    assert "--lr-min: expected at most --lr (0.01), got 0.1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--step-factor", "1.5"])
    assert "--step-factor: expected a number in (0, 1], got '1.5'" in capsys.readouterr().err


def test_the_kl_and_learning_rate_warm_ups_are_one_formula():
    from minivae.schedules import warmup_factor

    assert [warmup_factor(t, 4) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0 and warmup_factor(0, 2.5) == 0.4  # none; a fractional number of steps
    assert [Warmup(Constant(2.0), steps=4)(t) for t in range(5)] == [0.5, 1.0, 1.5, 2.0, 2.0]
    trainer = Trainer(VAE(2, 2, (3,)), warmup_epochs=1.25)
    betas = []
    for _ in range(6):
        betas.append(trainer.beta(steps_per_epoch=2))
        trainer.step_count += 1
    assert betas == [0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
