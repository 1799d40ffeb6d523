r"""The importance-weighted bound as a training loss: its log-weights, its log-mean-exp, and their gradients.

For one example and :math:`k` (``k_train``) reparameterized samples :math:`z_i = \mu + \sigma \odot \varepsilon_i`
(Burda, Grosse & Salakhutdinov 2015; eq. ``iwae-loss``):

.. math::  \mathcal L_k = -\log \frac1k \sum_{i=1}^k w_i,\qquad
           \log w_i = \log p(x|z_i) + \beta\,\big(\log p(z_i) - \log q(z_i|x)\big)

(:math:`\beta = 1` is the bound; :math:`\beta < 1` is KL warm-up, as for the ELBO). Its gradient is the
self-normalised weights :math:`\tilde w_i = \operatorname{softmax}_i(\log w)` times each sample's
:math:`\nabla \log w_i` (eq. ``iwae-bwd``); the doubly reparameterised estimator (Tucker et al. 2019) gives the
encoder :math:`\tilde w_i(1 - \beta + \beta\tilde w_i)` (:math:`\tilde w_i^2` at :math:`\beta = 1`) times the
pathwise derivative only (eq. ``dreg``). Derivation: ``docs/derivations/iwae_training.md``.

Each piece is a forward/backward pair; :meth:`minivae.model.VAE.forward` and
:meth:`~minivae.model.VAE.backward` compose them.
Shapes: k samples (the leading axis, index i), N examples, K latent dimensions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .backend import get_array_module
from .likelihoods import LOG_2PI

#: The training objectives a model can have (:class:`minivae.model.VAEConfig`): the ELBO with the analytic KL,
#: the importance-weighted bound, and the same bound with the doubly reparameterised encoder gradient.
OBJECTIVES = ("elbo", "iwae", "iwae-dreg")
#: The arguments :func:`check_objective` names, as the Python API spells them; the command line passes its flags.
ARGUMENTS = {"objective": "objective", "n_samples": "n_samples", "k_train": "k_train", "engine": "engine"}


def check_objective(objective: str, n_samples: int, k_train: int, engine: str | None = None,
                    names: dict = ARGUMENTS) -> None:
    """Refuse samples and an engine that do not fit the objective, naming the argument (``names`` maps each to
    its name in the caller's words: a keyword, or a flag such as ``--k-train``). The ELBO averages ``n_samples``
    reconstruction draws and has ``k_train = 1``; a bound draws ``k_train`` samples and has ``n_samples = 1``;
    only the reference engine computes a bound."""
    def shown(argument: str, value) -> str:  # 'elbo' after a keyword, elbo after a flag
        return str(value) if names[argument].startswith("--") else repr(value)

    objective_is = f"{names['objective']} {shown('objective', objective)}"
    if objective == "elbo" and k_train != 1:
        raise ValueError(f"{names['k_train']}: expected 1 with {objective_is} (the ELBO's samples are "
                         f"{names['n_samples']}), got {k_train}")
    if objective != "elbo" and n_samples != 1:
        raise ValueError(f"{names['n_samples']}: expected 1 with {objective_is} (its samples are "
                         f"{names['k_train']}), got {n_samples}")
    if objective != "elbo" and engine == "fast":
        raise ValueError(f"{names['engine']}: expected {shown('engine', 'reference')} with {objective_is} (the fast "
                         f"step computes the ELBO only), got {shown('engine', engine)}")


# --------------------------------------------------------------------------- log p(z) and log q(z|x)


def log_prior_forward(z):
    r""":math:`\log\mathcal N(z; 0, I) = -\tfrac12\sum_j (\log 2\pi + z_j^2)` (eq. ``log-normal`` at 0, 1).

    Shapes: z (k, N, K) -> (k, N). The cache is ``z``.
    """
    return -0.5 * (LOG_2PI + z * z).sum(axis=-1), z


def log_prior_backward(dlog_p, z):
    r""":math:`\bar z = -\overline{\log p}\; z` (eq. ``iwae-prior-bwd``). Shapes: (k, N) -> (k, N, K)."""
    return -dlog_p[..., None] * z


class LogNormalCache(NamedTuple):
    scaled: object  # (k, N, K)  (z - mu) / sigma^2
    sq: object  # (k, N, K)  (z - mu)^2 / sigma^2


def log_normal_forward(z, mu, log_var):
    r"""The Gaussian log-density as a function of all three inputs (eq. ``log-normal``):

    .. math::  \log q(z|x) = -\tfrac12 \sum_j \big[\log 2\pi + \log\sigma^2_j
               + (z_j - \mu_j)^2 e^{-\log\sigma^2_j}\big]

    Shapes: z (k, N, K); mu, log_var (N, K) -> (k, N).
    """
    xp = get_array_module(z)
    scaled = (z - mu) * xp.exp(-log_var)
    sq = (z - mu) * scaled
    return -0.5 * (LOG_2PI + log_var + sq).sum(axis=-1), LogNormalCache(scaled, sq)


def log_normal_backward(dlog_q, cache: LogNormalCache):
    r"""The three partial derivatives of :func:`log_normal_forward` (eq. ``iwae-q-bwd``):

    .. math::  \bar z_i = -\overline{\log q}_i\,\frac{z_i - \mu}{\sigma^2},\qquad
               \bar\mu = \sum_i \overline{\log q}_i\,\frac{z_i - \mu}{\sigma^2},\qquad
               \overline{\log\sigma^2} = \tfrac12\sum_i \overline{\log q}_i
               \Big(\frac{(z_i - \mu)^2}{\sigma^2} - 1\Big)

    Shapes: dlog_q (k, N) -> dz (k, N, K), dmu (N, K), dlog_var (N, K). ``dmu`` and ``dlog_var`` are the
    score-function terms (z held fixed) that the DReG estimator drops.
    """
    d = dlog_q[..., None]
    dz = -d * cache.scaled  # d/dz of -(z - mu)^2 / (2 sigma^2)
    dmu = (d * cache.scaled).sum(axis=0)  # d/dmu of the same square: the opposite sign
    dlog_var = 0.5 * (d * (cache.sq - 1.0)).sum(axis=0)  # d/dlog_var of -(log_var + sq e^{-log_var}) / 2
    return dz, dmu, dlog_var


# --------------------------------------------------------------------------- the log-weights


def log_weights_forward(log_px, log_pz, log_qz, beta: float):
    r""":math:`\log w_i = \log p(x|z_i) + \beta(\log p(z_i) - \log q(z_i|x))` (eq. ``iwae-logw``).

    Shapes: three (k, N) -> (k, N). No cache: the backward needs only ``beta``.
    """
    return log_px + beta * (log_pz - log_qz)


def log_weights_backward(dlog_w, beta: float):
    r"""Gradients for :math:`\log p(x|z)`, :math:`\log p(z)` and :math:`\log q(z|x)`:
    :math:`\overline{\log w}`, :math:`\beta\,\overline{\log w}` and :math:`-\beta\,\overline{\log w}`."""
    return dlog_w, beta * dlog_w, -beta * dlog_w


# --------------------------------------------------------------------------- the log-mean-exp


class LogMeanExpCache(NamedTuple):
    weights: object  # (k, N)  the self-normalised weights softmax(a) over the k samples


def log_mean_exp_forward(a):
    r""":math:`\log\frac1k\sum_i e^{a_i} = M + \log\sum_i e^{a_i - M} - \log k`, :math:`M = \max_i a_i`
    (eq. ``logsumexp``), over axis 0.

    Every :math:`e^{a_i - M} \le 1` and the largest is 1, so nothing overflows and the sum is at least 1.
    Shapes: a (k, N) -> (N,). The cache holds the self-normalised weights
    :math:`\tilde w_i = e^{a_i - M} / \sum_j e^{a_j - M}` (eq. ``iwae-softmax``).
    """
    xp = get_array_module(a)
    m = a.max(axis=0)
    e = xp.exp(a - m)
    total = e.sum(axis=0)
    out = m + xp.log(total) - math.log(a.shape[0])
    return out, LogMeanExpCache(e / total)


def log_mean_exp_backward(dout, cache: LogMeanExpCache):
    r""":math:`\bar a_i = \overline{\text{out}}\;\tilde w_i` (eq. ``iwae-softmax``). Shapes: (N,) -> (k, N)."""
    return dout * cache.weights


def dreg_scale(weights, beta: float):
    r"""The factor DReG puts on each sample's pathwise encoder gradient, over the :math:`\tilde w_i` it already
    carries: :math:`1 - \beta + \beta\tilde w_i` (eq. ``dreg``), so the encoder sees
    :math:`\tilde w_i(1 - \beta + \beta\tilde w_i)`, which is :math:`\tilde w_i^2` at :math:`\beta = 1`.

    Shapes: weights (k, N) -> (k, N).
    """
    return (1.0 - beta) + beta * weights
