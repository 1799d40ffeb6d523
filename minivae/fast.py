r"""The training step again, for speed: the same maths as :meth:`VAE.forward` + :meth:`VAE.backward`.

:mod:`minivae.model` is the readable reference; this module is what
:class:`~minivae.train.Trainer` runs by default (``engine="fast"``; the
reference engine runs the model's own, :mod:`minivae.engines`), and
``tests/test_fast.py`` pins the two equal for every configuration. Nothing here is new maths; five things differ:

1. **No allocation per step.** Every activation and gradient buffer is
   allocated once per batch size (:class:`Workspace`); matrix products write
   into them with ``out=``, and weight gradients are written straight into
   the views of the flat gradient buffer that the optimizer reads. The
   encoder and the decoder run the reference's own loops,
   :func:`~minivae.mlp.mlp_forward` and :func:`~minivae.mlp.mlp_backward`,
   with these buffers and :class:`StepLayers` for each layer.
2. **Activations in place**, their derivatives written in terms of the
   activation's *output* :math:`h = \phi(a)` so the pre-activation need not be
   kept (eq. ``act-from-output``).
3. **The elementwise chains are operations of** :mod:`minivae.ops`: plain
   array code on NumPy or CuPy, or one fused CUDA kernel each
   (``kernels="fused"``); the Bernoulli gradient, for one, takes four passes
   over the logits in the plain version (eq. ``bern-grad``) and one in the fused,
   and a layer's bias joins its activation in one pass.
4. **The loss only when asked.** The gradient does not need the value of the
   negative ELBO, whose softplus costs as much as the gradient itself; the
   trainer asks for it every few steps, for the progress bar and the history.
5. **A large batch on every core.** NumPy's elementwise passes run on one
   core; on the CPU a batch of at least :data:`STEP_MIN_ROWS` examples per
   thread is cut into blocks of examples, each run forward and backward in a
   thread of its own with the BLAS on one thread, and the blocks' weight
   gradients are added. That is the same gradient: the loss is a mean over
   examples, so its gradient is the sum of the blocks' (docs/performance.md,
   *The step on both cores*).
"""

from __future__ import annotations

from typing import NamedTuple

from .backend import get_array_module
from .cores import cpu_threads, map_rows, row_blocks
from .kl import kl_per_dim
from .likelihoods import Bernoulli
from .mlp import NO_ACTIVATION, mlp_backward, mlp_forward
from .ops import PlainOps, get_ops
from .reparam import clamp_log_var_forward, split_head

#: Fewest examples each thread takes when a CPU step is split over the cores (:meth:`FastStep.workspace`). Below
#: about 256 rows a thread, the products of half a batch on one BLAS thread each lose what halving the
#: elementwise passes gains (docs/performance.md, *The step on both cores*).
STEP_MIN_ROWS = 256


class StepTerms(NamedTuple):
    """The two terms of the last step's loss (0-d arrays) and the KL per latent dimension (K,), batch means."""

    kl: object  # mean_n KL_n (not weighted by beta)
    nll: object  # mean_{s,n} -log p(x_n | z_sn), the reconstruction term
    kl_per_dim: object  # mean_n of eq. kl-fwd's terms, one per latent dimension

# --------------------------------------------------------------------------- buffers


