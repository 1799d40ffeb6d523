import numpy as np


def score_function_gradient(f, z, mu, log_var, baseline):
    var = np.exp(log_var)
    dmu, dlog_var = np.zeros_like(mu), np.zeros_like(mu)
    for s in range(len(f)):
        w = (f[s] - baseline)[:, None]
        dmu += w * (z[s] - mu) / var
        dlog_var += w * ((z[s] - mu) ** 2 / var - 1) / 2
    return dmu / len(f), dlog_var / len(f)
