r"""The exercises on the latent variable and the likelihoods: the KL term, the reparameterization, the Bernoulli NLL
from logits and the Gaussian NLL with a learned variance. Each case set includes the extremes each must survive:
log-variances of +-30, logits of +-800 (see :mod:`.pieces` for how cases are built).
"""

from __future__ import annotations

import numpy as np

from ..kl import kl_backward, kl_forward
from ..layers import sigmoid
from ..likelihoods import bernoulli_nll_backward, bernoulli_nll_forward, gaussian_nll_backward, gaussian_nll_forward
from ..reparam import LOG_VAR_LIMIT, reparameterize_backward, reparameterize_forward
from .checker import Exercise, Mistake
from .pieces import uses, cases

# --------------------------------------------------------------------------- KL


def _kl_inputs(rng, N, K, extreme=False):
    log_var = rng.normal(0, 0.7, (N, K))
    if extreme:  # log-variances of +-30: sigma^2 = e^30 ~ 1e13 and e^-30 ~ 1e-13
        log_var.flat[::2] = 30.0
        log_var.flat[1::2] = -30.0
    return {"dkl": rng.normal(size=N), "mu": rng.normal(size=(N, K)), "log_var": log_var}


@uses(kl_forward, kl_backward)
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


@uses(reparameterize_forward, reparameterize_backward)
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


@uses(bernoulli_nll_forward, bernoulli_nll_backward)
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


@uses(gaussian_nll_forward, gaussian_nll_backward)
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
