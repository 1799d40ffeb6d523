r"""The encoder's Gaussian head and the reparameterization trick.

The encoder's last layer outputs :math:`2K` numbers per example; the first
:math:`K` are the mean :math:`\mu` and the last :math:`K` the log-variance
:math:`\log\sigma^2` of the diagonal Gaussian :math:`q(z|x)` (one fused matrix
product instead of two).

A sample :math:`z \sim q(z|x)` is not differentiable in :math:`(\mu, \log\sigma^2)`,
but the same distribution is obtained by moving the randomness into a
parameter-free noise :math:`\varepsilon \sim \mathcal N(0, I)` (eq. ``reparam-fwd``):

.. math::  z_s = \mu + \exp(\tfrac12 \log\sigma^2) \odot \varepsilon_s,\qquad s = 1..S

and :math:`z_s` is now a smooth function of :math:`\mu` and :math:`\log\sigma^2`.
Derivation: ``docs/derivations/reparam.md``.
"""

from __future__ import annotations

from typing import NamedTuple

from .backend import get_array_module


def split_head(out):
    r"""Split the encoder output (N, 2K) into views ``mu`` (N, K) and ``log_var`` (N, K)."""
    K = out.shape[-1] // 2
    return out[..., :K], out[..., K:]


def join_head(dmu, dlog_var):
    r"""The backward of :func:`split_head`: the two gradients side by side, (N, 2K)."""
    xp = get_array_module(dmu)
    return xp.concatenate([dmu, dlog_var], axis=-1)


#: Log-variances are clipped to [-LOG_VAR_LIMIT, LOG_VAR_LIMIT] before they are exponentiated
#: (eq. ``logvar-clamp``): sigma^2 then lies in [2e-9, 5e8], so exp(log_var), exp(-log_var) and the
#: squared errors they scale stay finite in float32 for any network output. Outside the range the
#: function is constant, so its gradient there is zero: the gradients stay those of what is computed.
LOG_VAR_LIMIT = 20.0


def clamp_log_var_forward(log_var):
    r"""Clip a log-variance to :math:`[-L, L]`, :math:`L` = :data:`LOG_VAR_LIMIT` (eq. ``logvar-clamp``).

    Returns ``(clipped, inside)`` where ``inside`` marks the entries left unchanged.
    """
    xp = get_array_module(log_var)
    inside = xp.abs(log_var) < LOG_VAR_LIMIT  # -L < v < L (false for NaN, as the clip leaves it NaN)
    return xp.clip(log_var, -LOG_VAR_LIMIT, LOG_VAR_LIMIT), inside


def clamp_log_var_backward(dclipped, inside):
    r""":math:`\bar v = \bar c \cdot [-L < v < L]`: the clip passes gradients only where it is the identity."""
    return dclipped * inside


def draw_noise(rng, n_samples: int, n: int, k: int, dtype):
    r""":math:`\varepsilon \sim \mathcal N(0, I)` of shape (S, N, K), drawn from ``rng``."""
    return rng.standard_normal((n_samples, n, k), dtype=dtype)


class ReparamCache(NamedTuple):
    std: object  # (N, K)  sigma = exp(log_var / 2)
    noise: object  # (S, N, K)  epsilon


def reparameterize_forward(mu, log_var, noise):
    r""":math:`z_s = \mu + \sigma \odot \varepsilon_s` with :math:`\sigma = \exp(\tfrac12\log\sigma^2)` (eq. ``reparam-fwd``).

    Shapes: mu, log_var (N, K); noise (S, N, K) -> z (S, N, K).
    ``noise`` is an input without gradient: pass the same array to get the
    same z (tests inject it; training draws it with :func:`draw_noise`).
    """
    xp = get_array_module(mu)
    std = xp.exp(0.5 * log_var)
    z = mu + std * noise  # broadcast over the S samples
    return z, ReparamCache(std, noise)


def reparameterize_backward(dz, cache: ReparamCache):
    r"""Gradients of the reparameterized sample (eq. ``reparam-bwd``).

    .. math::  \bar\mu = \sum_s \bar z_s,\qquad
               \overline{\log\sigma^2} = \tfrac12\,\sigma \odot \sum_s \bar z_s \odot \varepsilon_s

    Shapes: dz (S, N, K) -> dmu (N, K), dlog_var (N, K).
    """
    dmu = dz.sum(axis=0)  # dz_s/dmu = 1, for every sample s
    dlog_var = 0.5 * cache.std * (dz * cache.noise).sum(axis=0)  # dz_s/dlog_var = sigma * eps_s / 2
    return dmu, dlog_var
