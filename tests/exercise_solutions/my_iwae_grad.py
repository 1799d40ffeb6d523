"""The bound's gradient from earlier answers, imported from this folder; log q(z|x) written at fixed noise."""

import numpy as np

from my_bernoulli import bernoulli_nll_backward
from my_forward import vae_forward
from my_iwae import iwae_bound
from my_mlp import mlp_backward
from my_reparam import reparameterize_backward


def neg_iwae_backward(x, noise, encoder, decoder, beta):
    S, N, K = noise.shape
    mu, log_var, z, logits = vae_forward(x, noise, encoder, decoder)
    log_px = -(np.logaddexp(0, logits) - x * logits).sum(-1)
    log_pz = -0.5 * (np.log(2 * np.pi) + z ** 2).sum(-1)
    # at fixed noise, log q(z_s|x) = -1/2 sum_k (log 2 pi + log_var_k + noise_sk^2): mu drops out
    log_qz = -0.5 * (np.log(2 * np.pi) + log_var + noise ** 2).sum(-1)
    _, dlog_w = iwae_bound(log_px + beta * (log_pz - log_qz), np.full(N, -1.0 / N))
    dlogits = bernoulli_nll_backward(-dlog_w.reshape(-1), logits.reshape(S * N, -1), np.tile(x, (S, 1)))
    dz, decoder_grads = mlp_backward(dlogits, z.reshape(S * N, K), decoder)
    dz = dz.reshape(S, N, K) - beta * dlog_w[..., None] * z
    dmu, dlog_var = reparameterize_backward(dz, mu, log_var, noise)
    dlog_var = dlog_var + beta * 0.5 * dlog_w.sum(0)[:, None]  # d(-beta log q)/d log_var = beta / 2
    _, encoder_grads = mlp_backward(np.concatenate([dmu, dlog_var], axis=1), x, encoder)
    return encoder_grads, decoder_grads
