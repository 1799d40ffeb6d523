"""Exercise: the KL term's backward pass. Check with: minivae exercise check kl THIS_FILE"""

import numpy as np


def kl_backward(dkl, mu, log_var):
    r"""Gradients of KL_n = 1/2 sum_k (mu_nk^2 + sigma_nk^2 - 1 - log sigma_nk^2), given dkl = dL/dKL.

    log_var is log sigma^2. Shapes: dkl (N,), mu and log_var (N, K).
    Returns (dmu, dlog_var), each (N, K).
    Derivation: docs/derivations/kl.md.
    """
    raise NotImplementedError("derive dmu and dlog_var, then replace this line")
