"""Exercise: the importance-weighted bound's gradient through the whole model. Check with:
minivae exercise check iwae_grad THIS_FILE"""

import numpy as np


def neg_iwae_backward(x, noise, encoder, decoder, beta):
    r"""Every parameter's gradient of the negative k-sample bound  L = -mean_n log (1/S) sum_s w_sn, with the
    log-weights  log w_sn = log p(x_n|z_sn) + beta * (log p(z_sn) - log q(z_sn|x_n)).

    The model is the elbo exercise's: the encoder is an MLP [(W1, b1), (W2, b2)] with tanh between its layers, its
    output (N, 2K) is [mu, log_var]; z_s = mu + exp(log_var / 2) * noise_s; the decoder, the same kind of MLP, maps
    each z_s (K,) to Bernoulli logits l (D,): log p(x|z_s) = -sum_d softplus(l_d) - x_d l_d. log p(z) is the standard
    normal's log-density and log q(z|x) that of N(mu, diag exp(log_var)), both summed over the K dimensions, each
    evaluated at every sample (no analytic KL here). The log-weights reach -1000 and below: exp() of them is 0.
    Shapes: x (N, D) in [0, 1], noise (S, N, K); beta a float (1 is the bound, below 1 KL warm-up).
    You may import your earlier answers (your my_iwae.py, my_mlp.py, my_forward.py, ... in the same folder).
    Returns (encoder_grads, decoder_grads), each [(dW1, db1), (dW2, db2)].
    Derivation: docs/derivations/iwae_training.md.
    """
    raise NotImplementedError("derive every gradient, then replace this line")
