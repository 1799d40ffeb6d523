r"""A multilayer perceptron of any depth: affine layers with an activation between them.

.. math::  h_0 = x,\qquad a_\ell = h_{\ell-1} W_\ell + b_\ell,\qquad
           h_\ell = \phi(a_\ell)\ (\ell < L),\qquad \text{out} = a_L

There is no activation after the last layer: the encoder's last layer gives
:math:`(\mu, \log\sigma^2)` and the decoder's gives logits or means, both
unconstrained. With zero hidden layers (``L = 1``) the MLP is a linear map.
Backward walks the same layers in reverse (eq. ``mlp-bwd``).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from .layers import Activation, affine_backward, affine_forward


class MLPCache(NamedTuple):
    affine: list  # one AffineCache per layer
    act: list  # one activation cache per hidden layer (len = layers - 1)


def mlp_forward(x, weights: Sequence[tuple], activation: Activation, outs: Sequence | None = None):
    """Run the MLP. ``weights`` is ``[(W_1, b_1), ..., (W_L, b_L)]``.

    Shapes: x (N, I), W_l (I_l, O_l) -> out (N, O_L). ``outs``, one array (N, O_l) per layer, makes the pass
    allocate nothing of the batch's size: each layer is written into its array and activated there in place
    (the backward needs only the output, eq. ``act-from-output``); the output is then ``outs[-1]``.
    """
    affine_caches, act_caches = [], []
    h = x
    last = len(weights) - 1
    for layer, (W, b) in enumerate(weights):
        a, cache = affine_forward(h, W, b, out=None if outs is None else outs[layer])  # a_l = h_{l-1} W_l + b_l
        affine_caches.append(cache)
        if layer == last:
            return a, MLPCache(affine_caches, act_caches)
        h, act_cache = activation.forward(a, out=None if outs is None else a)  # h_l = phi(a_l)
        act_caches.append(act_cache)
    raise ValueError("weights: expected at least one (W, b) layer, got none")


def mlp_backward(dout, cache: MLPCache, activation: Activation, need_dx: bool = True):
    """Gradients of every layer, from the last to the first (eq. ``mlp-bwd``).

    Returns ``(dx, [(dW_1, db_1), ..., (dW_L, db_L)])``; ``dx`` is ``None``
    when ``need_dx`` is false (the encoder's input needs no gradient), which
    skips the first layer's input-gradient matrix product.
    """
    grads = [None] * len(cache.affine)
    da = dout  # gradient of the current layer's pre-activation, starting at the output
    for layer in range(len(cache.affine) - 1, -1, -1):
        dh, dW, db = affine_backward(da, cache.affine[layer], need_dx=need_dx or layer > 0)
        grads[layer] = (dW, db)
        if layer > 0:
            da = activation.backward(dh, cache.act[layer - 1])  # undo h_l = phi(a_l)
    return dh, grads


__all__ = ["MLPCache", "mlp_forward", "mlp_backward"]
