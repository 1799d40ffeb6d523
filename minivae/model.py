r"""The variational autoencoder and its conditional variant.

Generative model (the decoder): :math:`z \sim \mathcal N(0, I_K)`, :math:`x | z \sim p_\theta(x|z)`.
Inference model (the encoder): :math:`q_\phi(z|x) = \mathcal N(\mu_\phi(x), \operatorname{diag}\sigma^2_\phi(x))`.

Training minimises the negative evidence lower bound, averaged over a batch
of :math:`N` examples, with :math:`S` reparameterized samples each (eq. ``neg-elbo``):

.. math::  \mathcal L = \frac1N \sum_n \Big[\beta\,\mathrm{KL}(q(z|x_n)\,\|\,p(z))
           + \frac1S \sum_s -\log p(x_n | z_{sn})\Big],\qquad z_{sn} = \mu_n + \sigma_n \odot \varepsilon_{sn}

(:math:`\beta = 1` is the ELBO of the lecture; :math:`\beta < 1` is KL warm-up.)
The conditional VAE feeds a condition vector :math:`c` (say a one-hot label)
to both networks: :math:`q(z|x, c)` and :math:`p(x|z, c)` (eq. ``cvae``).

The forward pass is written as named steps; :meth:`VAE.backward` walks the
same names in reverse. Derivation of the whole chain: ``docs/derivations/elbo.md``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .backend import (array_module, default_rng, generator_device, get_array_module, resolve_device, to_device,
                      to_numpy)
from .iwae import (OBJECTIVES, check_objective, dreg_scale, log_mean_exp_backward, log_mean_exp_forward, log_normal_backward,
                   log_normal_forward, log_prior_backward, log_prior_forward, log_weights_backward,
                   log_weights_forward)
from .kl import kl_backward, kl_forward
from .layers import ACTIVATIONS, DEFAULT_INIT, INITS, affine_init, get_activation
from .likelihoods import LIKELIHOODS, get_likelihood
from .mlp import mlp_backward, mlp_forward
from .params import ParamBuffer
from .reparam import (LOG_VAR_LIMIT, clamp_log_var_backward, clamp_log_var_forward, draw_noise, join_head,
                      reparameterize_backward, reparameterize_forward, split_head)
from .validate import (FLOAT_DTYPES, check_array, check_bool, check_choice, check_float, check_generator, check_int,
                       check_matrix, check_matrix_shape, check_rows)


@dataclass(frozen=True)
class VAEConfig:
    """Everything that fixes a model's architecture (saved with every checkpoint).

    ``hidden`` are the encoder's hidden widths; the decoder uses them in
    reverse unless ``decoder_hidden`` is given. ``()`` means no hidden layer
    (linear encoder/decoder). ``condition_dim > 0`` makes a conditional VAE.
    ``init`` names how the weights start (:data:`minivae.layers.INITS`, :func:`minivae.layers.affine_init`).
    ``objective`` is what training minimises (:data:`minivae.iwae.OBJECTIVES`): ``"elbo"`` (with ``n_samples``
    samples and the analytic KL), ``"iwae"`` (the importance-weighted bound of ``k_train`` samples) or
    ``"iwae-dreg"`` (the same bound, the doubly reparameterised encoder gradient); see :mod:`minivae.iwae`.
    """

    data_dim: int
    latent_dim: int = 2
    hidden: tuple = (64,)
    decoder_hidden: tuple | None = None
    activation: str = "relu"
    likelihood: str = "bernoulli"
    fixed_variance: float = 1.0
    n_samples: int = 1
    condition_dim: int = 0
    init: str = DEFAULT_INIT
    objective: str = "elbo"
    k_train: int = 1

    def __post_init__(self):
        # Each field is checked and stored as a plain Python value (an np.int64 would not survive JSON).
        set_field = object.__setattr__  # the dataclass is frozen
        set_field(self, "data_dim", check_int("data_dim", self.data_dim, 1))
        set_field(self, "latent_dim", check_int("latent_dim", self.latent_dim, 1))
        for field in ("hidden", "decoder_hidden"):
            widths = getattr(self, field)
            if widths is None and field == "decoder_hidden":
                continue
            if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
                raise TypeError(f"{field}: expected a sequence of positive integers, got {widths!r}")
            set_field(self, field, tuple(check_int(field, w, 1) for w in widths))
        check_choice("activation", self.activation, sorted(ACTIVATIONS))
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        set_field(self, "fixed_variance",  # inside the log-variance clamp (eq. logvar-clamp), or it would be changed
                  check_float("fixed_variance", self.fixed_variance, minimum=math.exp(-LOG_VAR_LIMIT),
                              maximum=math.exp(LOG_VAR_LIMIT)))
        set_field(self, "n_samples", check_int("n_samples", self.n_samples, 1))
        set_field(self, "condition_dim", check_int("condition_dim", self.condition_dim, 0))
        check_choice("init", self.init, INITS)
        check_choice("objective", self.objective, OBJECTIVES)
        set_field(self, "k_train", check_int("k_train", self.k_train, 1))
        check_objective(self.objective, self.n_samples, self.k_train)

    @property
    def train_samples(self) -> int:
        """How many samples of z per example a training step draws: ``n_samples`` or ``k_train``."""
        return self.n_samples if self.objective == "elbo" else self.k_train

    @property
    def decoder_widths(self) -> tuple:
        return tuple(reversed(self.hidden)) if self.decoder_hidden is None else self.decoder_hidden

    def layer_sizes(self) -> dict:
        """The widths of each network's layers, input to output: ``{"encoder": [D + C, *hidden, 2K],
        "decoder": [K + C, *decoder_widths, outputs]}``, the decoder's outputs as many as the likelihood asks
        (:meth:`minivae.likelihoods.Likelihood.n_outputs`)."""
        likelihood = get_likelihood(self.likelihood, self.fixed_variance)
        return {"encoder": [self.data_dim + self.condition_dim, *self.hidden, 2 * self.latent_dim],
                "decoder": [self.latent_dim + self.condition_dim, *self.decoder_widths,
                            likelihood.n_outputs(self.data_dim)]}

    def param_shapes(self) -> dict:
        """Every parameter's name and shape, in the order of the flat buffer (:class:`minivae.params.ParamBuffer`):
        each layer's ``W`` (fan-in, fan-out) and ``b`` (fan-out,), then the likelihood's own (``likelihood.<key>``)."""
        shapes = {}
        for net, sizes in self.layer_sizes().items():
            for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                shapes[f"{net}.{i}.W"] = (fan_in, fan_out)
                shapes[f"{net}.{i}.b"] = (fan_out,)
        for key, shape in get_likelihood(self.likelihood, self.fixed_variance).param_shapes(self.data_dim).items():
            shapes[f"likelihood.{key}"] = shape
        return shapes

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["decoder_hidden"] = None if self.decoder_hidden is None else list(self.decoder_hidden)
        return d


class ForwardCache(NamedTuple):
    """What the backward pass needs, by the names of the forward's steps."""

    enc: object  # encoder MLP cache
    clamp: object  # where the encoder's log-variance was inside the clamp range
    rep: object  # reparameterization cache
    kl: object  # KL cache
    dec: object  # decoder MLP cache
    nll: object  # likelihood cache
    n_samples: int
    batch: int
    beta: float
    objective: str = "elbo"
    iw: object = None  # IWCache of an importance-weighted objective, None for the ELBO


