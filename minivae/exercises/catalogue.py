r"""The nine exercises: for each, random inputs, the forward whose gradient is asked, minivae's own answer, and the
typical wrong answers a learner writes, each with the mistake it makes.

Every answer function has the learner's signature (the stub's in ``minivae/exercises/stubs/``) and is built from the
library's own forward and backward functions, so the checker compares the learner with the code the model runs.
Shapes are small and different from one another (N=4, I=3, O=5, ...) so that a transposed product cannot pass, and
β = 0.7, S = 3 so that a missing β or 1/S shows.
"""

from __future__ import annotations

import numpy as np

from ..kl import kl_backward, kl_forward
from ..layers import affine_backward, affine_forward, get_activation, sigmoid, tanh_backward, tanh_forward
from ..likelihoods import bernoulli_nll_backward, bernoulli_nll_forward, gaussian_nll_backward, gaussian_nll_forward
from ..mlp import mlp_backward, mlp_forward
from ..optim import Adam
from ..params import ParamBuffer
from ..reparam import reparameterize_backward, reparameterize_forward, split_head, join_head
from .checker import Exercise, Mistake

N, I, O, K, D, H, S = 4, 3, 5, 2, 5, 3, 3  # batch, affine in/out, latent, data, hidden, samples
BETA = 0.7
TANH = get_activation("tanh")


def _uses(*functions):
    """Mark an answer function with the library functions it calls: ``--answer`` prints their source too."""
    def mark(answer):
        answer.library = functions
        return answer
    return mark


def _pairs(prefix, grads):
    out = {}
    for layer, (dW, db) in enumerate(grads):
        out[f"{prefix}{layer}.W"] = dW
        out[f"{prefix}{layer}.b"] = db
    return out


def _layers(rng, sizes):
    return [(rng.normal(0, 0.6, (a, b)), rng.normal(0, 0.3, b)) for a, b in zip(sizes[:-1], sizes[1:])]


# --------------------------------------------------------------------------- affine


def _affine_inputs(rng):
    return {"dout": rng.normal(size=(N, O)), "x": rng.normal(size=(N, I)), "W": rng.normal(size=(I, O)),
            "b": rng.normal(size=O)}


@_uses(affine_forward, affine_backward)
def affine_answer(dout, x, W, b):
    _, cache = affine_forward(x, W, b)
    return affine_backward(dout, cache)


AFFINE = Exercise(
    name="affine", function="affine_backward", summary="Y = XW + b: dX, dW, db", page="derivations/layers.md",
    inputs=_affine_inputs, reference=affine_answer,
    unpack=lambda r: dict(zip(("dx", "dW", "db"), r)),
    loss=lambda a: float(np.sum((a["x"] @ a["W"] + a["b"]) * a["dout"])),
    wrt=lambda a: {"dx": a["x"], "dW": a["W"], "db": a["b"]},
    factors=lambda a: {"N": float(N)},
    mistakes=(
        Mistake("dW transposed", "dW = dY^T X is a transposed product: dW = X^T dY has W's shape (I, O)",
                lambda dout, x, W, b: (dout @ W.T, dout.T @ x, dout.sum(axis=0))),
        Mistake("db averaged", "db averaged over the batch: b is added to every row, so its gradient is the sum "
                "over n, with no 1/N", lambda dout, x, W, b: (dout @ W.T, x.T @ dout, dout.mean(axis=0))),
        Mistake("dW sign", "a sign: dW = X^T dY, not -X^T dY",
                lambda dout, x, W, b: (dout @ W.T, -(x.T @ dout), dout.sum(axis=0))),
    ),
    derivation=r"""
Y_nj = sum_i X_ni W_ij + b_j, so with dY = dL/dY (eq. affine-bwd):
  dX = dY W^T      (N, I)
  dW = X^T dY      (I, O)
  db = sum_n dY_n  (O,)   b is broadcast over the batch, so its gradients add up.
""")


# --------------------------------------------------------------------------- activation


def _tanh_inputs(rng):
    return {"dout": rng.normal(size=(N, O)), "x": rng.normal(size=(N, O))}


@_uses(tanh_forward, tanh_backward)
def tanh_answer(dout, x):
    _, cache = tanh_forward(x)
    return tanh_backward(dout, cache)


