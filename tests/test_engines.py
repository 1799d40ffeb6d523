"""The reference engine (VAE.forward, VAE.backward, eq. adam as written) trains exactly as the fast one does."""


from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import fast
from minivae.checkpoint import load_checkpoint, save_checkpoint
from minivae.engines import ENGINES, ReferenceStep
from minivae.layers import ACTIVATIONS
from minivae.likelihoods import LIKELIHOODS
from minivae.model import VAE
from minivae.optim import SGD, Adam, ReferenceAdam, ReferenceSGD, make_optimizer
from minivae.params import ParamBuffer
from minivae.serialize import load_trainer, save_trainer
from minivae.train import NonFiniteError, Trainer, fit
from cli_run import run

#: Parameters of the two engines after several float64 steps agree to this, relative: the fast step sums a
#: batch's gradients in another order (BLAS products, eq. adam-sums), a difference of a few ulps per step.
RTOL = 1e-10
ATOL = 1e-13


def schedules(total_steps):
    """A learning-rate schedule's spec of every kind, over about ``total_steps`` steps."""
    return st.sampled_from([
        None,
        {"name": "constant", "lr": 3e-3},
        {"name": "step", "lr": 1e-2, "every": 2, "factor": 0.5},
        {"name": "cosine", "lr": 1e-2, "total_steps": total_steps, "lr_min": 1e-4},
        {"name": "warmup", "steps": 2, "after": {"name": "cosine", "lr": 1e-2, "total_steps": total_steps}},
    ])


def random_model(rng, depth, **config):
    model = VAE(5, 2, tuple(int(h) for h in rng.integers(1, 6, depth)), dtype="float64", **config)
    model.params.data[:] = rng.normal(0.0, 0.5, model.params.size)  # no zero weights to hide a wrong gradient
    return model


class Diverged(NamedTuple):
    quantity: str
    step: int | None
    epoch: int


def train_both(make_model, x, c, **options):
    """Train a fresh model with each engine; returns {engine: (parameters, history, optimizer)}, or
    a Diverged record of the NonFiniteError where a random case diverges."""
    result = {}
    for engine in ENGINES:
        model = make_model()
        trainer = Trainer(model, engine=engine, **options)
        try:
            history = trainer.fit(x, c, epochs=2, progress=False, log_every=1)
        except NonFiniteError as exc:
            result[engine] = Diverged(exc.quantity, exc.step, exc.epoch)
            continue
        result[engine] = (model.params.data.copy(), history.to_dict(), trainer.optimizer)
    return result


def diverged_alike(result) -> bool:
    """True when both engines stopped on the same non-finite quantity at the same step; a divergence in one
    engine only fails the test. Random weights with SGD's momentum can diverge a one-example batch."""
    outcomes = [result[engine] for engine in ENGINES]
    stopped = [isinstance(outcome, Diverged) for outcome in outcomes]
    if not any(stopped):
        return False
    assert all(stopped) and outcomes[0] == outcomes[1], f"the engines diverged differently: {outcomes}"
    return True


@given(seed=st.integers(0, 2**31), activation=st.sampled_from(sorted(ACTIVATIONS)),
       likelihood=st.sampled_from(LIKELIHOODS), depth=st.integers(0, 2), n_samples=st.integers(1, 3),
       condition_dim=st.sampled_from([0, 3]), n=st.integers(2, 9), batch_size=st.integers(1, 4),
       warmup_epochs=st.sampled_from([0.0, 0.5, 3.0]), optimizer=st.sampled_from(["adam", "sgd"]),
       schedule=schedules(8))
