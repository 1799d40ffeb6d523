r"""Probabilistic PCA in closed form, and the exact scores of a linear Gaussian VAE.

Probabilistic PCA (Tipping & Bishop 1999) is the linear Gaussian latent model

.. math::  z \sim \mathcal N(0, I_K),\qquad x | z \sim \mathcal N(z W + b, \sigma^2 I_D),
           \qquad\text{so}\qquad x \sim \mathcal N(b, W^\top W + \sigma^2 I_D)

(``W`` is (K, D), as the decoder's weight ``decoder.0.W`` of a VAE with ``hidden=()``). Its maximum
likelihood has a closed form (eq. ``ppca-ml``): :func:`ppca_fit` gives the parameters,
:func:`ppca_max_log_likelihood` the mean log-likelihood they reach. A VAE with a linear decoder and a
``gaussian_shared`` likelihood *is* this model, and because its true posterior is Gaussian, the best ELBO over
linear encoders equals the maximum likelihood (derivation: ``docs/optimisation.md``). For a trained linear
VAE, :func:`linear_vae_log_likelihood` gives its exact marginal log-likelihood (eq. ``linear-marginal``) and
:func:`linear_vae_elbo` its exact ELBO, the expectation over :math:`q` taken in closed form (eq.
``linear-elbo``): two scores without Monte Carlo error to compare with the optimum.

Everything here runs in float64 on the host (NumPy).
"""

from __future__ import annotations

import math

import numpy as np

from .backend import to_numpy
from .validate import check_int, check_matrix

__all__ = ["ppca_fit", "ppca_max_log_likelihood", "gaussian_log_density", "linear_vae_log_likelihood",
           "linear_vae_elbo"]

LOG_2PI = math.log(2.0 * math.pi)


def _data(x) -> np.ndarray:
    x = np.asarray(x) if isinstance(x, np.ndarray) else x
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise ValueError(f"x: expected a 2-D array (N, D), got {type(x).__name__} "
                         f"{getattr(x, 'shape', '')}")
    return check_matrix("x", x, x.shape[1], np.float64)


def _spectrum(x: np.ndarray, latent_dim: int):
    """The mean, and the eigenvalues (descending) and eigenvectors of the ML covariance :math:`S = X_c^T X_c / N`."""
    N, D = x.shape
    latent_dim = check_int("latent_dim", latent_dim, 1)
    if latent_dim >= D:
        raise ValueError(f"latent_dim: expected fewer latent dimensions than data dimensions ({D}), got {latent_dim}")
    mean = x.mean(axis=0)
    centred = x - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / N)  # ascending
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    sigma2 = float(eigenvalues[latent_dim:].mean())  # sigma^2 = mean of the D - K discarded eigenvalues
    if not sigma2 > 0.0:
        raise ValueError(f"x: expected data whose covariance has rank above latent_dim ({latent_dim}) so that the "
                         f"noise variance is positive, got the discarded eigenvalues' mean {sigma2:.3g}")
    return mean, eigenvalues, eigenvectors, sigma2


def ppca_fit(x, latent_dim: int):
    r"""The maximum-likelihood pPCA parameters ``(W, b, sigma2)`` of ``x`` (N, D) with K = ``latent_dim`` (eq. ``ppca-ml``).

    .. math::  b = \bar x,\qquad \sigma^2 = \frac{1}{D-K}\sum_{j > K}\lambda_j,\qquad
               W = (\Lambda_K - \sigma^2 I)^{1/2} U_K^\top

    with :math:`\lambda_1 \ge \dots \ge \lambda_D` the eigenvalues of the sample covariance
    :math:`S = \frac1N \sum_n (x_n - \bar x)(x_n - \bar x)^\top` and :math:`U_K` the first K eigenvectors. Any
    rotation :math:`R W` is as good; this one has orthogonal rows. Shapes: W (K, D), b (D,).
    """
    x = _data(x)
    mean, eigenvalues, eigenvectors, sigma2 = _spectrum(x, latent_dim)
    scale = np.sqrt(np.maximum(eigenvalues[:latent_dim] - sigma2, 0.0))
    return (eigenvectors[:, :latent_dim] * scale).T, mean, sigma2


