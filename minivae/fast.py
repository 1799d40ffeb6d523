r"""The training step again, for speed: the same maths as :meth:`VAE.forward` + :meth:`VAE.backward`.

:mod:`minivae.model` is the readable reference; this module is what
:class:`~minivae.train.Trainer` runs, and ``tests/test_fast.py`` pins the two
equal for every configuration. Nothing here is new maths; four things differ:

1. **No allocation per step.** Every activation and gradient buffer is
   allocated once per batch size (:class:`Workspace`); matrix products write
   into them with ``out=``, and weight gradients are written straight into
   the views of the flat gradient buffer that the optimizer reads.
2. **Activations in place**, their derivatives written in terms of the
   activation's *output* :math:`h = \phi(a)` so the pre-activation need not be
   kept (eq. ``act-from-output``): ReLU :math:`[h > 0]`, leaky ReLU
   :math:`1` or :math:`\alpha`, tanh :math:`1 - h^2`, sigmoid :math:`h(1-h)`,
   softplus :math:`1 - e^{-h}`.
3. **The Bernoulli gradient in four passes** over the (S N, D) logits,
   using :math:`\sigma(\ell) - x = \tfrac12\tanh(\ell/2) + \tfrac12 - x` (eq. ``bern-grad``).
4. **The loss only when asked.** The gradient does not need the value of the
   negative ELBO, whose softplus costs as much as the gradient itself; the
   trainer asks for it every few steps, for the progress bar and the history.

The small (N, K) steps (the head, the clamp, the reparameterization, the KL)
and the Gaussian likelihoods call the reference functions unchanged.
"""

from __future__ import annotations

from .backend import get_array_module
from .kl import kl_backward, kl_forward
from .layers import LEAKY_SLOPE
from .reparam import (clamp_log_var_backward, clamp_log_var_forward, join_head, reparameterize_backward,
                      reparameterize_forward, split_head)

# --------------------------------------------------------------------------- activations in place


def activation_inplace(name: str, a):
    """Overwrite the pre-activation ``a`` with :math:`\\phi(a)` (twin of ``layers.<name>_forward``)."""
    xp = get_array_module(a)
    if name == "relu":
        xp.maximum(a, 0.0, out=a)
    elif name == "leaky_relu":
        xp.maximum(a, LEAKY_SLOPE * a, out=a)  # max(a, alpha a) = a if a > 0 else alpha a, for 0 < alpha < 1
    elif name == "tanh":
        xp.tanh(a, out=a)
    elif name == "sigmoid":
        a *= 0.5  # sigma(a) = (1 + tanh(a / 2)) / 2
        xp.tanh(a, out=a)
        a += 1.0
        a *= 0.5
    elif name == "softplus":
        a[...] = xp.logaddexp(a, 0.0)
    elif name != "identity":
        raise ValueError(f"activation: expected a known activation, got {name!r}")
    return a


def activation_backward_inplace(name: str, dh, h):
    r"""``dh *= phi'(a)`` with the derivative written in the output ``h`` (eq. ``act-from-output``)."""
    xp = get_array_module(dh)
    if name == "relu":
        dh *= h > 0
    elif name == "leaky_relu":
        dh *= xp.where(h > 0, 1.0, LEAKY_SLOPE).astype(dh.dtype, copy=False)
    elif name == "tanh":
        dh *= 1.0 - h * h
    elif name == "sigmoid":
        dh *= h * (1.0 - h)
    elif name == "softplus":
        dh *= -xp.expm1(-h)  # sigma(a) = 1 - exp(-softplus(a))
    return dh


# --------------------------------------------------------------------------- buffers


class Workspace:
    """Every array one training step of batch size ``n`` needs, allocated once."""

    def __init__(self, model, n: int):
        cfg, xp, dtype = model.config, model.params.xp, model.dtype
        S, K, C = cfg.n_samples, cfg.latent_dim, cfg.condition_dim
        sizes = model._layer_sizes()
        self.n = n
        self.enc_in = xp.empty((n, cfg.data_dim + C), dtype=dtype)  # [x, c]: the trainer gathers into it
        self.x = self.enc_in[:, :cfg.data_dim]
        self.enc = [xp.empty((n, width), dtype=dtype) for width in sizes["encoder"][1:]]
        self.denc = [xp.empty_like(a) for a in self.enc]
        self.noise = xp.empty((S, n, K), dtype=dtype)
        self.dec_in = xp.empty((S * n, K + C), dtype=dtype)  # [z, c] for every sample
        self.ddec_in = xp.empty_like(self.dec_in)
        self.dec = [xp.empty((S * n, width), dtype=dtype) for width in sizes["decoder"][1:]]
        self.ddec = [xp.empty_like(a) for a in self.dec]
        self.half_minus_x = xp.empty((n, cfg.data_dim), dtype=dtype)  # (1/2 - x) / (S N), Bernoulli only


