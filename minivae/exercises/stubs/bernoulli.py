"""Exercise: the Bernoulli negative log-likelihood from logits. Check with:
minivae exercise check bernoulli THIS_FILE"""

import numpy as np


def bernoulli_nll_backward(dnll, logits, x):
    r"""Gradient of nll_n = sum_d softplus(l_nd) - x_nd l_nd (l the logits), given dnll = dL/dnll.

    Shapes: dnll (N,), logits and x (N, D). Returns dlogits (N, D).
    Derivation: docs/derivations/likelihoods.md.
    """
    raise NotImplementedError("derive dlogits, then replace this line")
