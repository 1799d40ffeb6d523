"""Exercise: the VAE's forward pass, encoder to z to decoder. Check with: minivae exercise check forward THIS_FILE"""

import numpy as np


def vae_forward(x, noise, encoder, decoder):
    r"""mu, log_var, z and the decoder's logits for the data x.

    The encoder is an MLP [(W1, b1), (W2, b2)] with tanh between its layers (none after the last); its output
    (N, 2K) is [mu, log_var] side by side, mu first. z_s = mu + exp(log_var / 2) * noise_s for each of the S
    samples. The decoder, the same kind of MLP, maps each z_s (K,) to logits (D,).
    Shapes: x (N, D), noise (S, N, K).
    Returns (mu, log_var, z, logits): mu and log_var (N, K), z (S, N, K), logits (S, N, D).
    Derivation: docs/derivations/elbo.md.
    """
    raise NotImplementedError("write the forward pass, then replace this line")