class FastStep:
    """``loss_and_grads`` for training: same result as the reference, no allocation in the large steps.

    Call :meth:`workspace` to get the buffers for a batch size, fill
    ``ws.enc_in`` with ``[x, c]``, then :meth:`__call__`.
    """

    def __init__(self, model):
        self.model = model
        self._workspaces = {}
        self.weights = {net: model._weights(net) for net in ("encoder", "decoder")}

    def workspace(self, n: int) -> Workspace:
        if n not in self._workspaces:
            self._workspaces[n] = Workspace(self.model, n)
        return self._workspaces[n]

    def _mlp_forward(self, h, net: str, outs: list):
        act = self.model.config.activation
        last = len(outs) - 1
        for layer, ((W, b), a) in enumerate(zip(self.weights[net], outs)):
            xp = get_array_module(a)
            xp.matmul(h, W, out=a)  # a_l = h_{l-1} W_l + b_l
            a += b
            if layer < last:
                h = activation_inplace(act, a)  # h_l = phi(a_l), over a_l
        return outs[-1]

    def _mlp_backward(self, net_input, net: str, outs: list, douts: list, dinput=None):
        """Walk the layers back; weight gradients go straight into the flat gradient buffer."""
        act, grads = self.model.config.activation, self.model.params.grads
        da = douts[-1]
        for layer in range(len(outs) - 1, -1, -1):
            xp = get_array_module(da)
            h_in = net_input if layer == 0 else outs[layer - 1]
            W = self.weights[net][layer][0]
            xp.matmul(h_in.T, da, out=grads[f"{net}.{layer}.W"])  # dW = h^T da
            da.sum(axis=0, out=grads[f"{net}.{layer}.b"])  # db = sum_n da
            if layer > 0:
                dh = douts[layer - 1]
                xp.matmul(da, W.T, out=dh)  # dh = da W^T
                da = activation_backward_inplace(act, dh, outs[layer - 1])  # da = dh * phi'(a)
            elif dinput is not None:
                xp.matmul(da, W.T, out=dinput)

    def __call__(self, ws: Workspace, rng, beta: float = 1.0, need_loss: bool = False):
        """One forward and backward pass on the batch in ``ws.enc_in``; gradients land in ``model.params.grad``.

        Returns the negative ELBO (a 0-d array) when ``need_loss``, else ``None``.
        """
        model, cfg = self.model, self.model.config
        S, N, K = cfg.n_samples, ws.n, cfg.latent_dim
        xp = model.params.xp
        lik_params = model._likelihood_params()

        # ---- forward (model.forward, step by step)
        enc_out = self._mlp_forward(ws.enc_in, "encoder", ws.enc)
        mu, log_var_raw = split_head(enc_out)
        log_var, inside = clamp_log_var_forward(log_var_raw)
        rng.standard_normal(out=ws.noise, dtype=model.dtype)  # the same draws as reparam.draw_noise
        z, rep_cache = reparameterize_forward(mu, log_var, ws.noise)
        ws.dec_in[:, :K] = z.reshape(S * N, K)
        if cfg.condition_dim:
            ws.dec_in.reshape(S, N, -1)[:, :, K:] = ws.enc_in[:, cfg.data_dim:]  # the condition, for every sample
        dec_out = self._mlp_forward(ws.dec_in, "decoder", ws.dec).reshape(S, N, -1)

        # ---- the likelihood's gradient (and the loss, if asked)
        loss = None
        ddec_out = ws.ddec[-1].reshape(S, N, -1)
        if need_loss or cfg.likelihood != "bernoulli":
            nll, nll_cache = model.likelihood.nll_forward(dec_out, ws.x, lik_params)
            kl, kl_cache = kl_forward(mu, log_var)
            if need_loss:
                loss = beta * kl.mean() + nll.mean()
        if cfg.likelihood == "bernoulli":
            # d nll / d logits / (S N) = (tanh(l / 2) / 2 + 1/2 - x) / (S N)   (eq. bern-grad)
            scale = 1.0 / (S * N)
            xp.multiply(ws.x, -scale, out=ws.half_minus_x)
            ws.half_minus_x += 0.5 * scale
            xp.multiply(dec_out, 0.5, out=ddec_out)
            xp.tanh(ddec_out, out=ddec_out)
            ddec_out *= 0.5 * scale
            ddec_out += ws.half_minus_x  # broadcast over the S samples
            if not need_loss:
                kl, kl_cache = kl_forward(mu, log_var)
        else:
            dnll = xp.full((S, N), 1.0 / (S * N), dtype=model.dtype)
            dout, dlik = model.likelihood.nll_backward(dnll, nll_cache)
            ddec_out[...] = dout
            for key, g in dlik.items():
                model.params.grads[f"likelihood.{key}"][...] = g

        # ---- backward (model.backward, step by step)
        self._mlp_backward(ws.dec_in, "decoder", ws.dec, ws.ddec, dinput=ws.ddec_in)
        dz = ws.ddec_in[:, :K].reshape(S, N, K)
        dmu_from_z, dlog_var_from_z = reparameterize_backward(dz, rep_cache)
        dmu_from_kl, dlog_var_from_kl = kl_backward(xp.full((N,), beta / N, dtype=model.dtype), kl_cache)
        dmu = dmu_from_z + dmu_from_kl  # mu feeds both z and the KL
        dlog_var = clamp_log_var_backward(dlog_var_from_z + dlog_var_from_kl, inside)
        ws.denc[-1][...] = join_head(dmu, dlog_var)
        self._mlp_backward(ws.enc_in, "encoder", ws.enc, ws.denc)
        return loss
