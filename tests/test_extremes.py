r"""Numerical extremes: the loss and every gradient stay finite, and silent, where the maths says they can.

Every computation here runs under :func:`strict_floats`: Python warnings are errors and NumPy raises on
overflow, invalid operations (NaN) and division by zero. Underflow stays allowed: ``exp(-|x|)`` flushing to 0
inside softplus (``layers.softplus``) is the intended result, not a loss of accuracy.

What is pinned:

* Decoder logits and means of :math:`\pm10^4`, encoder and decoder log-variances of :math:`\pm10^3`
  (through the heads' biases and through the learned ``gaussian_shared`` / ``gaussian_per_dim`` log-variance set
  to :math:`\pm10^3`), Gaussian data of magnitude :math:`10^4`, a batch of one, float32 and float64: the loss
  equals an independent recomputation, and the gradient through every clipped log-variance is exactly zero.
* Every activation at pre-activations of :math:`\pm10^4`.
* The Gaussian squared error for a huge residual under a large variance (fixed in ``likelihoods.py``).
* Fuzzing (hypothesis) of ``model.loss_and_grads`` over random configurations. Settings, in
  :data:`FUZZ_SETTINGS`: ``max_examples`` = :data:`FUZZ_EXAMPLES` (300, or ten times the profile's
  ``max_examples`` under ``HYPOTHESIS_PROFILE=thorough``), ``deadline=None``, the ``too_slow`` health check
  suppressed. Drawn: likelihood (all five), activation (all six), 0..2 hidden layers of widths 1..8 in the
  encoder and independently in the decoder, D in 1..6, K in 1..3, S in 1..3, plain or conditional (C in 1..3,
  one-hot), batch N in 1..8, every parameter ~ N(0, 1) times a factor :math:`10^u`, :math:`u \in [0, 3]`,
  data uniform in [0, 1] (Bernoulli) or in :math:`\pm10^{v}`, :math:`v \in [0, 4]` (Gaussians), ``beta`` in
  [0, 2]. The float64 model must give a finite loss and gradient with no warning, always. The float32 model,
  with the same parameters, data and noise, must too whenever the float64 loss and gradients stay below
  :data:`FLOAT32_SAFE` -- a deep ReLU network with weights of 1e3 does compute numbers beyond float32's
  3.4e38, and float32 overflowing then is the truth, reported by training as a ``NonFiniteError``.
* Gradients at the clamp (eq. ``logvar-clamp``): a float64 finite-difference check of the whole model with
  log-variances pushed beyond :math:`\pm20` agrees with the backward, which passes zero through the clipped
  entries.
"""

import contextlib
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import GRAD_TOL
from minivae.gradcheck import model_gradient_errors
from minivae.layers import ACTIVATIONS
from minivae.likelihoods import LIKELIHOODS, gaussian_nll_backward, gaussian_nll_forward
from minivae.model import VAE
from minivae.reparam import LOG_VAR_LIMIT

FUZZ_EXAMPLES = max(300, 10 * settings.default.max_examples)
FUZZ_SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: float32's largest value is 3.4e38. A loss or gradient entry of at most 1e30 leaves eight orders of magnitude
#: for the intermediate products and sums that make it up (a squared error before its division, a sum over
#: the batch), so float32 must not overflow below it.
FLOAT32_SAFE = 1e30

#: Relative tolerance of the exact-value checks: float32 rounds sums of terms up to 1e8 to about 1e-7 each.
RTOL = {"float32": 1e-5, "float64": 1e-12}

LOG_2PI = math.log(2.0 * math.pi)