ACTIVATION = Exercise(
    name="activation", function="tanh_backward", summary="y = tanh(x): dx", page="derivations/layers.md",
    inputs=_tanh_inputs, reference=tanh_answer, unpack=lambda r: {"dx": r},
    loss=lambda a: float(np.sum(np.tanh(a["x"]) * a["dout"])), wrt=lambda a: {"dx": a["x"]},
    mistakes=(
        Mistake("derivative at the input", "tanh'(x) = 1 - tanh(x)^2 = 1 - y^2 with y the OUTPUT; 1 - x^2 uses "
                "the input", lambda dout, x: dout * (1.0 - x * x)),
        Mistake("square missing", "tanh'(x) = 1 - tanh(x)^2: the square is missing",
                lambda dout, x: dout * (1.0 - np.tanh(x))),
        Mistake("upstream missing", "the chain rule: dx = dout * tanh'(x), the upstream gradient dout is missing",
                lambda dout, x: 1.0 - np.tanh(x) ** 2),
    ),
    derivation=r"""
y = tanh(x) elementwise, dy/dx = 1 - tanh(x)^2 = 1 - y^2 (eq. tanh, eq. act-from-output):
  dx = dout * (1 - y^2)   the backward keeps y from the forward, so it needs no second tanh.
""")


# --------------------------------------------------------------------------- KL


def _kl_inputs(rng):
    return {"dkl": rng.normal(size=N), "mu": rng.normal(size=(N, K)), "log_var": rng.normal(0, 0.7, (N, K))}


@_uses(kl_forward, kl_backward)
def kl_answer(dkl, mu, log_var):
    _, cache = kl_forward(mu, log_var)
    return kl_backward(dkl, cache)


KL = Exercise(
    name="kl", function="kl_backward", summary="KL(N(mu, sigma^2) || N(0, I)): dmu, dlog_var",
    page="derivations/kl.md", inputs=_kl_inputs, reference=kl_answer,
    unpack=lambda r: dict(zip(("dmu", "dlog_var"), r)),
    loss=lambda a: float(np.sum(kl_forward(a["mu"], a["log_var"])[0] * a["dkl"])),
    wrt=lambda a: {"dmu": a["mu"], "dlog_var": a["log_var"]},
    mistakes=(
        Mistake("sigma for sigma^2", "sigma used for sigma^2: exp(log_var) is the variance; the derivative of "
                "(exp(v) - v)/2 is (exp(v) - 1)/2, not (exp(v/2) - 1)/2",
                lambda dkl, mu, log_var: (dkl[:, None] * mu, 0.5 * dkl[:, None] * (np.exp(0.5 * log_var) - 1))),
        Mistake("1/2 missing", "a factor 2 in dlog_var: KL = 1/2 sum(mu^2 + e^v - 1 - v), so dKL/dv = (e^v - 1)/2",
                lambda dkl, mu, log_var: (dkl[:, None] * mu, dkl[:, None] * (np.exp(log_var) - 1))),
        Mistake("dlog_var sign", "a sign in dlog_var: dKL/dv = (e^v - 1)/2, which is > 0 for v > 0",
                lambda dkl, mu, log_var: (dkl[:, None] * mu, 0.5 * dkl[:, None] * (1 - np.exp(log_var)))),
    ),
    derivation=r"""
KL_n = 1/2 sum_k (mu_nk^2 + exp(v_nk) - 1 - v_nk) with v = log sigma^2 (eq. kl-fwd), so (eq. kl-bwd):
  dmu      = dKL_n * mu
  dlog_var = dKL_n * (sigma^2 - 1) / 2,   sigma^2 = exp(v)
""")


# --------------------------------------------------------------------------- reparameterization


def _reparam_inputs(rng):
    return {"dz": rng.normal(size=(S, N, K)), "mu": rng.normal(size=(N, K)),
            "log_var": rng.normal(0, 0.7, (N, K)), "noise": rng.normal(size=(S, N, K))}


@_uses(reparameterize_forward, reparameterize_backward)
def reparam_answer(dz, mu, log_var, noise):
    _, cache = reparameterize_forward(mu, log_var, noise)
    return reparameterize_backward(dz, cache)


