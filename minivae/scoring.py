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

For speed, the same operations as the model's own methods, in the same order
(``tests/test_scoring.py`` checks the parts bit for bit): the decoder writes
each chunk into buffers allocated once per call (:class:`_Rows`), the
Bernoulli term is taken in place (:func:`minivae.likelihoods.bernoulli_nll_forward`), and on the CPU
the examples of a batch are split over the cores (:mod:`minivae.cores`), each
thread with its own buffers.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import BLOCK_ELEMENTS, device_of, get_array_module
from .cores import map_rows, row_blocks
from .likelihoods import LOG_2PI, Bernoulli, bernoulli_nll_forward
from .mlp import mlp_forward
from .reparam import reparameterize_forward
from .validate import check_int

#: Elements (samples x examples x width) of one chunk's decoder buffers, per device (chosen in
#: :data:`minivae.backend.BLOCK_ELEMENTS`); the noise of several chunks is drawn at once, up to as many elements.
#: On the CPU, 2^20 (4 MiB in float32) gives each of two threads a few hundred rows a matrix product; the buffers
#: are allocated once per call, so no chunk faults fresh pages in (docs/performance.md). On a GPU a chunk is a few
#: dozen launches, so chunks are as large as memory allows.
CHUNK_ELEMENTS = BLOCK_ELEMENTS["scoring"]


def log_normal(z, mu, log_var):
    r""":math:`\log \mathcal N(z; \mu, \operatorname{diag} e^{\log\sigma^2})` summed over the last axis (eq. ``log-normal``)."""
    xp = get_array_module(z)
    return -0.5 * (LOG_2PI + log_var + (z - mu) ** 2 * xp.exp(-log_var)).sum(axis=-1)


class _Rows:
    """The decoder's buffers for ``samples`` importance samples of ``rows`` examples, allocated once per call.

    A chunk's decoder input, every layer's output and, for a Bernoulli
    likelihood, two scratch arrays of the output's size live here; the chunk's
    matrix products, activations and log-likelihood write into them (as
    :mod:`minivae.fast` does for a training step), so a chunk allocates nothing
    of its size (the Gaussian likelihoods still take the reference functions, with their temporaries).
    """

    def __init__(self, model, samples: int, rows: int, xp):
        widths = model.layer_sizes()["decoder"]
        self.dec_in = xp.empty((samples * rows, widths[0]), dtype=model.dtype)  # [z, c]
        self.dec = [xp.empty((samples * rows, width), dtype=model.dtype) for width in widths[1:]]
        bernoulli = isinstance(model.likelihood, Bernoulli)
        self.scratch = [xp.empty_like(self.dec[-1]) for _ in range(2 if bernoulli else 0)]
        self.rows = rows

    def views(self, s: int, r: int):
        """The buffers for ``s`` samples of ``r`` rows: leading parts of the arrays (a chunk or a batch may be short)."""
        return self.dec_in[:s * r], [a[:s * r] for a in self.dec], [a[:s * r] for a in self.scratch]


def _log_px_given_z(model, x, z, c, rows: _Rows):
    """``model.log_px_given_z`` with the decoder's arrays in ``rows``' buffers: (S, N)."""
    S, N, K = z.shape
    dec_in, dec, scratch = rows.views(S, N)
    dec_in.reshape(S, N, -1)[:, :, :K] = z
    if c is not None:
        dec_in.reshape(S, N, -1)[:, :, K:] = c  # [z, c] for every sample (eq. cvae)
    out, _ = mlp_forward(dec_in, model.weights("decoder"), model.activation, outs=dec)
    out = out.reshape(S, N, -1)
    if isinstance(model.likelihood, Bernoulli):  # in place, into the logits and the scratch arrays
        nll, _ = bernoulli_nll_forward(out, x, scratch=[a.reshape(S, N, -1) for a in scratch])
    else:
        nll, _ = model.likelihood.nll_forward(out, x, model.likelihood_params())
    return -nll


def log_standard_normal(z):
    r""":math:`\log \mathcal N(z; 0, I)` summed over the last axis: :func:`log_normal` at :math:`\mu = 0`,
    :math:`\log\sigma^2 = 0`, the same numbers without the passes that add 0 and multiply by 1."""
    return -0.5 * (LOG_2PI + z * z).sum(axis=-1)


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
        decoder buffer exceeds :data:`CHUNK_ELEMENTS` elements (per device).
        ``x`` is checked, cast and moved batch by batch, so a large N never
        makes an (N, D) temporary. On the CPU a batch's examples are split over
        as many threads as the BLAS uses (:mod:`minivae.cores`).

    Returns
    -------
    (N,) array of :math:`\log \frac1k \sum_i w_i`.
    """
    k = check_int("k", k, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    x, c = model.check_inputs(x, c, values=False)  # x's values are checked batch by batch: no N x D copy
    rng = model.check_rng(rng)
    xp = get_array_module(model.params.data)
    N, K = x.shape[0], model.config.latent_dim
    width = max(model.likelihood.n_outputs(model.config.data_dim), K, *model.config.hidden,
                *model.config.decoder_widths)
    result = xp.empty(N, dtype=model.dtype)
    n_max = min(N, batch_size)
    chunk = max(1, min(k, CHUNK_ELEMENTS[device_of(model.params.data)] // (n_max * width)))  # samples a pass
    draw = chunk * max(1, CHUNK_ELEMENTS[device_of(model.params.data)] // (chunk * n_max * K))  # samples a draw
    buffers = []
    for start in range(0, N, batch_size):
        xb, cb = model.check_inputs(x[start:start + batch_size],  # cast and moved to the model's device, one batch
                                    None if c is None else c[start:start + batch_size])
        n = xb.shape[0]
        mu, log_var = model.encode(xb, cb)
        blocks = row_blocks(n) if xp is np else [slice(0, n)]  # the examples split over the CPU's cores
        rows_needed = max(block.stop - block.start for block in blocks)
        if len(buffers) < len(blocks) or buffers[0].rows < rows_needed:
            buffers = [_Rows(model, chunk, rows_needed, xp) for _ in blocks]
        running_max = xp.full(n, -xp.inf, dtype=model.dtype)
        running_sum = xp.zeros(n, dtype=model.dtype)  # sum_i exp(log_w_i - running_max)
        for done in range(0, k, draw):
            # the draws of several passes at once (one hand-over to the threads each); the same stream of
            # numbers as one draw per pass, or per sample: the samples are the leading axis
            noise = rng.standard_normal((min(draw, k - done), n, K), dtype=model.dtype)

            def accumulate(index):  # the running log-sum-exp of one block of examples, over the samples drawn
                rows = blocks[index]
                for first in range(0, noise.shape[0], chunk):
                    eps = noise[first:first + chunk, rows]
                    z, _ = reparameterize_forward(mu[rows], log_var[rows], eps)  # z_i ~ q(z|x), (s, n, K)
                    log_w = (_log_px_given_z(model, xb[rows], z, None if cb is None else cb[rows], buffers[index])
                             + log_standard_normal(z)  # log p(x|z_i) + log p(z_i)
                             - log_normal(z, mu[rows], log_var[rows]))  # - log q(z_i|x)
                    new_max = xp.maximum(running_max[rows], log_w.max(axis=0))
                    running_sum[rows] = (running_sum[rows] * xp.exp(running_max[rows] - new_max)
                                         + xp.exp(log_w - new_max).sum(axis=0))
                    running_max[rows] = new_max

            map_rows(accumulate, range(len(blocks)))
        result[start:start + n] = running_max + xp.log(running_sum) - math.log(k)  # log (1/k) sum_i w_i
    return result
