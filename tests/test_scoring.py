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


# --------------------------------------------------------------------------- the fast path: same numbers, bit for bit

from hypothesis import given, strategies as st  # noqa: E402

from minivae import cores  # noqa: E402
from minivae.layers import ACTIVATIONS  # noqa: E402
from minivae.likelihoods import LIKELIHOODS  # noqa: E402


def _scored_on(monkeypatch, threads, model, x, **kwargs):
    monkeypatch.setattr(scoring, "row_blocks", lambda n: cores.row_blocks(n, threads))
    return model.log_likelihood(x, rng=np.random.default_rng(5), **kwargs)


def assert_same_up_to_blas_rounding(got, expected):
    """Equal but for the BLAS's rounding of a product, which may depend on its number of rows (cores.py)."""
    rtol = 1e-5 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=rtol)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_examples_split_over_threads_give_the_same_estimate(monkeypatch, likelihood, dtype):
    model = VAE(12, 3, (16,), likelihood=likelihood, dtype=dtype, seed=1)
    x = np.random.default_rng(2).random((300, 12))  # a batch of 256 (two or three blocks), then one of 44 (one)
    one = _scored_on(monkeypatch, 1, model, x, k=23)
    for threads in (2, 3):
        assert_same_up_to_blas_rounding(_scored_on(monkeypatch, threads, model, x, k=23), one)
    monkeypatch.setattr(scoring, "CHUNK_ELEMENTS", {"cpu": 256 * 16 * 2})  # two samples a pass, five a draw
    assert_same_up_to_blas_rounding(_scored_on(monkeypatch, 2, model, x, k=23), one)


def test_a_conditional_model_split_over_threads_gives_the_same_estimate(monkeypatch):
    model = VAE(6, 2, (8, 5), activation="tanh", likelihood="bernoulli", condition_dim=3, seed=3)
    x = np.random.default_rng(4).random((200, 6))
    c = np.eye(3)[np.arange(200) % 3]
    one = _scored_on(monkeypatch, 1, model, x, k=9, c=c)
    assert_same_up_to_blas_rounding(_scored_on(monkeypatch, 2, model, x, k=9, c=c), one)


def test_buffers_grow_when_a_later_batch_has_a_larger_block(monkeypatch):
    # batches of 150 rows split in two blocks of 75, then a batch of 127 rows in one block of 127
    model = VAE(10, 2, (7,), likelihood="bernoulli", seed=6)
    x = np.random.default_rng(7).random((277, 10))
    one = _scored_on(monkeypatch, 1, model, x, k=11, batch_size=150)
    assert_same_up_to_blas_rounding(_scored_on(monkeypatch, 2, model, x, k=11, batch_size=150), one)


@given(activation=st.sampled_from(sorted(ACTIVATIONS)), likelihood=st.sampled_from(LIKELIHOODS),
       hidden=st.lists(st.integers(1, 6), min_size=0, max_size=2), conditional=st.booleans(),
       samples=st.integers(1, 3), n=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_the_decoder_in_buffers_gives_the_models_log_px_given_z_bit_for_bit(activation, likelihood, hidden,
                                                                             conditional, samples, n, seed):
    C = 2 if conditional else 0
    model = VAE(5, 3, tuple(hidden), activation=activation, likelihood=likelihood, condition_dim=C, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.random((n, 5)).astype(model.dtype)
    z = rng.standard_normal((samples, n, 3)).astype(model.dtype)
    c = rng.random((n, C)) if conditional else None
    rows = scoring._Rows(model, samples + 1, n, np)  # larger than needed: a chunk may be short
    assert np.array_equal(scoring._log_px_given_z(model, x, z, c, rows), model.log_px_given_z(x, z, c))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_standard_normal_is_log_normal_at_zero_bit_for_bit(rng, dtype):
    z = (rng.normal(size=(4, 7, 5)) * 3).astype(dtype)
    assert np.array_equal(scoring.log_standard_normal(z), scoring.log_normal(z, 0.0, np.zeros_like(z)))
    np.testing.assert_allclose(scoring.log_standard_normal(z.astype(np.float64)),
                               norm.logpdf(z.astype(np.float64)).sum(axis=-1), rtol=1e-12)
