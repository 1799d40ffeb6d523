r"""Decoder likelihoods :math:`p(x|z)`: negative log-likelihoods and their gradients.

Every NLL is per example, in nats, summed over the :math:`D` data dimensions.
The decoder's output ``out`` may carry extra leading axes (the :math:`S`
Monte Carlo samples): ``out`` (..., N, D_out) and the data ``x`` (N, D)
broadcast, giving ``nll`` (..., N).

Two pure pairs do the maths; small classes say which decoder outputs and
which learned parameters feed them:

=========================  ==========================  =========================
name                       decoder outputs (per dim)   learned log-variance
=========================  ==========================  =========================
``bernoulli``              logits                      --
``gaussian_fixed``         mean                        none (a constant)
``gaussian_shared``        mean                        one scalar
``gaussian_per_dim``       mean                        one per data dimension (D,)
``gaussian_per_example``   mean and log-variance       output by the decoder
=========================  ==========================  =========================

Derivations: ``docs/derivations/likelihoods.md``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .backend import get_array_module
from .layers import sigmoid, softplus
from .reparam import LOG_VAR_LIMIT, clamp_log_var_backward, clamp_log_var_forward, join_head, split_head
from .validate import check_choice, check_float

LOG_2PI = math.log(2.0 * math.pi)

# --------------------------------------------------------------------------- Bernoulli


class BernoulliCache(NamedTuple):
    logits: object
    x: object


def bernoulli_nll_forward(logits, x, scratch=None):
    r"""Bernoulli NLL from logits :math:`\ell` (eq. ``bern-nll``).

    .. math::  -\log p(x|\ell) = \sum_d \operatorname{softplus}(\ell_d) - x_d \ell_d

    which equals :math:`-\sum_d x_d\log\sigma(\ell_d) + (1-x_d)\log(1-\sigma(\ell_d))`
    but stays finite for any logit. ``x`` may be any value in [0, 1] (grey
    levels give the continuous relaxation). Shapes: logits (..., N, D), x (N, D) -> (..., N).

    ``scratch``, two arrays of the logits' shape, computes it in place for a caller that needs no gradient
    (scoring): the terms are written into them and into ``logits`` itself (overwritten), no temporary of that
    size is made, the numbers are the same bit for bit, and the cache is ``None``.
    """
    xp = get_array_module(logits)
    in_place = scratch is not None
    log_term, x_logits = scratch if in_place else (None, None)
    x_logits = xp.multiply(x, logits, out=x_logits)  # x l, before the logits are overwritten
    nll = softplus(logits, out=logits if in_place else None, work=log_term)
    nll -= x_logits
    return nll.sum(axis=-1), None if in_place else BernoulliCache(logits, x)


def bernoulli_nll_backward(dnll, cache: BernoulliCache):
    r""":math:`\bar\ell = \overline{\mathrm{nll}}\,(\sigma(\ell) - x)` (eq. ``bern-grad``)."""
    return dnll[..., None] * (sigmoid(cache.logits) - cache.x)


# --------------------------------------------------------------------------- Gaussian


class GaussianCache(NamedTuple):
    diff: object  # (..., N, D)  mean - x
    inv_var: object  # broadcastable to diff:  exp(-log_var)
    inside: object  # where log_var was inside the clamp range (eq. logvar-clamp)
    log_var_shape: tuple  # the shape of the log_var that was passed in


def gaussian_nll_forward(mean, log_var, x):
    r"""Diagonal Gaussian NLL (eq. ``gauss-nll``).

    .. math::  -\log p(x|m, \sigma^2) = \sum_d \tfrac12\log 2\pi + \tfrac12\log\sigma_d^2 + \frac{(x_d - m_d)^2}{2\sigma_d^2}

    ``log_var`` broadcasts against ``mean``: a scalar (fixed or shared
    variance), shape (D,) (one per data dimension) or the mean's shape (one
    per example). With a constant variance this is least squares plus a
    constant. ``log_var`` is clipped to :math:`[-L, L]` first (eq. ``logvar-clamp``).
    Shapes: mean (..., N, D), x (N, D) -> (..., N).

    Range: the squared error is formed as ``diff * (diff / sigma^2)``, never
    ``diff * diff`` first, so it overflows only when the term itself does
    (:math:`(x-m)^2/\sigma^2` beyond ~3e38 in float32): a large error under
    a large variance, :math:`|x - m| > 1.8\times10^{19}` with
    :math:`\sigma^2 \ge 1`, stays finite. The backward forms the same product.
    """
    xp = get_array_module(mean)
    log_var, inside = clamp_log_var_forward(xp.asarray(log_var, dtype=mean.dtype))
    diff = mean - x
    inv_var = xp.exp(-log_var)
    per_dim = 0.5 * (LOG_2PI + log_var + diff * (diff * inv_var))  # (x - m)^2 / sigma^2, see "Range"
    nll = per_dim.sum(axis=-1)
    return nll, GaussianCache(diff, inv_var, inside, log_var.shape)


def gaussian_nll_backward(dnll, cache: GaussianCache):
    r"""Gradients of the Gaussian NLL (eq. ``gauss-grad``).

    .. math::  \bar m = \overline{\mathrm{nll}}\,\frac{m - x}{\sigma^2},\qquad
               \overline{\log\sigma^2} = \overline{\mathrm{nll}}\,\tfrac12\Big(1 - \frac{(x - m)^2}{\sigma^2}\Big)

    ``dlog_var`` is summed over the axes along which ``log_var`` was
    broadcast, so it has the shape of the ``log_var`` that was passed in.
    """
    dnll = dnll[..., None]
    scaled = cache.diff * cache.inv_var  # (m - x) / sigma^2
    dmean = dnll * scaled
    dlog_var = dnll * 0.5 * (1.0 - cache.diff * scaled)
    dlog_var = clamp_log_var_backward(dlog_var, cache.inside)
    return dmean, _sum_to_shape(dlog_var, cache.log_var_shape)


def _sum_to_shape(grad, shape: tuple):
    """Undo broadcasting: sum ``grad`` down to ``shape`` (a parameter used many times gets every use's gradient)."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    keep = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if keep:
        grad = grad.sum(axis=keep, keepdims=True)
    return grad


# --------------------------------------------------------------------------- the decoder's likelihood


class Likelihood:
    """Base class: which decoder outputs and learned parameters a likelihood uses.

    Every other module asks these attributes, never the likelihood's name: the decoder's output layout
    (:meth:`n_outputs`, :attr:`log_var_in_output`), the log-variance's shape (:meth:`log_var_shape`), whether
    training learns the variance (:attr:`learned_variance`) and the range of the data (:attr:`unit_interval`).
    """

    name = ""
    #: The data must lie in [0, 1] (the Bernoulli's x; grey levels are its continuous relaxation).
    unit_interval = False
    #: Training learns the variance: the likelihood's own parameter ``log_var``, or a decoder output.
    learned_variance = False
    #: The decoder outputs the log-variance too, ``[mean, log_var]`` side by side (D each).
    log_var_in_output = False

    def n_outputs(self, data_dim: int) -> int:
        """Decoder outputs per example."""
        return data_dim

    def log_var_shape(self, samples: int, rows: int, data_dim: int) -> tuple | None:
        """The shape of the log-variance that broadcasts against a mean of shape (S, N, D) = ``(samples, rows,
        data_dim)``: (S, N, D) from the decoder, (1, 1, D) per dimension, (1, 1, 1) fixed or shared; ``None``
        without a variance (Bernoulli)."""
        return None

    def param_shapes(self, data_dim: int) -> dict:
        """Shapes of the likelihood's own learned parameters (named ``likelihood.<key>``)."""
        return {}

    def nll_forward(self, out, x, params: dict):
        raise NotImplementedError

    def nll_backward(self, dnll, cache):
        """Returns ``(dout, {name: dparam})``."""
        raise NotImplementedError

    def mean(self, out, params: dict):
        """:math:`E[x|z]`: what the decoder "draws"."""
        raise NotImplementedError

    def sample(self, out, params: dict, rng):
        """One draw :math:`x \\sim p(x|z)`."""
        raise NotImplementedError


class Bernoulli(Likelihood):
    r""":math:`p(x|z) = \prod_d \sigma(\ell_d)^{x_d}(1-\sigma(\ell_d))^{1-x_d}`, the decoder outputs logits :math:`\ell`."""

    name = "bernoulli"
    unit_interval = True

    def nll_forward(self, out, x, params):
        return bernoulli_nll_forward(out, x)

    def nll_backward(self, dnll, cache):
        return bernoulli_nll_backward(dnll, cache), {}

    def mean(self, out, params):
        return sigmoid(out)

    def sample(self, out, params, rng):
        p = sigmoid(out)
        return (rng.random(p.shape, dtype=p.dtype) < p).astype(p.dtype)


class Gaussian(Likelihood):
    r"""Diagonal Gaussian decoder, the decoder outputs the mean; see the table above for the variance."""

    def __init__(self, variance: str, fixed_variance: float = 1.0):
        self.variance = variance  # "fixed" | "shared" | "per_dim" | "per_example"
        self.name = f"gaussian_{variance}"
        self.fixed_log_var = math.log(fixed_variance)
        self.learned_variance = variance != "fixed"
        self.log_var_in_output = variance == "per_example"

    def n_outputs(self, data_dim):
        return 2 * data_dim if self.log_var_in_output else data_dim

    def log_var_shape(self, samples, rows, data_dim):
        return {"per_example": (samples, rows, data_dim), "per_dim": (1, 1, data_dim)}.get(self.variance, (1, 1, 1))

    def param_shapes(self, data_dim):
        return {"shared": {"log_var": ()}, "per_dim": {"log_var": (data_dim,)}}.get(self.variance, {})

    def _split(self, out, params):
        if self.variance == "per_example":
            return split_head(out)  # (mean, log_var) side by side, like the encoder's head
        if self.variance == "fixed":
            return out, self.fixed_log_var
        return out, params["log_var"]

    def nll_forward(self, out, x, params):
        mean, log_var = self._split(out, params)
        return gaussian_nll_forward(mean, log_var, x)

    def nll_backward(self, dnll, cache):
        dmean, dlog_var = gaussian_nll_backward(dnll, cache)
        if self.variance == "per_example":
            return join_head(dmean, dlog_var), {}
        if self.variance == "fixed":
            return dmean, {}
        return dmean, {"log_var": dlog_var}

    def mean(self, out, params):
        return self._split(out, params)[0]

    def sample(self, out, params, rng):
        xp = get_array_module(out)
        mean, log_var = self._split(out, params)
        log_var, _ = clamp_log_var_forward(xp.asarray(log_var, dtype=mean.dtype))
        std = xp.exp(0.5 * log_var)
        return mean + std * rng.standard_normal(mean.shape, dtype=mean.dtype)


LIKELIHOODS = ("bernoulli", "gaussian_fixed", "gaussian_shared", "gaussian_per_dim", "gaussian_per_example")


def get_likelihood(name: str, fixed_variance: float = 1.0) -> Likelihood:
    """The likelihood called ``name`` (one of :data:`LIKELIHOODS`)."""
    check_choice("likelihood", name, LIKELIHOODS)
    # The variance must lie inside the log-variance clamp (eq. logvar-clamp), or it would be silently changed.
    fixed_variance = check_float("fixed_variance", fixed_variance, minimum=math.exp(-LOG_VAR_LIMIT),
                                 maximum=math.exp(LOG_VAR_LIMIT))
    if name == "bernoulli":
        return Bernoulli()
    return Gaussian(name[len("gaussian_"):], fixed_variance)
