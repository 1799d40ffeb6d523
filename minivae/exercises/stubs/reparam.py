"""Exercise: the reparameterization's backward pass. Check with: minivae exercise check reparam THIS_FILE"""

import numpy as np


def reparameterize_backward(dz, mu, log_var, noise):
    r"""Gradients of z_s = mu + sigma * noise_s, sigma = exp(log_var / 2), given dz = dL/dz.

    noise is epsilon ~ N(0, I), one draw per sample s = 1..S; it has no gradient.
    Shapes: dz and noise (S, N, K), mu and log_var (N, K).
    Returns (dmu, dlog_var), each (N, K).
    Derivation: docs/derivations/reparam.md.
    """
    raise NotImplementedError("derive dmu and dlog_var, then replace this line")
