r"""The exercises on estimators: the score-function (REINFORCE) gradient and the importance-weighted bound.

The score-function estimator of :math:`\nabla_{\mu, v} E_{q}[f(z)]`, with :math:`q = N(\mu, e^{v})` and a baseline
:math:`b` (Williams 1992; docs/derivations/reparam.md), is
:math:`\frac1S\sum_s (f(z_s) - b)\,\nabla\log q(z_s)`; :math:`\nabla\log q` is minus the Gaussian NLL's gradient
with the sample as the data, so the answer is built from the library's ``gaussian_nll_backward``. The
importance-weighted bound (docs/derivations/iwae.md) is a log-mean-exp of log-weights over the samples; its
gradient with respect to the log-weights is their softmax over the samples; the answer is SciPy's ``logsumexp``
and ``softmax``, formed around the largest log-weight.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp, softmax

from ..likelihoods import LOG_2PI, gaussian_nll_backward, gaussian_nll_forward
from .checker import Exercise, Mistake
from .pieces import uses, cases

# --------------------------------------------------------------------------- score function


def _score_inputs(rng, S, N, K, spread=0.7):
    mu, log_var = rng.normal(size=(N, K)), rng.normal(0, spread, (N, K))
    z = mu + np.exp(0.5 * log_var) * rng.normal(size=(S, N, K))
    return {"f": rng.normal(size=(S, N)), "z": z, "mu": mu, "log_var": log_var, "baseline": rng.normal(size=N)}


@uses(gaussian_nll_forward, gaussian_nll_backward)
def score_answer(f, z, mu, log_var, baseline):
    # grad log q(z_s) = -grad nll(z_s; mu, sigma^2): the NLL's backward with dnll_s = -(f_s - b) / S, summed over s
    _, cache = gaussian_nll_forward(np.broadcast_to(mu, z.shape), log_var, z)
    dmean, dlog_var = gaussian_nll_backward(-(f - baseline) / len(f), cache)
    return dmean.sum(axis=0), dlog_var


def _score_surrogate(a):
    """sum_n 1/S sum_s (f_sn - b_n) log q(z_sn): its gradient, z held fixed, is the estimator."""
    log_q = -0.5 * (LOG_2PI + a["log_var"] + (a["z"] - a["mu"]) ** 2 * np.exp(-a["log_var"])).sum(axis=-1)
    return float(np.sum((a["f"] - a["baseline"]) * log_q) / len(a["f"]))


def _score_wrong(f, z, mu, log_var, baseline, use_baseline=True, std_power=1.0, half=0.5):
    weight = (f - baseline if use_baseline else f)[..., None]
    scaled = (z - mu) / np.exp(std_power * log_var)
    return (weight * scaled).mean(axis=0), (weight * half * ((z - mu) * scaled - 1.0)).mean(axis=0)


SCORE = Exercise(
    name="score", function="score_function_gradient",
    summary="REINFORCE: (f(z) - b) grad log q(z), averaged over samples: dmu, dlog_var", page="derivations/reparam.md",
    reference=score_answer, returns=("dmu", "dlog_var"),
    cases=cases(_score_inputs, ("", dict(S=4, N=3, K=2), True), ("one sample, a batch of one", dict(S=1, N=1, K=1),
                                                                  False),
                ("", dict(S=6, N=2, K=3), False), ("log-variances near +-10", dict(S=3, N=2, K=2, spread=6.0), False)),
    covers="S = 1 to 6, a batch of one, wide log-variances",
    loss=_score_surrogate, wrt=lambda a: {"dmu": a["mu"], "dlog_var": a["log_var"]},
    factors=lambda a: {"S": float(len(a["f"]))},
    mistakes=(
        Mistake("baseline ignored", "the baseline b is subtracted from f: (f(z_s) - b) grad log q(z_s); it lowers "
                "the variance and, since E[grad log q] = 0, leaves the mean unchanged",
                lambda **a: _score_wrong(**a, use_baseline=False)),
        Mistake("sigma for sigma^2", "grad_mu log q = (z - mu) / sigma^2, the variance exp(log_var), not sigma",
                lambda **a: _score_wrong(**a, std_power=0.5)),
        Mistake("1/2 missing", "grad_v log q = ((z - mu)^2 / sigma^2 - 1) / 2: log q has -v/2 and "
                "-(z - mu)^2 e^-v / 2", lambda **a: _score_wrong(**a, half=1.0)),
    ),
    derivation=r"""