class Workspace:
    """Every array one training step of batch size ``n`` needs, allocated once."""

    def __init__(self, model, n: int, blocks: int = 1, *, enc_in=None, noise=None, grad=None):
        cfg, xp, dtype = model.config, model.params.xp, model.dtype
        S, K, C, D = cfg.n_samples, cfg.latent_dim, cfg.condition_dim, cfg.data_dim
        sizes = model.layer_sizes()
        self.n = n
        self.enc_in = xp.empty((n, D + C), dtype=dtype) if enc_in is None else enc_in  # [x, c]: the trainer
        self.x = self.enc_in[:, :D]  # gathers into it
        self.noise = xp.empty((S, n, K), dtype=dtype) if noise is None else noise
        #: A split batch (``blocks`` > 1): one workspace per block of examples, its input and noise views of
        #: this one's, its own scratch arrays (``layers``: its ``ops`` and ``ones``) and its weight gradients in a flat
        #: buffer (``grad``, with named views ``grads``): the model's own for the first block, one of its own for
        #: each other. This workspace keeps no more.
        self.blocks = None
        rows_of_blocks = row_blocks(n, blocks, STEP_MIN_ROWS)
        if len(rows_of_blocks) > 1:
            self.blocks = [Workspace(model, rows.stop - rows.start, enc_in=self.enc_in[rows], noise=self.noise[:, rows],
                                     grad=model.params.grad if i == 0 else xp.empty_like(model.params.grad))
                           for i, rows in enumerate(rows_of_blocks)]
            for block in self.blocks:
                block.layers = StepLayers(PlainOps(), block.ones)
            return
        self.grad = model.params.grad if grad is None else grad
        self.grads = model.params.views(self.grad)
        self.enc = [xp.empty((n, width), dtype=dtype) for width in sizes["encoder"][1:]]
        self.denc = [xp.empty_like(a) for a in self.enc]
        self.dec_in = xp.empty((S * n, K + C), dtype=dtype)  # [z, c] for every sample
        self.z = self.dec_in.reshape(S, n, K + C)[:, :, :K]  # z_s, (S, N, K), a view of the decoder input
        self.ddec_in = xp.empty_like(self.dec_in)
        self.dec = [xp.empty((S * n, width), dtype=dtype) for width in sizes["decoder"][1:]]
        self.ddec = [xp.empty_like(a) for a in self.dec]
        self.ones = {rows: xp.ones(rows, dtype=dtype) for rows in (n, S * n)}  # bias gradients: db = 1^T da
        #: Per network, the ``out`` of :func:`~minivae.mlp.mlp_backward`: each layer's (dh_in, dW, db), the weight
        #: gradients views of ``grad``, the encoder's input gradient none.
        self.grad_out = {net: [(dh_in, self.grads[f"{net}.{layer}.W"], self.grads[f"{net}.{layer}.b"])
                               for layer, dh_in in enumerate([dinput] + douts[:-1])]
                         for net, dinput, douts in (("encoder", None, self.denc), ("decoder", self.ddec_in, self.ddec))}
        shape = model.likelihood.log_var_shape(S, n, D)  # the log-variance's gradient, as an (., ., D) array
        if shape is not None:
            self.dlog_var = xp.empty(shape, dtype=dtype)
            self.fixed_log_var = xp.full((1, 1, 1), model.likelihood.fixed_log_var, dtype=dtype)


def largest_product(model, n: int) -> int:
    """Multiply-adds of the largest matrix product in a training step of ``model`` on ``n`` examples, either
    engine: the encoder's layers take ``n`` rows, the decoder's ``S K n`` (``S = n_samples``, ``K = k_train``, one
    of them 1); a weight gradient takes as many as its layer's forward product. :func:`minivae.cores.held_for` picks
    the BLAS's threads from it."""
    samples = model.config.n_samples * model.config.k_train
    sizes, rows = model.layer_sizes(), {"encoder": n, "decoder": samples * n}
    return max(rows[net] * fan_in * fan_out for net, widths in sizes.items()
               for fan_in, fan_out in zip(widths[:-1], widths[1:]))


