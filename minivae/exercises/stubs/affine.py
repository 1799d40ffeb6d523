"""Exercise: the affine layer's backward pass. Check with: minivae exercise check affine THIS_FILE"""

import numpy as np


def affine_backward(dout, x, W, b):
    r"""Gradients of Y = X W + b, given dout = dL/dY.

    Shapes: dout (N, O), x (N, I), W (I, O), b (O,).
    Returns (dx, dW, db) with the shapes of x, W and b.
    Derivation: docs/derivations/layers.md.
    """
    raise NotImplementedError("derive dx, dW and db, then replace this line")
