"""The gradient checker itself: its error measure, its derivatives on known functions, and that it can fail."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conftest import GRAD_TOL
from minivae.gradcheck import max_relative_errors, numerical_gradient, numerical_vjp, relative_error
from minivae.kl import KLCache, kl_backward, kl_forward
from minivae.layers import get_activation

seeds = st.integers(0, 2**32 - 1)
shapes = st.tuples(st.integers(1, 5), st.integers(1, 6))


# --------------------------------------------------------------------------- relative_error


@given(seed=seeds, shape=shapes)
def test_relative_error_is_zero_for_equal_arrays(seed, shape):
    a = np.random.default_rng(seed).normal(size=shape)
    assert relative_error(a, a.copy()) == 0.0


def test_relative_error_is_zero_for_two_zero_arrays_and_for_empty_arrays():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.zeros((0, 2)), np.zeros((0, 2))) == 0.0


@given(seed=seeds, shape=shapes, scale_exponent=st.integers(-12, 12))
def test_relative_error_is_symmetric_and_scale_invariant(seed, shape, scale_exponent):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=shape), rng.normal(size=shape)
    err = relative_error(a, b)
    assert err == relative_error(b, a)
    scale = 2.0 ** scale_exponent  # a power of two: scaling is exact in floating point
    assert relative_error(scale * a, scale * b) == err
    assert 0.0 <= err <= 2.0  # max|a - b| <= max|a| + max|b| <= 2 max(max|a|, max|b|)


def test_relative_error_is_the_largest_disagreement_over_the_largest_entry():
    assert relative_error(np.array([1.0, 100.0]), np.array([1.5, 100.0])) == pytest.approx(0.5 / 100.0)
    # One array zero and the other not: totally wrong, error 1 (an absolute tolerance would pass a tiny wrong gradient).
    assert relative_error(np.zeros(2), np.array([1e-12, 0.0])) == 1.0


def test_relative_error_refuses_a_shape_mismatch():
    with pytest.raises(ValueError, match=r"^numeric: expected shape \(2, 3\)"):
        relative_error(np.zeros((2, 3)), np.zeros((3, 2)))


def test_max_relative_errors_pairs_arrays_up():
    errors = max_relative_errors([np.ones(2), np.array([2.0])], [np.ones(2), np.array([1.0])])
    assert errors == [0.0, 0.5]
    with pytest.raises(ValueError):
        max_relative_errors([np.ones(2)], [np.ones(2), np.ones(2)])


# --------------------------------------------------------------------------- numerical_gradient on known functions


@given(seed=seeds, shape=shapes)
def test_numerical_gradient_of_a_quadratic_form(seed, shape):
    rng = np.random.default_rng(seed)
    size = shape[0] * shape[1]
    A = rng.normal(size=(size, size))
    x = rng.normal(size=shape)
    grad = numerical_gradient(lambda: x.reshape(-1) @ A @ x.reshape(-1), x)
    exact = ((A + A.T) @ x.reshape(-1)).reshape(shape)  # d/dx x^T A x
    assert grad.shape == x.shape
    assert relative_error(exact, grad) <= GRAD_TOL


@given(seed=seeds, shape=shapes)
def test_numerical_gradient_of_sin(seed, shape):
    x = np.random.default_rng(seed).normal(scale=3.0, size=shape)
    grad = numerical_gradient(lambda: np.sin(x).sum(), x)
    assert relative_error(np.cos(x), grad) <= GRAD_TOL


@given(seed=seeds, shape=shapes)
def test_numerical_vjp_is_the_transposed_jacobian_times_dout(seed, shape):
    rng = np.random.default_rng(seed)
    x, y, dout = rng.normal(size=shape), rng.normal(size=shape), rng.normal(size=shape)
    dx, dy = numerical_vjp(lambda x, y: x * y + np.exp(x), [x, y], dout)
    assert relative_error(dout * (y + np.exp(x)), dx) <= GRAD_TOL
    assert relative_error(dout * x, dy) <= GRAD_TOL


@pytest.mark.parametrize("x", [np.ones(3, dtype=np.float32), np.ones(3, dtype=np.float16), np.ones(3, dtype=int),
                               [1.0, 2.0], 1.0])
def test_numerical_gradient_refuses_anything_but_float64_arrays(x):
    with pytest.raises(TypeError, match=r"^x: expected a float64 array"):
        numerical_gradient(lambda: 0.0, x)


def test_numerical_gradient_of_a_strided_view_that_flattens_in_place(rng):
    x = rng.normal(size=(4, 6))[:, ::2]  # strided, but reshape(-1) is still a view
    grad = numerical_gradient(lambda: (x**3).sum(), x)
    assert relative_error(3 * x**2, grad) <= GRAD_TOL


def test_numerical_gradient_refuses_an_array_it_cannot_perturb_in_place():
    x = np.ones((3, 4)).T  # a transpose: reshape(-1) has to copy, and perturbing the copy would change nothing
    with pytest.raises(ValueError, match=r"^x:"):
        numerical_gradient(lambda: x.sum(), x)


@given(seed=seeds, shape=shapes)
def test_numerical_gradient_restores_the_input_exactly(seed, shape):
    x = np.random.default_rng(seed).normal(size=shape) * 1e3  # x + h - h would not round-trip for most entries
    before = x.copy()
    numerical_gradient(lambda: np.tanh(x).sum(), x)
    np.testing.assert_array_equal(x, before)
    assert x.tobytes() == before.tobytes()  # bit for bit (also the sign of zeros)


# --------------------------------------------------------------------------- the check detects wrong backwards


def leaky_relu_backward_without_the_slope(dout, cache):
    """Wrong: passes the gradient through unchanged for x < 0 (forgets the 0.01 slope)."""
    return dout


def relu_backward_passing_negatives(dout, cache):
    """Wrong: a relu backward that lets the gradient through where x < 0."""
    return dout * (cache.saved != 0)


def kl_backward_missing_the_half(dkl, cache: KLCache):
    """Wrong: d/dlog_var (exp(log_var) - log_var) / 2 without its 1/2."""
    dmu, _ = kl_backward(dkl, cache)
    return dmu, dkl[:, None] * (cache.var - 1.0)


def relu_errors(backward, rng):
    x = rng.normal(size=(4, 5))
    x = np.sign(x) * (0.1 + np.abs(x))  # off the kink
    x[0, 0] = -1.0  # at least one negative entry, where the wrong backwards differ
    dout = rng.normal(size=x.shape)
    name = "leaky_relu" if backward is leaky_relu_backward_without_the_slope else "relu"
    act = get_activation(name)
    _, cache = act.forward(x)
    [numeric] = numerical_vjp(lambda x: act.forward(x)[0], [x], dout)
    return relative_error(act.backward(dout, cache), numeric), relative_error(backward(dout, cache), numeric)


@pytest.mark.parametrize("wrong", [relu_backward_passing_negatives, leaky_relu_backward_without_the_slope])
@given(seed=seeds)
def test_a_wrong_activation_backward_is_detected(wrong, seed):
    right_error, wrong_error = relu_errors(wrong, np.random.default_rng(seed))
    assert right_error <= GRAD_TOL  # the same check passes the real backward ...
    assert wrong_error > GRAD_TOL  # ... and fails the wrong one


@given(seed=seeds, n=st.integers(1, 5), k=st.integers(1, 6))
def test_a_kl_backward_missing_a_half_is_detected(seed, n, k):
    rng = np.random.default_rng(seed)
    mu, log_var, dkl = rng.normal(size=(n, k)), rng.normal(size=(n, k)), rng.normal(size=n)
    _, cache = kl_forward(mu, log_var)
    numeric = numerical_vjp(lambda mu, log_var: kl_forward(mu, log_var)[0], [mu, log_var], dkl)
    assert relative_error(kl_backward(dkl, cache)[1], numeric[1]) <= GRAD_TOL
    assert relative_error(kl_backward_missing_the_half(dkl, cache)[1], numeric[1]) > GRAD_TOL