REPARAM = Exercise(
    name="reparam", function="reparameterize_backward", summary="z_s = mu + sigma * eps_s: dmu, dlog_var",
    page="derivations/reparam.md", inputs=_reparam_inputs, reference=reparam_answer,
    unpack=lambda r: dict(zip(("dmu", "dlog_var"), r)),
    loss=lambda a: float(np.sum(reparameterize_forward(a["mu"], a["log_var"], a["noise"])[0] * a["dz"])),
    wrt=lambda a: {"dmu": a["mu"], "dlog_var": a["log_var"]},
    factors=lambda a: {"S": float(S)},
    mistakes=(
        Mistake("mean over samples", "a 1/S too many: each of the S samples uses mu and sigma, so their gradients "
                "add up (sum over s); the 1/S of the loss is already in dz",
                lambda dz, mu, log_var, noise: (dz.mean(0), 0.5 * np.exp(0.5 * log_var) * (dz * noise).mean(0))),
        Mistake("sigma^2 for sigma", "sigma^2 used for sigma: dz/dlog_var = sigma * eps / 2 with sigma = "
                "exp(log_var / 2), not exp(log_var)",
                lambda dz, mu, log_var, noise: (dz.sum(0), 0.5 * np.exp(log_var) * (dz * noise).sum(0))),
        Mistake("1/2 missing", "a factor 2 in dlog_var: sigma = exp(v/2), so dsigma/dv = sigma/2",
                lambda dz, mu, log_var, noise: (dz.sum(0), np.exp(0.5 * log_var) * (dz * noise).sum(0))),
    ),
    derivation=r"""
z_s = mu + sigma * eps_s, sigma = exp(v / 2), v = log sigma^2 (eq. reparam-fwd). dz_s/dmu = 1 and
dz_s/dv = sigma * eps_s / 2, and mu, v are shared by the S samples, so their gradients add (eq. reparam-bwd):
  dmu      = sum_s dz_s
  dlog_var = sigma / 2 * sum_s dz_s * eps_s
""")


# --------------------------------------------------------------------------- Bernoulli


def _bernoulli_inputs(rng):
    return {"dnll": rng.normal(size=N), "logits": rng.normal(0, 2, (N, D)), "x": rng.random((N, D))}


@_uses(bernoulli_nll_forward, bernoulli_nll_backward)
def bernoulli_answer(dnll, logits, x):
    _, cache = bernoulli_nll_forward(logits, x)
    return bernoulli_nll_backward(dnll, cache)


BERNOULLI = Exercise(
    name="bernoulli", function="bernoulli_nll_backward", summary="-log p(x | logits), Bernoulli: dlogits",
    page="derivations/likelihoods.md", inputs=_bernoulli_inputs, reference=bernoulli_answer,
    unpack=lambda r: {"dlogits": r},
    loss=lambda a: float(np.sum(bernoulli_nll_forward(a["logits"], a["x"])[0] * a["dnll"])),
    wrt=lambda a: {"dlogits": a["logits"]},
    mistakes=(
        Mistake("sign", "a sign: d/dl [softplus(l) - x l] = sigmoid(l) - x, not x - sigmoid(l)",
                lambda dnll, logits, x: dnll[:, None] * (x - sigmoid(logits))),
        Mistake("logits for probabilities", "the logits used where sigmoid(logits), the probabilities, belong",
                lambda dnll, logits, x: dnll[:, None] * (logits - x)),
        Mistake("upstream missing", "the upstream gradient dnll (one per example) is missing",
                lambda dnll, logits, x: sigmoid(logits) - x),
    ),
    derivation=r"""
nll_n = sum_d softplus(l_nd) - x_nd l_nd (eq. bern-nll), softplus' = sigmoid, so (eq. bern-grad):
  dlogits = dnll_n * (sigmoid(l) - x)     the probability minus the data
""")


# --------------------------------------------------------------------------- Gaussian, learned variance


def _gaussian_inputs(rng):
    return {"dnll": rng.normal(size=N), "mean": rng.normal(size=(N, D)), "log_var": rng.normal(0, 0.7, (N, D)),
            "x": rng.normal(size=(N, D))}


@_uses(gaussian_nll_forward, gaussian_nll_backward)
def gaussian_answer(dnll, mean, log_var, x):
    _, cache = gaussian_nll_forward(mean, log_var, x)
    return gaussian_nll_backward(dnll, cache)


def _gaussian_wrong(dnll, mean, log_var, x, var_power=1.0, sign=1.0, half=0.5):
    var = np.exp(var_power * log_var)
    d = dnll[:, None]
    return d * sign * (mean - x) / var, d * half * (1.0 - (x - mean) ** 2 / var)