grad E_q[f(z)] = E_q[f(z) grad log q(z)] and E_q[grad log q] = 0, so for any baseline b:
  log q(z) = -1/2 sum_k (log 2 pi + v_k + (z_k - mu_k)^2 e^{-v_k})
  dmu      = 1/S sum_s (f_s - b) (z_s - mu) / sigma^2
  dlog_var = 1/S sum_s (f_s - b) ((z_s - mu)^2 / sigma^2 - 1) / 2
""")


# --------------------------------------------------------------------------- importance-weighted bound


def _iwae_inputs(rng, S, N, extreme=False):
    log_w = rng.normal(0, 2, (S, N))
    if extreme:  # log-weights of a real model: exp(-1000) underflows to 0, exp(800) overflows
        log_w[:, 0] += -1000.0
        log_w[:, -1] += 800.0
    return {"log_w": log_w, "dbound": rng.normal(size=N)}


@uses(logsumexp, softmax)
def iwae_answer(log_w, dbound):
    bound = logsumexp(log_w, axis=0) - math.log(len(log_w))  # log (1/S) sum_s w_s (eq. logsumexp)
    return bound, dbound * softmax(log_w, axis=0)


def _iwae_wrong(log_w, dbound, log_s=True, uniform=False, axis=0):
    m = log_w.max(axis=0)
    bound = m + np.log(np.exp(log_w - m).sum(axis=0)) - (math.log(len(log_w)) if log_s else 0.0)
    if uniform:
        return bound, np.broadcast_to(dbound / len(log_w), log_w.shape).copy()
    e = np.exp(log_w - log_w.max(axis=axis, keepdims=True))
    return bound, dbound * e / e.sum(axis=axis, keepdims=True)


IWAE = Exercise(
    name="iwae", function="iwae_bound", summary="log (1/S) sum_s w_s from log-weights, stable, and dlog_w",
    page="derivations/iwae.md", reference=iwae_answer, returns=("bound", "dlog_w"),
    cases=cases(_iwae_inputs, ("", dict(S=5, N=3), True), ("one sample, a batch of one", dict(S=1, N=1), False),
                ("", dict(S=2, N=4), False), ("log-weights near -1000 and +800", dict(S=4, N=3, extreme=True),
                                              False)),
    covers="S = 1 to 5, a batch of one, log-weights near -1000 and +800",
    loss=lambda a: float(np.sum(iwae_answer(**a)[0] * a["dbound"])), wrt=lambda a: {"dlog_w": a["log_w"]},
    mistakes=(
        Mistake("log S missing", "the bound is the log of the MEAN of the weights: log (1/S) sum_s w_s = "
                "logsumexp_s(log w_s) - log S", lambda **a: _iwae_wrong(**a, log_s=False)),
        Mistake("uniform gradient", "d/d log w_s of log sum_s w_s is w_s / sum_s' w_s', the normalised weight "
                "(a softmax over s), not 1/S", lambda **a: _iwae_wrong(**a, uniform=True)),
        Mistake("softmax over examples", "the weights are normalised over the S samples of each example (axis 0), "
                "not over the examples", lambda **a: _iwae_wrong(**a, axis=1)),
    ),
    derivation=r"""
bound_n = log (1/S) sum_s exp(a_sn), a = log w (eq. iwae). With m_n = max_s a_sn (eq. logsumexp):
  bound_n  = m_n + log sum_s exp(a_sn - m_n) - log S     every exponent <= 0: no overflow, and the largest is 1
  dlog_w_sn = dbound_n * exp(a_sn - m_n) / sum_s' exp(a_s'n - m_n)   a softmax over the samples
""")