def test_the_engines_train_alike_step_for_step(seed, activation, likelihood, depth, n_samples, condition_dim, n,
                                               batch_size, warmup_epochs, optimizer, schedule):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 5))
    c = np.eye(3)[rng.integers(0, 3, n)] if condition_dim else None
    init = rng.integers(0, 2**31)
    batch_size = min(batch_size, n)
    options = {"momentum": 0.9} if optimizer == "sgd" else {"beta1": 0.8}
    if schedule is None:
        options["lr"] = 1e-2
    result = train_both(lambda: random_model(np.random.default_rng(init), depth, activation=activation,
                                             likelihood=likelihood, n_samples=n_samples,
                                             condition_dim=condition_dim),
                        x, c, optimizer=optimizer, batch_size=batch_size, warmup_epochs=warmup_epochs, seed=seed,
                        schedule=schedule, **options)
    if diverged_alike(result):
        return
    (fast_params, fast_history, fast_opt), (ref_params, ref_history, ref_opt) = result["fast"], result["reference"]
    assert not np.array_equal(fast_params, random_model(np.random.default_rng(init), depth, activation=activation,
                                                        likelihood=likelihood, n_samples=n_samples,
                                                        condition_dim=condition_dim).params.data)  # it trained
    np.testing.assert_allclose(ref_params, fast_params, rtol=RTOL, atol=ATOL)
    assert ref_opt.t == fast_opt.t == 2 * -(-n // batch_size)
    for key, value in fast_opt.state().items():  # the moments too, as the checkpoint stores them
        np.testing.assert_allclose(ref_opt.state()[key], value, rtol=RTOL, atol=ATOL)
    for name, values in fast_history.items():  # the same loss, KL and reconstruction terms, epoch by epoch
        np.testing.assert_allclose(ref_history[name], values, rtol=RTOL, atol=ATOL, err_msg=name)


@given(seed=st.integers(0, 2**31), steps=st.integers(1, 6), beta1=st.floats(0.0, 0.95),
       beta2=st.floats(0.5, 0.9999), momentum=st.floats(0.0, 0.99))
def test_the_reference_updates_are_the_fast_ones_and_resume_from_their_state(seed, steps, beta1, beta2, momentum):
    """eq. adam as written equals eq. adam-sums, and each optimizer resumes from the other's stored state."""
    rng = np.random.default_rng(seed)
    grads = rng.normal(0.0, 1.0, (2 * steps, 7)) * rng.choice([1e-6, 1.0, 1e3], 7)  # scales far apart
    start = rng.normal(size=7)
    pairs = [(Adam, ReferenceAdam, {"lr": 1e-2, "beta1": beta1, "beta2": beta2}),
             (SGD, ReferenceSGD, {"lr": 1e-3, "momentum": momentum})]
    for fast_cls, ref_cls, options in pairs:
        bufs = [ParamBuffer({"w": (7,)}, "float64") for _ in range(3)]
        opts = [fast_cls(bufs[0], **options), ref_cls(bufs[1], **options), ref_cls(bufs[2], **options)]
        for buf in bufs:
            buf.data[:] = start
        for t, g in enumerate(grads):
            if t == steps:  # the third resumes the fast one's state halfway, as a checkpoint would hand it over
                bufs[2].data[:] = bufs[0].data
                opts[2].load_state({k: v.copy() for k, v in opts[0].state().items()}, opts[0].t)
            for buf, opt in zip(bufs, opts):
                buf.grad[:] = g
                opt.step()
            np.testing.assert_allclose(bufs[1].data, bufs[0].data, rtol=RTOL, atol=ATOL)
            if t >= steps:
                np.testing.assert_allclose(bufs[2].data, bufs[0].data, rtol=RTOL, atol=ATOL)
        assert opts[1].t == opts[0].t == opts[2].t == 2 * steps


def test_the_reference_adam_computes_new_arrays_and_writes_only_the_parameters():
    params = ParamBuffer({"w": (2, 3)}, "float64")
    params.data[:] = np.arange(6.0)
    view = params["w"]
    opt = ReferenceAdam(params, lr=0.1)
    m_before, v_before = opt.m, opt.v
    params.grad[:] = 1.0
    opt.step()
    assert opt.m is not m_before and opt.v is not v_before and not m_before.any()  # the old moments untouched
    np.testing.assert_allclose(view.ravel(), np.arange(6.0) - 0.1 / (1 + 1e-8))  # first step: eta sign(g)
    assert np.shares_memory(view, params.data)  # the model's named views read the new parameters


def test_the_reference_engine_steps_through_vae_backward_on_one_thread(monkeypatch):
    """The reference engine reaches VAE.forward and VAE.backward once per step, and never splits a batch."""
    calls = {"forward": 0, "backward": 0}
    for name in calls:
        original = getattr(VAE, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(VAE, name, counted)
    monkeypatch.setattr(fast, "STEP_MIN_ROWS", 1)  # the fast engine would split even this batch
    monkeypatch.setattr(fast, "cpu_threads", lambda: 2)
    threads = []
    map_rows = fast.map_rows
    monkeypatch.setattr(fast, "map_rows", lambda *a, **k: threads.append(1) or map_rows(*a, **k))
    x = np.random.default_rng(0).random((12, 4))
    trainer = Trainer(VAE(4, 2, (3,)), batch_size=4, engine="reference")
    trainer.fit(x, epochs=2, progress=False)
    assert calls == {"forward": 6, "backward": 6} and not threads
    assert isinstance(trainer.optimizer, ReferenceAdam)
    trainer = Trainer(VAE(4, 2, (3,)), batch_size=4, optimizer="sgd", lr=0.1, engine="fast")
    trainer.train_step(x[:4])
    assert calls["backward"] == 6 and threads  # the fast engine: neither, and a split batch
    assert type(trainer.optimizer) is SGD


@pytest.mark.parametrize("first, then", [("fast", "reference"), ("reference", "fast"), ("reference", None)])
def test_a_run_saved_by_one_engine_resumes_with_either(tmp_path, first, then):
    rng = np.random.default_rng(3)
    x, x_val = rng.random((10, 4)), rng.random((4, 4))

    def model():
        m = VAE(4, 2, (3,), likelihood="gaussian_per_dim", dtype="float64", seed=2)
        m.params.data[:] = np.random.default_rng(5).normal(0.0, 0.5, m.params.size)
        return m

    whole = Trainer(model(), lr=1e-2, batch_size=3, warmup_epochs=1.5, seed=1)
    whole.fit(x, epochs=4, x_val=x_val, progress=False)
    trainer = Trainer(model(), lr=1e-2, batch_size=3, warmup_epochs=1.5, seed=1, engine=first)
    trainer.fit(x, epochs=2, x_val=x_val, progress=False, checkpoint=tmp_path / "run.npz")
    assert load_checkpoint(tmp_path / "run.npz")[1]["trainer"]["engine"] == first
    resumed = load_trainer(tmp_path / "run.npz", engine=then)
    assert resumed.engine == (first if then is None else then)
    resumed.fit(x, epochs=2, x_val=x_val, progress=False)
    np.testing.assert_allclose(resumed.model.params.data, whole.model.params.data, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(resumed.history.val_loss, whole.history.val_loss, rtol=RTOL)


@pytest.mark.parametrize("call", [
    lambda: Trainer(VAE(4, 2, (3,)), engine="slow"),
    lambda: fit(VAE(4, 2, (3,)), np.zeros((4, 4)), engine=""),  # None is the model's default engine
    lambda: make_optimizer("adam", ParamBuffer({"w": (2,)}, "float64"), engine="Reference"),
    lambda: load_trainer("never-read.npz", engine=1),
])
def test_an_unknown_engine_is_refused_naming_the_argument(call):
    with pytest.raises(ValueError, match=r"engine: expected one of \('fast', 'reference'\), got"):
        call()


def test_fused_kernels_belong_to_the_fast_engine():
    with pytest.raises(ValueError, match="kernels: expected 'plain' with engine='reference'.*got 'fused'"):
        Trainer(VAE(4, 2, (3,)), kernels="fused", engine="reference")
    assert isinstance(Trainer(VAE(4, 2, (3,)), engine="reference").engine_step, ReferenceStep)




def test_the_command_line_trains_with_either_engine_and_resumes_with_the_other(tmp_path):
    ring = ["train", "--dataset", "ring", "--ring-points", "120", "--hidden", "8", "--batch-size", "32", "--k", "2",
            "--schedule", "constant",  # a cosine run cannot be extended by --resume
            "--no-progress", "--out", tmp_path / "r"]
    assert run(*ring, "--epochs", "1", "--engine", "reference")[0] == 0
    assert load_trainer(tmp_path / "r" / "model.npz").engine == "reference"
    code, out, err = run(*ring, "--epochs", "2", "--resume")  # no --engine: the run's own
    assert code == 0 and "resuming" in out, err
    assert load_trainer(tmp_path / "r" / "model.npz").engine == "reference"
    code, out, err = run(*ring, "--epochs", "3", "--resume", "--engine", "fast")  # a different engine is allowed
    assert code == 0, err
    trainer = load_trainer(tmp_path / "r" / "model.npz")
    assert trainer.engine == "fast" and trainer.epoch == 3
    code, _, err = run(*ring, "--epochs", "1", "--engine", "slow", "--overwrite")
    assert code == 2 and "--engine" in err and "slow" in err
    code, _, err = run(*ring, "--epochs", "1", "--engine", "reference", "--kernels", "fused", "--overwrite")
    assert code == 2 and "--kernels" in err and "--engine reference" in err