class StepLayers:
    r"""One layer of an MLP, :math:`h = \phi(xW + b)`, forward and backward as in
    :func:`minivae.layers.affine_act_forward` and ``affine_act_backward``, into the caller's buffers, with the
    elementwise work done by ``ops`` (:func:`minivae.ops.get_ops`).

    The bias joins the activation in one pass over the output (one kernel with ``kernels="fused"``); the
    derivative is taken over the output's gradient, in place, from the output alone (eq. ``act-from-output``).
    The bias gradient :math:`\sum_n \bar a_n` is the product :math:`1^\top \bar a`: BLAS runs it on every core,
    where ``da.sum(axis=0)`` runs on one; ``ones`` maps a number of rows to that many ones. A layer's cache is
    ``(x, W, h)``: its input, its weights and its output.
    """

    def __init__(self, ops, ones: dict):
        self.ops = ops
        self.ones = ones

    def affine_act_forward(self, x, W, b, activation, out):
        r"""``out`` (N, O) :math:`\leftarrow \phi(xW + b)`; returns ``(out, cache)``."""
        get_array_module(x).matmul(x, W, out=out)  # a = xW, then a + b with the activation: h = phi(a)
        return self.ops.bias_act(out, b, activation.name), (x, W, out)

    def affine_act_backward(self, dh, cache, activation, need_dx: bool, out):
        r"""``out = (dx, dW, db)`` :math:`\leftarrow` the layer's gradients (eq. ``mlp-bwd``), ``dh`` overwritten
        with :math:`\bar a`; returns ``out``, ``dx`` ``None`` without ``need_dx``."""
        x, W, h = cache
        dx, dW, db = out
        xp = get_array_module(dh)
        da = dh if activation is NO_ACTIVATION else self.ops.act_backward(dh, h, activation.name)  # dh * phi'(a)
        xp.matmul(x.T, da, out=dW)  # dW = x^T da
        xp.matmul(self.ones[da.shape[0]], da, out=db)  # db = sum_n da = 1^T da
        if not need_dx:
            return None, dW, db
        return xp.matmul(da, W.T, out=dx), dW, db  # dx = da W^T


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
        self.weights = {net: model.weights(net) for net in ("encoder", "decoder")}
        self.terms = None  # StepTerms of the last step that computed the loss

    def workspace(self, n: int) -> Workspace:
        """The buffers of a step on ``n`` examples, made on first use.

        On the CPU, a batch with at least :data:`STEP_MIN_ROWS` examples per
        thread is split, once and for all, into as many blocks as the BLAS
        had threads when the workspace was made (:func:`minivae.cores.row_blocks`).
        """
        if n not in self._workspaces:
            blocks = cpu_threads() if self.model.device == "cpu" and self.ops.name == "plain" else 1
            self._workspaces[n] = Workspace(self.model, n, blocks)
        return self._workspaces[n]

    def _likelihood_grad(self, ws: Workspace, dec_out, need_loss: bool, N: int, grads: dict, ops):
        """The decoder output's gradient into ``ws.ddec[-1]``, the likelihood's own into ``grads``; ``N`` is the
        batch's size (a block of it has ``ws.n`` examples)."""
        model, cfg = self.model, self.model.config
        S, D = cfg.n_samples, cfg.data_dim
        scale = 1.0 / (S * N)  # d(mean over samples and examples) / d(each nll)
        ddec_out = ws.ddec[-1].reshape(S, ws.n, -1)
        likelihood = model.likelihood
        if isinstance(likelihood, Bernoulli):
            return ops.bernoulli_grad(dec_out, ws.x, scale, ddec_out, need_loss)
        if likelihood.log_var_in_output:  # [mean, log_var] side by side
            mean, log_var, dmean, dlog_var = dec_out[..., :D], dec_out[..., D:], ddec_out[..., :D], ddec_out[..., D:]
        else:
            mean, dmean, dlog_var = dec_out, ddec_out, ws.dlog_var
            log_var = model.params["likelihood.log_var"].reshape(dlog_var.shape) if likelihood.learned_variance \
                else ws.fixed_log_var
        nll_sum = ops.gaussian_grad(mean, log_var, ws.x, scale, dmean, dlog_var, need_loss)
        if likelihood.learned_variance and not likelihood.log_var_in_output:  # the likelihood's own parameter
            grads["likelihood.log_var"][...] = dlog_var.reshape(model.params.shapes["likelihood.log_var"])
        return nll_sum

    def __call__(self, ws: Workspace, rng, beta: float = 1.0, need_loss: bool = False):
        """One forward and backward pass on the batch in ``ws.enc_in``; gradients land in ``model.params.grad``.

        Returns the negative ELBO (a 0-d array) when ``need_loss``, else ``None``; then also sets
        ``self.terms`` (:class:`StepTerms`: the KL, the reconstruction term and the KL per latent dimension).

        A split batch (:meth:`workspace`) runs :meth:`_rows` on each block of examples in a thread of its own
        (:func:`minivae.cores.map_rows`, with the BLAS on one thread each), every block's weight gradients in a
        buffer of its own; the gradient is their sum, since every term of the loss is a sum over examples.
        The same formulas in the same order row by row: only the sums over the batch (weight and bias
        gradients, the loss) add their terms in another order.
        """
        model, cfg = self.model, self.model.config
        N = ws.n
        rng.standard_normal(out=ws.noise, dtype=model.dtype)  # the same draws as reparam.draw_noise
        if ws.blocks is None:
            parts = [self._rows(ws, N, beta, need_loss, StepLayers(self.ops, ws.ones))]
        else:
            parts = map_rows(lambda block: self._rows(block, N, beta, need_loss, block.layers), ws.blocks,
                             threads=cpu_threads())
            for block in ws.blocks[1:]:
                model.params.grad += block.grad  # the sum over examples, block by block
        if not need_loss:
            return None
        if ws.blocks is None:
            kl, nll_sum, kl_dims = parts[0]
        else:  # a mean over the batch is the blocks' means weighted by their shares of it
            shares = [block.n / N for block in ws.blocks]
            kl, kl_dims = (sum(part[i] * share for part, share in zip(parts, shares)) for i in (0, 2))
            nll_sum = sum(part[1] for part in parts)
        self.terms = StepTerms(kl, nll_sum * (1.0 / (cfg.n_samples * N)), kl_dims)
        return beta * self.terms.kl + self.terms.nll  # L = beta mean_n KL_n + mean_{s,n} nll_{sn}

    def _rows(self, ws: Workspace, N: int, beta: float, need_loss: bool, layers: StepLayers):
        """Forward and backward over the ``ws.n`` examples of ``ws`` (all of a batch of ``N``, or a block of
        them), the noise already drawn; the weight gradients go into ``ws.grads``, the elementwise work to
        ``layers`` and its ``ops``. With ``need_loss``, returns the mean over these examples of the KL, the sum of
        the reconstruction term's NLLs and the mean KL per latent dimension."""
        model, cfg, ops = self.model, self.model.config, layers.ops
        S, n, K, act = cfg.n_samples, ws.n, cfg.latent_dim, model.activation

        # ---- forward (model.forward, step by step)
        enc_out, enc_cache = mlp_forward(ws.enc_in, self.weights["encoder"], act, outs=ws.enc, ops=layers)
        kl, head_cache = ops.head_forward(enc_out, ws.noise, ws.z, need_kl=need_loss)  # z = mu + sigma eps, into dec_in
        if cfg.condition_dim:
            ws.dec_in.reshape(S, n, -1)[:, :, K:] = ws.enc_in[:, cfg.data_dim:]  # the condition, for every sample
        dec_out, dec_cache = mlp_forward(ws.dec_in, self.weights["decoder"], act, outs=ws.dec, ops=layers)
        dec_out = dec_out.reshape(S, n, -1)

        # ---- backward (model.backward, step by step)
        nll_sum = self._likelihood_grad(ws, dec_out, need_loss, N, ws.grads, ops)
        mlp_backward(ws.ddec[-1], dec_cache, act, out=ws.grad_out["decoder"], ops=layers)  # into ws.ddec_in
        dz = ws.ddec_in.reshape(S, n, -1)[:, :, :K]
        ops.head_backward(dz, beta / N, head_cache, ws.denc[-1])  # the KL is averaged over the N examples
        mlp_backward(ws.denc[-1], enc_cache, act, need_dx=False, out=ws.grad_out["encoder"], ops=layers)
        if not need_loss:
            return None
        mu, log_var_raw = split_head(enc_out)  # the KL per latent dimension, for the history (collapse shows there first)
        return kl.mean(), nll_sum, kl_per_dim(mu, clamp_log_var_forward(log_var_raw)[0]).mean(axis=0)
