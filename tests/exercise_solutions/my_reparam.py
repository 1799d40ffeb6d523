import numpy as np


def reparameterize_backward(dz, mu, log_var, noise):
    dmu = np.zeros_like(mu)
    dstd = np.zeros_like(mu)
    for s in range(len(dz)):
        dmu += dz[s]
        dstd += dz[s] * noise[s]
    return dmu, dstd * np.exp(log_var / 2) / 2
