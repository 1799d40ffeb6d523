r"""Central finite differences: the check every hand-written backward must pass.

The derivative of a scalar function :math:`f` along coordinate :math:`i` is
approximated by the central difference (``docs/gradcheck.md``, eq. ``gc-central``)

.. math::  \frac{\partial f}{\partial x_i} \approx \frac{f(x + h e_i) - f(x - h e_i)}{2h},

whose truncation error is about :math:`h^2 |f'''| / 6` and whose rounding error is about
:math:`\epsilon_{\text{mach}} |f| / h` (eq. ``gc-error``). In float64 (:math:`\epsilon \approx 10^{-16}`)
with :math:`h = 10^{-6}` the first is near :math:`10^{-13}` and the second near
:math:`10^{-10} |f|`, so a correct backward agrees to better than :math:`10^{-6}`.
In float32 (:math:`\epsilon \approx 10^{-7}`) the best step leaves an error
near :math:`10^{-5} |f|`, too large against the small entries of a gradient
of a summed loss: checks are always run in float64.

An operation with an array output :math:`y = f(x)` is checked through a
vector-Jacobian product: for a fixed random :math:`\bar y` (the upstream
gradient ``dout``) the scalar :math:`g(x) = \sum_j \bar y_j f_j(x)` has
gradient :math:`J^\top \bar y`, which is exactly what ``op_backward(dout, cache)``
returns.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .backend import get_array_module, to_numpy

#: Default finite-difference step (float64).
STEP = 1e-6

#: Largest relative error (:func:`relative_error`) a float64 backward may show against central differences of
#: step :data:`STEP`: their truncation and rounding errors are near 1e-10 of the gradient's scale (eq.
#: ``gc-error``), so 1e-6 leaves four orders of margin and still fails any real mistake (off by order 1).
TOLERANCE = 1e-6


def relative_error(analytic, numeric) -> float:
    r"""The relative error used everywhere in minivae (eq. ``gc-relerr``).

    .. math::  \mathrm{err}(a, n) = \frac{\max_i |a_i - n_i|}{\max(\max_i |a_i|, \max_i |n_i|)}

    The largest absolute disagreement, measured against the scale of the
    gradient. Unlike an element-wise ratio it does not blow up on entries that
    are zero up to rounding, and unlike an absolute tolerance it does not pass
    a wrong gradient just because the gradient is small. Returns 0.0 when both
    arrays are exactly zero.
    """
    a = to_numpy(analytic).astype(np.float64, copy=False)  # arrays on a GPU are brought back first
    n = to_numpy(numeric).astype(np.float64, copy=False)
    if a.shape != n.shape:
        raise ValueError(f"numeric: expected shape {a.shape} (the analytic gradient's), got {n.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(n)))
    if scale == 0.0:
        return 0.0
    return float(np.max(np.abs(a - n)) / scale)


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = STEP) -> np.ndarray:
    """Central-difference gradient of ``f()`` with respect to the array ``x``.

    ``f`` takes no argument and reads ``x``, which is perturbed in place one
    entry at a time and restored exactly afterwards. ``x`` must be a float64
    array, NumPy or CuPy (checks in lower precision are meaningless, see
    above); the gradient is returned as a NumPy array.
    """
    if not hasattr(x, "dtype") or not hasattr(x, "reshape") or x.dtype != np.float64:
        got = x.dtype if hasattr(x, "dtype") else type(x).__name__
        raise TypeError(f"x: expected a float64 array, got {got}")
    xp = get_array_module(x)
    grad = np.zeros(x.shape, dtype=np.float64)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    if not xp.shares_memory(flat_x, x):
        raise ValueError("x: expected a contiguous array that can be perturbed in place")
    for i in range(flat_x.size):
        old = flat_x[i]
        flat_x[i] = old + h
        f_plus = float(f())
        flat_x[i] = old - h
        f_minus = float(f())
        flat_x[i] = old
        flat_grad[i] = (f_plus - f_minus) / (2.0 * h)  # eq. gc-central
    return grad


def numerical_vjp(forward: Callable[..., np.ndarray], inputs: Sequence[np.ndarray], dout: np.ndarray,
                  h: float = STEP) -> list[np.ndarray]:
    r"""Central-difference vector-Jacobian products :math:`J_k^\top \bar y` for each input.

    ``forward(*inputs)`` returns the array output (any extra outputs such as a
    cache must be dropped by the caller); ``dout`` has the output's shape.
    """
    inputs = list(inputs)

    def scalar() -> float:
        return float(np.sum(forward(*inputs) * dout))

    return [numerical_gradient(scalar, x, h) for x in inputs]


def max_relative_errors(analytic: Sequence[np.ndarray], numeric: Sequence[np.ndarray]) -> list[float]:
    """``relative_error`` for each pair."""
    return [relative_error(a, n) for a, n in zip(analytic, numeric, strict=True)]


def model_gradient_errors(model, x, c=None, *, noise, beta: float = 1.0, h: float = STEP) -> dict:
    """For every parameter of ``model``: the relative error between its hand-written gradient and central differences.

    The model must be float64. ``noise`` (S, N, K) is fixed so the loss is a
    deterministic function of the parameters. Returns ``{name: error}``.
    """
    if model.dtype != np.float64:
        raise ValueError(f"model: expected a float64 model for a gradient check, got {model.dtype}")
    x, c, noise = (model.to_device(a) for a in (x, c, noise))  # moved once, not once per evaluation
    _, grads = model.loss_and_grads(x, c, noise=noise, beta=beta)
    analytic = {name: g.copy() for name, g in grads.items()}

    def loss() -> float:
        return float(model.loss(x, c, noise=noise, beta=beta).total)

    return {name: relative_error(analytic[name], numerical_gradient(loss, model.params.values[name], h))
            for name in model.params.names()}