GAUSSIAN = Exercise(
    name="gaussian", function="gaussian_nll_backward",
    summary="-log N(x; m, sigma^2), sigma^2 learned per entry: dmean, dlog_var", page="derivations/likelihoods.md",
    inputs=_gaussian_inputs, reference=gaussian_answer, unpack=lambda r: dict(zip(("dmean", "dlog_var"), r)),
    loss=lambda a: float(np.sum(gaussian_nll_forward(a["mean"], a["log_var"], a["x"])[0] * a["dnll"])),
    wrt=lambda a: {"dmean": a["mean"], "dlog_var": a["log_var"]},
    mistakes=(
        Mistake("sigma for sigma^2", "sigma used for sigma^2: the squared error is divided by the variance "
                "exp(log_var), not by exp(log_var / 2)",
                lambda dnll, mean, log_var, x: _gaussian_wrong(dnll, mean, log_var, x, var_power=0.5)),
        Mistake("dmean sign", "a sign in dmean: d/dm (x - m)^2 / (2 sigma^2) = (m - x) / sigma^2",
                lambda dnll, mean, log_var, x: _gaussian_wrong(dnll, mean, log_var, x, sign=-1.0)),
        Mistake("1/2 missing", "a factor 2 in dlog_var: nll = 1/2 (log 2pi + v + (x - m)^2 e^-v), so "
                "dnll/dv = (1 - (x - m)^2 / sigma^2) / 2",
                lambda dnll, mean, log_var, x: _gaussian_wrong(dnll, mean, log_var, x, half=1.0)),
    ),
    derivation=r"""
nll_n = sum_d 1/2 (log 2 pi + v_nd + (x_nd - m_nd)^2 exp(-v_nd)), v = log sigma^2 (eq. gauss-nll), so (eq. gauss-grad):
  dmean    = dnll_n * (m - x) / sigma^2
  dlog_var = dnll_n * (1 - (x - m)^2 / sigma^2) / 2
(the library also clips v to [-20, 20]; these inputs stay inside, where the clip is the identity)
""")


# --------------------------------------------------------------------------- the MLP


def _mlp_inputs(rng):
    return {"dout": rng.normal(size=(N, O)), "x": rng.normal(size=(N, I)), "weights": _layers(rng, (I, H + 1, O))}


@_uses(mlp_forward, mlp_backward)
def mlp_answer(dout, x, weights):
    _, cache = mlp_forward(x, weights, TANH)
    return mlp_backward(dout, cache, TANH)


def _mlp_unpack(result):
    dx, grads = result
    return {"dx": dx, **_pairs("layer", grads)}


def _mlp_wrong(dout, x, weights, transpose=False, at_input=False, last_act=False):
    (W1, b1), (W2, b2) = weights
    a1 = x @ W1 + b1
    h1 = np.tanh(a1)
    da2 = dout * (1 - np.tanh(h1 @ W2 + b2) ** 2) if last_act else dout
    dW2 = da2.T @ h1 if transpose else h1.T @ da2
    dh1 = da2 @ W2.T
    da1 = dh1 * (1 - (a1 if at_input else h1) ** 2)
    return da1 @ W1.T, [(x.T @ da1, da1.sum(0)), (dW2, da2.sum(0))]


MLP = Exercise(
    name="mlp", function="mlp_backward", summary="two affine layers with tanh between: dx and every dW, db",
    page="derivations/layers.md", inputs=_mlp_inputs, reference=mlp_answer, unpack=_mlp_unpack,
    loss=lambda a: float(np.sum(mlp_forward(a["x"], a["weights"], TANH)[0] * a["dout"])),
    wrt=lambda a: {"dx": a["x"], **_pairs("layer", a["weights"])},
    factors=lambda a: {"N": float(N)},
    mistakes=(
        Mistake("dW transposed", "a transposed product: dW = H^T dA has W's shape; dA^T H is its transpose",
                lambda dout, x, weights: _mlp_wrong(dout, x, weights, transpose=True)),
        Mistake("derivative at the pre-activation", "tanh'(a) = 1 - h^2 with h = tanh(a) the layer's OUTPUT; "
                "1 - a^2 uses its input", lambda dout, x, weights: _mlp_wrong(dout, x, weights, at_input=True)),
        Mistake("activation after the last layer", "the last layer has no activation (out = a_L, unconstrained): "
                "its gradient is dout itself", lambda dout, x, weights: _mlp_wrong(dout, x, weights, last_act=True)),
    ),
    derivation=r"""
h_0 = x, a_l = h_{l-1} W_l + b_l, h_l = tanh(a_l) for l < L, out = a_L. Backward from dA_L = dout (eq. mlp-bwd):
  dW_l = h_{l-1}^T dA_l,  db_l = sum_n dA_l,  dh_{l-1} = dA_l W_l^T,  dA_{l-1} = dh_{l-1} * (1 - h_{l-1}^2)
and dx = dh_0.
""")


