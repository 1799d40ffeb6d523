import numpy as np

from my_forward import vae_forward
from my_gaussian import gaussian_nll_backward
from my_kl import kl_backward
from my_mlp import mlp_backward
from my_reparam import reparameterize_backward


def neg_elbo_gaussian_backward(x, noise, encoder, decoder, beta):
    S, N, K = noise.shape
    mu, log_var, z, out = vae_forward(x, noise, encoder, decoder)
    D = x.shape[1]
    mean, dec_log_var = out[..., :D].reshape(S * N, D), out[..., D:].reshape(S * N, D)
    dmean, ddec = gaussian_nll_backward(np.full(S * N, 1.0 / (S * N)), mean, dec_log_var, np.tile(x, (S, 1)))
    dz, decoder_grads = mlp_backward(np.concatenate([dmean, ddec], axis=1), z.reshape(S * N, K), decoder)
    dmu, dlog_var = reparameterize_backward(dz.reshape(S, N, K), mu, log_var, noise)
    dmu_kl, dlog_var_kl = kl_backward(np.full(N, beta / N), mu, log_var)
    _, encoder_grads = mlp_backward(np.concatenate([dmu + dmu_kl, dlog_var + dlog_var_kl], axis=1), x, encoder)
    return encoder_grads, decoder_grads
