"""The closed-form KL(q || N(0, I)): its gradient, its sign, its zero, and a Monte Carlo oracle through the sampler."""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import norm

from conftest import GRAD_TOL
from minivae.gradcheck import numerical_vjp, relative_error
from minivae.kl import kl_backward, kl_forward
from minivae.reparam import draw_noise, reparameterize_forward

seeds = st.integers(0, 2**32 - 1)


@given(seed=seeds, n=st.integers(1, 5), k=st.integers(1, 6))
def test_kl_backward_matches_finite_differences(seed, n, k):
    rng = np.random.default_rng(seed)
    mu, log_var, dkl = rng.normal(size=(n, k)), rng.normal(size=(n, k)), rng.normal(size=n)
    kl, cache = kl_forward(mu, log_var)
    assert kl.shape == (n,)
    dmu, dlog_var = kl_backward(dkl, cache)
    assert dmu.shape == mu.shape and dlog_var.shape == log_var.shape
    numeric = numerical_vjp(lambda mu, log_var: kl_forward(mu, log_var)[0], [mu, log_var], dkl)
    assert relative_error(dmu, numeric[0]) <= GRAD_TOL
    assert relative_error(dlog_var, numeric[1]) <= GRAD_TOL


@given(seed=seeds, n=st.integers(1, 5), k=st.integers(1, 6))
def test_kl_forward_is_the_sum_of_per_dimension_gaussian_kls(seed, n, k):
    rng = np.random.default_rng(seed)
    mu, log_var = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    var = np.exp(log_var)
    # KL(N(m, v) || N(0, 1)) = log(1 / sqrt(v)) + (v + m^2) / 2 - 1/2, one latent dimension at a time
    expected = (np.log(1.0 / np.sqrt(var)) + (var + mu**2) / 2 - 0.5).sum(axis=1)
    np.testing.assert_allclose(kl_forward(mu, log_var)[0], expected, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- sign and zero

#: Entries are either exactly 0 or at least 1e-6 in magnitude; the region of tiny log-variances, where a
#: naive exp(v) - 1 - v loses its sign to rounding, is pinned by test_kl_is_not_negative_for_tiny_log_variances.
def entries(limit):
    return st.one_of(st.just(0.0), st.floats(1e-6, limit), st.floats(-limit, -1e-6))


def latent_pair(limit_mu=1e3, limit_log_var=30.0):
    shapes = st.tuples(st.integers(1, 5), st.integers(1, 6))
    return shapes.flatmap(lambda shape: st.tuples(arrays(np.float64, shape, elements=entries(limit_mu)),
                                                  arrays(np.float64, shape, elements=entries(limit_log_var))))


@given(pair=latent_pair())
def test_kl_is_non_negative_and_zero_only_at_the_prior(pair):
    mu, log_var = pair
    kl, _ = kl_forward(mu, log_var)
    assert np.all(np.isfinite(kl))
    at_prior = np.all((mu == 0) & (log_var == 0), axis=1)
    assert np.all(kl[at_prior] == 0.0)  # exactly, not approximately
    assert np.all(kl[~at_prior] > 0.0)


@pytest.mark.parametrize("k", [1, 4])
def test_kl_is_exactly_zero_at_the_prior(k):
    kl, cache = kl_forward(np.zeros((3, k)), np.zeros((3, k)))
    np.testing.assert_array_equal(kl, 0.0)
    dmu, dlog_var = kl_backward(np.ones(3), cache)  # the prior is the minimum: zero gradient
    np.testing.assert_array_equal(dmu, 0.0)
    np.testing.assert_array_equal(dlog_var, 0.0)


def test_kl_is_not_negative_for_tiny_log_variances():
    log_var = np.array([[1e-8], [1e-20]])
    kl, _ = kl_forward(np.zeros_like(log_var), log_var)
    assert np.all(kl >= 0.0), kl


# --------------------------------------------------------------------------- Monte Carlo oracle through the sampler

#: Monte Carlo tolerance in standard errors (exceeded by chance with probability ~6e-7 for a correct pair).
N_SE = 5.0


def monte_carlo_kl(mu, log_var, z):
    """Per-sample log q(z) - log p(z), summed over K: shape (S, N). Densities from scipy, not minivae."""
    log_q = norm.logpdf(z, loc=mu, scale=np.sqrt(np.exp(log_var))).sum(axis=-1)
    log_p = norm.logpdf(z, loc=0.0, scale=1.0).sum(axis=-1)
    return log_q - log_p


def test_closed_form_kl_matches_monte_carlo_through_the_library_sampler():
    # The closed form reads log_var as log sigma^2; the sampler must too. Each piece alone could pass its own
    # gradient check with the other convention (numpy-ml's bug); only this pairing catches the mismatch.
    mu = np.array([[0.0, 0.0], [1.0, -0.5], [-2.0, 0.3]])
    log_var = np.array([[1.0, -1.0], [0.5, -2.0], [-0.7, 1.5]])
    S = 200_000
    noise = draw_noise(np.random.default_rng(99), S, *mu.shape, np.float64)
    z, _ = reparameterize_forward(mu, log_var, noise)  # the library's own sampler

    samples = monte_carlo_kl(mu, log_var, z)  # (S, N)
    estimate = samples.mean(axis=0)
    standard_error = samples.std(axis=0, ddof=1) / np.sqrt(S)
    kl, _ = kl_forward(mu, log_var)
    np.testing.assert_array_less(np.abs(estimate - kl), N_SE * standard_error)

    # Power: a sampler that used exp(log_var) as the standard deviation lands far outside the tolerance.
    z_wrong = mu + np.exp(log_var) * noise
    wrong = monte_carlo_kl(mu, log_var, z_wrong).mean(axis=0)
    assert np.all(np.abs(wrong - kl) > 10 * N_SE * standard_error)