class IWCache(NamedTuple):
    """The importance-weighted objective's steps (:mod:`minivae.iwae`), for :meth:`VAE.backward`."""

    prior: object  # log p(z) cache (z itself)
    q: object  # log q(z|x) cache
    lme: object  # log-mean-exp cache: the self-normalised weights (S, N), S = k_train


class Loss(NamedTuple):
    """The loss and its two parts, each averaged over the batch (0-d arrays).

    For the ELBO ``total`` is ``beta * kl + nll`` with the analytic KL. For an importance-weighted objective
    ``total`` is the negative bound (eq. ``iwae-loss``), ``kl`` the Monte Carlo KL (mean of log q - log p over the
    samples) and ``nll`` the mean of -log p(x|z): at ``k_train = 1`` ``total`` is again ``beta * kl + nll``.
    """

    total: object  # the minimised loss
    kl: object  # mean KL(q(z|x) || p(z)), analytic (elbo) or sampled (iwae)
    nll: object  # mean over examples and samples of -log p(x|z)


class ActiveUnits(NamedTuple):
    """Which latent dimensions the encoder uses (:meth:`VAE.active_units`)."""

    count: int  # how many dimensions have activity above the threshold
    activity: object  # (K,) float64 numpy array, Cov_x(E_q[z_k]) for each k
    threshold: float