def ppca_max_log_likelihood(x, latent_dim: int) -> float:
    r"""The largest mean log-likelihood per example any pPCA model with K = ``latent_dim`` gives ``x`` (eq. ``ppca-ml``).

    .. math::  \frac1N \max \log p(X) = -\frac12\Big(D \log 2\pi + \sum_{j \le K} \log\lambda_j
               + (D - K)\log\sigma^2 + D\Big)
    """
    x = _data(x)
    D = x.shape[1]
    _, eigenvalues, _, sigma2 = _spectrum(x, latent_dim)
    return -0.5 * (D * LOG_2PI + float(np.log(eigenvalues[:latent_dim]).sum()) + (D - latent_dim) * math.log(sigma2)
                   + D)


def gaussian_log_density(x, mean, cov) -> np.ndarray:
    r""":math:`\log \mathcal N(x_n; m, C)` for each row of ``x`` (N, D), by a Cholesky factor :math:`C = L L^\top`.

    .. math::  \log \mathcal N(x; m, C) = -\tfrac12\big(D\log 2\pi + 2\sum_d \log L_{dd} + \|L^{-1}(x - m)\|^2\big)
    """
    x = _data(x)
    L = np.linalg.cholesky(np.asarray(cov, dtype=np.float64))
    white = np.linalg.solve(L, (x - mean).T)  # L^-1 (x - m), (D, N)
    return -0.5 * (x.shape[1] * LOG_2PI + 2.0 * np.log(np.diag(L)).sum() + (white ** 2).sum(axis=0))


def _linear_decoder(model):
    """``(W, b, noise_var)`` of a VAE with a linear decoder and a Gaussian likelihood with a learned or fixed variance."""
    from .model import VAE

    if not isinstance(model, VAE) or model.config.decoder_widths != () or model.conditional or \
            model.config.likelihood not in ("gaussian_fixed", "gaussian_shared", "gaussian_per_dim"):
        raise ValueError(f"model: expected an unconditional VAE with a linear decoder (hidden=() or "
                         f"decoder_hidden=()) and a gaussian_fixed, gaussian_shared or gaussian_per_dim likelihood, "
                         f"got {model!r}")
    W = to_numpy(model.params["decoder.0.W"]).astype(np.float64)
    b = to_numpy(model.params["decoder.0.b"]).astype(np.float64)
    D = model.config.data_dim
    if model.config.likelihood == "gaussian_fixed":
        noise_var = np.full(D, model.config.fixed_variance)
    else:
        noise_var = np.broadcast_to(np.exp(to_numpy(model.params["likelihood.log_var"]).astype(np.float64)), (D,))
    return W, b, noise_var


def linear_vae_log_likelihood(model, x) -> np.ndarray:
    r"""The exact :math:`\log p(x_n)` of a VAE with a linear Gaussian decoder, per row of ``x`` (eq. ``linear-marginal``).

    .. math::  p(x) = \mathcal N\big(x;\, b,\, W^\top W + \operatorname{diag}(\sigma^2)\big)

    The encoder plays no part: this is the model's own likelihood, which its ELBO and its importance-weighted
    bound approach from below.
    """
    W, b, noise_var = _linear_decoder(model)
    return gaussian_log_density(x, b, W.T @ W + np.diag(noise_var))


def linear_vae_elbo(model, x) -> np.ndarray:
    r"""The exact ELBO of a VAE with a linear Gaussian decoder, per row of ``x``: no Monte Carlo (eq. ``linear-elbo``).

    With :math:`q(z|x) = \mathcal N(\mu, \operatorname{diag} s^2)` (the model's encoder, any depth) and
    :math:`z W + b` the decoder's mean, the expectation of the Gaussian log-likelihood over :math:`q` is exact:

    .. math::  \mathcal L(x) = -\sum_d \frac12\Big(\log 2\pi\sigma_d^2
               + \frac{(x_d - (\mu W + b)_d)^2 + \sum_k s_k^2 W_{kd}^2}{\sigma_d^2}\Big)
               - \frac12\sum_k \big(\mu_k^2 + s_k^2 - 1 - \log s_k^2\big)
    """
    W, b, noise_var = _linear_decoder(model)
    x = _data(x)
    mu, log_var = (to_numpy(a).astype(np.float64) for a in model.encode(x))
    s2 = np.exp(log_var)
    residual = (x - (mu @ W + b)) ** 2 + s2 @ (W ** 2)  # E_q[(x - zW - b)^2], per dimension
    expected_log_lik = -0.5 * (LOG_2PI + np.log(noise_var) + residual / noise_var).sum(axis=1)
    kl = 0.5 * (mu ** 2 + s2 - 1.0 - log_var).sum(axis=1)  # eq. kl-fwd
    return expected_log_lik - kl
