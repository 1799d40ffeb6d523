r"""The affine layer and the activations, each a forward/backward pair, and one layer of an MLP made of both.

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


def affine_forward(x, W, b, out=None):
    r"""Affine map :math:`Y = XW + b` (eq. ``affine-fwd``), into ``out`` if given.

    Shapes: x (N, I), W (I, O), b (O,) -> out (N, O).
    """
    xp = get_array_module(x)
    out = xp.matmul(x, W, out=out)
    out += b
    return out, AffineCache(x, W)


def affine_backward(dout, cache: AffineCache, need_dx: bool = True, out=None):
    r"""Gradients of the affine map (eq. ``affine-bwd``), into the arrays ``out = (dx, dW, db)`` if given.

    .. math:: \bar X = \bar Y W^\top,\quad \bar W = X^\top \bar Y,\quad \bar b = \textstyle\sum_n \bar Y_n

    Shapes: dout (N, O) -> dx (N, I), dW (I, O), db (O,). With ``need_dx``
    false, ``dx`` is ``None`` and its matrix product is skipped (a network's
    input needs no gradient).
    """
    xp = get_array_module(dout)
    dx_out, dW_out, db_out = (None, None, None) if out is None else out
    dx = xp.matmul(dout, cache.W.T, out=dx_out) if need_dx else None  # Y = XW + b  =>  dX = dY W^T
    dW = xp.matmul(cache.x.T, dout, out=dW_out)  # dW = X^T dY
    db = dout.sum(axis=0, out=db_out)  # b is broadcast over the batch: sum over n
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
# Each takes ``out=``: the fast step and scoring write into buffers they allocated once (``out`` may be the input).


#: Read-only arrays of zeros by (shape, dtype): :func:`positive_part`'s other operand on the CPU (a few shapes).
_ZEROS = {}


def positive_part(x, out=None):
    r""":math:`\max(x, 0)`, into ``out`` if given.

    On the CPU against a cached read-only array of zeros rather than the scalar 0: NumPy's ``maximum`` then
    runs several times faster on arrays that fit in the cache (8 to 15 times at 128 x 784 and 128 x 400 in
    float32, measured with NumPy 2.4 on an AVX-512 CPU; even at 4096 x 784). A GPU takes the scalar as fast.
    """
    if get_array_module(x) is not np or not getattr(x, "ndim", 0):
        return get_array_module(x).maximum(x, 0.0, out=out)
    key = (x.shape, x.dtype)
    zeros = _ZEROS.get(key)
    if zeros is None:
        if len(_ZEROS) >= 64:  # shapes come and go (scoring's last chunk, a test's): keep the cache small
            _ZEROS.clear()
        zeros = _ZEROS[key] = np.zeros(x.shape, dtype=x.dtype)
        zeros.flags.writeable = False
    return np.maximum(x, zeros, out=out)


def sigmoid(x, out=None):
    r""":math:`\sigma(x) = 1/(1+e^{-x}) = \tfrac12(1 + \tanh(x/2))`, finite for any x (eq. ``sigmoid-fwd``)."""
    xp = get_array_module(x)
    out = xp.multiply(x, 0.5, out=out)
    xp.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def softplus(x, out=None, work=None):
    r""":math:`\log(1+e^x) = \max(x, 0) + \log(1 + e^{-|x|})`, which never overflows (eq. ``softplus-fwd``).

    ``out`` may be ``x`` itself; ``work``, an array of x's shape, receives the log term: with both no temporary
    of x's size is made."""
    xp = get_array_module(x)
    work = xp.abs(x, out=work)
    xp.negative(work, out=work)
    xp.exp(work, out=work)
    work = log1p_unit(work, out=work)  # log(1 + e^{-|x|}), before x is overwritten
    out = positive_part(x, out=out)
    out += work
    return out


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
# Each derivative is written in the activation's output h = phi(x) (eq. act-from-output), so a forward computed in
# place (``out=x``, the fast step and scoring) keeps all its backward needs. Where the derivative is a sign test
# (relu, leaky relu: [x > 0] = [h > 0]) the cache keeps the input when there is one to keep: the gradient checks
# stay off the kink by reading it. ``mask``: a boolean scratch array of h's shape for those sign tests, so an
# in-place caller allocates nothing.


class ActCache(NamedTuple):
    saved: object  # the output y; for relu and leaky relu the input x (the output when computed in place)


def identity_forward(x, out=None):
    """:math:`y = x`."""
    if out is not None and out is not x:
        out[...] = x
        x = out
    return x, ActCache(None)


def identity_backward(dout, cache, out=None, mask=None):
    """:math:`\\bar x = \\bar y`."""
    if out is not None and out is not dout:
        out[...] = dout
        return out
    return dout


def relu_forward(x, out=None):
    r""":math:`y = \max(x, 0)` (eq. ``relu``)."""
    y = positive_part(x, out=out)
    return y, ActCache(y if out is x else x)


