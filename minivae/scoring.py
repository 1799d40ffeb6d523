r"""Scoring: the importance-weighted estimate of :math:`\log p(x)`.

With :math:`z_i \sim q(z|x)` (Burda, Grosse & Salakhutdinov 2015; eq. ``iwae``):

.. math::  \log p(x) \ge \mathcal L_k = E\Big[\log \frac1k \sum_{i=1}^k w_i\Big],\qquad
           w_i = \frac{p(x|z_i)\,p(z_i)}{q(z_i|x)}

:math:`\mathcal L_1` is the ELBO, :math:`\mathcal L_k` does not decrease with
:math:`k` and tends to :math:`\log p(x)`. The weights under- and overflow for
any real model, so the average is taken in log space with a running
log-sum-exp, over chunks of samples, so memory stays bounded for any ``k``
(eq. ``logsumexp``):

.. math::  \log\sum_i e^{a_i} = m + \log\sum_i e^{a_i - m},\qquad m = \max_i a_i
"""

from __future__ import annotations

import math

from .backend import BLOCK_ELEMENTS, device_of, get_array_module
from .likelihoods import LOG_2PI
from .reparam import reparameterize_forward
from .validate import check_int, check_matrix_shape

#: Elements of the largest temporary (samples x examples x width) one chunk may allocate, per device
#: (chosen in :data:`minivae.backend.BLOCK_ELEMENTS`). On the CPU, at 2^18 (1 MiB in float32) the allocator
#: reuses the freed temporaries chunk after chunk; at 2^22 it handed them back to the system after each chunk
#: and every page faulted in again, tens of thousands of faults per call and 1.2 to 1.3 times the time
#: (docs/performance.md). On a GPU a chunk is a few dozen launches, so chunks are as large as memory allows.
CHUNK_ELEMENTS = BLOCK_ELEMENTS["scoring"]


def log_normal(z, mu, log_var):
    r""":math:`\log \mathcal N(z; \mu, \operatorname{diag} e^{\log\sigma^2})` summed over the last axis (eq. ``log-normal``)."""
    xp = get_array_module(z)
    return -0.5 * (LOG_2PI + log_var + (z - mu) ** 2 * xp.exp(-log_var)).sum(axis=-1)


def log_likelihood(model, x, k: int = 1000, c=None, *, rng=None, batch_size: int = 256):
    r"""Importance-weighted estimate of :math:`\log p(x)` per example (eq. ``iwae``), in nats.

    Parameters
    ----------
    model : VAE or CVAE
    x : (N, D) float array
    k : int
        Importance samples per example (``k = 1`` is a single-sample ELBO).
    c : (N, C) float array, for a CVAE (then the estimate is of :math:`\log p(x|c)`).
    rng : random generator, default the model's own.
    batch_size : int
        Examples scored at a time; samples are further chunked so that no
        temporary exceeds :data:`CHUNK_ELEMENTS` elements (per device). ``x`` is
        checked, cast and moved batch by batch, so a large N never makes an
        (N, D) temporary.

    Returns
    -------
    (N,) array of :math:`\log \frac1k \sum_i w_i`.
    """
    k = check_int("k", k, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    check_matrix_shape("x", x, model.config.data_dim)  # the values are checked batch by batch: no N x D copy
    c = model._check_c(c, x.shape[0], "x")
    rng = model._check_rng(rng)
    xp = get_array_module(model.params.data)
    N, K = x.shape[0], model.config.latent_dim
    width = max(model.likelihood.n_outputs(model.config.data_dim), K, *model.config.hidden,
                *model.config.decoder_widths)
    result = xp.empty(N, dtype=model.dtype)
    for start in range(0, N, batch_size):
        xb = model._check_x(x[start:start + batch_size])  # cast and moved to the model's device, one batch
        cb = None if c is None else c[start:start + batch_size]
        n = xb.shape[0]
        mu, log_var = model._encode(xb, cb)  # x and c were checked above, once
        chunk = max(1, min(k, CHUNK_ELEMENTS[device_of(xb)] // (n * width)))
        running_max = xp.full(n, -xp.inf, dtype=model.dtype)
        running_sum = xp.zeros(n, dtype=model.dtype)  # sum_i exp(log_w_i - running_max)
        for done in range(0, k, chunk):
            s = min(chunk, k - done)
            noise = rng.standard_normal((s, n, K), dtype=model.dtype)
            z, _ = reparameterize_forward(mu, log_var, noise)  # z_i ~ q(z|x), (s, n, K)
            log_w = (model._log_px_given_z(xb, z, cb)  # log p(x|z_i)
                     + log_normal(z, 0.0, xp.zeros_like(z))  # + log p(z_i)
                     - log_normal(z, mu, log_var))  # - log q(z_i|x)
            new_max = xp.maximum(running_max, log_w.max(axis=0))
            running_sum = running_sum * xp.exp(running_max - new_max) + xp.exp(log_w - new_max).sum(axis=0)
            running_max = new_max
        result[start:start + n] = running_max + xp.log(running_sum) - math.log(k)  # log (1/k) sum_i w_i
    return result
