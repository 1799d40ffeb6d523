"""The VAE and CVAE: the whole negative ELBO's gradient, the loss against an independent recomputation, the API."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st
from scipy.special import expit
from scipy.stats import bernoulli, norm

from conftest import GRAD_TOL
from minivae.gradcheck import model_gradient_errors, numerical_gradient
from minivae.layers import ACTIVATIONS
from minivae.likelihoods import LIKELIHOODS
from minivae.model import CVAE, VAE

#: Pre-activations closer than this to a relu kink are skipped: a finite-difference step of 1e-6 in a parameter moves
#: them by about 1e-6 times the scale of the layer's input, far less than this margin.
KINK_MARGIN = 1e-3

#: relative_error divides by each parameter's own largest gradient entry, while a central difference carries an
#: absolute rounding error of about eps * |L| / h ~ 1e-10 * |L| (up to 1.2e-10 * |L| measured here). A gradient below
#: TINY_GRADIENT * max(1, |L|) (a leaky_relu slope of 0.01 on a width-1 path, stacked sigmoid derivatives, a single
#: bias whose batch terms happen to cancel) tests the step size, not the backward: central differences may even return
#: exactly 0 for it. A draw is skipped only when every failing parameter has BOTH its analytic and its numerical gradient
#: below that floor, so a backward wrong by more than the floor is never excused.
TINY_GRADIENT = 1e-3


def make_model(seed, *, data_dim, latent_dim, hidden, decoder_hidden=None, activation="tanh", likelihood="bernoulli",
               n_samples=1, condition_dim=0, fixed_variance=1.0):
    """A float64 (C)VAE whose every parameter is non-zero: zero biases could hide a wrong backward."""
    kwargs = dict(latent_dim=latent_dim, hidden=hidden, decoder_hidden=decoder_hidden, activation=activation,
                  likelihood=likelihood, n_samples=n_samples, fixed_variance=fixed_variance, dtype="float64",
                  seed=seed % 2**31)
    model = CVAE(data_dim, condition_dim, **kwargs) if condition_dim else VAE(data_dim, **kwargs)
    rng = np.random.default_rng(seed)
    model.params.data[:] = rng.normal(size=model.params.size) * 0.5
    return model


def make_data(model, n, rng, binary=False):
    """x (n, D) valid for the model's likelihood, c (n, C) or None, and nothing else."""
    cfg = model.config
    if cfg.likelihood == "bernoulli":
        x = rng.random((n, cfg.data_dim))
        x = np.round(x) if binary else x  # grey levels are allowed (the continuous relaxation)
    else:
        x = rng.normal(size=(n, cfg.data_dim))
    c = rng.normal(size=(n, cfg.condition_dim)) if cfg.condition_dim else None
    return x, c


def pre_activations(cache):
    """Every hidden pre-activation of both networks (relu and leaky_relu keep their input in the ActCache)."""
    return [a.saved for mlp in (cache.enc, cache.dec) for a in mlp.act]


# --------------------------------------------------------------------------- the whole negative ELBO's gradient


@pytest.mark.parametrize("conditional", [False, True], ids=["vae", "cvae"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), data_dim=st.integers(1, 4), latent_dim=st.integers(1, 3),
       hidden=st.lists(st.integers(1, 4), max_size=2), decoder_hidden=st.lists(st.integers(1, 4), max_size=2),
       activation=st.sampled_from(sorted(ACTIVATIONS)), n_samples=st.sampled_from([1, 3]),
       beta=st.integers(0, 8).map(lambda i: i / 4), fixed_variance=st.sampled_from([0.5, 1.0, 2.0]))
