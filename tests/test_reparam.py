"""The reparameterization trick: its gradients, its head split, and what it samples."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conftest import GRAD_TOL
from minivae.gradcheck import numerical_vjp, relative_error
from minivae.reparam import (LOG_VAR_LIMIT, clamp_log_var_backward, clamp_log_var_forward, draw_noise, join_head,
                             reparameterize_backward, reparameterize_forward, split_head)

seeds = st.integers(0, 2**32 - 1)


@given(seed=seeds, s=st.integers(1, 3), n=st.integers(1, 5), k=st.integers(1, 6))
def test_reparameterize_backward_matches_finite_differences(seed, s, n, k):
    rng = np.random.default_rng(seed)
    mu, log_var = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    noise, dz = rng.normal(size=(s, n, k)), rng.normal(size=(s, n, k))
    z, cache = reparameterize_forward(mu, log_var, noise)
    assert z.shape == (s, n, k)
    dmu, dlog_var = reparameterize_backward(dz, cache)
    assert dmu.shape == mu.shape and dlog_var.shape == log_var.shape
    numeric = numerical_vjp(lambda mu, log_var: reparameterize_forward(mu, log_var, noise)[0], [mu, log_var], dz)
    assert relative_error(dmu, numeric[0]) <= GRAD_TOL
    assert relative_error(dlog_var, numeric[1]) <= GRAD_TOL


@given(seed=seeds, s=st.integers(1, 3), n=st.integers(1, 5), k=st.integers(1, 6))
def test_reparameterize_forward_is_mu_plus_std_times_noise(seed, s, n, k):
    rng = np.random.default_rng(seed)
    mu, log_var, noise = rng.normal(size=(n, k)), rng.normal(size=(n, k)), rng.normal(size=(s, n, k))
    z, _ = reparameterize_forward(mu, log_var, noise)
    for i in range(s):  # sample by sample, the standard deviation written as sqrt(variance)
        np.testing.assert_allclose(z[i], mu + np.sqrt(np.exp(log_var)) * noise[i], rtol=1e-13, atol=1e-13)


@given(seed=seeds, n=st.integers(1, 5), k=st.integers(1, 6))
def test_split_head_and_join_head_round_trip(seed, n, k):
    out = np.random.default_rng(seed).normal(size=(n, 2 * k))
    mu, log_var = split_head(out)
    assert mu.shape == log_var.shape == (n, k)
    np.testing.assert_array_equal(mu, out[:, :k])  # the first K columns are the mean ...
    np.testing.assert_array_equal(log_var, out[:, k:])  # ... the last K the log-variance
    assert np.shares_memory(mu, out) and np.shares_memory(log_var, out)  # views, no copy
    np.testing.assert_array_equal(join_head(mu, log_var), out)


def test_split_head_keeps_leading_sample_axes(rng):
    out = rng.normal(size=(3, 2, 8))
    mu, log_var = split_head(out)
    assert mu.shape == log_var.shape == (3, 2, 4)
    np.testing.assert_array_equal(join_head(mu, log_var), out)


# --------------------------------------------------------------------------- what the sampler draws

#: Monte Carlo tolerance in standard errors. With a fixed seed the test is deterministic; 5 standard errors would
#: be exceeded by chance with probability about 6e-7 per quantity for a correct sampler.
N_SE = 5.0


def test_samples_have_mean_mu_and_variance_exp_log_var():
    # log_var is never 0 here: at 0 the variance and the standard deviation coincide and a sampler that uses
    # exp(log_var) as the standard deviation would go unnoticed.
    mu = np.array([[0.0, 1.5, -2.0, 0.3]])
    log_var = np.array([[1.0, -1.0, 2.0, -3.0]])
    S = 200_000
    noise = draw_noise(np.random.default_rng(2024), S, 1, 4, np.float64)
    z, _ = reparameterize_forward(mu, log_var, noise)

    var = np.exp(log_var)
    mean_se = np.sqrt(var / S)  # standard error of the sample mean
    var_se = var * np.sqrt(2.0 / (S - 1))  # standard error of the sample variance of a Gaussian
    np.testing.assert_array_less(np.abs(z.mean(axis=0) - mu), N_SE * mean_se)
    np.testing.assert_array_less(np.abs(z.var(axis=0, ddof=1) - var), N_SE * var_se)
    # The check has power: exp(log_var) used as the standard deviation gives variance exp(2 log_var).
    assert np.all(np.abs(np.exp(2 * log_var) - var) > 100 * var_se)


def test_draw_noise_is_standard_normal_of_the_requested_shape_and_dtype():
    noise = draw_noise(np.random.default_rng(7), 3, 4, 5, np.float32)
    assert noise.shape == (3, 4, 5) and noise.dtype == np.float32
    big = draw_noise(np.random.default_rng(7), 100_000, 1, 2, np.float64)
    se = 1.0 / np.sqrt(big.shape[0])
    np.testing.assert_array_less(np.abs(big.mean(axis=0)), N_SE * se)
    np.testing.assert_array_less(np.abs(big.var(axis=0) - 1.0), N_SE * np.sqrt(2.0) * se)
    again = draw_noise(np.random.default_rng(7), 3, 4, 5, np.float32)
    np.testing.assert_array_equal(noise, again)  # randomness only from the generator passed in


# --------------------------------------------------------------------------- the log-variance clamp


def test_clamp_log_var_clips_and_passes_gradients_only_inside():
    log_var = np.array([-1e4, -LOG_VAR_LIMIT - 1, -3.0, 0.0, 5.0, LOG_VAR_LIMIT + 1, 1e4])
    clipped, inside = clamp_log_var_forward(log_var)
    np.testing.assert_array_equal(clipped, [-LOG_VAR_LIMIT, -LOG_VAR_LIMIT, -3, 0, 5, LOG_VAR_LIMIT, LOG_VAR_LIMIT])
    np.testing.assert_array_equal(clamp_log_var_backward(np.full(7, 2.0), inside), [0, 0, 2, 2, 2, 0, 0])
    assert np.all(np.isfinite(np.exp(clipped.astype(np.float32))))  # finite even in float32
    assert np.all(np.isfinite(np.exp(-clipped.astype(np.float32))))


@pytest.mark.parametrize("s", [1, 3])
def test_reparameterize_stays_finite_for_clamped_extreme_log_variances(s):
    log_var, _ = clamp_log_var_forward(np.array([[-1e4, 1e4]], dtype=np.float32))
    noise = np.ones((s, 1, 2), dtype=np.float32)
    z, cache = reparameterize_forward(np.zeros((1, 2), dtype=np.float32), log_var, noise)
    dmu, dlog_var = reparameterize_backward(np.ones_like(z), cache)
    assert np.all(np.isfinite(z)) and np.all(np.isfinite(dmu)) and np.all(np.isfinite(dlog_var))
