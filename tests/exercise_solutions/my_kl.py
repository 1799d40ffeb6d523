import numpy as np


def kl_backward(dkl, mu, log_var):
    scale = dkl.reshape(-1, 1)
    return mu * scale, np.expm1(log_var) * scale / 2