def test_every_parameter_gradient_matches_finite_differences(likelihood, conditional, seed, n, data_dim, latent_dim,
                                                               hidden, decoder_hidden, activation, n_samples, beta,
                                                               fixed_variance):
    # Encoder and decoder each get 0..2 hidden layers, independently of each other.
    model = make_model(seed, data_dim=data_dim, latent_dim=latent_dim, hidden=tuple(hidden),
                       decoder_hidden=tuple(decoder_hidden), activation=activation, likelihood=likelihood,
                       n_samples=n_samples, condition_dim=2 if conditional else 0, fixed_variance=fixed_variance)
    rng = np.random.default_rng(seed + 1)  # data and noise independent of the weights
    x, c = make_data(model, n, rng)
    noise = rng.standard_normal((n_samples, n, latent_dim))
    if model.activation.kink:
        _, cache = model.forward(x, c, noise=noise, beta=beta)
        assume(all(np.abs(a).min() > KINK_MARGIN for a in pre_activations(cache)))

    errors = model_gradient_errors(model, x, c, noise=noise, beta=beta)
    assert set(errors) == set(model.params.names())  # every parameter is checked
    failing = {name: err for name, err in errors.items() if err > GRAD_TOL}
    if failing:  # only then: were the failing gradients too small for central differences to resolve?
        assume(not all_unresolvable(model, x, c, noise, beta, failing))
    assert not failing, failing


def all_unresolvable(model, x, c, noise, beta, names):
    """Whether every named parameter's analytic and numerical gradients are both below the floor (see TINY_GRADIENT)."""
    loss, grads = model.loss_and_grads(x, c, noise=noise, beta=beta)
    floor = TINY_GRADIENT * max(1.0, abs(float(loss)))
    analytic = {name: np.abs(grads[name]).max() for name in names}  # read before model.loss runs again

    def total():
        return float(model.loss(x, c, noise=noise, beta=beta).total)

    return all(max(analytic[name], np.abs(numerical_gradient(total, model.params[name])).max()) < floor
               for name in names)


def test_gradient_check_refuses_a_float32_model(rng):
    model = VAE(3, 2, (4,), dtype="float32")
    x, _ = make_data(model, 2, rng)
    with pytest.raises(ValueError, match=r"^model: expected a float64 model"):
        model_gradient_errors(model, x, noise=np.zeros((1, 2, 2), dtype=np.float32))


# --------------------------------------------------------------------------- the loss, recomputed independently


def reference_mlp(h, layers, phi):
    """Affine layers with ``phi`` between them and none after the last, written out again."""
    for i, (W, b) in enumerate(layers):
        h = h @ W + b
        if i < len(layers) - 1:
            h = phi(h)
    return h


def reference_loss(model, x, c, noise, beta):
    """The negative ELBO from its parts: mean over the batch of beta * KL + mean over S of -log p(x|z)."""
    p, cfg = model.params, model.config
    K, S, N = cfg.latent_dim, noise.shape[0], x.shape[0]

    def layers(net):
        count = sum(1 for name in p.names() if name.startswith(net) and name.endswith(".W"))
        return [(p[f"{net}.{i}.W"], p[f"{net}.{i}.b"]) for i in range(count)]

    enc_in = x if c is None else np.hstack([x, c])
    enc_out = reference_mlp(enc_in, layers("encoder"), np.tanh)
    mu, log_var = enc_out[:, :K], enc_out[:, K:]
    kl = 0.5 * np.sum(mu**2 + np.exp(log_var) - 1.0 - log_var, axis=1)  # closed form, (N,)

    nll = np.empty((S, N))
    for s in range(S):
        z = mu + np.sqrt(np.exp(log_var)) * noise[s]
        dec_in = z if c is None else np.hstack([z, c])
        out = reference_mlp(dec_in, layers("decoder"), np.tanh)
        if cfg.likelihood == "bernoulli":
            log_px = bernoulli.logpmf(x, expit(out))
        else:
            mean = out[:, :cfg.data_dim]
            var = {"gaussian_fixed": lambda: cfg.fixed_variance,
                   "gaussian_shared": lambda: np.exp(p["likelihood.log_var"]),
                   "gaussian_per_dim": lambda: np.exp(p["likelihood.log_var"]),
                   "gaussian_per_example": lambda: np.exp(out[:, cfg.data_dim:])}[cfg.likelihood]()
            log_px = norm.logpdf(x, loc=mean, scale=np.sqrt(var))
        nll[s] = -log_px.sum(axis=1)
    return beta * kl.mean() + nll.mean(axis=0).mean(), kl.mean(), nll.mean()


