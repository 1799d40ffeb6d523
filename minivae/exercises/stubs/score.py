"""Exercise: the score-function (REINFORCE) gradient estimator. Check with: minivae exercise check score THIS_FILE"""

import numpy as np


def score_function_gradient(f, z, mu, log_var, baseline):
    r"""The score-function estimate of the gradient of E_q[f(z)] with respect to mu and log_var.

    q(z) = N(z; mu, sigma^2) per example, sigma^2 = exp(log_var), diagonal. z holds S samples z_s ~ q and f their
    values f(z_s); the estimate is 1/S sum_s (f(z_s) - b) * grad log q(z_s), with the baseline b (one per example)
    subtracted. z is held fixed: no gradient flows through it.
    Shapes: f (S, N), z (S, N, K), mu and log_var (N, K), baseline (N,).
    Returns (dmu, dlog_var), each (N, K).
    Derivation: docs/derivations/reparam.md.
    """
    raise NotImplementedError("derive grad log q, then replace this line")
