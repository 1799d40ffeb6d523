"""Importance-weighted log-likelihood: checked against an exact marginal likelihood.

A VAE whose decoder is linear (no hidden layer) with a fixed-variance Gaussian
likelihood is probabilistic PCA: x = z W + b + noise, z ~ N(0, I), so
p(x) = N(x; b, W^T W + sigma^2 I) exactly (minivae.ppca.linear_vae_log_likelihood, itself checked against
scipy.stats.multivariate_normal in test_ppca.py).
That gives an oracle no gradient check can replace.
"""

import numpy as np
import pytest
from scipy.stats import norm

from minivae import scoring
from minivae.model import VAE
from minivae.ppca import linear_vae_log_likelihood


def linear_gaussian_model(seed=0, data_dim=4, latent_dim=2, variance=0.3, encoder_noise=0.0):
    """Probabilistic PCA as a VAE, with the encoder set to the exact posterior (plus optional noise).

    The decoder's rows W_k are made orthogonal, so M = W W^T + sigma^2 I is
    diagonal and the exact posterior p(z|x) = N((x - b) W^T M^-1, sigma^2 M^-1)
    is a diagonal Gaussian that the linear encoder can represent exactly.
    """
    model = VAE(data_dim, latent_dim, hidden=(), likelihood="gaussian_fixed", fixed_variance=variance,
                dtype="float64", seed=seed)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(data_dim, latent_dim)))  # orthonormal columns
    W = (q * rng.uniform(0.5, 2.0, latent_dim)).T  # (K, D), orthogonal rows
    b = rng.normal(size=data_dim)
    m = (W * W).sum(axis=1) + variance  # diagonal of M
    p = model.params
    p["decoder.0.W"][...], p["decoder.0.b"][...] = W, b
    p["encoder.0.W"][...] = 0.0
    p["encoder.0.W"][:, :latent_dim] = W.T / m  # mu = (x - b) W^T M^-1
    p["encoder.0.b"][:latent_dim] = -(b @ W.T) / m
    p["encoder.0.b"][latent_dim:] = np.log(variance / m)  # log of the posterior variance sigma^2 / M_kk
    enc = slice(*p.offsets["encoder.0.W"])
    p.data[enc] += encoder_noise * rng.normal(size=p.data[enc].size)
    return model


def exact_log_px(model, x):
    return linear_vae_log_likelihood(model, x)  # N(x; b, W^T W + sigma^2 I), eq. linear-marginal


def test_log_normal_matches_scipy(rng):
    z, mu, log_var = rng.normal(size=(3, 5, 4))
    expected = norm.logpdf(z, mu, np.exp(0.5 * log_var)).sum(axis=-1)
    np.testing.assert_allclose(scoring.log_normal(z, mu, log_var), expected, rtol=1e-12)


@pytest.mark.parametrize("k", [1, 7])
def test_exact_posterior_gives_the_exact_log_likelihood_for_any_k(k):
    # With q(z|x) = p(z|x) every importance weight equals p(x): no Monte Carlo error at all.
    model = linear_gaussian_model()
    x = np.random.default_rng(1).normal(size=(20, 4))
    estimate = model.log_likelihood(x, k=k, rng=np.random.default_rng(2))
    np.testing.assert_allclose(estimate, exact_log_px(model, x), rtol=1e-9)


def test_importance_weighted_estimate_converges_to_exact_log_likelihood():
    model = linear_gaussian_model(seed=3, encoder_noise=0.05)  # an imperfect proposal
    x = np.random.default_rng(4).normal(size=(30, 4))
    exact = exact_log_px(model, x)
    gap_1 = exact - model.log_likelihood(x, k=1, rng=np.random.default_rng(5))
    gap_k = exact - model.log_likelihood(x, k=5000, rng=np.random.default_rng(6))
    assert gap_1.mean() > 0.03  # the imperfect proposal leaves a visible gap at k = 1 ...
    assert abs(gap_k.mean()) < 0.005  # ... which k = 5000 closes on average ...
    assert np.abs(gap_k).max() < 0.05  # ... and for every example


def test_elbo_is_below_the_exact_log_likelihood():
    model = linear_gaussian_model(seed=7, encoder_noise=0.3)
    x = np.random.default_rng(8).normal(size=(50, 4))
    elbo = model.elbo(x, rng=np.random.default_rng(9), n_samples=4000)
    assert np.all(elbo < exact_log_px(model, x))


def test_bound_does_not_fall_as_k_grows_and_k1_is_the_elbo_on_average():
    model = linear_gaussian_model(seed=10, encoder_noise=0.3)
    x = np.random.default_rng(11).normal(size=(40, 4))
    means = [model.log_likelihood(x, k=k, rng=np.random.default_rng(12)).mean() for k in (1, 10, 100, 1000)]
    assert all(a <= b + 1e-3 for a, b in zip(means, means[1:])), means
    assert means[-1] <= exact_log_px(model, x).mean() + 1e-3
    # E[log w] with one sample is the ELBO (Monte Carlo KL instead of the closed form).
    draws = np.array([model.log_likelihood(x, k=1, rng=np.random.default_rng(s)).mean() for s in range(200)])
    elbo = model.elbo(x, rng=np.random.default_rng(13), n_samples=20000).mean()
    standard_error = draws.std() / np.sqrt(draws.size)
    assert abs(draws.mean() - elbo) < 5 * standard_error + 1e-3


def test_chunking_does_not_change_the_estimate(monkeypatch):
    model = linear_gaussian_model(seed=10, encoder_noise=0.3)
    x = np.random.default_rng(11).normal(size=(7, 4))
    whole = model.log_likelihood(x, k=300, rng=np.random.default_rng(12))
    monkeypatch.setattr(scoring, "CHUNK_ELEMENTS", {"cpu": 50})  # chunks of ~2 samples
    chunked = model.log_likelihood(x, k=300, rng=np.random.default_rng(12), batch_size=7)
    np.testing.assert_allclose(chunked, whole, rtol=1e-10)


def test_estimate_is_finite_for_examples_far_from_the_data():
    model = linear_gaussian_model(seed=13)
    x = np.full((2, 4), 50.0)  # importance weights around exp(-4000): they underflow unless summed in log space
    ll = model.log_likelihood(x, k=100, rng=np.random.default_rng(14))
    assert np.all(np.isfinite(ll)) and np.all(ll < -1000)


def test_conditional_model_is_scored_given_its_condition():
    model = VAE(4, 2, (5,), likelihood="bernoulli", condition_dim=3, dtype="float64")
    x = np.random.default_rng(0).random((6, 4))
    c = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    assert model.log_likelihood(x, k=10, c=c).shape == (6,)
    with pytest.raises(ValueError, match="c:"):
        model.log_likelihood(x, k=10)


@pytest.mark.parametrize("k", [0, -1])
def test_k_must_be_positive(k):
    model = linear_gaussian_model()
    with pytest.raises(ValueError, match="k:"):
        model.log_likelihood(np.zeros((2, 4)), k=k)
