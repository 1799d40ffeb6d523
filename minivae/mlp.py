r"""A multilayer perceptron of any depth: affine layers with an activation between them.

.. math::  h_0 = x,\qquad a_\ell = h_{\ell-1} W_\ell + b_\ell,\qquad
           h_\ell = \phi(a_\ell)\ (\ell < L),\qquad \text{out} = a_L

There is no activation after the last layer: the encoder's last layer gives
:math:`(\mu, \log\sigma^2)` and the decoder's gives logits or means, both
unconstrained. With zero hidden layers (``L = 1``) the MLP is a linear map.
Backward walks the same layers in reverse (eq. ``mlp-bwd``).

Each layer is one call of :func:`minivae.layers.affine_act_forward` (and of its backward); the last one's
activation is the identity. The fast training step runs these same loops with its own layer pair as ``ops``
(:class:`minivae.fast.StepLayers`) and the buffers it allocated once as ``outs`` and ``out``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from . import layers
from .layers import Activation, get_activation

#: The activation of the last layer: none, its output is the MLP's.
NO_ACTIVATION = get_activation("identity")


class MLPCache(NamedTuple):
    layers: list  # one cache per layer from ops.affine_act_forward; the reference's: a LayerCache (affine, act)

    @property
    def affine(self) -> list:
        """The reference layers' affine caches, first to last: ``affine[l].x`` is the input of layer ``l + 1``."""
        return [cache.affine for cache in self.layers]

    @property
    def act(self) -> list:
        """The reference's hidden layers' activation caches, first to last (the last layer has no activation)."""
        return [cache.act for cache in self.layers[:-1]]


def mlp_forward(x, weights: Sequence[tuple], activation: Activation, outs: Sequence | None = None, ops=layers):
    """Run the MLP. ``weights`` is ``[(W_1, b_1), ..., (W_L, b_L)]``; returns ``(out, MLPCache)``.

    Shapes: x (N, I), W_l (I_l, O_l) -> out (N, O_L). ``outs``, one array (N, O_l) per layer, makes the pass
    allocate nothing of the batch's size: each layer is written into its array and activated there in place
    (the backward needs only the output, eq. ``act-from-output``); the output is then ``outs[-1]``. ``ops``
    computes each layer: this package's :mod:`~minivae.layers`, or the fast step's :class:`~minivae.fast.StepLayers`.
    """
    if not len(weights):
        raise ValueError("weights: expected at least one (W, b) layer, got none")
    caches = []
    h = x
    last = len(weights) - 1
    for layer, (W, b) in enumerate(weights):
        phi = activation if layer < last else NO_ACTIVATION  # out = a_L
        h, cache = ops.affine_act_forward(h, W, b, phi, out=None if outs is None else outs[layer])  # h_l = phi(a_l)
        caches.append(cache)
    return h, MLPCache(caches)


def mlp_backward(dout, cache: MLPCache, activation: Activation, need_dx: bool = True, out: Sequence | None = None,
                 ops=layers):
    """Gradients of every layer, from the last to the first (eq. ``mlp-bwd``).

    Returns ``(dx, [(dW_1, db_1), ..., (dW_L, db_L)])``; ``dx`` is ``None``
    when ``need_dx`` is false (the encoder's input needs no gradient), which
    skips the first layer's input-gradient matrix product. ``out``, one
    ``(dh_{l-1}, dW_l, db_l)`` triple of arrays per layer, receives them;
    ``ops`` as in :func:`mlp_forward`.
    """
    grads = [None] * len(cache.layers)
    last = len(cache.layers) - 1
    dh = dout  # gradient of the current layer's output, starting at the MLP's
    for layer in range(last, -1, -1):
        phi = activation if layer < last else NO_ACTIVATION
        dh, dW, db = ops.affine_act_backward(dh, cache.layers[layer], phi, need_dx=need_dx or layer > 0,
                                             out=None if out is None else out[layer])  # dh_{l-1}, from dh_l
        grads[layer] = (dW, db)
    return dh, grads


__all__ = ["MLPCache", "NO_ACTIVATION", "mlp_forward", "mlp_backward"]
