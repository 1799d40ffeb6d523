r"""The exercises on one piece each: the affine layer, tanh, the KL, the reparameterization, the two likelihoods, the
MLP and one Adam step. For each: its cases, the forward whose gradient is asked, minivae's own answer, and the
typical wrong answers a learner writes, each with the mistake it makes.

Every answer function has the learner's signature (the stub's in ``minivae/exercises/stubs/``) and is built from the
library's own forward and backward functions, so the checker compares the learner with the code the model runs.
The cases differ in every size (a batch of one, non-square weights, S > 1) and seed, so that hard-coded shapes,
a transposed product or a missing 1/S cannot pass on all of them, and include each exercise's numerical extremes.
"""

from __future__ import annotations

import numpy as np

from ..kl import kl_backward, kl_forward
from ..layers import affine_backward, affine_forward, get_activation, sigmoid, tanh_backward, tanh_forward
from ..likelihoods import bernoulli_nll_backward, bernoulli_nll_forward, gaussian_nll_backward, gaussian_nll_forward
from ..mlp import mlp_backward, mlp_forward
from ..optim import Adam
from ..params import ParamBuffer
from ..reparam import LOG_VAR_LIMIT, reparameterize_backward, reparameterize_forward
from .checker import Case, Exercise, Mistake

TANH = get_activation("tanh")


def _uses(*functions):
    """Mark an answer function with the library functions it calls: ``--answer`` prints their source too."""
    def mark(answer):
        answer.library = functions
        return answer
    return mark


def cases(build, *specs):
    """The cases of an exercise, drawn once: ``build(rng, **sizes)`` for each ``(label, sizes, fd)`` in ``specs``,
    the seed the case's number. Labels say what each case is about; a size's letter is the stub's."""
    drawn = []

    def get():
        if not drawn:
            for seed, (label, sizes, fd) in enumerate(specs):
                said = ", ".join(f"{k}={v}" for k, v in sizes.items() if k != "extreme")
                drawn.append(Case(f"{label}: {said}, seed {seed}" if label else f"{said}, seed {seed}",
                                  build(np.random.default_rng(seed), **sizes), fd))
        return drawn
    return get


def pairs(prefix, grads):
    """``{"dW1": ..., "db1": ..., ...}``: a list of layer gradients by the stub's names."""
    out = {}
    for layer, (dW, db) in enumerate(grads):
        out[f"{prefix}dW{layer + 1}"] = dW
        out[f"{prefix}db{layer + 1}"] = db
    return out


def layer_names(prefix, n_layers):
    return tuple((f"{prefix}dW{layer + 1}", f"{prefix}db{layer + 1}") for layer in range(n_layers))


def layers(rng, sizes):
    return [(rng.normal(0, 0.6, (a, b)), rng.normal(0, 0.3, b)) for a, b in zip(sizes[:-1], sizes[1:])]


# --------------------------------------------------------------------------- affine


def _affine_inputs(rng, N, I, O):
    return {"dout": rng.normal(size=(N, O)), "x": rng.normal(size=(N, I)), "W": rng.normal(size=(I, O)),
            "b": rng.normal(size=O)}


@_uses(affine_forward, affine_backward)
def affine_answer(dout, x, W, b):
    _, cache = affine_forward(x, W, b)
    return affine_backward(dout, cache)