@pytest.mark.parametrize("conditional", [False, True], ids=["vae", "cvae"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_loss_equals_an_independent_recomputation(likelihood, conditional):
    rng = np.random.default_rng(42)
    model = make_model(7, data_dim=4, latent_dim=2, hidden=(3,), activation="tanh", likelihood=likelihood,
                       n_samples=3, condition_dim=2 if conditional else 0, fixed_variance=0.7)
    x, c = make_data(model, 5, rng, binary=True)  # binary data: a true Bernoulli pmf
    noise = rng.standard_normal((3, 5, 2))
    beta = 0.6
    loss = model.loss(x, c, noise=noise, beta=beta)
    total, kl, nll = reference_loss(model, x, c, noise, beta)
    np.testing.assert_allclose(float(loss.total), total, rtol=1e-12)
    np.testing.assert_allclose(float(loss.kl), kl, rtol=1e-12)
    np.testing.assert_allclose(float(loss.nll), nll, rtol=1e-12)
    assert float(loss.total) == pytest.approx(beta * float(loss.kl) + float(loss.nll), rel=1e-15)


# --------------------------------------------------------------------------- gradients: storage and determinism


def test_grads_are_named_views_of_the_flat_gradient_buffer(rng):
    model = make_model(1, data_dim=3, latent_dim=2, hidden=(4,), likelihood="gaussian_shared")
    x, _ = make_data(model, 4, rng)
    _, grads = model.loss_and_grads(x, noise=rng.standard_normal((1, 4, 2)))
    assert set(grads) == set(model.params.names())
    for name, g in grads.items():
        start, stop = model.params.offsets[name]
        np.testing.assert_array_equal(g.reshape(-1), model.params.grad[start:stop])
        assert g.shape == model.params[name].shape
    model.params.grad[:] = np.arange(model.params.size)  # writing the flat buffer shows through every view
    for name, g in grads.items():
        start, stop = model.params.offsets[name]
        np.testing.assert_array_equal(g.reshape(-1), np.arange(start, stop))


def test_loss_and_grads_is_deterministic_for_fixed_noise(rng):
    model = make_model(2, data_dim=3, latent_dim=2, hidden=(4, 3), likelihood="gaussian_per_example", n_samples=3)
    x, _ = make_data(model, 4, rng)
    noise = rng.standard_normal((3, 4, 2))
    loss_1, grads_1 = model.loss_and_grads(x, noise=noise, beta=0.5)
    first = model.params.grad.copy()
    model.params.grad[:] = np.nan  # every entry must be written again, not accumulated onto stale values
    loss_2, _ = model.loss_and_grads(x, noise=noise, beta=0.5)
    assert float(loss_1) == float(loss_2)
    np.testing.assert_array_equal(model.params.grad, first)


def test_given_noise_is_used_and_not_drawn(rng):
    model = make_model(3, data_dim=3, latent_dim=2, hidden=(4,), n_samples=2)
    x, _ = make_data(model, 4, rng)
    noise_a, noise_b = rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 2))
    assert float(model.loss(x, noise=noise_a).total) != float(model.loss(x, noise=noise_b).total)
    with pytest.raises(ValueError, match=r"^noise:"):
        model.loss(x, noise=rng.standard_normal((2, 3, 2)))


# --------------------------------------------------------------------------- encode, decode, reconstruct, sample


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_encode_decode_reconstruct_and_sample_shapes_and_ranges(likelihood, rng):
    model = make_model(4, data_dim=5, latent_dim=3, hidden=(6,), likelihood=likelihood)
    x, _ = make_data(model, 7, rng)
    mu, log_var = model.encode(x)
    assert mu.shape == log_var.shape == (7, 3)
    decoded = model.decode(rng.normal(scale=5.0, size=(7, 3)))
    reconstructed = model.reconstruct(x)
    generated = model.sample(9, rng=np.random.default_rng(1))
    drawn = model.sample(9, rng=np.random.default_rng(1), mean=False)
    for out in (decoded, reconstructed, generated, drawn):
        assert out.dtype == np.float64 and np.all(np.isfinite(out))
    assert decoded.shape == reconstructed.shape == (7, 5)  # D values even when the decoder outputs 2D
    assert generated.shape == drawn.shape == (9, 5)
    if likelihood == "bernoulli":
        for probabilities in (decoded, reconstructed, generated):
            assert np.all((probabilities >= 0) & (probabilities <= 1))
        assert set(np.unique(drawn)) <= {0.0, 1.0}
    np.testing.assert_array_equal(reconstructed, model.decode(mu))  # decode the mean of q(z|x)


