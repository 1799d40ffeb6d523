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
   kept (eq. ``act-from-output``).
3. **The elementwise chains are operations of** :mod:`minivae.ops`: plain
   array code on NumPy or CuPy, or one fused CUDA kernel each
   (``kernels="fused"``); the Bernoulli gradient, for one, takes four passes
   over the logits in the plain version (eq. ``bern-grad``) and one in the fused.
4. **The loss only when asked.** The gradient does not need the value of the
   negative ELBO, whose softplus costs as much as the gradient itself; the
   trainer asks for it every few steps, for the progress bar and the history.
"""

from __future__ import annotations

from typing import NamedTuple

from .kl import kl_per_dim
from .ops import get_ops
from .reparam import clamp_log_var_forward, split_head


class StepTerms(NamedTuple):
    """The two terms of the last step's loss (0-d arrays) and the KL per latent dimension (K,), batch means."""

    kl: object  # mean_n KL_n (not weighted by beta)
    nll: object  # mean_{s,n} -log p(x_n | z_sn), the reconstruction term
    kl_per_dim: object  # mean_n of eq. kl-fwd's terms, one per latent dimension

# --------------------------------------------------------------------------- buffers


class Workspace:
    """Every array one training step of batch size ``n`` needs, allocated once."""

    def __init__(self, model, n: int):
        cfg, xp, dtype = model.config, model.params.xp, model.dtype
        S, K, C, D = cfg.n_samples, cfg.latent_dim, cfg.condition_dim, cfg.data_dim
        sizes = model._layer_sizes()
        self.n = n
        self.enc_in = xp.empty((n, D + C), dtype=dtype)  # [x, c]: the trainer gathers into it
        self.x = self.enc_in[:, :D]
        self.enc = [xp.empty((n, width), dtype=dtype) for width in sizes["encoder"][1:]]
        self.denc = [xp.empty_like(a) for a in self.enc]
        self.noise = xp.empty((S, n, K), dtype=dtype)
        self.dec_in = xp.empty((S * n, K + C), dtype=dtype)  # [z, c] for every sample
        self.z = self.dec_in.reshape(S, n, K + C)[:, :, :K]  # z_s, (S, N, K), a view of the decoder input
        self.ddec_in = xp.empty_like(self.dec_in)
        self.dec = [xp.empty((S * n, width), dtype=dtype) for width in sizes["decoder"][1:]]
        self.ddec = [xp.empty_like(a) for a in self.dec]
        self.ones = {rows: xp.ones(rows, dtype=dtype) for rows in (n, S * n)}  # bias gradients: db = 1^T da
        if cfg.likelihood.startswith("gaussian"):  # the likelihood's log-variance and its gradient, as (., ., D) arrays
            shape = (S, n, D) if cfg.likelihood == "gaussian_per_example" else \
                (1, 1, D) if cfg.likelihood == "gaussian_per_dim" else (1, 1, 1)
            self.dlog_var = xp.empty(shape, dtype=dtype)
            self.fixed_log_var = xp.full((1, 1, 1), model.likelihood.fixed_log_var, dtype=dtype)