def relu_backward(dout, cache, out=None, mask=None):
    r""":math:`\bar x = \bar y \cdot [x > 0] = \bar y \cdot [y > 0]` (the kink at 0 gets derivative 0)."""
    xp = get_array_module(dout)
    return xp.multiply(dout, xp.greater(cache.saved, 0.0, out=mask), out=out)


LEAKY_SLOPE = 0.01


def leaky_relu_forward(x, out=None):
    r""":math:`y = x` for :math:`x > 0`, else :math:`\alpha x` with :math:`\alpha = 0.01` (eq. ``leaky-relu``):
    :math:`y = \max(x, \alpha x)` for :math:`0 < \alpha < 1`."""
    xp = get_array_module(x)
    y = xp.maximum(x, LEAKY_SLOPE * x, out=out)
    return y, ActCache(y if out is x else x)


def leaky_relu_backward(dout, cache, out=None, mask=None):
    r""":math:`\bar x = \bar y \cdot (1 \text{ if } x > 0 \text{ else } \alpha)`, :math:`x > 0 \iff y > 0`."""
    xp = get_array_module(dout)
    slope = xp.where(xp.greater(cache.saved, 0.0, out=mask), 1.0, LEAKY_SLOPE).astype(dout.dtype, copy=False)
    return xp.multiply(dout, slope, out=out)


def tanh_forward(x, out=None):
    r""":math:`y = \tanh x` (eq. ``tanh``)."""
    xp = get_array_module(x)
    y = xp.tanh(x, out=out)
    return y, ActCache(y)


def tanh_backward(dout, cache, out=None, mask=None):
    r""":math:`\bar x = \bar y (1 - y^2)`."""
    y = cache.saved
    xp = get_array_module(dout)
    return xp.multiply(dout, 1.0 - y * y, out=out)


def sigmoid_forward(x, out=None):
    r""":math:`y = \sigma(x)` (eq. ``sigmoid-fwd``)."""
    y = sigmoid(x, out=out)
    return y, ActCache(y)


def sigmoid_backward(dout, cache, out=None, mask=None):
    r""":math:`\bar x = \bar y\, y (1 - y)` (eq. ``sigmoid-bwd``)."""
    y = cache.saved
    xp = get_array_module(dout)
    return xp.multiply(dout, y * (1.0 - y), out=out)


def softplus_forward(x, out=None):
    r""":math:`y = \log(1 + e^x)` (eq. ``softplus-fwd``)."""
    y = softplus(x, out=out)
    return y, ActCache(y)


def softplus_backward(dout, cache, out=None, mask=None):
    r""":math:`\bar x = \bar y\, \sigma(x)` (eq. ``softplus-bwd``) :math:`= \bar y\,(1 - e^{-y})` (eq.
    ``act-from-output``), taken as :math:`-\operatorname{expm1}(-y)`, accurate where :math:`y` is tiny."""
    xp = get_array_module(dout)
    return xp.multiply(dout, -xp.expm1(-cache.saved), out=out)


class Activation(NamedTuple):
    forward: Callable
    backward: Callable
    kink: bool  # True where the derivative jumps (finite differences must stay off x = 0)
    name: str  # its key in ACTIVATIONS, which names it to minivae.ops


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(identity_forward, identity_backward, False, "identity"),
    "relu": Activation(relu_forward, relu_backward, True, "relu"),
    "leaky_relu": Activation(leaky_relu_forward, leaky_relu_backward, True, "leaky_relu"),
    "tanh": Activation(tanh_forward, tanh_backward, False, "tanh"),
    "sigmoid": Activation(sigmoid_forward, sigmoid_backward, False, "sigmoid"),
    "softplus": Activation(softplus_forward, softplus_backward, False, "softplus"),
}


def get_activation(name: str) -> Activation:
    """The activation pair called ``name``; a clear error for an unknown name."""
    return ACTIVATIONS[check_choice("activation", name, sorted(ACTIVATIONS))]


# --------------------------------------------------------------------------- one layer of an MLP


class LayerCache(NamedTuple):
    affine: AffineCache
    act: ActCache


def affine_act_forward(x, W, b, activation: Activation, out=None):
    r"""One layer of an MLP, :math:`h = \phi(xW + b)`: :func:`affine_forward`, then the activation.

    Shapes: x (N, I), W (I, O), b (O,) -> h (N, O). Given ``out`` (N, O), the affine map is written into it and
    activated there in place (the backward needs only the output, eq. ``act-from-output``).
    """
    a, affine_cache = affine_forward(x, W, b, out=out)  # a = xW + b
    h, act_cache = activation.forward(a, out=out)  # h = phi(a)
    return h, LayerCache(affine_cache, act_cache)


def affine_act_backward(dh, cache: LayerCache, activation: Activation, need_dx: bool = True, out=None):
    r"""Gradients of one layer (eq. ``mlp-bwd``): ``(dx, dW, db)``, into the arrays ``out`` if given.

    :math:`\bar a = \bar h \odot \phi'(a)`, then :func:`affine_backward` of :math:`\bar a`.
    """
    da = activation.backward(dh, cache.act)  # undo h = phi(a)
    return affine_backward(da, cache.affine, need_dx, out=out)  # undo a = xW + b
