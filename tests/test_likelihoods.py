"""Decoder likelihoods: NLLs against scipy.stats, gradients by finite differences, and what each one samples."""

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.special import expit, log_expit
from scipy.stats import bernoulli, norm

from conftest import GRAD_TOL
from minivae.gradcheck import numerical_vjp, relative_error
from minivae.likelihoods import (LIKELIHOODS, bernoulli_nll_backward, bernoulli_nll_forward, gaussian_nll_backward,
                                 gaussian_nll_forward, get_likelihood)

seeds = st.integers(0, 2**32 - 1)
batch = st.integers(1, 5)
dims = st.integers(1, 6)
samples = st.integers(0, 3)  # 0: no leading sample axis, else S

#: Monte Carlo tolerance in standard errors; the seeds are fixed, so the sampling tests are deterministic and a
#: correct sampler exceeds 5 standard errors with probability about 6e-7 per quantity.
N_SE = 5.0


def lead(s, *shape):
    """``shape`` with a leading sample axis of length s, or no such axis when s == 0."""
    return (s, *shape) if s else shape


def log_var_shape(kind, s, n, d):
    return {"scalar": (), "per_dim": (d,), "per_example": (n, d), "like_mean": lead(s, n, d),
            "row": (1, d), "column": (n, 1)}[kind]


#: Every way a log-variance may broadcast against the mean (..., N, D); the model uses the first four, "row" and
#: "column" exercise summing the gradient over size-1 axes.
LOG_VAR_KINDS = ["scalar", "per_dim", "per_example", "like_mean", "row", "column"]


# --------------------------------------------------------------------------- Bernoulli


@given(seed=seeds, s=samples, n=batch, d=dims)
def test_bernoulli_nll_is_minus_scipy_logpmf_for_binary_data(seed, s, n, d):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=lead(s, n, d))
    x = (rng.random((n, d)) < 0.5).astype(np.float64)
    nll, _ = bernoulli_nll_forward(logits, x)
    assert nll.shape == lead(s, n)
    expected = -bernoulli.logpmf(x, expit(logits)).sum(axis=-1)
    np.testing.assert_allclose(nll, expected, rtol=1e-10)


@given(seed=seeds, s=samples, n=batch, d=dims)
def test_bernoulli_nll_for_grey_data_is_the_cross_entropy(seed, s, n, d):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=lead(s, n, d))
    x = rng.random((n, d))  # grey levels: the continuous relaxation
    nll, _ = bernoulli_nll_forward(logits, x)
    expected = -(x * log_expit(logits) + (1 - x) * log_expit(-logits)).sum(axis=-1)
    np.testing.assert_allclose(nll, expected, rtol=1e-10)


def test_bernoulli_nll_and_gradient_are_exact_at_extreme_logits():
    logits = np.array([[1e4, -1e4, 1e4, -1e4, 800.0, -800.0]])
    x = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 1.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        per_dim = np.stack([bernoulli_nll_forward(logits[:, i:i + 1], x[:, i:i + 1])[0] for i in range(6)], axis=-1)
        nll, cache = bernoulli_nll_forward(logits, x)
        dlogits = bernoulli_nll_backward(np.ones(1), cache)
    # Confidently right costs nothing; confidently wrong costs |logit| nats (log(1 + e^|l|) = |l| in float64).
    np.testing.assert_array_equal(per_dim, [[0.0, 0.0, 1e4, 1e4, 800.0, 800.0]])
    assert nll[0] == 2e4 + 1600.0
    np.testing.assert_array_equal(dlogits, [[0.0, 0.0, 1.0, -1.0, 1.0, -1.0]])  # sigma(l) - x


@given(seed=seeds, s=samples, n=batch, d=dims, binary=st.booleans())
def test_bernoulli_backward_matches_finite_differences(seed, s, n, d, binary):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=lead(s, n, d))
    x = rng.random((n, d))
    if binary:
        x = np.round(x)
    dnll = rng.normal(size=lead(s, n))
    _, cache = bernoulli_nll_forward(logits, x)
    dlogits = bernoulli_nll_backward(dnll, cache)
    assert dlogits.shape == logits.shape
    [numeric] = numerical_vjp(lambda logits: bernoulli_nll_forward(logits, x)[0], [logits], dnll)
    assert relative_error(dlogits, numeric) <= GRAD_TOL


# --------------------------------------------------------------------------- Gaussian


@pytest.mark.parametrize("kind", LOG_VAR_KINDS)
@given(seed=seeds, s=samples, n=batch, d=dims)
def test_gaussian_nll_is_minus_scipy_logpdf(kind, seed, s, n, d):
    rng = np.random.default_rng(seed)
    mean, x = rng.normal(size=lead(s, n, d)), rng.normal(size=(n, d))
    log_var = rng.normal(size=log_var_shape(kind, s, n, d))
    nll, _ = gaussian_nll_forward(mean, log_var, x)
    assert nll.shape == lead(s, n)
    expected = -norm.logpdf(x, loc=mean, scale=np.sqrt(np.exp(log_var))).sum(axis=-1)
    np.testing.assert_allclose(nll, expected, rtol=1e-10)


