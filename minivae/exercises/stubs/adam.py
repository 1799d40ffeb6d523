"""Exercise: one Adam step. Check with: minivae exercise check adam THIS_FILE"""

import numpy as np


def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    r"""One Adam update of the parameters theta with the gradient grad.

    m and v are the first and second moment estimates (exponential moving averages) after t - 1 updates; t is the
    number of this update (1 for the first). All arrays have theta's shape.
    Returns (theta, m, v) after the update (new arrays or updated in place).
    Derivation: docs/derivations/adam.md.
    """
    raise NotImplementedError("write the update, then replace this line")