# --------------------------------------------------------------------------- the whole negative ELBO


def _elbo_inputs(rng):
    return {"x": rng.random((N, D)), "noise": rng.normal(size=(S, N, K)),
            "encoder": _layers(rng, (D, H, 2 * K)), "decoder": _layers(rng, (K, H, D)), "beta": BETA}


def neg_elbo(x, noise, encoder, decoder, beta):
    """L = beta * mean_n KL_n + mean_{s,n} nll_sn: the loss the exercise differentiates (eq. neg-elbo)."""
    mu, log_var = split_head(mlp_forward(x, encoder, TANH)[0])
    z = reparameterize_forward(mu, log_var, noise)[0]
    logits = mlp_forward(z.reshape(-1, z.shape[-1]), decoder, TANH)[0].reshape(z.shape[0], z.shape[1], -1)
    return beta * kl_forward(mu, log_var)[0].mean() + bernoulli_nll_forward(logits, x)[0].mean()


def _elbo_backward(x, noise, encoder, decoder, beta, dnll_scale=None, dkl_scale=None, kl_path=True):
    n_samples, batch, latent = noise.shape
    enc_out, enc_cache = mlp_forward(x, encoder, TANH)
    mu, log_var = split_head(enc_out)
    z, rep_cache = reparameterize_forward(mu, log_var, noise)
    _, kl_cache = kl_forward(mu, log_var)
    logits, dec_cache = mlp_forward(z.reshape(-1, latent), decoder, TANH)
    _, nll_cache = bernoulli_nll_forward(logits.reshape(n_samples, batch, -1), x)
    # L = beta * mean_n KL_n + mean_{s,n} nll_sn
    dnll = np.full((n_samples, batch), 1.0 / (n_samples * batch) if dnll_scale is None else dnll_scale)
    dkl = np.full(batch, beta / batch if dkl_scale is None else dkl_scale)
    dlogits = bernoulli_nll_backward(dnll, nll_cache)
    dz, dec_grads = mlp_backward(dlogits.reshape(n_samples * batch, -1), dec_cache, TANH)
    dmu, dlog_var = reparameterize_backward(dz.reshape(n_samples, batch, latent), rep_cache)
    if kl_path:
        dmu_from_kl, dlog_var_from_kl = kl_backward(dkl, kl_cache)
        dmu = dmu + dmu_from_kl  # mu feeds both z and the KL
        dlog_var = dlog_var + dlog_var_from_kl
    _, enc_grads = mlp_backward(join_head(dmu, dlog_var), enc_cache, TANH, need_dx=False)
    return enc_grads, dec_grads


@_uses(_elbo_backward)
def elbo_answer(x, noise, encoder, decoder, beta):
    return _elbo_backward(x, noise, encoder, decoder, beta)


def _elbo_unpack(result):
    enc, dec = result
    return {**_pairs("encoder.", enc), **_pairs("decoder.", dec)}