class FastStep:
    """``loss_and_grads`` for training: same result as the reference, no allocation in the large steps.

    Call :meth:`workspace` to get the buffers for a batch size, fill
    ``ws.enc_in`` with ``[x, c]``, then :meth:`__call__`. ``kernels`` picks
    the elementwise operations (:func:`minivae.ops.get_ops`).
    """

    def __init__(self, model, kernels: str = "plain"):
        self.model = model
        self.ops = get_ops(kernels, model.device)
        self._workspaces = {}
        self.weights = {net: model._weights(net) for net in ("encoder", "decoder")}
        self.terms = None  # StepTerms of the last step that computed the loss

    def workspace(self, n: int) -> Workspace:
        if n not in self._workspaces:
            self._workspaces[n] = Workspace(self.model, n)
        return self._workspaces[n]

    def _mlp_forward(self, h, net: str, outs: list):
        act, xp = self.model.config.activation, self.model.params.xp
        last = len(outs) - 1
        for layer, ((W, b), a) in enumerate(zip(self.weights[net], outs)):
            xp.matmul(h, W, out=a)  # a_l = h_{l-1} W_l + b_l;  h_l = phi(a_l), over a_l
            h = self.ops.bias_act(a, b, act if layer < last else "identity")
        return outs[-1]

    def _mlp_backward(self, ws: Workspace, net_input, net: str, outs: list, douts: list, dinput=None):
        r"""Walk the layers back; weight gradients go straight into the flat gradient buffer.

        The bias gradient :math:`\sum_n \bar a_n` is the product :math:`1^\top \bar a`: BLAS runs it on every
        core, where ``da.sum(axis=0)`` runs on one.
        """
        act, grads, xp = self.model.config.activation, self.model.params.grads, self.model.params.xp
        da = douts[-1]
        ones = ws.ones[da.shape[0]]
        for layer in range(len(outs) - 1, -1, -1):
            h_in = net_input if layer == 0 else outs[layer - 1]
            W = self.weights[net][layer][0]
            xp.matmul(h_in.T, da, out=grads[f"{net}.{layer}.W"])  # dW = h^T da
            xp.matmul(ones, da, out=grads[f"{net}.{layer}.b"])  # db = sum_n da = 1^T da
            if layer > 0:
                dh = douts[layer - 1]
                xp.matmul(da, W.T, out=dh)  # dh = da W^T
                da = self.ops.act_backward(dh, outs[layer - 1], act)  # da = dh * phi'(a)
            elif dinput is not None:
                xp.matmul(da, W.T, out=dinput)

    def _likelihood_grad(self, ws: Workspace, dec_out, need_loss: bool):
        """The decoder output's gradient into ``ws.ddec[-1]``, the likelihood's own into the gradient buffer."""
        model, cfg = self.model, self.model.config
        S, N, D = cfg.n_samples, ws.n, cfg.data_dim
        scale = 1.0 / (S * N)  # d(mean over samples and examples) / d(each nll)
        ddec_out = ws.ddec[-1].reshape(S, N, -1)
        if cfg.likelihood == "bernoulli":
            return self.ops.bernoulli_grad(dec_out, ws.x, scale, ddec_out, need_loss)
        if cfg.likelihood == "gaussian_per_example":  # [mean, log_var] side by side (likelihoods.Gaussian)
            mean, log_var, dmean, dlog_var = dec_out[..., :D], dec_out[..., D:], ddec_out[..., :D], ddec_out[..., D:]
        else:
            mean, dmean, dlog_var = dec_out, ddec_out, ws.dlog_var
            log_var = ws.fixed_log_var if cfg.likelihood == "gaussian_fixed" else \
                model.params["likelihood.log_var"].reshape(dlog_var.shape)
        nll_sum = self.ops.gaussian_grad(mean, log_var, ws.x, scale, dmean, dlog_var, need_loss)
        if cfg.likelihood in ("gaussian_shared", "gaussian_per_dim"):
            model.params.grads["likelihood.log_var"][...] = dlog_var.reshape(model.params.shapes["likelihood.log_var"])
        return nll_sum

    def __call__(self, ws: Workspace, rng, beta: float = 1.0, need_loss: bool = False):
        """One forward and backward pass on the batch in ``ws.enc_in``; gradients land in ``model.params.grad``.

        Returns the negative ELBO (a 0-d array) when ``need_loss``, else ``None``; then also sets
        ``self.terms`` (:class:`StepTerms`: the KL, the reconstruction term and the KL per latent dimension).
        """
        model, cfg = self.model, self.model.config
        S, N, K = cfg.n_samples, ws.n, cfg.latent_dim

        # ---- forward (model.forward, step by step)
        enc_out = self._mlp_forward(ws.enc_in, "encoder", ws.enc)
        rng.standard_normal(out=ws.noise, dtype=model.dtype)  # the same draws as reparam.draw_noise
        kl, head_cache = self.ops.head_forward(enc_out, ws.noise, ws.z)  # z = mu + sigma eps, into dec_in
        if need_loss:  # the KL per latent dimension, for the history (collapse shows there first)
            mu, log_var_raw = split_head(enc_out)
            kl_dims = kl_per_dim(mu, clamp_log_var_forward(log_var_raw)[0]).mean(axis=0)
        if cfg.condition_dim:
            ws.dec_in.reshape(S, N, -1)[:, :, K:] = ws.enc_in[:, cfg.data_dim:]  # the condition, for every sample
        dec_out = self._mlp_forward(ws.dec_in, "decoder", ws.dec).reshape(S, N, -1)

        # ---- backward (model.backward, step by step)
        nll_sum = self._likelihood_grad(ws, dec_out, need_loss)
        self._mlp_backward(ws, ws.dec_in, "decoder", ws.dec, ws.ddec, dinput=ws.ddec_in)
        dz = ws.ddec_in.reshape(S, N, -1)[:, :, :K]
        self.ops.head_backward(dz, beta / N, head_cache, ws.denc[-1])  # the KL is averaged over the N examples
        self._mlp_backward(ws, ws.enc_in, "encoder", ws.enc, ws.denc)
        if not need_loss:
            return None
        self.terms = StepTerms(kl.mean(), nll_sum * (1.0 / (S * N)), kl_dims)
        return beta * self.terms.kl + self.terms.nll  # L = beta mean_n KL_n + mean_{s,n} nll_{sn}