def test_cvae_generates_per_condition(rng):
    model = make_model(5, data_dim=4, latent_dim=2, hidden=(5,), condition_dim=3)
    labels = np.eye(3)[[0, 1, 2, 0]]
    x, _ = make_data(model, 4, rng)
    assert model.encode(x, labels)[0].shape == (4, 2)
    assert model.sample(4, labels).shape == (4, 4)
    assert model.reconstruct(x, labels).shape == (4, 4)
    z = rng.normal(size=(1, 2)).repeat(2, axis=0)
    same_z = model.decode(z, np.eye(3)[[0, 1]])
    assert not np.allclose(same_z[0], same_z[1])  # the condition reaches the decoder


# --------------------------------------------------------------------------- conditions and data are checked


def test_cvae_requires_c_and_vae_refuses_it(rng):
    cvae = make_model(6, data_dim=3, latent_dim=2, hidden=(4,), condition_dim=2)
    vae = make_model(6, data_dim=3, latent_dim=2, hidden=(4,))
    x, c = make_data(cvae, 4, rng)
    for call in (lambda: cvae.loss(x), lambda: cvae.encode(x), lambda: cvae.sample(2),
                 lambda: cvae.decode(rng.normal(size=(4, 2)))):
        with pytest.raises(ValueError, match=r"^c: expected a condition array"):
            call()
    for call in (lambda: vae.loss(x, c), lambda: vae.encode(x, c), lambda: vae.sample(4, c)):
        with pytest.raises(ValueError, match=r"^c: expected None"):
            call()
    with pytest.raises(ValueError, match=r"^c:"):
        cvae.loss(x, c[:3])  # one row per row of x
    with pytest.raises(ValueError, match=r"^c:"):
        cvae.loss(x, rng.normal(size=(4, 5)))  # C columns


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian_per_dim"])
@pytest.mark.parametrize("bad", ["wrong_features", "one_d", "int", "nan", "inf", "empty", "above_one", "below_zero"])
def test_bad_x_is_refused_by_name(likelihood, bad, rng):
    model = make_model(8, data_dim=3, latent_dim=2, hidden=(4,), likelihood=likelihood)
    x = rng.random((4, 3)) * 0.5 + 0.25
    bad_x = {"wrong_features": lambda: rng.random((4, 2)), "one_d": lambda: rng.random(3),
             "int": lambda: np.ones((4, 3), dtype=int), "nan": lambda: np.where(x > 0.5, np.nan, x),
             "inf": lambda: np.full((4, 3), np.inf), "empty": lambda: np.zeros((0, 3)),
             "above_one": lambda: x + 1.0, "below_zero": lambda: x - 1.0}[bad]()
    if bad in ("above_one", "below_zero") and likelihood != "bernoulli":
        model.loss(bad_x)  # a Gaussian takes any real value
        return
    for call in (model.loss, model.loss_and_grads, model.encode, model.reconstruct):
        with pytest.raises((TypeError, ValueError), match=r"^x:"):
            call(bad_x)


def test_bad_beta_is_refused_by_name(rng):
    model = make_model(9, data_dim=3, latent_dim=2, hidden=(4,))
    x, _ = make_data(model, 2, rng)
    for beta in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^beta:"):
            model.loss(x, beta=beta)


