r"""The affine layer and the activations, each a forward/backward pair.

Convention (as everywhere in minivae): ``op_forward(...) -> (out, cache)`` and
``op_backward(dout, cache)`` returning one gradient per differentiable input,
in argument order. ``dX`` always means :math:`\partial L / \partial X` for the
scalar loss :math:`L`, with the shape of ``X``. Derivations:
``docs/derivations/layers.md``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .backend import get_array_module
from .validate import check_choice

# --------------------------------------------------------------------------- affine


class AffineCache(NamedTuple):
    x: object  # (N, I) input
    W: object  # (I, O) weights


def affine_forward(x, W, b):
    r"""Affine map :math:`Y = XW + b` (eq. ``affine-fwd``).

    Shapes: x (N, I), W (I, O), b (O,) -> out (N, O).
    """
    out = x @ W
    out += b
    return out, AffineCache(x, W)


def affine_backward(dout, cache: AffineCache, need_dx: bool = True):
    r"""Gradients of the affine map (eq. ``affine-bwd``).

    .. math:: \bar X = \bar Y W^\top,\quad \bar W = X^\top \bar Y,\quad \bar b = \textstyle\sum_n \bar Y_n

    Shapes: dout (N, O) -> dx (N, I), dW (I, O), db (O,). With ``need_dx``
    false, ``dx`` is ``None`` and its matrix product is skipped (a network's
    input needs no gradient).
    """
    dx = dout @ cache.W.T if need_dx else None  # Y = XW + b  =>  dX = dY W^T
    dW = cache.x.T @ dout  # dW = X^T dY
    db = dout.sum(axis=0)  # b is broadcast over the batch: sum over n
    return dx, dW, db


#: The initialisations of an affine layer (:func:`affine_init`; derivations: ``docs/optimisation.md``).
INITS = ("he", "torch")
#: The models' default, the one that trains the digits to the better held-out ELBO (``docs/optimisation.md``).
DEFAULT_INIT = "torch"


def affine_init(W, b, scheme: str, activation: str, rng) -> None:
    r"""Set an affine layer's initial ``W`` (I, O) and ``b`` (O,) in place, drawing from the NumPy ``rng``.

    ``"he"`` (eq. ``init-he``): :math:`W_{io} \sim \mathcal N(0, g / I)` with gain :math:`g = 2` before a
    ReLU or leaky ReLU (He et al. 2015) and :math:`g = 1` otherwise (LeCun), :math:`b = 0`.
    ``"torch"`` (eq. ``init-torch``, PyTorch's ``nn.Linear``): :math:`W_{io}, b_o \sim U(-1/\sqrt I, 1/\sqrt I)`,
    variance :math:`1/(3I)`. :math:`I` is the fan-in, the layer's number of inputs.
    """
    check_choice("init", scheme, INITS)
    fan_in = W.shape[0]
    if scheme == "he":
        gain = 2.0 if activation in ("relu", "leaky_relu") else 1.0
        W[...] = rng.standard_normal(W.shape) * np.sqrt(gain / fan_in)  # Var W = g / I, eq. init-he
        b[...] = 0.0
    else:
        bound = 1.0 / np.sqrt(fan_in)
        W[...] = rng.uniform(-bound, bound, W.shape)  # Var W = bound^2 / 3 = 1 / (3 I), eq. init-torch
        b[...] = rng.uniform(-bound, bound, b.shape)


# --------------------------------------------------------------------------- stable scalar functions


def sigmoid(x):
    r""":math:`\sigma(x) = 1/(1+e^{-x}) = \tfrac12(1 + \tanh(x/2))`, finite for any x (eq. ``sigmoid-fwd``)."""
    xp = get_array_module(x)
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


def softplus(x):
    r""":math:`\log(1+e^x) = \max(x, 0) + \log(1 + e^{-|x|})`, which never overflows (eq. ``softplus-fwd``)."""
    xp = get_array_module(x)
    return xp.maximum(x, 0.0) + log1p_unit(xp.exp(-xp.abs(x)))


def log1p_unit(u, out=None):
    r""":math:`\log(1 + u)` for :math:`0 \le u \le 1`, accurate when :math:`u` is tiny; into ``out`` if given.

    ``xp.log1p``, except where NumPy runs float32 ``log1p`` as a scalar loop (every CPU without
    AVX-512, where it costs 2.5 to 4 times its vectorised ``log``): there
    :func:`log1p_by_correction`, in about half the time.
    """
    xp = get_array_module(u)
    if u.dtype == np.float32 and xp is np and not NUMPY_LOG1P_FLOAT32_IS_SIMD:
        if out is None:
            return log1p_by_correction(u)
        out[...] = log1p_by_correction(u)
        return out
    return xp.log1p(u, out=out)


def log1p_by_correction(u):
    r""":math:`\log(1 + u) = \log w + c/w` for :math:`0 \le u \le 1`, within 4 ulps (eq. ``log1p-unit``).

    :math:`w = \mathrm{fl}(1 + u)`, and :math:`c = u - (w - 1)` is the sum's rounding error, both exact.
    """
    xp = get_array_module(u)
    w = 1.0 + u
    c = u - (w - 1.0)  # w - 1 is exact (w is in [1, 2]), so c = (1 + u) - w exactly: the sum's rounding error
    return xp.log(w) + c / w  # log(1 + u) = log(w + c) = log w + c/w - (c/w)^2/2 + ...


def _numpy_log1p_float32_is_simd() -> bool:
    """Whether this NumPy runs float32 ``log1p`` with SIMD instructions on this CPU, as NumPy reports it.

    NumPy's only SIMD ``log1p`` is AVX-512 (Intel's SVML); everywhere else it runs its baseline,
    a loop over the C library's scalar ``log1pf``. NumPy before 2.0 cannot say: taken as scalar.
    """
    try:
        from numpy.lib.introspect import opt_func_info
    except ImportError:
        return False
    current = opt_func_info(func_name="^log1p$").get("log1p", {}).get("ff", {}).get("current", "baseline")
    return not current.startswith("baseline")


NUMPY_LOG1P_FLOAT32_IS_SIMD = _numpy_log1p_float32_is_simd()


# --------------------------------------------------------------------------- activations
# Each forward keeps exactly what its backward needs: the input or the output.


class ActCache(NamedTuple):
    saved: object  # the input x or the output y, whichever the derivative is written in


def identity_forward(x):
    """:math:`y = x`."""
    return x, ActCache(None)


def identity_backward(dout, cache):
    """:math:`\\bar x = \\bar y`."""
    return dout


def relu_forward(x):
    r""":math:`y = \max(x, 0)` (eq. ``relu``)."""
    xp = get_array_module(x)
    return xp.maximum(x, 0.0), ActCache(x)


def relu_backward(dout, cache):
    r""":math:`\bar x = \bar y \cdot [x > 0]` (the kink at 0 gets derivative 0)."""
    return dout * (cache.saved > 0)


LEAKY_SLOPE = 0.01


def leaky_relu_forward(x):
    r""":math:`y = x` for :math:`x > 0`, else :math:`\alpha x` with :math:`\alpha = 0.01` (eq. ``leaky-relu``)."""
    xp = get_array_module(x)
    return xp.where(x > 0, x, LEAKY_SLOPE * x), ActCache(x)


def leaky_relu_backward(dout, cache):
    r""":math:`\bar x = \bar y \cdot (1 \text{ if } x > 0 \text{ else } \alpha)`."""
    xp = get_array_module(dout)
    return dout * xp.where(cache.saved > 0, 1.0, LEAKY_SLOPE).astype(dout.dtype, copy=False)


def tanh_forward(x):
    r""":math:`y = \tanh x` (eq. ``tanh``)."""
    xp = get_array_module(x)
    y = xp.tanh(x)
    return y, ActCache(y)


def tanh_backward(dout, cache):
    r""":math:`\bar x = \bar y (1 - y^2)`."""
    y = cache.saved
    return dout * (1.0 - y * y)


def sigmoid_forward(x):
    r""":math:`y = \sigma(x)` (eq. ``sigmoid-fwd``)."""
    y = sigmoid(x)
    return y, ActCache(y)


def sigmoid_backward(dout, cache):
    r""":math:`\bar x = \bar y\, y (1 - y)` (eq. ``sigmoid-bwd``)."""
    y = cache.saved
    return dout * y * (1.0 - y)


def softplus_forward(x):
    r""":math:`y = \log(1 + e^x)` (eq. ``softplus-fwd``)."""
    return softplus(x), ActCache(x)


def softplus_backward(dout, cache):
    r""":math:`\bar x = \bar y\, \sigma(x)` (eq. ``softplus-bwd``)."""
    return dout * sigmoid(cache.saved)


class Activation(NamedTuple):
    forward: Callable
    backward: Callable
    kink: bool  # True where the derivative jumps (finite differences must stay off x = 0)


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(identity_forward, identity_backward, False),
    "relu": Activation(relu_forward, relu_backward, True),
    "leaky_relu": Activation(leaky_relu_forward, leaky_relu_backward, True),
    "tanh": Activation(tanh_forward, tanh_backward, False),
    "sigmoid": Activation(sigmoid_forward, sigmoid_backward, False),
    "softplus": Activation(softplus_forward, softplus_backward, False),
}


def get_activation(name: str) -> Activation:
    """The activation pair called ``name``; a clear error for an unknown name."""
    return ACTIVATIONS[check_choice("activation", name, sorted(ACTIVATIONS))]