class VAE:
    r"""A variational autoencoder with MLP encoder and decoder.

    Parameters
    ----------
    data_dim : int
        D, the number of features per example.
    latent_dim : int
        K, the size of z.
    hidden : sequence of int
        Encoder hidden widths (the decoder mirrors them).
    activation : str
        One of ``identity, relu, leaky_relu, tanh, sigmoid, softplus``.
    likelihood : str
        One of :data:`minivae.likelihoods.LIKELIHOODS`.
    n_samples : int
        S, Monte Carlo samples of z per example in the loss (the lecture's B).
    condition_dim : int
        C > 0 for a conditional VAE (see :class:`CVAE`).
    objective : str
        What training minimises: ``"elbo"`` (the default), ``"iwae"`` (the importance-weighted bound of
        ``k_train`` samples) or ``"iwae-dreg"`` (the same bound, the doubly reparameterised encoder gradient).
        See :mod:`minivae.iwae` and ``docs/derivations/iwae_training.md``.
    k_train : int
        k, the importance samples per example of the bound (1 for the ELBO, whose samples are ``n_samples``).
    init : str
        The initial weights: ``"he"`` (normal, variance 2/fan-in before a ReLU, 1/fan-in otherwise; zero biases)
        or ``"torch"`` (PyTorch's ``nn.Linear``: weights and biases uniform on :math:`\pm 1/\sqrt{\text{fan-in}}`).
        See :func:`minivae.layers.affine_init`.
    dtype : str
        ``"float32"`` (training) or ``"float64"`` (gradient checks).
    seed : int
        Seeds the initial weights and the model's own noise generator.
    device : str
        ``"cpu"`` (NumPy, the default), ``"cuda"`` (CuPy on an NVIDIA GPU) or
        ``"auto"`` (the GPU when one is usable). The parameters live there and
        every computation runs there; arrays passed in are moved there, and
        arrays returned stay there (:func:`minivae.to_numpy` brings one back).
        The initial weights are drawn on the host, so a seed gives the same
        weights on either device.

    Examples
    --------
    >>> import numpy as np
    >>> from minivae import VAE
    >>> model = VAE(data_dim=4, latent_dim=2, hidden=(8,), likelihood="gaussian_shared")
    >>> x = np.random.default_rng(0).random((5, 4))
    >>> loss, grads = model.loss_and_grads(x)
    >>> sorted(grads)[:2]
    ['decoder.0.W', 'decoder.0.b']
    """

    def __init__(self, data_dim=None, latent_dim=2, hidden=(64,), *, decoder_hidden=None, activation="relu",
                 likelihood="bernoulli", fixed_variance=1.0, n_samples=1, condition_dim=0, init=DEFAULT_INIT,
                 objective="elbo", k_train=1, dtype="float32", seed=0, device="cpu",
                 config: VAEConfig | None = None):
        if config is None:
            config = VAEConfig(data_dim=data_dim, latent_dim=latent_dim, hidden=hidden,
                               decoder_hidden=decoder_hidden, activation=activation, likelihood=likelihood,
                               fixed_variance=fixed_variance, n_samples=n_samples, condition_dim=condition_dim,
                               init=init, objective=objective, k_train=k_train)
        elif not isinstance(config, VAEConfig):
            raise TypeError(f"config: expected a VAEConfig, got {type(config).__name__}")
        if isinstance(dtype, (str, type, np.dtype)):  # "float32", np.float32, np.dtype("f4") ... all name one dtype
            try:
                dtype = np.dtype(dtype).name
            except TypeError:
                pass  # not a dtype at all ("floaty"): check_choice reports it as received
        check_choice("dtype", dtype, FLOAT_DTYPES)
        self.seed = check_int("seed", seed, 0)
        self.device = resolve_device(device)
        self.config = config
        self.dtype = np.dtype(dtype)
        self.activation = get_activation(config.activation)
        self.likelihood = get_likelihood(config.likelihood, config.fixed_variance)
        host = ParamBuffer(config.param_shapes(), self.dtype)  # initialised on the host, then moved: same on any device
        self._init_params(host, np.random.default_rng(seed))
        self.params = host if self.device == "cpu" else ParamBuffer(host.shapes, self.dtype, array_module(self.device))
        if self.params is not host:
            self.params.data[...] = to_device(host.data, self.device)
        self.rng = default_rng(seed, self.device)

    # ------------------------------------------------------------------ layout

    def layer_sizes(self) -> dict:
        """The widths of each network's layers, input to output: ``{"encoder": [...], "decoder": [...]}``
        (:meth:`VAEConfig.layer_sizes`)."""
        return self.config.layer_sizes()

    def _init_params(self, params: ParamBuffer, rng):
        """Every affine layer by ``config.init`` (:func:`~minivae.layers.affine_init`), in the buffer's order;
        the likelihood's log-variances 0."""
        params.data[...] = 0.0
        for net, sizes in self.layer_sizes().items():
            for i in range(len(sizes) - 1):
                affine_init(params[f"{net}.{i}.W"], params[f"{net}.{i}.b"], self.config.init, self.config.activation,
                            rng)

    def weights(self, net: str) -> list:
        """The layers of ``net`` (``"encoder"`` or ``"decoder"``) as ``[(W_1, b_1), ..., (W_L, b_L)]``: views of
        the flat parameter buffer, so writing into them writes the model."""
        n_layers = len(self.layer_sizes()[net]) - 1
        v = self.params.values
        return [(v[f"{net}.{i}.W"], v[f"{net}.{i}.b"]) for i in range(n_layers)]

    def likelihood_params(self) -> dict:
        """The likelihood's own parameters by its names (``{"log_var": ...}`` for a learned variance, else
        ``{}``), views of the flat parameter buffer: what :mod:`minivae.likelihoods`' functions take."""
        return {name.split(".", 1)[1]: value for name, value in self.params.values.items()
                if name.startswith("likelihood.")}

    # ------------------------------------------------------------------ inputs

    @property
    def conditional(self) -> bool:
        return self.config.condition_dim > 0

    # Every public method checks its arguments here, once, and then calls the
    # unchecked maths (the methods whose names start with an underscore).

    def to_device(self, value):
        """An array moved to the model's device (a transfer only when it is elsewhere); anything else unchanged,
        for the checks to name it."""
        return to_device(value, self.device) if hasattr(value, "dtype") and hasattr(value, "shape") else value

    def check_inputs(self, x, c=None, *, name: str = "x", c_name: str = "c", values: bool = True):
        """The data ``x`` (N, D) and a CVAE's condition ``c`` (N, C), checked; returns ``(x, c)``.

        ``x``: float32/float64, finite, in [0, 1] for a likelihood that says so
        (:attr:`minivae.likelihoods.Likelihood.unit_interval`), returned in the model's dtype on the model's
        device. ``c``: ``None`` for a VAE; for a CVAE N rows of C finite floats, cast and moved alike. Errors
        name ``name`` and ``c_name`` (``"x_val"``, ``"c_val"`` for validation data). With ``values=False`` only
        x's shape is checked and x comes back as given: for a caller that checks its values batch by batch
        (:func:`minivae.scoring.log_likelihood`), never making an (N, D) copy.
        """
        if values:
            x = self._check_x(x, name)
        else:
            check_matrix_shape(name, x, self.config.data_dim)
        return x, self._check_c(c, x.shape[0], name, c_name)

    def _check_x(self, x, name="x"):
        """Data (N, D): float32/float64, finite, in [0, 1] where the likelihood asks; returned in the model's dtype,
        on the model's device."""
        return check_matrix(name, self.to_device(x), self.config.data_dim, self.dtype,
                            unit_interval=self.likelihood.unit_interval)

    def _check_c(self, c, n_rows: int, rows_of: str, name: str = "c"):
        """The condition (n_rows, C) for a CVAE, ``None`` for a VAE; ``rows_of`` names what sets the rows."""
        if not self.conditional:
            if c is not None:
                raise ValueError(f"{name}: expected None for an unconditional VAE (condition_dim=0), "
                                 f"got {type(c).__name__}")
            return None
        if c is None:
            raise ValueError(f"{name}: expected a condition array of shape (N, {self.config.condition_dim}) "
                             "for a conditional VAE, got None")
        c = check_matrix(name, self.to_device(c), self.config.condition_dim, self.dtype)
        return check_rows(name, c, n_rows, rows_of)

    def check_rng(self, rng):
        """The generator to draw from: ``rng``, or the model's own when ``rng`` is None.

        It must draw on the model's device: ``numpy.random.default_rng(seed)`` for
        ``"cpu"``, ``minivae.backend.default_rng(seed, "cuda")`` for ``"cuda"``.
        """
        if rng is None:
            return self.rng
        check_generator("rng", rng)
        where = generator_device(rng)
        if where != self.device:
            raise TypeError(f"rng: expected a generator that draws on the model's device {self.device!r} "
                            f"(minivae.backend.default_rng(seed, {self.device!r})), got {type(rng).__module__}."
                            f"{type(rng).__name__}" + (f" on {where!r}" if where else ""))
        return rng

    @staticmethod
    def _with_condition(h, c):
        """Concatenate the condition to a network input: [h, c] (eq. ``cvae``)."""
        if c is None:
            return h
        xp = get_array_module(h)
        return xp.concatenate([h, c.astype(h.dtype, copy=False)], axis=-1)

    # ------------------------------------------------------------------ loss and gradients

    def forward(self, x, c=None, *, noise=None, rng=None, beta: float = 1.0):
        """The loss of ``config.objective`` and the cache for :meth:`backward`: the negative ELBO
        (eq. ``neg-elbo``) or the negative importance-weighted bound (eq. ``iwae-loss``).

        ``x`` (N, D) float; ``c`` (N, C) for a CVAE; ``noise`` (S, N, K) is
        :math:`\\varepsilon`, drawn from ``rng`` (default: the model's own
        generator) when not given; S is ``n_samples`` for the ELBO, ``k_train`` for the bound (a given
        ``noise`` may have any S: its samples are the ones averaged). Float arrays are cast to the model's dtype.
        Returns ``(Loss, ForwardCache)``.
        """
        x = self._check_x(x)
        N, K, S = x.shape[0], self.config.latent_dim, self.config.train_samples
        c = self._check_c(c, N, "x")
        beta = check_float("beta", beta, minimum=0.0)
        rng = self.check_rng(rng)
        xp = get_array_module(x)
        if noise is None:
            noise = draw_noise(rng, S, N, K, self.dtype)
        else:
            noise = check_array("noise", self.to_device(noise), ("S", N, K), self.dtype)
        S = noise.shape[0]

        enc_out, enc_cache = mlp_forward(self._with_condition(x, c), self.weights("encoder"), self.activation)
        mu, log_var_raw = split_head(enc_out)  # q(z|x) = N(mu, diag exp(log_var))
        log_var, clamp_cache = clamp_log_var_forward(log_var_raw)
        z, rep_cache = reparameterize_forward(mu, log_var, noise)  # (S, N, K)
        c_rep = None if c is None else xp.broadcast_to(c, (S, *c.shape)).reshape(S * N, -1)
        dec_out, dec_cache = mlp_forward(self._with_condition(z.reshape(S * N, K), c_rep),
                                         self.weights("decoder"), self.activation)
        dec_out = dec_out.reshape(S, N, -1)
        nll, nll_cache = self.likelihood.nll_forward(dec_out, x, self.likelihood_params())  # (S, N)
        if self.config.objective != "elbo":
            return self._iw_forward(mu, log_var, z, nll, beta,
                                    ForwardCache(enc_cache, clamp_cache, rep_cache, None, dec_cache, nll_cache, S, N,
                                                 beta, self.config.objective))

        kl, kl_cache = kl_forward(mu, log_var)  # (N,)
        kl_mean = kl.mean()
        nll_mean = nll.mean()
        loss = Loss(beta * kl_mean + nll_mean, kl_mean, nll_mean)
        return loss, ForwardCache(enc_cache, clamp_cache, rep_cache, kl_cache, dec_cache, nll_cache, S, N, beta)

    @staticmethod
    def _iw_forward(mu, log_var, z, nll, beta, cache: ForwardCache):
        """The rest of the forward pass for an importance-weighted objective (eqs. ``iwae-logw``, ``iwae-loss``)."""
        log_pz, prior_cache = log_prior_forward(z)  # (S, N)
        log_qz, q_cache = log_normal_forward(z, mu, log_var)  # (S, N)
        log_w = log_weights_forward(-nll, log_pz, log_qz, beta)  # (S, N)
        bound, lme_cache = log_mean_exp_forward(log_w)  # (N,)  log (1/S) sum_i w_i
        kl_mean = (log_qz - log_pz).mean()  # the Monte Carlo KL, reported
        loss = Loss(-bound.mean(), kl_mean, nll.mean())
        return loss, cache._replace(iw=IWCache(prior_cache, q_cache, lme_cache))

    def backward(self, cache: ForwardCache):
        """Every parameter's gradient, written into ``self.params.grad`` (eq. ``elbo-bwd``; for an
        importance-weighted objective eqs. ``iwae-bwd`` and ``dreg``).

        Walks the steps of :meth:`forward` in reverse. Returns the dict of
        named gradient views.
        """
        if cache.objective != "elbo":
            return self._iw_backward(cache)
        S, N, K = cache.n_samples, cache.batch, self.config.latent_dim
        xp, dtype = self.params.xp, self.dtype
        grads = self.params.grads

        # L = beta * mean_n KL_n + mean_{s,n} nll_{sn}
        dnll = xp.full((S, N), 1.0 / (S * N), dtype=dtype)
        dkl = xp.full((N,), cache.beta / N, dtype=dtype)

        ddec_out, dlik = self.likelihood.nll_backward(dnll, cache.nll)
        for key, g in dlik.items():
            grads[f"likelihood.{key}"][...] = g
        ddec_in, dec_grads = mlp_backward(ddec_out.reshape(S * N, -1), cache.dec, self.activation)
        self._store("decoder", dec_grads)
        dz = ddec_in[:, :K].reshape(S, N, K)  # the condition columns of the decoder input need no gradient

        dmu_from_z, dlog_var_from_z = reparameterize_backward(dz, cache.rep)
        dmu_from_kl, dlog_var_from_kl = kl_backward(dkl, cache.kl)
        dmu = dmu_from_z + dmu_from_kl  # mu feeds both z and the KL
        dlog_var = dlog_var_from_z + dlog_var_from_kl  # and so does log_var
        dlog_var_raw = clamp_log_var_backward(dlog_var, cache.clamp)
        _, enc_grads = mlp_backward(join_head(dmu, dlog_var_raw), cache.enc, self.activation, need_dx=False)
        self._store("encoder", enc_grads)
        return grads

    def _iw_backward(self, cache: ForwardCache):
        """:meth:`backward` for ``"iwae"`` (eq. ``iwae-bwd``) and ``"iwae-dreg"`` (eq. ``dreg``)."""
        S, N, K = cache.n_samples, cache.batch, self.config.latent_dim
        grads = self.params.grads
        weights = cache.iw.lme.weights  # (S, N) the self-normalised weights

        # L = -mean_n log (1/S) sum_i w_in
        dbound = self.params.xp.full((N,), -1.0 / N, dtype=self.dtype)
        dlog_w = log_mean_exp_backward(dbound, cache.iw.lme)  # -w~_in / N
        dlog_px, dlog_pz, dlog_qz = log_weights_backward(dlog_w, cache.beta)

        ddec_out, dlik = self.likelihood.nll_backward(-dlog_px, cache.nll)  # nll = -log p(x|z)
        for key, g in dlik.items():
            grads[f"likelihood.{key}"][...] = g
        ddec_in, dec_grads = mlp_backward(ddec_out.reshape(S * N, -1), cache.dec, self.activation)
        self._store("decoder", dec_grads)  # the decoder's gradient: w~ for both objectives

        dz_from_dec = ddec_in[:, :K].reshape(S, N, K)  # the condition columns of the decoder input need no gradient
        dz_from_prior = log_prior_backward(dlog_pz, cache.iw.prior)
        dz_from_q, dmu_score, dlog_var_score = log_normal_backward(dlog_qz, cache.iw.q)
        dz = dz_from_dec + dz_from_prior + dz_from_q  # z_i feeds log p(x|z_i), log p(z_i) and log q(z_i|x)
        if cache.objective == "iwae-dreg":
            dz = dz * dreg_scale(weights, cache.beta)[..., None]  # w~_i (1 - beta + beta w~_i) on the path (eq. dreg)
        dmu, dlog_var = reparameterize_backward(dz, cache.rep)
        if cache.objective == "iwae":  # mu and log_var also enter log q directly (z held fixed): the score terms
            dmu = dmu + dmu_score
            dlog_var = dlog_var + dlog_var_score
        dlog_var_raw = clamp_log_var_backward(dlog_var, cache.clamp)
        _, enc_grads = mlp_backward(join_head(dmu, dlog_var_raw), cache.enc, self.activation, need_dx=False)
        self._store("encoder", enc_grads)
        return grads

    def _store(self, net, layer_grads):
        g = self.params.grads
        for i, (dW, db) in enumerate(layer_grads):
            g[f"{net}.{i}.W"][...] = dW
            g[f"{net}.{i}.b"][...] = db

    def loss_and_grads(self, x, c=None, *, noise=None, rng=None, beta: float = 1.0):
        """One call: the negative ELBO (a 0-d array) and every parameter's gradient.

        Returns ``(loss, grads)`` where ``grads`` maps each parameter name to
        its gradient (views into the flat ``self.params.grad``). Use
        ``loss.item()`` / ``float(loss)`` for a Python number.
        """
        loss, cache = self.forward(x, c, noise=noise, rng=rng, beta=beta)
        return loss.total, self.backward(cache)

    def loss(self, x, c=None, *, noise=None, rng=None, beta: float = 1.0) -> Loss:
        """The negative ELBO and its parts, without gradients."""
        return self.forward(x, c, noise=noise, rng=rng, beta=beta)[0]

    # ------------------------------------------------------------------ encode, decode, generate, score

    def encode(self, x, c=None):
        """The mean and log-variance of q(z|x): two (N, K) arrays."""
        x = self._check_x(x)
        return self._encode(x, self._check_c(c, x.shape[0], "x"))

    def _encode(self, x, c):
        out, _ = mlp_forward(self._with_condition(x, c), self.weights("encoder"), self.activation)
        mu, log_var_raw = split_head(out)
        log_var, _ = clamp_log_var_forward(log_var_raw)
        return mu.copy(), log_var

    def decoder_output(self, z, c=None):
        """The decoder's raw output for latent codes z (N, K): logits, or means (and log-variances)."""
        z = check_matrix("z", self.to_device(z), self.config.latent_dim, self.dtype)
        return self._decoder_output(z, self._check_c(c, z.shape[0], "z"))

    def _decoder_output(self, z, c):
        out, _ = mlp_forward(self._with_condition(z, c), self.weights("decoder"), self.activation)
        return out

    def decode(self, z, c=None):
        """The mean of p(x|z) for latent codes z (N, K): probabilities (Bernoulli) or means (Gaussian)."""
        return self.likelihood.mean(self.decoder_output(z, c), self.likelihood_params())

    def reconstruct(self, x, c=None):
        """Encode to the mean of q(z|x), then decode: E[x | z = mu(x)]."""
        x = self._check_x(x)
        c = self._check_c(c, x.shape[0], "x")
        mu, _ = self._encode(x, c)
        return self.likelihood.mean(self._decoder_output(mu, c), self.likelihood_params())

    def sample(self, n: int, c=None, *, rng=None, mean: bool = True):
        """Generate ``n`` new examples: z ~ N(0, I), then the mean of p(x|z) (or a draw, ``mean=False``).

        For a CVAE, ``c`` (n, C) says what to generate (e.g. one-hot labels).
        """
        n = check_int("n", n, 1)
        c = self._check_c(c, n, "the n samples")
        rng = self.check_rng(rng)
        mean = check_bool("mean", mean)
        z = rng.standard_normal((n, self.config.latent_dim), dtype=self.dtype)
        out = self._decoder_output(z, c)
        if mean:
            return self.likelihood.mean(out, self.likelihood_params())
        return self.likelihood.sample(out, self.likelihood_params(), rng)

    def active_units(self, x, c=None, threshold: float = 0.01, batch_size: int = 1024) -> ActiveUnits:
        r"""The active latent units on data ``x`` (N, D) (Burda et al., 2016):
        :math:`A_k = \operatorname{Cov}_x\big(E_{q(z|x)}[z_k]\big) = \operatorname{Var}_n(\mu_{nk}) > ` ``threshold``.

        A dimension whose posterior mean does not move with the data carries no information about it: the decoder
        ignores it (posterior collapse). The variance is over the N rows (divided by N). Returns
        :class:`ActiveUnits` ``(count, activity (K,), threshold)``, ``activity`` a float64 numpy array.
        """
        x = self._check_x(x)
        c = self._check_c(c, x.shape[0], "x")
        threshold = check_float("threshold", threshold, minimum=0.0)
        batch_size = check_int("batch_size", batch_size, 1)
        mu = np.concatenate([np.asarray(to_numpy(self._encode(x[i:i + batch_size],
                                                               None if c is None else c[i:i + batch_size])[0]),
                                        dtype=np.float64) for i in range(0, x.shape[0], batch_size)])
        activity = mu.var(axis=0)
        return ActiveUnits(int((activity > threshold).sum()), activity, threshold)

    def log_likelihood(self, x, k: int = 1000, c=None, *, rng=None, batch_size: int = 256):
        """Importance-weighted estimate of log p(x) per example, see :func:`minivae.scoring.log_likelihood`."""
        from .scoring import log_likelihood

        return log_likelihood(self, x, k=k, c=c, rng=rng, batch_size=batch_size)

    def elbo(self, x, c=None, *, rng=None, n_samples: int | None = None):
        """Per-example ELBO (N,) with the analytic KL and ``n_samples`` reconstruction samples."""
        x = self._check_x(x)
        c = self._check_c(c, x.shape[0], "x")
        S = self.config.n_samples if n_samples is None else check_int("n_samples", n_samples, 1)
        rng = self.check_rng(rng)
        mu, log_var = self._encode(x, c)
        noise = draw_noise(rng, S, x.shape[0], self.config.latent_dim, self.dtype)
        z, _ = reparameterize_forward(mu, log_var, noise)
        kl, _ = kl_forward(mu, log_var)
        log_px = self._log_px_given_z(x, z, c)  # (S, N)
        return log_px.mean(axis=0) - kl

    def log_px_given_z(self, x, z, c=None):
        """log p(x|z) for x (N, D) and z of shape (S, N, K): returns (S, N)."""
        x = self._check_x(x)
        z = check_array("z", self.to_device(z), ("S", x.shape[0], self.config.latent_dim), self.dtype)
        return self._log_px_given_z(x, z, self._check_c(c, x.shape[0], "x"))

    def _log_px_given_z(self, x, z, c):
        xp = get_array_module(z)
        S, N, K = z.shape
        c_rep = None if c is None else xp.broadcast_to(c, (S, *c.shape)).reshape(S * N, -1)
        out, _ = mlp_forward(self._with_condition(z.reshape(S * N, K), c_rep), self.weights("decoder"),
                             self.activation)
        nll, _ = self.likelihood.nll_forward(out.reshape(S, N, -1), x, self.likelihood_params())
        return -nll

    def __repr__(self):
        c = self.config
        kind = "CVAE" if self.conditional else "VAE"
        return (f"{kind}(data_dim={c.data_dim}, latent_dim={c.latent_dim}, hidden={c.hidden}, "
                f"activation={c.activation!r}, likelihood={c.likelihood!r}, n_samples={c.n_samples}"
                + (f", objective={c.objective!r}, k_train={c.k_train}" if c.objective != "elbo" else "")
                + (f", condition_dim={c.condition_dim}" if self.conditional else "")
                + f", dtype={self.dtype.name!r}" + (f", device={self.device!r}" if self.device != "cpu" else "")
                + f", parameters={self.params.size})")

    def to(self, device: str):
        """A copy of this model on ``device`` (``"cpu"``, ``"cuda"`` or ``"auto"``): the same parameters.

        Its generator is seeded afresh from the model's seed (a generator's
        state cannot move between NumPy and CuPy).
        """
        copy = build_model(self.config, dtype=self.dtype.name, seed=self.seed, device=device)
        copy.params.data[...] = to_device(self.params.data, copy.device)
        return copy