def test_beta_zero_drops_the_kl_from_the_loss_and_its_gradient(rng):
    model = make_model(10, data_dim=3, latent_dim=2, hidden=(4,), likelihood="gaussian_fixed")
    x, _ = make_data(model, 3, rng)
    noise = rng.standard_normal((1, 3, 2))
    loss = model.loss(x, noise=noise, beta=0.0)
    assert float(loss.kl) > 0 and float(loss.total) == float(loss.nll)
    loss_2 = model.loss(x, noise=noise, beta=2.0)
    assert float(loss_2.total) == pytest.approx(2.0 * float(loss.kl) + float(loss.nll), rel=1e-14)
    assert math.isfinite(float(loss_2.total))


@pytest.mark.parametrize("conditional", [False, True], ids=["vae", "cvae"])
def test_active_units_count_the_latent_means_that_move_with_the_data(conditional, rng):
    model = VAE(5, 3, (6,), condition_dim=2 if conditional else 0, dtype="float64", seed=1)
    model.params.data[:] = rng.normal(0.0, 1.0, model.params.size)
    # A hand-built case: the encoder's last layer gives mu_1 a constant (bias only) and mu_2 a tiny slope.
    W, b = model.params["encoder.1.W"], model.params["encoder.1.b"]
    W[:, 1] = 0.0
    b[1] = 3.0
    W[:, 2] *= 1e-4
    x = rng.random((200, 5))
    c = np.eye(2)[rng.integers(0, 2, 200)] if conditional else None
    active = model.active_units(x, c)
    mu, _ = model.encode(x, c)
    np.testing.assert_allclose(active.activity, mu.var(axis=0), rtol=1e-12)
    assert active.activity[1] == 0.0 and active.activity[2] < 1e-6 < 0.01 < active.activity[0]
    assert active.count == 1 and active.threshold == 0.01
    assert model.active_units(x, c, threshold=0.0).count == 2  # the tiny slope is above a zero threshold
    assert model.active_units(x, c, batch_size=7).activity == pytest.approx(active.activity, rel=1e-12)


def test_active_units_refuse_a_bad_threshold(rng):
    model = VAE(3, 2, (4,))
    with pytest.raises(ValueError, match="^threshold: expected"):
        model.active_units(rng.random((4, 3)), threshold=-1.0)
    with pytest.raises(TypeError, match="^threshold: expected"):
        model.active_units(rng.random((4, 3)), threshold="0.01")


def test_check_inputs_names_the_arguments_and_checks_only_the_shape_when_asked():
    model = CVAE(4, 2, latent_dim=2, hidden=(3,), likelihood="gaussian_shared")
    x, c = model.check_inputs(np.ones((5, 4)), np.zeros((5, 2)))
    assert x.dtype == c.dtype == np.float32 and x.shape == (5, 4) and c.shape == (5, 2)
    with pytest.raises(ValueError, match=r"^c_val: expected .* got None"):
        model.check_inputs(np.ones((5, 4)), None, name="x_val", c_name="c_val")
    with pytest.raises(ValueError, match=r"^--input: expected .*4"):
        model.check_inputs(np.ones((5, 3)), np.zeros((5, 2)), name="--input")
    raw = np.full((5, 4), np.nan)  # shape only: the values are left for the caller to check, batch by batch
    assert model.check_inputs(raw, np.zeros((5, 2)), values=False)[0] is raw
    with pytest.raises(ValueError, match="^x: expected finite"):
        model.check_inputs(raw, np.zeros((5, 2)))


@pytest.mark.parametrize("config", [dict(hidden=()), dict(hidden=(5, 3), likelihood="gaussian_per_example"),
                                    dict(hidden=(4,), decoder_hidden=(6, 2), likelihood="gaussian_per_dim",
                                         condition_dim=3)])
def test_the_layer_layout_has_one_home_that_the_model_and_the_memory_estimate_share(config):
    from minivae.resources import param_count

    model = VAE(7, 2, **config)
    assert model.layer_sizes() == model.config.layer_sizes()
    assert param_count(model.config) == model.params.size == sum(W.size + b.size for net in ("encoder", "decoder")
                                                                 for W, b in model.weights(net)) \
        + sum(v.size for v in model.likelihood_params().values())
    assert [W.shape[1] for W, _ in model.weights("decoder")][-1] == model.likelihood.n_outputs(7)
