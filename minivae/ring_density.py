r"""The exact density of the ring data, for scoring a model against the truth.

:func:`minivae.data.ring` draws :math:`x = f(z) + \text{noise}\cdot\varepsilon` with
:math:`f(z) = z/10 + z/\lVert z\rVert`, :math:`z, \varepsilon \sim \mathcal N(0, I_2)`. Its density

.. math::  p(x) = E_{z}\big[\mathcal N(x;\, f(z),\, \text{noise}^2 I_2)\big]

is a 2-D integral. In polar coordinates the angle integrates to a Bessel
function :math:`I_0` (eq. ``ring-angle``), leaving one integral over
:math:`r = \lVert z\rVert` (eq. ``ring-radial``), done here by composite
Gauss--Legendre quadrature on the window where the integrand lives
(eq. ``ring-window``), in the log domain so that points far from the ring get
their (very negative) log-density instead of ``-inf``. Derivation and accuracy:
``docs/derivations/ring.md``.
"""

from __future__ import annotations

import math

import numpy as np

from .validate import check_float

#: Gauss--Legendre panels and nodes per panel across the window (eq. ``ring-window``): 20 x 20 = 400 nodes.
PANELS, NODES_PER_PANEL = 20, 20
#: Half-width of the window in posterior standard deviations: the Gaussian factor there is exp(-WINDOW^2 / 2) ~ 1e-43.
WINDOW = 14.0
#: Rows per block, so the (rows, 400) temporaries stay a few megabytes.
BLOCK_ROWS = 2048

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(NODES_PER_PANEL)  # on [-1, 1]


def _check_points(x) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a numpy float array of shape (N, 2), got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"x: expected a float array of shape (N, 2), got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x: expected shape (N, 2), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x: expected finite values, got NaN or infinity")
    return x.astype(np.float64, copy=False)


def _window(t, noise: float):
    r"""The radial window [lo, hi] (N,) where the integrand of eq. ``ring-radial`` is not negligible.

    ``t`` = :math:`\lVert x\rVert`. The Gaussian factor in :math:`r` has centre :math:`r_0 = 10(t - 1)`
    and width :math:`s = 10\,\text{noise}`; times the prior's :math:`e^{-r^2/2}` it peaks at
    :math:`r_* = r_0/(1 + s^2)` with width :math:`\hat s = s/\sqrt{1 + s^2}` (eq. ``ring-window``).
    """
    s2 = (10.0 * noise) ** 2
    r0 = 10.0 * (t - 1.0)
    r_star, s_hat = r0 / (1.0 + s2), math.sqrt(s2 / (1.0 + s2))
    lo = np.maximum(0.0, r_star - WINDOW * s_hat)
    hi = np.maximum(r_star, 0.0) + WINDOW * s_hat
    # r0 < 0 (inside the unit circle): the integrand decays from r = 0 like exp(r r0 / s^2), faster still.
    decay = np.where(r0 < 0, s2 / np.maximum(-r0, 1e-300), np.inf)
    hi = np.minimum(hi, 4.0 * WINDOW * decay)
    return lo, np.maximum(hi, lo + 1e-12)


def _log_integrand(r, t, noise: float):
    r"""log of the integrand of eq. ``ring-radial`` at radii ``r`` (N, M) for points at distance ``t`` (N, 1)."""
    from scipy.special import i0e  # here, not with minivae: importing scipy.special is a third of `import minivae`

    rho = 1.0 + r / 10.0  # the distance of f(z) from the origin, ||f(z)|| = r/10 + 1
    a = rho * t / noise**2  # the Bessel function's argument
    with np.errstate(divide="ignore"):  # log 0 at r = 0 is -inf: a zero weight, not an error
        log_r = np.log(r)
    return (log_r - 0.5 * r**2 - (t - rho) ** 2 / (2.0 * noise**2) + np.log(i0e(a))
            - math.log(2.0 * math.pi * noise**2))


def ring_log_density(x, noise: float = 0.05) -> np.ndarray:
    r"""Exact :math:`\log p(x)` (nats) of the ring data :func:`minivae.data.ring` (N,) at points ``x`` (N, 2).

    .. math::  p(x) = \int_0^\infty r e^{-r^2/2}\, \frac{1}{2\pi\sigma^2}
               e^{-(\lVert x\rVert - \rho)^2 / 2\sigma^2}\, \operatorname{i0e}\!\big(\rho\lVert x\rVert/\sigma^2\big)\, dr,
               \qquad \rho = 1 + r/10,\ \sigma = \text{noise}

    (eq. ``ring-radial``), by composite Gauss--Legendre quadrature (``PANELS`` x ``NODES_PER_PANEL`` nodes) on
    the window of eq. ``ring-window``; relative error of :math:`p` below about 1e-10 (``docs/derivations/ring.md``).

    Parameters
    ----------
    x : float array (N, 2), the points.
    noise : float > 0, the standard deviation of the noise added by :func:`minivae.data.ring`
        (its default 0.05). Without noise the ring has no density in the plane.

    Returns
    -------
    float64 array (N,).
    """
    from scipy.special import logsumexp  # as in _log_integrand

    x = _check_points(x)
    noise = check_float("noise", noise, minimum=0.0, strict_minimum=True)  # without noise: no density in the plane
    t_all = np.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)
    out = np.empty(x.shape[0])
    nodes = ((np.arange(PANELS)[:, None] + 0.5 * (_NODES[None, :] + 1.0)) / PANELS).ravel()  # in [0, 1]
    weights = np.tile(_WEIGHTS / (2.0 * PANELS), PANELS)  # sum to 1
    for start in range(0, x.shape[0], BLOCK_ROWS):
        t = t_all[start:start + BLOCK_ROWS, None]
        lo, hi = _window(t, noise)
        r = lo + (hi - lo) * nodes  # (n, M)
        log_w = np.log(weights) + np.log(hi - lo)  # dr = (hi - lo) d(node)
        out[start:start + BLOCK_ROWS] = logsumexp(log_w + _log_integrand(r, t, noise), axis=1)
    return out


def ring_nll(x, noise: float = 0.05) -> float:
    """The mean negative log-likelihood (nats per point) of the points ``x`` (N, 2) under the ring's exact density."""
    return float(-ring_log_density(x, noise).mean())


__all__ = ["ring_log_density", "ring_nll"]
