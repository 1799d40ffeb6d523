import numpy as np


def iwae_bound(log_w, dbound):
    total = np.logaddexp.reduce(log_w, axis=0)
    return total - np.log(log_w.shape[0]), dbound * np.exp(log_w - total)
