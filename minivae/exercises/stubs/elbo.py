"""Exercise: the whole negative ELBO's backward pass. Check with: minivae exercise check elbo THIS_FILE"""

import numpy as np


def neg_elbo_backward(x, noise, encoder, decoder, beta):
    r"""Every parameter's gradient of the negative ELBO  L = beta * mean_n KL_n + mean_{s,n} nll_sn.

    The encoder is an MLP [(W1, b1), (W2, b2)] with tanh between its layers; its output (N, 2K) is
    [mu, log_var] side by side. z_s = mu + exp(log_var / 2) * noise_s. The decoder, the same kind of MLP, maps each
    z_s (K,) to Bernoulli logits (D,): nll_sn = sum_d softplus(l_snd) - x_nd l_snd, and
    KL_n = 1/2 sum_k (mu^2 + sigma^2 - 1 - log sigma^2).
    Shapes: x (N, D) in [0, 1], noise (S, N, K); beta a float.
    You may import your earlier answers (your my_forward.py, my_mlp.py, my_kl.py, ... in the same folder).
    Returns (encoder_grads, decoder_grads), each [(dW1, db1), (dW2, db2)].
    Derivation: docs/derivations/elbo.md.
    """
    raise NotImplementedError("derive every gradient, then replace this line")
