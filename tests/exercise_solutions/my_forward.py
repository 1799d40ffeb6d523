import numpy as np


def mlp(h, weights):
    for W, b in weights[:-1]:
        h = np.tanh(h @ W + b)
    W, b = weights[-1]
    return h @ W + b


def vae_forward(x, noise, encoder, decoder):
    mu, log_var = np.split(mlp(x, encoder), 2, axis=1)
    z = mu + np.sqrt(np.exp(log_var)) * noise
    return mu, log_var, z, mlp(z, decoder)
