"""Exercise: the Gaussian negative log-likelihood with a learned variance. Check with:
minivae exercise check gaussian THIS_FILE"""

import numpy as np


def gaussian_nll_backward(dnll, mean, log_var, x):
    r"""Gradients of nll_n = sum_d 1/2 (log 2 pi + log sigma_nd^2 + (x_nd - m_nd)^2 / sigma_nd^2), given dnll.

    mean is m, log_var is log sigma^2 (one per entry), clipped to [-20, 20] first as minivae does: beyond that range
    the clipped value is used, and dlog_var is 0 there. Shapes: dnll (N,), mean, log_var and x (N, D).
    Returns (dmean, dlog_var), each (N, D).
    Derivation: docs/derivations/likelihoods.md.
    """
    raise NotImplementedError("derive dmean and dlog_var, then replace this line")
