"""The capstone from earlier answers, imported from this folder."""

import numpy as np

from my_bernoulli import bernoulli_nll_backward
from my_forward import mlp, vae_forward
from my_kl import kl_backward
from my_mlp import mlp_backward
from my_reparam import reparameterize_backward


def neg_elbo_backward(x, noise, encoder, decoder, beta):
    S, N, K = noise.shape
    mu, log_var, z, logits = vae_forward(x, noise, encoder, decoder)
    dnll = np.full((S, N), 1.0 / (S * N))
    dlogits = bernoulli_nll_backward(dnll.reshape(-1), logits.reshape(S * N, -1), np.tile(x, (S, 1)))
    dz, decoder_grads = mlp_backward(dlogits, z.reshape(S * N, K), decoder)
    dmu, dlog_var = reparameterize_backward(dz.reshape(S, N, K), mu, log_var, noise)
    dmu_kl, dlog_var_kl = kl_backward(np.full(N, beta / N), mu, log_var)
    head = np.concatenate([dmu + dmu_kl, dlog_var + dlog_var_kl], axis=1)
    _, encoder_grads = mlp_backward(head, x, encoder)
    return encoder_grads, decoder_grads
