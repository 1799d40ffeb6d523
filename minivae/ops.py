r"""The elementwise work of a training step, in two interchangeable implementations.

A training step is matrix products (BLAS or cuBLAS) with chains of elementwise
work between them. :class:`PlainOps` writes each chain as array expressions,
which run on NumPy and CuPy alike; :class:`~minivae.fused.FusedOps` replaces
each chain by one hand-written CUDA kernel (``minivae/kernels/*.cu``) on the
GPU. Both implement the same operations, with the same arguments and the
same in-place results:

=====================  ===================================================  ==========================
operation              computes                                             kernel
=====================  ===================================================  ==========================
``bias_act``           :math:`a \leftarrow \phi(a + b)`                      ``bias_act.cu``
``act_backward``       :math:`\bar h \leftarrow \bar h \odot \phi'(a)`,
                       the derivative written in :math:`h = \phi(a)`         ``bias_act.cu``
``head_forward``       clamp, :math:`z = \mu + \sigma\odot\varepsilon`,
                       per-example KL                                         ``reparam_kl.cu``
``head_backward``      :math:`\bar\mu, \overline{\log\sigma^2}` from
                       :math:`\bar z` and the KL                              ``reparam_kl.cu``
``bernoulli_grad``,    the likelihood's gradient (and its value when
``gaussian_grad``      asked) in one pass                                     ``nll.cu``
``adam``               the Adam update over the flat buffer                   ``adam.cu``
=====================  ===================================================  ==========================

:func:`get_ops` is the one place that chooses between them. The plain
version is the reference: ``tests/test_fused.py`` compares every kernel with
it, and ``tests/test_fast.py`` pins the plain step to :class:`~minivae.model.VAE`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .backend import BLOCK_ELEMENTS, device_of, get_array_module
from .kl import KLCache, kl_backward, kl_forward
from .layers import ACTIVATIONS, ActCache
from .likelihoods import bernoulli_nll_forward, gaussian_nll_backward, gaussian_nll_forward
from .reparam import clamp_log_var_backward, clamp_log_var_forward, reparameterize_backward, reparameterize_forward, \
    split_head

KERNELS = ("plain", "fused")

#: Elements of the logits the Bernoulli loss takes at a time, per device (``"cpu"``, ``"cuda"``; chosen in
#: :data:`minivae.backend.BLOCK_ELEMENTS`): on the CPU its temporaries then stay small and are reused; on a GPU
#: the loss of a step at the benchmark's sizes is one block, a fixed few launches.
LOSS_BLOCK_ELEMENTS = BLOCK_ELEMENTS["loss"]


class HeadCache(NamedTuple):
    """What :meth:`PlainOps.head_backward` needs from :meth:`PlainOps.head_forward`."""

    inside: object  # (N, K) where log_var_raw was inside the clamp range
    rep: object  # reparameterization cache (sigma, epsilon)
    kl: object  # KL cache (mu, sigma^2)


class PlainOps:
    """The elementwise chains as array expressions: NumPy or CuPy, whichever the arrays are."""

    name = "plain"

    def __init__(self):
        self._scratch = {}

    def _buffer(self, key: str, like, dtype=None, fill=None):
        """A scratch array of ``like``'s shape (and ``dtype``, default ``like``'s), allocated on first use and
        reused, one per key and shape: no allocation per step. ``fill``: its value when made (then never written)."""
        xp, dtype = get_array_module(like), like.dtype if dtype is None else dtype
        full_key = (key, like.shape, dtype, xp.__name__)
        buf = self._scratch.get(full_key)
        if buf is None:
            buf = self._scratch[full_key] = xp.empty(like.shape, dtype=dtype) if fill is None else \
                xp.full(like.shape, fill, dtype=dtype)
        return buf

    # ------------------------------------------------------------ bias + activation

    def bias_act(self, a, b, activation: str):
        r""":math:`a \leftarrow \phi(a + b)` in place; ``a`` (N, H), ``b`` (H,) (eq. ``affine-fwd``); :math:`\phi`
        is :data:`minivae.layers.ACTIVATIONS`' forward, computed over ``a``."""
        act = _activation(activation)
        a += b
        return act.forward(a, out=a)[0]

    def act_backward(self, dh, h, activation: str):
        r""":math:`\bar h \leftarrow \bar h \odot \phi'(a)` in place, with :math:`\phi'` written in :math:`h = \phi(a)`
        (eq. ``act-from-output``): :data:`minivae.layers.ACTIVATIONS`' backward, the sign tests of those with a
        kink into a reused mask (NumPy then allocates nothing for ReLU)."""
        act = _activation(activation)
        mask = self._buffer("mask", h, dtype=bool) if act.kink and get_array_module(dh) is np else None
        return act.backward(dh, ActCache(h), out=dh, mask=mask)

    # ------------------------------------------------------------ the encoder's head

    def head_forward(self, enc_out, noise, z, need_kl: bool = True):
        r"""From the encoder output (N, 2K) and :math:`\varepsilon` (S, N, K): ``z`` (S, N, K) filled with
        :math:`\mu + \sigma\odot\varepsilon_s` (eq. ``reparam-fwd``), :math:`\log\sigma^2` clamped first
        (eq. ``logvar-clamp``). Returns the per-example KL (N,) (eq. ``kl-fwd``), or ``None`` without ``need_kl``
        (the gradient needs only :math:`\mu` and :math:`\sigma^2`, eq. ``kl-bwd``), and the cache."""
        mu, log_var_raw = split_head(enc_out)
        log_var, inside = clamp_log_var_forward(log_var_raw)
        z_new, rep = reparameterize_forward(mu, log_var, noise)
        z[...] = z_new
        if need_kl:
            kl, kl_cache = kl_forward(mu, log_var)
        else:  # kl_forward's cache, without the value: on a small model the KL's passes are a twentieth of a step
            kl, kl_cache = None, KLCache(mu, get_array_module(log_var).exp(log_var))
        return kl, HeadCache(inside, rep, kl_cache)

    def head_backward(self, dz, dkl: float, cache: HeadCache, denc_out):
        r"""``denc_out`` (N, 2K) :math:`\leftarrow [\bar\mu, \overline{\log\sigma^2}_{\text{raw}}]`, from
        :math:`\bar z` (S, N, K) and the KL's weight :math:`\overline{\mathrm{KL}}_n` = ``dkl`` for every example
        (eq. ``reparam-bwd``, ``kl-bwd``, ``logvar-clamp``)."""
        xp = get_array_module(dz)
        K = dz.shape[-1]
        dmu_from_z, dlog_var_from_z = reparameterize_backward(dz, cache.rep)
        dmu_from_kl, dlog_var_from_kl = kl_backward(xp.full((dz.shape[1],), dkl, dtype=dz.dtype), cache.kl)
        denc_out[:, :K] = dmu_from_z + dmu_from_kl  # mu feeds both z and the KL
        denc_out[:, K:] = clamp_log_var_backward(dlog_var_from_z + dlog_var_from_kl, cache.inside)
        return denc_out

    # ------------------------------------------------------------ likelihoods

    def bernoulli_grad(self, logits, x, scale: float, dlogits, need_loss: bool):
        r"""``dlogits`` :math:`\leftarrow s\,(\sigma(\ell) - x)` (eq. ``bern-grad``), ``s`` = ``scale``.

        ``logits``, ``dlogits`` (S, N, D), ``x`` (N, D). Written
        :math:`\sigma(\ell) - x = \tfrac12\tanh(\ell/2) + \tfrac12 - x` in four passes over the logits.
        Returns :math:`\sum_{s,n,d} \operatorname{softplus}(\ell) - x\ell` (eq. ``bern-nll``) when ``need_loss``,
        else ``None``.
        """
        xp = get_array_module(logits)
        half_minus_x = self._buffer("half_minus_x", x)  # (1/2 - x) s, (N, D): once, not once per sample
        xp.multiply(x, -scale, out=half_minus_x)
        half_minus_x += 0.5 * scale
        xp.multiply(logits, 0.5, out=dlogits)
        xp.tanh(dlogits, out=dlogits)
        dlogits *= 0.5 * scale
        dlogits += half_minus_x  # broadcast over the S samples
        if not need_loss:
            return None
        # eq. bern-nll, the reference, a block of rows at a time: its temporaries stay small and are reused (taken
        # whole, each would have the logits' size, together about 76 MB at batch 4096, faulted in every loss step)
        rows = max(1, LOSS_BLOCK_ELEMENTS[device_of(logits)] // (logits.shape[0] * logits.shape[2]))
        return sum(bernoulli_nll_forward(logits[:, i:i + rows], x[i:i + rows])[0].sum()
                   for i in range(0, x.shape[0], rows))

    def gaussian_grad(self, mean, log_var, x, scale: float, dmean, dlog_var, need_loss: bool):
        r"""The Gaussian NLL's gradients (eq. ``gauss-grad``), times ``scale``, written in place.

        ``mean``, ``dmean`` (S, N, D); ``x`` (N, D); ``log_var`` and ``dlog_var`` have the mean's shape
        (a per-example variance) or are (1, 1, 1) (fixed or shared) or (1, 1, D) (per dimension), and
        ``dlog_var`` receives the gradient summed over the broadcast axes. :math:`\log\sigma^2` is clamped
        first (eq. ``logvar-clamp``). Returns the NLL summed over everything (eq. ``gauss-nll``) when
        ``need_loss``, else ``None``.
        """
        xp = get_array_module(mean)
        nll, cache = gaussian_nll_forward(mean, log_var, x)  # the reference pair, unchanged
        dmean[...], dlog_var[...] = gaussian_nll_backward(xp.full(nll.shape, scale, dtype=mean.dtype), cache)
        return nll.sum() if need_loss else None

    # ------------------------------------------------------------ Adam

    def adam(self, data, grad, m, v, scratch, beta1: float, beta2: float, lr_t: float, eps_t: float):
        r"""One Adam update in 10 passes over the flat buffers and no allocation (eq. ``adam-sums``).

        ``m`` and ``v`` hold the moments as decaying sums :math:`M, V` (see :class:`minivae.optim.Adam`):

        .. math::  M \leftarrow \beta_1 M + g,\quad V \leftarrow \beta_2 V + g^2,\quad
                   \theta \leftarrow \theta - \eta_t\, M / (\sqrt V + \epsilon_t)
        """
        xp = get_array_module(data)
        m *= beta1  # M = beta1 M + g
        m += grad
        xp.multiply(grad, grad, out=scratch)  # V = beta2 V + g^2
        v *= beta2
        v += scratch
        xp.sqrt(v, out=scratch)  # scratch = sqrt(V) + eps_t
        scratch += eps_t
        xp.divide(m, scratch, out=scratch)
        scratch *= lr_t
        data -= scratch  # theta = theta - lr_t M / (sqrt(V) + eps_t)


def _activation(name: str):
    """The activation pair called ``name``; a ValueError naming it when there is none."""
    act = ACTIVATIONS.get(name) if isinstance(name, str) else None
    if act is None:
        raise ValueError(f"activation: expected a known activation, got {name!r}")
    return act


def get_ops(kernels: str, device: str):
    """The one dispatch point: ``"plain"`` array code, or ``"fused"`` CUDA kernels (``device="cuda"`` only).

    ``device`` is a resolved device name, ``"cpu"`` or ``"cuda"`` (a model's ``device``).
    """
    if not isinstance(kernels, str) or kernels not in KERNELS:
        raise ValueError(f"kernels: expected one of {KERNELS}, got {kernels!r}")
    if kernels == "plain":
        return PlainOps()
    if device != "cuda":
        raise ValueError(f"kernels: 'fused' runs CUDA kernels and needs device='cuda', got device={device!r}")
    from .fused import FusedOps

    return FusedOps()
