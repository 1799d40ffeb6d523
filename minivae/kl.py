r"""The closed-form KL divergence from :math:`q(z|x) = \mathcal N(\mu, \operatorname{diag}\sigma^2)` to the prior :math:`\mathcal N(0, I)`.

Per example, summed over the :math:`K` latent dimensions (eq. ``kl-fwd``):

.. math::  \mathrm{KL}_n = \tfrac12 \sum_{k=1}^K \left(\mu_{nk}^2 + \sigma_{nk}^2 - 1 - \log\sigma_{nk}^2\right)

It is zero exactly when :math:`\mu = 0,\ \log\sigma^2 = 0`, positive otherwise.
Derivation from the two Gaussian densities: ``docs/derivations/kl.md``.

Range: the model passes a log-variance already clipped to :math:`[-20, 20]`
(eq. ``logvar-clamp``), so :math:`\sigma^2 = e^{\log\sigma^2}` never
overflows and the KL is finite for every :math:`\mu` whose square is: up to
:math:`|\mu| \approx 1.8\times10^{19}` in float32 (:math:`1.3\times10^{154}`
in float64). Beyond that the KL itself exceeds the float range; the loss is
then infinite, which training reports as a :class:`~minivae.train.NonFiniteError`
naming the step, rather than a wrong finite number.
"""

from __future__ import annotations

from typing import NamedTuple

from .backend import get_array_module


class KLCache(NamedTuple):
    mu: object  # (N, K)
    var: object  # (N, K)  sigma^2 = exp(log_var)


def kl_forward(mu, log_var):
    r"""KL per example (eq. ``kl-fwd``). Shapes: mu, log_var (N, K) -> kl (N,)."""
    xp = get_array_module(mu)
    var = xp.exp(log_var)
    # sigma^2 - 1 - log sigma^2 is written expm1(log_var) - log_var: near log_var = 0 the
    # rounding error of exp(log_var) - 1 exceeds the true value (~ log_var^2 / 2) and could
    # make the KL negative; expm1 is accurate there, and the difference is never below 0.
    kl = 0.5 * (mu * mu + (xp.expm1(log_var) - log_var)).sum(axis=-1)
    return kl, KLCache(mu, var)


def kl_per_dim(mu, log_var):
    r"""The terms of eq. ``kl-fwd`` before the sum over :math:`k`: (N, K), each :math:`\ge 0`.

    :math:`\tfrac12(\mu_{nk}^2 + \sigma_{nk}^2 - 1 - \log\sigma_{nk}^2)`; a latent dimension whose KL stays
    near 0 for every example carries no information (posterior collapse). Summed over k it is ``kl_forward``'s KL.
    """
    xp = get_array_module(mu)
    return 0.5 * (mu * mu + (xp.expm1(log_var) - log_var))


def kl_backward(dkl, cache: KLCache):
    r"""Gradients of the KL (eq. ``kl-bwd``).

    .. math::  \bar\mu = \overline{\mathrm{KL}}\,\mu,\qquad
               \overline{\log\sigma^2} = \tfrac12\,\overline{\mathrm{KL}}\,(\sigma^2 - 1)

    Shapes: dkl (N,) -> dmu (N, K), dlog_var (N, K).
    """
    dkl = dkl[:, None]  # one upstream value per example, shared by its K terms
    dmu = dkl * cache.mu  # d/dmu of mu^2 / 2
    dlog_var = 0.5 * dkl * (cache.var - 1.0)  # d/dlog_var of (exp(log_var) - log_var) / 2
    return dmu, dlog_var
