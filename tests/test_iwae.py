"""Training on the importance-weighted bound: its pieces and the whole model's gradient against central differences,
the k = 1 reduction to the ELBO with a Monte Carlo KL, DReG in expectation and against its surrogate, the engines."""


import numpy as np
import pytest
from hypothesis import assume, given, strategies as st
from scipy.special import logsumexp
from scipy.stats import norm

from conftest import GRAD_TOL
from minivae import model as model_module
from minivae.gradcheck import model_gradient_errors, numerical_gradient, numerical_vjp, relative_error
from minivae.iwae import (OBJECTIVES, log_mean_exp_backward, log_mean_exp_forward, log_normal_backward,
                          log_normal_forward, log_prior_backward, log_prior_forward)
from minivae.layers import ACTIVATIONS
from minivae.likelihoods import LIKELIHOODS
from minivae.model import CVAE, VAE, VAEConfig
from minivae.scoring import log_normal
from minivae.serialize import load_trainer
from minivae.train import Trainer
from test_model import KINK_MARGIN, TINY_GRADIENT, make_data, pre_activations
from test_resume import BASE, interrupted_after_epoch, run, same_run


def make_iw_model(seed, *, data_dim=3, latent_dim=2, hidden=(4,), decoder_hidden=None, activation="tanh",
                  likelihood="gaussian_per_example", condition_dim=0, objective="iwae", k_train=3):
    """A float64 (C)VAE with the importance-weighted objective and every parameter non-zero."""
    kwargs = dict(latent_dim=latent_dim, hidden=hidden, decoder_hidden=decoder_hidden, activation=activation,
                  likelihood=likelihood, objective=objective, k_train=k_train, dtype="float64", seed=seed % 2**31)
    model = CVAE(data_dim, condition_dim, **kwargs) if condition_dim else VAE(data_dim, **kwargs)
    model.params.data[:] = np.random.default_rng(seed).normal(size=model.params.size) * 0.5
    return model


# --------------------------------------------------------------------------- the pieces


@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 4), n=st.integers(1, 3), latent=st.integers(1, 3))
def test_the_pieces_backward_match_finite_differences(seed, k, n, latent):
    rng = np.random.default_rng(seed)
    z, mu, log_var = rng.normal(size=(k, n, latent)), rng.normal(size=(n, latent)), rng.normal(size=(n, latent))
    dout = rng.normal(size=(k, n))
    numeric = numerical_vjp(lambda *a: log_normal_forward(*a)[0], [z, mu, log_var], dout)
    analytic = log_normal_backward(dout, log_normal_forward(z, mu, log_var)[1])
    assert max(map(relative_error, analytic, numeric)) < GRAD_TOL
    (numeric,) = numerical_vjp(lambda a: log_prior_forward(a)[0], [z], dout)
    assert relative_error(log_prior_backward(dout, log_prior_forward(z)[1]), numeric) < GRAD_TOL
    a, dbound = rng.normal(size=(k, n)) * 3, rng.normal(size=n)
    (numeric,) = numerical_vjp(lambda a: log_mean_exp_forward(a)[0], [a], dbound)
    assert relative_error(log_mean_exp_backward(dbound, log_mean_exp_forward(a)[1]), numeric) < GRAD_TOL