AFFINE = Exercise(
    name="affine", function="affine_backward", summary="Y = XW + b: dX, dW, db", page="derivations/layers.md",
    cases=cases(_affine_inputs, ("", dict(N=4, I=3, O=5), True), ("a batch of one", dict(N=1, I=2, O=3), False),
                ("more inputs than outputs", dict(N=6, I=5, O=2), False),
                ("one input", dict(N=3, I=1, O=4), False)),
    covers="a batch of one, non-square W", reference=affine_answer, returns=("dx", "dW", "db"),
    loss=lambda a: float(np.sum((a["x"] @ a["W"] + a["b"]) * a["dout"])),
    wrt=lambda a: {"dx": a["x"], "dW": a["W"], "db": a["b"]},
    factors=lambda a: {"N": float(len(a["x"]))},
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


def _tanh_inputs(rng, N, O, scale=1.0):
    return {"dout": rng.normal(size=(N, O)), "x": rng.normal(0, scale, size=(N, O))}


@_uses(tanh_forward, tanh_backward)
def tanh_answer(dout, x):
    _, cache = tanh_forward(x)
    return tanh_backward(dout, cache)


ACTIVATION = Exercise(
    name="activation", function="tanh_backward", summary="y = tanh(x): dx", page="derivations/layers.md",
    cases=cases(_tanh_inputs, ("", dict(N=4, O=5), True), ("a batch of one", dict(N=1, O=3), False),
                ("saturated inputs", dict(N=3, O=2, scale=20.0), False)),
    covers="a batch of one, |x| up to ~40", reference=tanh_answer, returns="dx",
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


def _kl_inputs(rng, N, K, extreme=False):
    log_var = rng.normal(0, 0.7, (N, K))
    if extreme:  # log-variances of +-30: sigma^2 = e^30 ~ 1e13 and e^-30 ~ 1e-13
        log_var.flat[::2] = 30.0
        log_var.flat[1::2] = -30.0
    return {"dkl": rng.normal(size=N), "mu": rng.normal(size=(N, K)), "log_var": log_var}


@_uses(kl_forward, kl_backward)
def kl_answer(dkl, mu, log_var):
    _, cache = kl_forward(mu, log_var)
    return kl_backward(dkl, cache)


KL = Exercise(
    name="kl", function="kl_backward", summary="KL(N(mu, sigma^2) || N(0, I)): dmu, dlog_var",
    page="derivations/kl.md", reference=kl_answer, returns=("dmu", "dlog_var"),
    cases=cases(_kl_inputs, ("", dict(N=4, K=2), True), ("a batch of one", dict(N=1, K=3), False),
                ("one latent", dict(N=5, K=1), False), ("log-variances +-30", dict(N=2, K=3, extreme=True), False)),
    covers="a batch of one, log-variances +-30",
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


def _reparam_inputs(rng, S, N, K, extreme=False):
    log_var = rng.normal(0, 0.7, (N, K))
    if extreme:
        log_var.flat[::2] = 30.0
        log_var.flat[1::2] = -30.0
    return {"dz": rng.normal(size=(S, N, K)), "mu": rng.normal(size=(N, K)), "log_var": log_var,
            "noise": rng.normal(size=(S, N, K))}


@_uses(reparameterize_forward, reparameterize_backward)
def reparam_answer(dz, mu, log_var, noise):
    _, cache = reparameterize_forward(mu, log_var, noise)
    return reparameterize_backward(dz, cache)


REPARAM = Exercise(
    name="reparam", function="reparameterize_backward", summary="z_s = mu + sigma * eps_s: dmu, dlog_var",
    page="derivations/reparam.md", reference=reparam_answer, returns=("dmu", "dlog_var"),
    cases=cases(_reparam_inputs, ("", dict(S=3, N=4, K=2), True),
                ("one sample, a batch of one", dict(S=1, N=1, K=3), False), ("", dict(S=5, N=2, K=1), False),
                ("log-variances +-30", dict(S=2, N=2, K=2, extreme=True), False)),
    covers="S = 1 to 5, a batch of one, log-variances +-30",
    loss=lambda a: float(np.sum(reparameterize_forward(a["mu"], a["log_var"], a["noise"])[0] * a["dz"])),
    wrt=lambda a: {"dmu": a["mu"], "dlog_var": a["log_var"]},
    factors=lambda a: {"S": float(len(a["noise"]))},
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


def _bernoulli_inputs(rng, N, D, extreme=False):
    logits = rng.normal(0, 2, (N, D))
    if extreme:  # exp(800) overflows float64: sigmoid must be formed without it
        logits.flat[::2] = 800.0
        logits.flat[1::2] = -800.0
    return {"dnll": rng.normal(size=N), "logits": logits, "x": rng.random((N, D))}


@_uses(bernoulli_nll_forward, bernoulli_nll_backward)
def bernoulli_answer(dnll, logits, x):
    _, cache = bernoulli_nll_forward(logits, x)
    return bernoulli_nll_backward(dnll, cache)


BERNOULLI = Exercise(
    name="bernoulli", function="bernoulli_nll_backward", summary="-log p(x | logits), Bernoulli: dlogits",
    page="derivations/likelihoods.md", reference=bernoulli_answer, returns="dlogits",
    cases=cases(_bernoulli_inputs, ("", dict(N=4, D=5), True), ("a batch of one", dict(N=1, D=3), False),
                ("", dict(N=3, D=7), False), ("logits +-800", dict(N=2, D=3, extreme=True), False)),
    covers="a batch of one, logits +-800",
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


def _gaussian_inputs(rng, N, D, extreme=False):
    log_var = rng.normal(0, 0.7, (N, D))
    if extreme:  # just inside and beyond the clip to +-LOG_VAR_LIMIT = 20 (eq. logvar-clamp)
        log_var.flat[::4] = 30.0
        log_var.flat[1::4] = -30.0
        log_var.flat[2::4] = 19.5
        log_var.flat[3::4] = -19.5
    return {"dnll": rng.normal(size=N), "mean": rng.normal(size=(N, D)), "log_var": log_var,
            "x": rng.normal(size=(N, D))}


@_uses(gaussian_nll_forward, gaussian_nll_backward)
def gaussian_answer(dnll, mean, log_var, x):
    _, cache = gaussian_nll_forward(mean, log_var, x)
    return gaussian_nll_backward(dnll, cache)


def _gaussian_wrong(dnll, mean, log_var, x, var_power=1.0, sign=1.0, half=0.5, clip=True):
    inside = np.abs(log_var) < LOG_VAR_LIMIT if clip else np.ones(log_var.shape, bool)
    var = np.exp(var_power * (np.clip(log_var, -LOG_VAR_LIMIT, LOG_VAR_LIMIT) if clip else log_var))
    d = dnll[:, None]
    return d * sign * (mean - x) / var, d * half * (1.0 - (x - mean) ** 2 / var) * inside


GAUSSIAN = Exercise(
    name="gaussian", function="gaussian_nll_backward",
    summary="-log N(x; m, sigma^2), sigma^2 learned per entry: dmean, dlog_var", page="derivations/likelihoods.md",
    reference=gaussian_answer, returns=("dmean", "dlog_var"),
    cases=cases(_gaussian_inputs, ("", dict(N=4, D=5), True), ("a batch of one", dict(N=1, D=2), False),
                ("", dict(N=3, D=4), False), ("log-variances +-19.5 and +-30", dict(N=2, D=4, extreme=True),
                                              False)),
    covers="a batch of one, log-variances +-19.5 and +-30",
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
        Mistake("no clip", "log_var is clipped to [-20, 20] first: beyond, the clipped value is the variance and "
                "dlog_var is 0 (the clip is constant there)",
                lambda dnll, mean, log_var, x: _gaussian_wrong(dnll, mean, log_var, x, clip=False)),
    ),
    derivation=r"""
nll_n = sum_d 1/2 (log 2 pi + v_nd + (x_nd - m_nd)^2 exp(-v_nd)), v = log sigma^2 (eq. gauss-nll), so (eq. gauss-grad):
  dmean    = dnll_n * (m - x) / sigma^2
  dlog_var = dnll_n * (1 - (x - m)^2 / sigma^2) / 2
with v clipped to [-20, 20] first (eq. logvar-clamp): outside, sigma^2 = e^{+-20} and dlog_var = 0.
""")


# --------------------------------------------------------------------------- the MLP


def _mlp_inputs(rng, N, I, H, O):
    return {"dout": rng.normal(size=(N, O)), "x": rng.normal(size=(N, I)), "weights": layers(rng, (I, H, O))}


@_uses(mlp_forward, mlp_backward)
def mlp_answer(dout, x, weights):
    _, cache = mlp_forward(x, weights, TANH)
    return mlp_backward(dout, cache, TANH)


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
    page="derivations/layers.md", reference=mlp_answer, returns=("dx", layer_names("", 2)),
    cases=cases(_mlp_inputs, ("", dict(N=4, I=3, H=4, O=5), True),
                ("a batch of one", dict(N=1, I=2, H=3, O=2), False), ("", dict(N=5, I=4, H=2, O=3), False)),
    covers="a batch of one, non-square weights",
    loss=lambda a: float(np.sum(mlp_forward(a["x"], a["weights"], TANH)[0] * a["dout"])),
    wrt=lambda a: {"dx": a["x"], **pairs("", a["weights"])},
    factors=lambda a: {"N": float(len(a["x"]))},
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


# --------------------------------------------------------------------------- one Adam step


def _adam_inputs(rng, shape, t, lr, beta1, beta2, eps, tiny=False):
    grad = rng.normal(size=shape)
    v = rng.random(shape) * 0.05
    if tiny:  # second moments near 0: sqrt(v_hat) ~ 1e-9, far below eps, and sqrt(v_hat + eps) far above it
        grad, v = grad * 1e-9, v * 1e-18
    return {"theta": rng.normal(size=shape), "grad": grad, "m": rng.normal(0, 0.1, shape) * (1e-9 if tiny else 1),
            "v": v, "t": t, "lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps}


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


def _adam_wrong(theta, grad, m, v, t, lr, beta1, beta2, eps, correct=True, root=True, t_shift=0,
                eps_inside=False, defaults=False):
    if defaults:  # the hyper-parameters of the paper written in, the arguments ignored
        beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    tc = t + t_shift
    m_hat = m / (1 - beta1 ** tc) if correct else m
    v_hat = v / (1 - beta2 ** tc) if correct else v
    if eps_inside:
        return theta - lr * m_hat / np.sqrt(v_hat + eps), m, v
    return theta - lr * m_hat / ((np.sqrt(v_hat) if root else v_hat) + eps), m, v


ADAM = Exercise(
    name="adam", function="adam_step", summary="one Adam update: theta, m, v", page="derivations/adam.md",
    reference=adam_answer, returns=("theta", "m", "v"), may_change=("theta", "m", "v"),
    cases=cases(_adam_inputs, ("", dict(shape=(4, 3), t=3, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8), False),
                ("the first step", dict(shape=(1,), t=1, lr=0.01, beta1=0.5, beta2=0.8, eps=1e-3), False),
                ("", dict(shape=(2, 5), t=7, lr=0.3, beta1=0.7, beta2=0.95, eps=1e-6), False),
                ("second moments near 0", dict(shape=(3, 2), t=2, lr=0.05, beta1=0.8, beta2=0.99, eps=1e-8,
                                               tiny=True), False)),
    covers="beta1, beta2, eps, lr and t varied, second moments near 0",
    mistakes=(
        Mistake("hyper-parameters written in", "beta1, beta2 and eps are arguments: the update uses the ones "
                "passed, not 0.9, 0.999 and 1e-8", lambda **a: _adam_wrong(**a, defaults=True)),
        Mistake("eps inside the root", "eps belongs outside the square root: theta - lr m_hat / (sqrt(v_hat) + "
                "eps); sqrt(v_hat + eps) differs where v_hat is near 0", lambda **a: _adam_wrong(**a, eps_inside=True)),
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



