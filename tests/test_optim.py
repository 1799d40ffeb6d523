"""Optimizers: against a plain per-array reference, and on a problem with a known optimum."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae.optim import SGD, Adam, make_optimizer
from minivae.params import ParamBuffer


def make_buffer(seed, dtype="float64"):
    params = ParamBuffer({"W": (3, 4), "b": (4,), "s": ()}, dtype)
    rng = np.random.default_rng(seed)
    params.data[:] = rng.normal(size=params.size)
    return params, rng


def reference_adam(theta, grads, lr, beta1, beta2, eps):
    """Adam written the textbook way, one step at a time, on a copy."""
    theta, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


@given(seed=st.integers(0, 2**31), lr=st.floats(1e-4, 1e-1), beta1=st.floats(0.0, 0.99),
       beta2=st.floats(0.5, 0.9999), steps=st.integers(1, 6))
def test_adam_matches_reference(seed, lr, beta1, beta2, steps):
    params, rng = make_buffer(seed)
    start = params.data.copy()
    grads = [rng.normal(size=params.size) for _ in range(steps)]
    opt = Adam(params, lr=lr, beta1=beta1, beta2=beta2, eps=1e-8)
    for g in grads:
        params.grad[:] = g
        opt.step()
    # Compare the displacements: the folded bias corrections round differently, by ~1e-15 of each step (~lr).
    expected = reference_adam(start, grads, lr, beta1, beta2, 1e-8)
    np.testing.assert_allclose(params.data - start, expected - start, rtol=1e-9, atol=1e-11 * lr)


@given(seed=st.integers(0, 2**31), lr=st.floats(1e-4, 1.0), momentum=st.floats(0.0, 0.99), steps=st.integers(1, 6))
def test_sgd_momentum_matches_reference(seed, lr, momentum, steps):
    params, rng = make_buffer(seed)
    theta, velocity = params.data.copy(), np.zeros(params.size)
    opt = SGD(params, lr=lr, momentum=momentum)
    for _ in range(steps):
        g = rng.normal(size=params.size)
        params.grad[:] = g
        opt.step()
        velocity = momentum * velocity + g
        theta = theta - lr * velocity
    np.testing.assert_allclose(params.data, theta, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, options", [("adam", {"lr": 0.05}), ("sgd", {"lr": 0.05, "momentum": 0.9})])
def test_optimizers_find_the_minimum_of_a_quadratic(name, options):
    # f(theta) = 1/2 (theta - a)^T diag(h) (theta - a): minimum at theta = a.
    params, rng = make_buffer(0)
    target = rng.normal(size=params.size)
    curvature = rng.uniform(0.5, 2.0, params.size)
    opt = make_optimizer(name, params, **options)
    for lr in (options["lr"], options["lr"] / 100):  # Adam's steps stay near lr in size: shrink it to settle
        opt.lr = lr
        for _ in range(2500):
            params.grad[:] = curvature * (params.data - target)
            opt.step()
    np.testing.assert_allclose(params.data, target, atol=1e-4)


def test_updates_are_in_place_on_the_flat_buffer():
    params, _ = make_buffer(0)
    view, flat = params["W"], params.data
    params.grad[:] = 1.0
    Adam(params, lr=0.1).step()
    assert params.data is flat and np.shares_memory(view, params.data)
    np.testing.assert_array_equal(view, params.data[:12].reshape(3, 4))


def test_float32_stays_float32():
    params, _ = make_buffer(0, "float32")
    params.grad[:] = 0.5
    for opt in (Adam(params), SGD(params)):
        opt.step()
        assert params.data.dtype == np.float32
        assert all(a.dtype == np.float32 for a in opt.state().values())


@pytest.mark.parametrize("name, kwargs, arg", [
    ("adam", {"lr": 0.0}, "lr"), ("adam", {"lr": -1.0}, "lr"), ("adam", {"beta1": 1.5}, "beta1"),
    ("adam", {"eps": 0.0}, "eps"), ("sgd", {"momentum": -0.1}, "momentum"), ("sgd", {"lr": float("nan")}, "lr"),
])
def test_bad_hyperparameters_are_named(name, kwargs, arg):
    params, _ = make_buffer(0)
    with pytest.raises(ValueError, match=f"{arg}:"):
        make_optimizer(name, params, **kwargs)


def test_unknown_optimizer_is_named():
    params, _ = make_buffer(0)
    with pytest.raises(ValueError, match="optimizer:"):
        make_optimizer("rmsprop", params)


@given(seed=st.integers(0, 2**31), beta1=st.floats(0.0, 0.99), beta2=st.floats(0.5, 0.9999), steps=st.integers(1, 6))
def test_adam_keeps_the_moments_as_decaying_sums(seed, beta1, beta2, steps):
    """M = m / (1 - beta1) and V = v / (1 - beta2) (eq. adam-sums), with m and v the averages of eq. adam."""
    params, rng = make_buffer(seed)
    opt = Adam(params, lr=1e-2, beta1=beta1, beta2=beta2)
    m, v = np.zeros(params.size), np.zeros(params.size)
    for _ in range(steps):
        g = rng.normal(size=params.size)
        params.grad[:] = g
        opt.step()
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
    np.testing.assert_allclose(opt.state()["m"] * (1 - beta1), m, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(opt.state()["v"] * (1 - beta2), v, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["beta1", "beta2"])
def test_adam_refuses_a_beta_of_one(name):
    params, _ = make_buffer(0)
    with pytest.raises(ValueError, match=f"^{name}: expected a number < 1.0, got 1.0"):
        Adam(params, **{name: 1.0})