def test_the_log_densities_equal_scipy_and_scoring():
    rng = np.random.default_rng(0)
    z, mu, log_var = rng.normal(size=(4, 3, 2)), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    expected = norm.logpdf(z, mu, np.exp(0.5 * log_var)).sum(-1)
    np.testing.assert_allclose(log_normal_forward(z, mu, log_var)[0], expected, rtol=1e-12)
    np.testing.assert_allclose(log_normal_forward(z, mu, log_var)[0], log_normal(z, mu, log_var), rtol=1e-12)
    np.testing.assert_allclose(log_prior_forward(z)[0], norm.logpdf(z).sum(-1), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_mean_exp_is_stable_at_extreme_log_weights(dtype):
    a = np.array([[-1e4, 1e4, -50.0], [-1e4 + 1, 1e4 - 3, -3000.0], [-1e4 - 2, 1e4 - 1, -90.0]], dtype=dtype)
    out, cache = log_mean_exp_forward(a)
    np.testing.assert_allclose(out, logsumexp(a.astype(np.float64), axis=0) - np.log(3), rtol=1e-6)
    assert np.isfinite(cache.weights).all() and np.allclose(cache.weights.sum(axis=0), 1.0)
    assert out.dtype == dtype


# --------------------------------------------------------------------------- the whole model


@pytest.mark.parametrize("conditional", [False, True], ids=["vae", "cvae"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), data_dim=st.integers(1, 3), latent_dim=st.integers(1, 2),
       hidden=st.lists(st.integers(1, 3), max_size=2), decoder_hidden=st.lists(st.integers(1, 3), max_size=2),
       activation=st.sampled_from(sorted(ACTIVATIONS)), k=st.integers(1, 4), beta=st.sampled_from([0.0, 0.5, 1.0]))
def test_the_iwae_gradient_matches_finite_differences_of_the_fixed_noise_loss(likelihood, conditional, seed, n,
                                                                               data_dim, latent_dim, hidden,
                                                                               decoder_hidden, activation, k, beta):
    model = make_iw_model(seed, data_dim=data_dim, latent_dim=latent_dim, hidden=tuple(hidden),
                          decoder_hidden=tuple(decoder_hidden), activation=activation, likelihood=likelihood,
                          condition_dim=2 if conditional else 0, k_train=k)
    rng = np.random.default_rng(seed + 1)
    x, c = make_data(model, n, rng)
    noise = rng.standard_normal((k, n, latent_dim))
    if model.activation.kink:
        _, cache = model.forward(x, c, noise=noise, beta=beta)
        assume(all(np.abs(a).min() > KINK_MARGIN for a in pre_activations(cache)))
    errors = model_gradient_errors(model, x, c, noise=noise, beta=beta)
    assert set(errors) == set(model.params.names())
    failing = {name: err for name, err in errors.items() if err > GRAD_TOL}
    if failing:  # only then: were the failing gradients too small for central differences to resolve?
        loss, grads = model.loss_and_grads(x, c, noise=noise, beta=beta)
        floor = TINY_GRADIENT * max(1.0, abs(float(loss)))
        analytic = {name: np.abs(grads[name]).max() for name in failing}

        def total():
            return float(model.loss(x, c, noise=noise, beta=beta).total)

        assume(not all(max(analytic[name], np.abs(numerical_gradient(total, model.params[name])).max()) < floor
                       for name in failing))
    assert not failing, failing


def independent_parts(model, x, c, noise):
    """-log p(x|z), log q(z|x) and log p(z) for each sample (k, N), from the model's public methods and scipy."""
    mu, log_var = model.encode(x, c)
    z = mu + np.exp(0.5 * log_var) * noise
    return (-model.log_px_given_z(x, z, c), norm.logpdf(z, mu, np.exp(0.5 * log_var)).sum(-1),
            norm.logpdf(z).sum(-1))


@pytest.mark.parametrize("beta", [0.3, 1.0])
def test_k_1_is_the_elbo_with_a_monte_carlo_kl(beta):
    model = make_iw_model(3, k_train=1)
    rng = np.random.default_rng(4)
    x, _ = make_data(model, 5, rng)
    noise = rng.standard_normal((1, 5, 2))
    nll, log_q, log_p = independent_parts(model, x, None, noise)
    loss = model.loss(x, noise=noise, beta=beta)
    np.testing.assert_allclose(float(loss.total), (nll + beta * (log_q - log_p)).mean(), rtol=1e-12)
    np.testing.assert_allclose(float(loss.kl), (log_q - log_p).mean(), rtol=1e-12)
    # and the ELBO's gradient in expectation: averaged over many draws it is the analytic-KL ELBO's
    elbo = VAE(config=VAEConfig(**{**model.config.to_dict(), "objective": "elbo", "k_train": 1}), dtype="float64")
    elbo.params.data[:] = model.params.data
    draws = [np.random.default_rng(i).standard_normal((1, 5, 2)) for i in range(400)]
    diff = np.array([model.loss_and_grads(x, noise=d, beta=beta)[1]["encoder.0.W"].ravel().copy()
                     - elbo.loss_and_grads(x, noise=d, beta=beta)[1]["encoder.0.W"].ravel() for d in draws])
    assert np.all(np.abs(diff.mean(0)) < 5 * diff.std(0) / np.sqrt(len(draws)) + 1e-12)


def test_the_bound_is_tighter_than_the_elbo_and_below_the_exact_log_likelihood():
    model = make_iw_model(5, k_train=1, likelihood="gaussian_shared")
    x, _ = make_data(model, 4, np.random.default_rng(6))
    rng = np.random.default_rng(7)
    losses = {k: np.mean([float(model.loss(x, noise=rng.standard_normal((k, 4, 2))).total) for _ in range(300)])
              for k in (1, 16)}
    assert losses[16] < losses[1] - 1e-3  # -L_16 < -L_1 (the bound grows with k)
    assert losses[16] > -float(np.mean(model.log_likelihood(x, k=20000, rng=np.random.default_rng(8)))) - 0.01


# --------------------------------------------------------------------------- DReG


def dreg_surrogate(model, frozen, x, c, noise, beta):
    """The scalar whose gradient DReG returns at ``frozen``'s parameters (docs/derivations/iwae_training.md):
    the decoder's term with the weights and samples held, the encoder's with the coefficients held, the decoder
    held and mu, sigma held inside log q. Built from the public methods and scipy, not from the backward."""
    nll0, log_q0, log_p0 = independent_parts(frozen, x, c, noise)
    a0 = -nll0 + beta * (log_p0 - log_q0)
    weights = np.exp(a0 - logsumexp(a0, axis=0))
    coefficient = weights * (1.0 - beta + beta * weights)
    mu0, log_var0 = frozen.encode(x, c)
    z0 = mu0 + np.exp(0.5 * log_var0) * noise
    mu, log_var = model.encode(x, c)
    z = mu + np.exp(0.5 * log_var) * noise
    decoder_term = model.log_px_given_z(x, z0, c)  # theta moves, z held
    encoder_term = (frozen.log_px_given_z(x, z, c)  # z moves with phi, theta held
                    + beta * (norm.logpdf(z).sum(-1) - norm.logpdf(z, mu0, np.exp(0.5 * log_var0)).sum(-1)))
    return -((weights * decoder_term).sum(0) + (coefficient * encoder_term).sum(0)).mean()


@pytest.mark.parametrize("conditional", [False, True], ids=["vae", "cvae"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_dreg_is_the_gradient_of_its_stop_gradient_surrogate(likelihood, conditional, beta):
    model = make_iw_model(11, likelihood=likelihood, objective="iwae-dreg", k_train=4, hidden=(3,),
                          condition_dim=2 if conditional else 0)
    rng = np.random.default_rng(12)
    x, c = make_data(model, 3, rng)
    noise = rng.standard_normal((4, 3, 2))
    frozen = model.to("cpu")  # a copy: the parameters the surrogate holds
    _, grads = model.loss_and_grads(x, c, noise=noise, beta=beta)
    analytic = {name: g.copy() for name, g in grads.items()}
    errors = {name: relative_error(analytic[name], numerical_gradient(
        lambda: dreg_surrogate(model, frozen, x, c, noise, beta), model.params.values[name]))
        for name in model.params.names()}
    assert max(errors.values()) < GRAD_TOL, errors


def paired_gradient_differences(model_a, model_b, x, draws, beta):
    """Per draw of the noise, the encoder's flat gradient of ``model_a`` minus ``model_b``'s, on the same noise."""
    def encoder(model, noise):
        grads = model.loss_and_grads(x, noise=noise, beta=beta)[1]
        return np.concatenate([g.ravel() for name, g in grads.items() if name.startswith("encoder")])

    return np.array([encoder(model_a, d) - encoder(model_b, d) for d in draws])


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_dreg_equals_the_iwae_gradient_in_expectation(beta, monkeypatch):
    iwae = make_iw_model(21, k_train=4, likelihood="gaussian_shared", hidden=(3,))
    dreg = make_iw_model(21, k_train=4, likelihood="gaussian_shared", hidden=(3,), objective="iwae-dreg")
    x, _ = make_data(iwae, 3, np.random.default_rng(22))
    draws = [np.random.default_rng([23, i]).standard_normal((4, 3, 2)) for i in range(1500)]
    _, g_iwae = iwae.loss_and_grads(x, noise=draws[0], beta=beta)
    _, g_dreg = dreg.loss_and_grads(x, noise=draws[0], beta=beta)
    for name in iwae.params.names():  # the decoder's gradient is the same estimate, draw by draw
        if not name.startswith("encoder"):
            np.testing.assert_array_equal(g_iwae[name], g_dreg[name])
    diff = paired_gradient_differences(dreg, iwae, x, draws, beta)
    se = diff.std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(diff.mean(0)) < 4.5 * se), (diff.mean(0), se)
    # The test can fail: the path terms weighted by w~ alone (the score terms dropped, no DReG factor) are biased.
    monkeypatch.setattr(model_module, "dreg_scale", lambda weights, b: np.ones_like(weights))
    biased = paired_gradient_differences(dreg, iwae, x, draws, beta)
    assert np.any(np.abs(biased.mean(0)) > 8 * biased.std(0) / np.sqrt(len(draws)))


# --------------------------------------------------------------------------- the configuration and the engines


@pytest.mark.parametrize("kwargs, name", [(dict(objective="iwea"), "objective"), (dict(objective="elbo", k_train=2),
                                                                                   "k_train"),
                                          (dict(objective="iwae", n_samples=2, k_train=2), "n_samples"),
                                          (dict(objective="iwae", k_train=0), "k_train")])
def test_a_bad_objective_or_k_train_is_refused_by_name(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}: expected"):
        VAE(3, **kwargs)


@pytest.mark.parametrize("objective", OBJECTIVES[1:])
def test_the_trainer_runs_the_bound_on_the_reference_engine_and_refuses_the_fast_one(objective):
    model = VAE(2, 2, (8,), likelihood="gaussian_shared", objective=objective, k_train=3, seed=1)
    assert Trainer(model).engine == "reference"
    with pytest.raises(ValueError, match="^engine: expected 'reference'"):
        Trainer(model, engine="fast")
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    history = Trainer(model, lr=1e-2, batch_size=16).fit(x, epochs=3, x_val=x[:16], progress=False)
    assert np.isfinite(history.train_loss).all() and history.train_loss[-1] < history.train_loss[0]


# --------------------------------------------------------------------------- the command line, checkpoints, resume

IW_RUN = ["--objective", "iwae-dreg", "--k-train", "3", "--batch-size", "50"]


def test_a_bound_run_stores_its_objective_and_resumes_exactly(tmp_path, monkeypatch):
    assert run(*BASE, *IW_RUN, "--epochs", "2", "--out", tmp_path / "straight")[0] == 0
    trainer = load_trainer(tmp_path / "straight" / "model.npz")
    assert (trainer.model.config.objective, trainer.model.config.k_train, trainer.engine) == ("iwae-dreg", 3,
                                                                                              "reference")
    interrupted_after_epoch(monkeypatch, 1)
    assert run(*BASE, *IW_RUN, "--epochs", "2", "--out", tmp_path / "resumed")[0] == 130
    monkeypatch.undo()
    code, out, err = run("train", "--resume", "--no-progress", "--k", "2", "--out", tmp_path / "resumed")
    assert code == 0 and "after epoch 1" in out, err
    same_run(tmp_path / "resumed", tmp_path / "straight")
    before = (tmp_path / "resumed" / "model.npz").read_bytes()
    for flag, value in (("--objective", "iwae"), ("--objective", "elbo"), ("--k-train", "4"), ("--engine", "fast")):
        code, _, err = run("train", "--out", tmp_path / "resumed", "--resume", "--epochs", "3", flag, value)
        assert code == 2 and err.startswith(f"minivae train: error: {flag}: expected"), err
    assert (tmp_path / "resumed" / "model.npz").read_bytes() == before


@pytest.mark.parametrize("argv, flag", [(["--k-train", "2"], "--k-train"),
                                        (["--objective", "iwae", "--samples", "2"], "--samples"),
                                        (["--objective", "iwae", "--engine", "fast"], "--engine"),
                                        (["--objective", "iwae", "--k-train", str(10 ** 12)], "--batch-size/--k-train")])
def test_bad_objective_flags_are_refused_by_name_before_anything_is_made(tmp_path, argv, flag):
    code, _, err = run(*BASE, "--epochs", "1", *argv, "--out", tmp_path / "r")
    assert code == 2 and err.startswith(f"minivae train: error: {flag}: expected"), err
    assert not (tmp_path / "r").exists()


def test_the_gradcheck_command_checks_the_bound():
    code, out, err = run("gradcheck", "--objective", "iwae", "--k-train", "3", "--likelihood", "gaussian_per_dim")
    assert code == 0 and "objective='iwae', k_train=3" in out and "PASS" in out, err
    code, _, err = run("gradcheck", "--objective", "iwae", "--samples", "2")
    assert code == 2 and err.startswith("minivae gradcheck: error: --samples: expected 1"), err