class CVAE(VAE):
    """A conditional VAE: every method takes the condition ``c`` (N, C), e.g. one-hot labels.

    Identical to :class:`VAE` with ``condition_dim > 0``; the encoder sees
    ``[x, c]`` and the decoder ``[z, c]`` (eq. ``cvae``).
    """

    def __init__(self, data_dim=None, condition_dim=None, latent_dim=2, hidden=(64,), **kwargs):
        config = kwargs.get("config")
        if config is None:
            if condition_dim is None:
                raise ValueError("condition_dim: expected a positive integer for a CVAE, got None")
            check_int("condition_dim", condition_dim, 1)
            super().__init__(data_dim, latent_dim, hidden, condition_dim=condition_dim, **kwargs)
        else:
            if not isinstance(config, VAEConfig):
                raise TypeError(f"config: expected a VAEConfig, got {type(config).__name__}")
            if config.condition_dim < 1:
                raise ValueError(f"config.condition_dim: expected >= 1 for a CVAE, got {config.condition_dim}")
            super().__init__(**kwargs)


def build_model(config: VAEConfig, dtype="float32", seed: int = 0, device: str = "cpu") -> VAE:
    """A :class:`VAE` or :class:`CVAE` (when ``config.condition_dim > 0``) from a config, on ``device``."""
    if not isinstance(config, VAEConfig):
        raise TypeError(f"config: expected a VAEConfig, got {type(config).__name__}")
    cls = CVAE if config.condition_dim > 0 else VAE
    return cls(config=config, dtype=dtype, seed=seed, device=device)
