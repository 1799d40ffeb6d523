"""The affine layer and the activations: forwards against independent formulas, backwards by finite differences."""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.special import expit

from conftest import GRAD_TOL
from minivae.gradcheck import numerical_vjp, relative_error
from minivae import layers
from minivae.layers import (ACTIVATIONS, affine_backward, affine_forward, get_activation, log1p_by_correction,
                            log1p_unit, sigmoid, softplus)

seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 6)

#: Each activation written independently of minivae (NumPy / SciPy), evaluated on x.
REFERENCE = {
    "identity": lambda x: x,
    "relu": lambda x: np.where(x > 0, x, 0.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "tanh": np.tanh,
    "sigmoid": expit,
    "softplus": lambda x: np.logaddexp(0.0, x),
}


def off_kink(x):
    """Push every entry at least 0.1 away from 0, where relu and leaky_relu have their kink."""
    return np.sign(x) * (0.1 + np.abs(x))


def max_error(analytic, numeric):
    return max(relative_error(a, n) for a, n in zip(analytic, numeric, strict=True))


# --------------------------------------------------------------------------- affine


@given(seed=seeds, n=st.integers(1, 5), i=sizes, o=sizes)
def test_affine_forward_is_the_plain_formula(seed, n, i, o):
    rng = np.random.default_rng(seed)
    x, W, b = rng.normal(size=(n, i)), rng.normal(size=(i, o)), rng.normal(size=o)
    out, cache = affine_forward(x, W, b)
    expected = np.array([[sum(x[r, j] * W[j, k] for j in range(i)) + b[k] for k in range(o)] for r in range(n)])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert cache.x is x and cache.W is W  # the backward reads these, it never recomputes them


@given(seed=seeds, n=st.integers(1, 5), i=sizes, o=sizes)
def test_affine_backward_matches_finite_differences(seed, n, i, o):
    rng = np.random.default_rng(seed)
    x, W, b = rng.normal(size=(n, i)), rng.normal(size=(i, o)), rng.normal(size=o)
    dout = rng.normal(size=(n, o))
    _, cache = affine_forward(x, W, b)
    dx, dW, db = affine_backward(dout, cache)
    assert dx.shape == x.shape and dW.shape == W.shape and db.shape == b.shape
    numeric = numerical_vjp(lambda x, W, b: affine_forward(x, W, b)[0], [x, W, b], dout)
    assert max_error([dx, dW, db], numeric) <= GRAD_TOL


def test_affine_backward_without_dx_returns_none_and_the_same_parameter_gradients(rng):
    x, W, b, dout = rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), rng.normal(size=2), rng.normal(size=(3, 2))
    _, cache = affine_forward(x, W, b)
    dx, dW, db = affine_backward(dout, cache, need_dx=False)
    _, dW_full, db_full = affine_backward(dout, cache)
    assert dx is None
    np.testing.assert_array_equal(dW, dW_full)
    np.testing.assert_array_equal(db, db_full)


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(seed=seeds, n=st.integers(1, 5), d=sizes)
def test_activation_forward_matches_independent_formula(name, seed, n, d):
    x = np.random.default_rng(seed).normal(scale=3.0, size=(n, d))
    out, _ = get_activation(name).forward(x)
    np.testing.assert_allclose(out, REFERENCE[name](x), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(seed=seeds, n=st.integers(1, 5), d=sizes)
def test_activation_backward_matches_finite_differences(name, seed, n, d):
    act = get_activation(name)
    rng = np.random.default_rng(seed)
    # Inside [-3, 3]: deeper in tanh's tails its derivative (2e-5 at 6) falls to the size of the
    # difference quotient's rounding error (~1e-10 |f|), and the check would measure rounding, not the backward.
    x = np.clip(rng.normal(scale=2.0, size=(n, d)), -3.0, 3.0)
    if act.kink:
        x = off_kink(x)
    dout = rng.normal(size=(n, d))
    _, cache = act.forward(x)
    dx = act.backward(dout, cache)
    assert dx.shape == x.shape
    numeric = numerical_vjp(lambda x: act.forward(x)[0], [x], dout)
    assert max_error([dx], numeric) <= GRAD_TOL


def test_relu_family_is_marked_as_having_a_kink_and_the_smooth_ones_are_not():
    assert {name for name, act in ACTIVATIONS.items() if act.kink} == {"relu", "leaky_relu"}


def test_relu_backward_blocks_the_gradient_for_negative_inputs():
    x = np.array([[-2.0, -0.5, 0.5, 2.0]])
    _, cache = get_activation("relu").forward(x)
    np.testing.assert_array_equal(get_activation("relu").backward(np.ones_like(x), cache), [[0, 0, 1, 1]])
    _, cache = get_activation("leaky_relu").forward(x)
    np.testing.assert_array_equal(get_activation("leaky_relu").backward(np.ones_like(x), cache),
                                  [[0.01, 0.01, 1, 1]])


# --------------------------------------------------------------------------- stability at extreme inputs

EXTREME = np.array([-1e4, -1e3, -745.0, -100.0, -30.0, -1.0, -1e-8, 0.0, 1e-8, 1.0, 30.0, 100.0, 745.0, 1e3, 1e4])


def test_sigmoid_is_finite_and_accurate_at_extreme_inputs():
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        y = sigmoid(EXTREME)
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    # sigma is a probability: its consumers use it through sigma - x or sigma * dout, so the absolute error is what
    # matters. 1e-15 is a few ulp of 1.
    np.testing.assert_allclose(y, expit(EXTREME), rtol=1e-12, atol=1e-15)
    assert y[0] == 0.0 and y[-1] == 1.0


def test_softplus_is_finite_and_accurate_at_extreme_inputs():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = softplus(EXTREME)
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    # Relative accuracy everywhere, including the tiny values for very negative x.
    np.testing.assert_allclose(y, np.logaddexp(0.0, EXTREME), rtol=1e-13, atol=0)
    assert y[-1] == 1e4  # log(1 + e^x) = x to the last bit for large x


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "tanh"])
def test_smooth_activation_backward_is_finite_at_extreme_inputs(name):
    act = get_activation(name)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, cache = act.forward(EXTREME)
        dx = act.backward(np.ones_like(EXTREME), cache)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("name", ["gelu", "ReLU", "", None, 3])