@pytest.mark.parametrize("kind", LOG_VAR_KINDS)
@given(seed=seeds, s=samples, n=batch, d=dims)
def test_gaussian_backward_matches_finite_differences(kind, seed, s, n, d):
    rng = np.random.default_rng(seed)
    mean, x = rng.normal(size=lead(s, n, d)), rng.normal(size=(n, d))
    log_var = np.asarray(rng.normal(size=log_var_shape(kind, s, n, d)))  # a 0-d array for "scalar"
    dnll = rng.normal(size=lead(s, n))
    _, cache = gaussian_nll_forward(mean, log_var, x)
    dmean, dlog_var = gaussian_nll_backward(dnll, cache)
    assert dmean.shape == mean.shape
    assert np.shape(dlog_var) == log_var.shape  # summed over every axis log_var was broadcast along
    numeric = numerical_vjp(lambda mean, log_var: gaussian_nll_forward(mean, log_var, x)[0], [mean, log_var], dnll)
    assert relative_error(dmean, numeric[0]) <= GRAD_TOL
    assert relative_error(dlog_var, numeric[1]) <= GRAD_TOL


def test_gaussian_nll_is_finite_at_extreme_log_variances_and_their_gradient_is_zero_outside_the_clamp():
    mean = np.zeros((1, 4), dtype=np.float32)
    x = np.array([[3.0, 3.0, 0.0, 0.0]], dtype=np.float32)
    log_var = np.array([-1e4, 1e4, -1e4, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        nll, cache = gaussian_nll_forward(mean, log_var, x)
        dmean, dlog_var = gaussian_nll_backward(np.ones(1, dtype=np.float32), cache)
    assert np.all(np.isfinite(nll)) and np.all(np.isfinite(dmean))
    np.testing.assert_array_equal(dlog_var, 0.0)  # the clamp is constant out there


@given(seed=seeds, s=samples, n=batch, d=dims, variance=st.sampled_from([0.05, 0.3, 1.0, 2.5]))
def test_fixed_variance_gaussian_is_least_squares_plus_a_constant(seed, s, n, d, variance):
    rng = np.random.default_rng(seed)
    mean, x = rng.normal(size=lead(s, n, d)), rng.normal(size=(n, d))
    lik = get_likelihood("gaussian_fixed", fixed_variance=variance)
    nll, _ = lik.nll_forward(mean, x, {})
    squares = 0.5 * ((x - mean) ** 2).sum(axis=-1) / variance
    constant = 0.5 * d * math.log(2 * math.pi * variance)
    np.testing.assert_allclose(nll, squares + constant, rtol=1e-12)


# --------------------------------------------------------------------------- the Likelihood classes


def random_case(name, rng, s, n, d, fixed_variance=1.0):
    """A likelihood, its decoder output (S, N, n_outputs), data and non-zero learned parameters."""
    lik = get_likelihood(name, fixed_variance=fixed_variance)
    out = rng.normal(size=lead(s, n, lik.n_outputs(d)))
    x = rng.random((n, d)) if name == "bernoulli" else rng.normal(size=(n, d))
    params = {key: np.asarray(rng.normal(size=shape)) for key, shape in lik.param_shapes(d).items()}
    return lik, out, x, params


@pytest.mark.parametrize("name", LIKELIHOODS)
@given(seed=seeds, s=samples, n=batch, d=dims, fixed_variance=st.sampled_from([0.5, 1.0, 2.0]))
def test_likelihood_backward_matches_finite_differences(name, seed, s, n, d, fixed_variance):
    rng = np.random.default_rng(seed)
    lik, out, x, params = random_case(name, rng, s, n, d, fixed_variance)
    keys = sorted(params)
    dnll = rng.normal(size=lead(s, n))
    nll, cache = lik.nll_forward(out, x, params)
    assert nll.shape == lead(s, n)
    dout, dparams = lik.nll_backward(dnll, cache)
    assert dout.shape == out.shape
    assert sorted(dparams) == keys and all(np.shape(dparams[k]) == params[k].shape for k in keys)

    def forward(out, *values):
        return lik.nll_forward(out, x, dict(zip(keys, values)))[0]

    numeric = numerical_vjp(forward, [out, *(params[k] for k in keys)], dnll)
    assert relative_error(dout, numeric[0]) <= GRAD_TOL
    for k, num in zip(keys, numeric[1:], strict=True):
        assert relative_error(dparams[k], num) <= GRAD_TOL


@pytest.mark.parametrize("name, outputs, shapes", [
    ("bernoulli", 5, {}),
    ("gaussian_fixed", 5, {}),
    ("gaussian_shared", 5, {"log_var": ()}),
    ("gaussian_per_dim", 5, {"log_var": (5,)}),
    ("gaussian_per_example", 10, {"log_var": None}),
])
def test_outputs_and_parameter_shapes(name, outputs, shapes):
    lik = get_likelihood(name)
    assert lik.name == name
    assert lik.n_outputs(5) == outputs
    assert lik.param_shapes(5) == ({} if name == "gaussian_per_example" else shapes)


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_mean_is_the_expected_value_of_x(name, rng):
    lik, out, _, params = random_case(name, rng, 0, 4, 3, fixed_variance=2.0)
    m = lik.mean(out, params)
    assert m.shape == (4, 3)
    expected = {"bernoulli": expit(out), "gaussian_per_example": out[:, :3]}.get(name, out)
    np.testing.assert_allclose(m, expected, rtol=1e-12, atol=1e-15)


def test_bernoulli_samples_are_binary_with_mean_sigmoid_of_the_logits():
    logits = np.array([-3.0, -0.7, 0.0, 1.2, 4.0])
    M = 100_000
    lik = get_likelihood("bernoulli")
    draws = lik.sample(np.broadcast_to(logits, (M, 5)), {}, np.random.default_rng(11))
    assert draws.shape == (M, 5) and draws.dtype == np.float64
    assert set(np.unique(draws)) <= {0.0, 1.0}
    p = expit(logits)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - p), N_SE * np.sqrt(p * (1 - p) / M))


