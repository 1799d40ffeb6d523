"""Exercise: the negative ELBO with a Gaussian decoder of learned variance. Check with:
minivae exercise check elbo_gaussian THIS_FILE"""

import numpy as np


def neg_elbo_gaussian_backward(x, noise, encoder, decoder, beta):
    r"""Every parameter's gradient of the negative ELBO  L = beta * mean_n KL_n + mean_{s,n} nll_sn.

    As in the elbo exercise, except the decoder: its output (N, 2D) for each z_s is [mean, log_var] side by side,
    mean first, and nll_sn = sum_d 1/2 (log 2 pi + log_var_snd + (x_nd - mean_snd)^2 / exp(log_var_snd)).
    The encoder is an MLP [(W1, b1), (W2, b2)] with tanh between its layers; its output (N, 2K) is [mu, log_var];
    z_s = mu + exp(log_var / 2) * noise_s; KL_n = 1/2 sum_k (mu^2 + sigma^2 - 1 - log sigma^2).
    Shapes: x (N, D), noise (S, N, K); beta a float.
    You may import your earlier answers (your my_gaussian.py, my_mlp.py, ... in the same folder).
    Returns (encoder_grads, decoder_grads), each [(dW1, db1), (dW2, db2)].
    Derivation: docs/derivations/elbo.md.
    """
    raise NotImplementedError("derive every gradient, then replace this line")
