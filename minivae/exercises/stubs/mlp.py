"""Exercise: a two-layer MLP's backward pass. Check with: minivae exercise check mlp THIS_FILE"""

import numpy as np


def mlp_backward(dout, x, weights):
    r"""Gradients of out = tanh(x W1 + b1) W2 + b2 (no activation after the last layer), given dout = dL/dout.

    weights is [(W1, b1), (W2, b2)]. Shapes: x (N, I), W1 (I, H), b1 (H,), W2 (H, O), b2 (O,), dout (N, O).
    Recompute the forward you need from x and weights.
    Returns (dx, [(dW1, db1), (dW2, db2)]), each with the shape of what it is the gradient of.
    Derivation: docs/derivations/layers.md.
    """
    raise NotImplementedError("derive dx and every dW, db, then replace this line")
