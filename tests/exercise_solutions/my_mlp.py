import numpy as np


def mlp_backward(dout, x, weights):
    hs, h = [x], x
    for W, b in weights[:-1]:
        h = np.tanh(h @ W + b)
        hs.append(h)
    grads, da = [], dout
    for layer in reversed(range(len(weights))):
        W = weights[layer][0]
        grads.insert(0, (hs[layer].T @ da, da.sum(axis=0)))
        dh = da @ W.T
        da = dh * (1 - hs[layer] ** 2) if layer > 0 else dh
    return dh, grads