@pytest.mark.parametrize("name", ["gaussian_fixed", "gaussian_shared", "gaussian_per_dim", "gaussian_per_example"])
def test_gaussian_samples_have_the_decoder_mean_and_variance_exp_log_var(name):
    # No log-variance is 0 and the fixed variance is not 1, so a variance used as a standard deviation shows.
    D, M = 3, 100_000
    mean = np.array([-1.0, 0.5, 2.0])
    lik = get_likelihood(name, fixed_variance=2.5)
    log_var_of = {"gaussian_fixed": np.full(D, math.log(2.5)), "gaussian_shared": np.full(D, -0.8),
                  "gaussian_per_dim": np.array([1.0, -1.5, 0.7]), "gaussian_per_example": np.array([-1.0, 1.2, 0.4])}
    log_var = log_var_of[name]
    params = {"gaussian_shared": {"log_var": np.asarray(-0.8)},
              "gaussian_per_dim": {"log_var": log_var}}.get(name, {})
    out = np.concatenate([mean, log_var]) if name == "gaussian_per_example" else mean
    draws = lik.sample(np.broadcast_to(out, (M, out.size)), params, np.random.default_rng(12))
    assert draws.shape == (M, D)
    var = np.exp(log_var)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), N_SE * np.sqrt(var / M))
    np.testing.assert_array_less(np.abs(draws.var(axis=0, ddof=1) - var), N_SE * var * np.sqrt(2.0 / (M - 1)))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["gaussian", "Bernoulli", "laplace", "", None, 1])
def test_unknown_likelihood_is_refused_by_name(name):
    with pytest.raises(ValueError, match=r"^likelihood: expected one of"):
        get_likelihood(name)


@pytest.mark.parametrize("fixed_variance", [0.0, -1.0, float("nan"), float("inf"), True, "1.0", None])
def test_bad_fixed_variance_is_refused_by_name(fixed_variance):
    with pytest.raises((ValueError, TypeError), match=r"^fixed_variance:"):
        get_likelihood("gaussian_fixed", fixed_variance=fixed_variance)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 9)), seed=st.integers(0, 2**16),
       scale=st.sampled_from([0.1, 3.0, 40.0]), dtype=st.sampled_from([np.float32, np.float64]),
       binary=st.booleans())
def test_the_bernoulli_nll_in_place_is_the_reference_bit_for_bit(shape, seed, scale, dtype, binary):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(shape) * scale).astype(dtype)
    x = rng.random(shape[1:]).astype(dtype)
    x = np.round(x) if binary else x
    expected, _ = bernoulli_nll_forward(logits, x)
    buffers = [np.empty_like(logits) for _ in range(2)]
    got, cache = bernoulli_nll_forward(logits.copy(), x, scratch=buffers)
    assert got.dtype == dtype and np.array_equal(got, expected) and cache is None


#: What each likelihood says of itself (the module docstring's table): decoder outputs per data dimension, the
#: log-variance's shape against a mean (S, N, D) = (2, 3, 4), whether training learns the variance, whether the
#: decoder outputs it, whether the data must lie in [0, 1].
LAYOUTS = {
    "bernoulli": (1, None, False, False, True),
    "gaussian_fixed": (1, (1, 1, 1), False, False, False),
    "gaussian_shared": (1, (1, 1, 1), True, False, False),
    "gaussian_per_dim": (1, (1, 1, 4), True, False, False),
    "gaussian_per_example": (2, (2, 3, 4), True, True, False),
}


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_each_likelihood_states_its_output_layout_and_log_variance_shape(name):
    likelihood = get_likelihood(name)
    per_dim, shape, learned, in_output, unit = LAYOUTS[name]
    assert likelihood.n_outputs(4) == per_dim * 4 and likelihood.log_var_shape(2, 3, 4) == shape
    assert (likelihood.learned_variance, likelihood.log_var_in_output, likelihood.unit_interval) == \
        (learned, in_output, unit)
    # a learned variance is either the likelihood's own parameter or a decoder output, never both
    assert learned == (("log_var" in likelihood.param_shapes(4)) != in_output)
