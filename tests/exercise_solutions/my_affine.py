import numpy as np


def affine_backward(dout, x, W, b):
    return np.einsum("no,io->ni", dout, W), np.einsum("ni,no->io", x, dout), np.einsum("no->o", dout)