@contextlib.contextmanager
def strict_floats():
    """Warnings are errors; NumPy raises on overflow, invalid and divide (underflow to 0 is allowed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            yield


def finite_loss_and_grads(model, x, c=None, **kwargs):
    """``model.loss_and_grads`` under :func:`strict_floats`; asserts both are finite; returns copies."""
    with strict_floats():
        loss, grads = model.loss_and_grads(x, c, **kwargs)
    assert np.isfinite(loss), float(loss)
    assert np.all(np.isfinite(model.params.grad)), np.abs(model.params.grad).max()
    return float(loss), {name: g.copy() for name, g in grads.items()}


def head(model, net):
    """The last layer's weights and bias of ``net`` ("encoder" or "decoder")."""
    last = len(model.config.hidden if net == "encoder" else model.config.decoder_widths)
    return model.params[f"{net}.{last}.W"], model.params[f"{net}.{last}.b"]


# --------------------------------------------------------------------------- extreme heads, exact values


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["plus", "minus"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loss_is_exact_and_gradients_finite_at_extreme_outputs(dtype, likelihood, sign):
    D, K = 3, 2
    model = VAE(D, K, (4,), activation="tanh", likelihood=likelihood, dtype=dtype, seed=0)
    rng = np.random.default_rng(1)
    # Zero head weights make each network's output exactly its head's bias, whatever its input.
    W_enc, b_enc = head(model, "encoder")
    W_dec, b_dec = head(model, "decoder")
    W_enc[...], W_dec[...] = 0.0, 0.0
    mu, raw_log_var = sign * 1e4, sign * 1e3
    b_enc[:K], b_enc[K:] = mu, raw_log_var
    b_dec[:D] = sign * 1e4  # logits or means
    b_dec[D:] = sign * 1e3  # the per-example log-variances (gaussian_per_example only)
    if "likelihood.log_var" in model.params.values:
        model.params["likelihood.log_var"][...] = sign * 1e3
    if likelihood == "bernoulli":
        x = np.array([[0.0, 1.0, 0.3]])  # a batch of one
    else:
        x = rng.uniform(-1e4, 1e4, (1, D))

    loss, grads = finite_loss_and_grads(model, x)

    # An independent recomputation in float64, with the log-variances clipped to +-20.
    log_var = float(np.clip(raw_log_var, -LOG_VAR_LIMIT, LOG_VAR_LIMIT))
    kl = 0.5 * K * (mu ** 2 + math.exp(log_var) - 1.0 - log_var)
    logits = np.full(D, sign * 1e4)
    if likelihood == "bernoulli":
        nll = float(np.sum(np.logaddexp(0.0, logits) - x[0] * logits))
    else:
        lik_log_var = 0.0 if likelihood == "gaussian_fixed" else log_var  # fixed_variance = 1
        nll = float(np.sum(0.5 * (LOG_2PI + lik_log_var + (x[0] - logits) ** 2 / math.exp(lik_log_var))))
    assert loss == pytest.approx(kl + nll, rel=RTOL[dtype])

    # Beyond the clamp the loss does not depend on a log-variance: its gradient is exactly zero.
    assert np.all(grads[f"encoder.1.b"][K:] == 0.0)
    if likelihood == "gaussian_per_example":
        assert np.all(grads["decoder.1.b"][D:] == 0.0)
    if "likelihood.log_var" in grads:
        assert np.all(grads["likelihood.log_var"] == 0.0)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["plus", "minus"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_activation_at_pre_activations_of_1e4(dtype, activation, sign):
    model = VAE(3, 2, (4, 4), activation=activation, likelihood="gaussian_per_example", n_samples=2, dtype=dtype,
                seed=0)
    for name, value in model.params.values.items():
        if name.endswith(".b"):
            value[...] = sign * 1e4  # every pre-activation near +-1e4 (and the heads' outputs too)
    x = np.random.default_rng(2).uniform(-1e4, 1e4, (1, 3))
    finite_loss_and_grads(model, x)


def test_large_weights_drive_logits_and_log_variances_to_the_extremes():
    # Not the biases this time: weights of 1e3 on data of 1e4 push the heads' outputs far beyond 1e4.
    for likelihood in ("bernoulli", "gaussian_per_example"):
        for dtype in ("float32", "float64"):
            model = VAE(4, 2, (), likelihood=likelihood, dtype=dtype, seed=3)  # linear encoder and decoder
            model.params.data[:] = np.random.default_rng(4).standard_normal(model.params.size) * 1e3
            x = np.random.default_rng(5).random((2, 4))
            if likelihood != "bernoulli":
                x = (x - 0.5) * 2e4
            loss, grads = finite_loss_and_grads(model, x)
            with strict_floats():
                mu, log_var = model.encode(x)
            assert np.abs(mu).max() > 1e3 and np.all(np.abs(log_var) <= LOG_VAR_LIMIT)


def test_gaussian_squared_error_overflows_only_when_the_term_does():
    # (x - m)^2 alone is 1e40, beyond float32; divided by sigma^2 = e^20 it is 2e31, which float32 holds.
    # Forming diff * (diff / sigma^2) instead of (diff * diff) / sigma^2 keeps it finite (likelihoods.py).
    mean = np.full((1, 2), 1e20, dtype=np.float32)
    x = np.zeros((1, 2), dtype=np.float32)
    log_var = np.float32(LOG_VAR_LIMIT)
    with strict_floats():
        nll, cache = gaussian_nll_forward(mean, log_var, x)
        dmean, dlog_var = gaussian_nll_backward(np.ones(1, dtype=np.float32), cache)
    expected = 2 * 0.5 * (LOG_2PI + 20.0 + 1e40 / math.exp(20.0))
    assert float(nll[0]) == pytest.approx(expected, rel=1e-5)
    assert np.all(np.isfinite(dmean)) and np.isfinite(dlog_var)


# --------------------------------------------------------------------------- fuzzing


@st.composite
def extreme_cases(draw):
    likelihood = draw(st.sampled_from(LIKELIHOODS))
    widths = st.lists(st.integers(1, 8), max_size=2).map(tuple)
    C = draw(st.sampled_from([0, 0, 1, 2, 3]))
    config = dict(data_dim=draw(st.integers(1, 6)), latent_dim=draw(st.integers(1, 3)), hidden=draw(widths),
                  decoder_hidden=draw(widths), activation=draw(st.sampled_from(sorted(ACTIVATIONS))),
                  likelihood=likelihood, n_samples=draw(st.integers(1, 3)), condition_dim=C)
    return dict(config=config, n=draw(st.integers(1, 8)), seed=draw(st.integers(0, 2**32 - 1)),
                param_exponent=draw(st.floats(0.0, 3.0)), data_exponent=draw(st.floats(0.0, 4.0)),
                beta=draw(st.floats(0.0, 2.0)))


def build(case, dtype):
    """The model, data, condition and noise of a fuzz case, in ``dtype``; the same numbers for either dtype."""
    cfg, n = case["config"], case["n"]
    rng = np.random.default_rng(case["seed"])
    model = VAE(**cfg, dtype=dtype, seed=0)
    model.params.data[:] = rng.standard_normal(model.params.size) * 10.0 ** case["param_exponent"]
    if cfg["likelihood"] == "bernoulli":
        x = rng.random((n, cfg["data_dim"]))
    else:
        x = rng.uniform(-1.0, 1.0, (n, cfg["data_dim"])) * 10.0 ** case["data_exponent"]
    C = cfg["condition_dim"]
    c = np.eye(C)[rng.integers(0, C, n)] if C else None
    noise = rng.standard_normal((cfg["n_samples"], n, cfg["latent_dim"]))
    cast = np.dtype(dtype).type
    return model, x.astype(dtype), None if c is None else c.astype(dtype), noise.astype(dtype), cast(case["beta"])


@FUZZ_SETTINGS
@given(case=extreme_cases())
def test_fuzz_loss_and_grads_stay_finite_and_silent(case):
    model64, x, c, noise, beta = build(case, "float64")
    loss64, _ = finite_loss_and_grads(model64, x, c, noise=noise, beta=float(beta))
    largest = max(abs(loss64), float(np.abs(model64.params.grad).max()))

    model32, x, c, noise, beta = build(case, "float32")
    np.testing.assert_array_equal(model32.params.data, model64.params.data.astype(np.float32))
    if largest < FLOAT32_SAFE:
        event("float32 checked")
        finite_loss_and_grads(model32, x, c, noise=noise, beta=float(beta))
    else:
        event("float32 skipped: the exact values exceed its range")


# --------------------------------------------------------------------------- gradients at the clamp


@pytest.mark.parametrize("likelihood", ["gaussian_shared", "gaussian_per_dim", "gaussian_per_example"])
def test_gradients_agree_with_finite_differences_beyond_the_clamp(likelihood):
    D, K, N = 3, 3, 2
    model = VAE(D, K, (4,), activation="tanh", likelihood=likelihood, n_samples=2, dtype="float64", seed=0)
    rng = np.random.default_rng(7)
    model.params.data[:] = rng.normal(size=model.params.size) * 0.5  # non-zero everywhere
    # Raw log-variances: one entry well above +20, one well below -20, one inside. The inputs of the heads are
    # tanh outputs (|h| <= 1) and the weights are small, so every raw value stays at least ~7 from +-20.
    _, b_enc = head(model, "encoder")
    b_enc[K:] = [30.0, -30.0, 0.1]
    if likelihood == "gaussian_per_example":
        _, b_dec = head(model, "decoder")
        b_dec[D:] = [30.0, -30.0, 0.2]
    elif likelihood == "gaussian_per_dim":
        # Both clipped entries on the high side: a clipped -20 would make the loss ~e^20 (x - m)^2 through the
        # other entries, a size a central difference of the 0.3 entry cannot resolve (the low side of the
        # likelihood's clamp is covered by gaussian_shared and gaussian_per_example).
        model.params["likelihood.log_var"][...] = [30.0, 25.0, 0.3]
    else:
        model.params["likelihood.log_var"][...] = -30.0  # sigma^2 = e^-20: the error term dominates the loss
    x = rng.normal(size=(N, D))
    noise = rng.standard_normal((2, N, K))
    # Two things would drown the gradients in rounding error, not make them wrong. The clipped sigma = e^10
    # of latent 0 would throw z_0 to ~1e4 and saturate the decoder's tanh: its noise is set to 0. And the KL
    # of that entry holds the constant e^20 / 2 = 2.4e8, whose rounding (eps * 2.4e8 / h ~ 0.03) a central
    # difference cannot resolve: BETA scales it to 2.4. The KL's log-variance gradient beta/N (e^20 - 1) / 2
    # ~ 1 is still there for the clamp to stop.
    noise[:, :, 0] = 0.0
    BETA = 1e-8

    with strict_floats():
        _, cache = model.forward(x, noise=noise, beta=BETA)
    raw = cache.enc.affine[-1].x @ head(model, "encoder")[0][:, K:] + b_enc[K:]
    assert np.all(raw[:, 0] > LOG_VAR_LIMIT + 5) and np.all(raw[:, 1] < -LOG_VAR_LIMIT - 5)
    assert np.all(np.abs(raw[:, 2]) < LOG_VAR_LIMIT - 5)

    errors = model_gradient_errors(model, x, noise=noise, beta=BETA)
    assert max(errors.values()) <= GRAD_TOL, errors

    _, grads = finite_loss_and_grads(model, x, noise=noise, beta=BETA)
    assert np.all(grads["encoder.1.b"][K:K + 2] == 0.0) and grads["encoder.1.b"][K + 2] != 0.0
    assert np.all(grads["encoder.1.W"][:, K:K + 2] == 0.0)  # nothing reaches the weights of clipped outputs
    if likelihood == "gaussian_per_example":
        assert np.all(grads["decoder.1.b"][D:D + 2] == 0.0) and grads["decoder.1.b"][D + 2] != 0.0
    elif likelihood == "gaussian_per_dim":
        assert np.all(grads["likelihood.log_var"][:2] == 0.0) and grads["likelihood.log_var"][2] != 0.0
    else:
        assert grads["likelihood.log_var"] == 0.0