ELBO = Exercise(
    name="elbo", function="neg_elbo_backward",
    summary="the whole negative ELBO (tanh MLPs, Bernoulli decoder): every dW, db", page="derivations/elbo.md",
    inputs=_elbo_inputs, reference=elbo_answer, unpack=_elbo_unpack,
    loss=lambda a: float(neg_elbo(**a)),
    wrt=lambda a: {**_pairs("encoder.", a["encoder"]), **_pairs("decoder.", a["decoder"])},
    factors=lambda a: {"N": float(N), "S": float(S), "beta": BETA},
    mistakes=(
        Mistake("1/N missing", "a missing 1/N: the loss averages over the N examples, so every gradient carries 1/N",
                lambda **a: _elbo_backward(**a, dnll_scale=1.0 / S, dkl_scale=a["beta"])),
        Mistake("1/S missing", "a missing 1/S: the reconstruction term averages over the S samples, so dnll = "
                "1/(S N), not 1/N", lambda **a: _elbo_backward(**a, dnll_scale=1.0 / N)),
        Mistake("beta missing", "a missing beta: the KL term is beta * mean_n KL_n, so dKL_n = beta / N",
                lambda **a: _elbo_backward(**a, dkl_scale=1.0 / N)),
        Mistake("KL path missing", "the KL's own gradient is missing: mu and log_var feed both z and the KL, so "
                "dmu = dmu_from_z + dmu_from_kl (and the same for dlog_var)",
                lambda **a: _elbo_backward(**a, kl_path=False)),
    ),
    derivation=r"""
L = beta/N sum_n KL_n + 1/(S N) sum_{s,n} nll_sn (eq. neg-elbo). Backward (eq. elbo-bwd):
  dnll_sn = 1/(S N),  dKL_n = beta/N
  dlogits = bernoulli backward;  dz, decoder grads = MLP backward
  dmu = sum_s dz_s + dKL * mu;   dlog_var = sigma/2 sum_s dz_s eps_s + dKL (sigma^2 - 1)/2
  encoder grads = MLP backward of [dmu, dlog_var]
""")


# --------------------------------------------------------------------------- one Adam step


def _adam_inputs(rng):
    return {"theta": rng.normal(size=(N, I)), "grad": rng.normal(size=(N, I)), "m": rng.normal(0, 0.1, (N, I)),
            "v": rng.random((N, I)) * 0.05, "t": 3, "lr": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


@_uses(Adam.step)
def adam_answer(theta, grad, m, v, t, lr, beta1, beta2, eps):
    # minivae's Adam keeps the moments as decaying sums M = m / (1 - beta1), V = v / (1 - beta2) (eq. adam-sums)
    params = ParamBuffer({"theta": theta.shape}, np.float64)
    params.values["theta"][...] = theta
    params.grads["theta"][...] = grad
    adam = Adam(params, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    adam.load_state({"m": m.reshape(-1) / (1 - beta1), "v": v.reshape(-1) / (1 - beta2)}, t - 1)
    adam.step()
    return (params.values["theta"].copy(), adam.m.reshape(theta.shape) * (1 - beta1),
            adam.v.reshape(theta.shape) * (1 - beta2))


def _adam_wrong(theta, grad, m, v, t, lr, beta1, beta2, eps, correct=True, root=True, t_shift=0):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    tc = t + t_shift
    m_hat = m / (1 - beta1 ** tc) if correct else m
    v_hat = v / (1 - beta2 ** tc) if correct else v
    return theta - lr * m_hat / ((np.sqrt(v_hat) if root else v_hat) + eps), m, v


ADAM = Exercise(
    name="adam", function="adam_step", summary="one Adam update: theta, m, v", page="derivations/adam.md",
    inputs=_adam_inputs, reference=adam_answer, unpack=lambda r: dict(zip(("theta", "m", "v"), r)),
    loss=None, wrt=None,
    mistakes=(
        Mistake("no bias correction", "the bias correction is missing: m_hat = m / (1 - beta1^t), "
                "v_hat = v / (1 - beta2^t)", lambda **a: _adam_wrong(**a, correct=False)),
        Mistake("no square root", "the step divides by v_hat; Adam divides by sqrt(v_hat) + eps",
                lambda **a: _adam_wrong(**a, root=False)),
        Mistake("t - 1 in the correction", "the bias correction uses the previous step count: t is this update's "
                "number, 1 for the first", lambda **a: _adam_wrong(**a, t_shift=-1)),
    ),
    derivation=r"""
Not a gradient: the checker compares the new theta, m and v with minivae's Adam (eq. adam):
  m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
  m_hat = m / (1 - beta1^t),     v_hat = v / (1 - beta2^t)
  theta = theta - lr m_hat / (sqrt(v_hat) + eps)
minivae keeps M = m / (1 - beta1) and V = v / (1 - beta2) instead, which is the same update (eq. adam-sums).
""")


EXERCISES = {ex.name: ex for ex in (AFFINE, ACTIVATION, KL, REPARAM, BERNOULLI, GAUSSIAN, MLP, ELBO, ADAM)}