def test_unknown_activation_is_refused_by_name(name):
    with pytest.raises(ValueError, match=r"^activation: expected one of"):
        get_activation(name)


# --------------------------------------------------------------------------- log(1 + u) by correction (eq. log1p-unit)


def ulps_from(y, exact):
    """|y - exact| in units of y's dtype's spacing at the exact value (exact in float64 or better)."""
    spacing = np.spacing(exact.astype(y.dtype)).astype(np.longdouble)
    return np.abs(y.astype(np.longdouble) - exact.astype(np.longdouble)) / spacing


#: Inputs where the sum 1 + u loses all, most or none of u: 0, subnormals, around 2^-24 (half an ulp of 1 in
#: float32), around 2^-53 (the same in float64), 1.
LOG1P_EDGES = np.array([0.0, 1e-45, 1e-40, 1e-30, 2.0**-54, 2.0**-53, 2.0**-52, 2.0**-26, 2.0**-25, 2.0**-24,
                        1.5 * 2.0**-24, 2.0**-23, 3.0 * 2.0**-23, 1e-6, 1e-3, 0.5, 1.0 - 2.0**-24, 1.0])


@given(seed=seeds, n=st.integers(1, 200), scale=st.floats(0.0, 60.0), dtype=st.sampled_from([np.float32, np.float64]))
def test_log1p_by_correction_is_within_8_ulps_of_log1p(seed, n, scale, dtype):
    u = np.exp(-scale * np.random.default_rng(seed).random(n))
    u = np.concatenate([u, LOG1P_EDGES]).astype(dtype)
    y = log1p_by_correction(u)
    assert y.dtype == dtype
    # log(w) alone is off by up to 2^23 ulps in float32 where 1 + u rounds to 1; without the correction c/w by up to
    # half an ulp of 1, thousands of ulps of a small result. NumPy's log adds up to ~4 ulps depending on the CPU.
    exact = np.log1p(u.astype(np.longdouble))
    assert ulps_from(y, exact).max() <= 8
    tiny = dtype(2.0**-60)
    assert log1p_by_correction(np.array([tiny]))[0] == tiny  # 1 + u rounds to 1: the result is u


@pytest.mark.parametrize("simd", [False, True])
def test_log1p_unit_takes_the_correction_only_where_numpy_float32_log1p_is_scalar(monkeypatch, simd):
    monkeypatch.setattr(layers, "NUMPY_LOG1P_FLOAT32_IS_SIMD", simd)
    u = np.exp(-np.linspace(0.0, 80.0, 1001)).astype(np.float32)
    expected = np.log1p(u) if simd else log1p_by_correction(u)
    assert np.array_equal(log1p_unit(u), expected)
    u64 = u.astype(np.float64)
    assert np.array_equal(log1p_unit(u64), np.log1p(u64))  # float64 log1p is as fast as the five passes


def test_numpy_is_asked_whether_its_float32_log1p_is_simd():
    introspect = pytest.importorskip("numpy.lib.introspect", reason="NumPy < 2.0 cannot say; taken as scalar")
    current = introspect.opt_func_info(func_name="^log1p$")["log1p"]["ff"]["current"]
    assert layers.NUMPY_LOG1P_FLOAT32_IS_SIMD == (not current.startswith("baseline"))


def test_softplus_float32_stays_within_a_few_ulps_of_float64():
    x = np.linspace(-80.0, 80.0, 100_001).astype(np.float32)  # e^-80 is still a normal float32
    exact = np.logaddexp(0.0, x.astype(np.float64))
    assert softplus(x).dtype == np.float32
    assert ulps_from(softplus(x), exact).max() <= 8
