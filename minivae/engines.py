r"""Two engines train a model: the readable reference, and the fast twin the trainer runs by default.

``engine="reference"`` trains through the code the derivations walk through:
:meth:`VAE.forward <minivae.model.VAE.forward>` and :meth:`VAE.backward <minivae.model.VAE.backward>`
(``docs/derivations/elbo.md``, eq. ``elbo-bwd``), then the optimizer's update as its derivation page writes
it (:class:`~minivae.optim.ReferenceAdam`, eq. ``adam``; :class:`~minivae.optim.ReferenceSGD`, eq. ``sgd``).
Every intermediate is a new array, the whole batch goes through one thread, and a breakpoint in
``VAE.backward`` is reached from :func:`minivae.train.fit`.

``engine="fast"`` runs :class:`minivae.fast.FastStep` and the optimizers of :data:`minivae.optim.OPTIMIZERS`:
the same maths with reused buffers, activations in place, fused elementwise chains and a large batch split
over the cores. ``docs/engines.md`` lists what differs and the test that pins each difference;
``tests/test_engines.py`` pins the two engines' training step for step.

An importance-weighted objective (``objective="iwae"`` or ``"iwae-dreg"``, :mod:`minivae.iwae`) is computed by
the reference engine only: it is the default engine for such a model (:func:`default_engine`), and the fast
one is refused by name.
"""

from __future__ import annotations

from .fast import FastStep, StepTerms
from .iwae import check_objective
from .kl import kl_per_dim

#: The engines a :class:`~minivae.train.Trainer` can train with; the first is the default.
ENGINES = ("fast", "reference")


def check_engine(engine) -> str:
    """``engine`` itself, if it is one of :data:`ENGINES`; else a ValueError naming it."""
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    return engine


class Batch:
    """A minibatch for :class:`ReferenceStep`: ``x`` (N, D) and a CVAE's condition side by side in ``enc_in``.

    It has the fields of :class:`minivae.fast.Workspace` that the trainer fills (``enc_in``, ``x``, ``n``), so
    :meth:`minivae.train.Trainer.fit` gathers a minibatch into either engine's buffers alike.
    """

    def __init__(self, model, n: int):
        cfg, xp = model.config, model.params.xp
        self.n = n
        self.enc_in = xp.empty((n, cfg.data_dim + cfg.condition_dim), dtype=model.dtype)  # [x, c]
        self.x = self.enc_in[:, :cfg.data_dim]
        self.c = self.enc_in[:, cfg.data_dim:] if cfg.condition_dim else None


class ReferenceStep:
    """The forward and backward pass of training, as :meth:`VAE.loss_and_grads <minivae.model.VAE.loss_and_grads>`
    computes them: the reference engine's step.

    The interface of :class:`minivae.fast.FastStep`: :meth:`workspace` gives the buffers a batch is gathered
    into, a call runs the step on them and leaves the gradients in ``model.params.grad``.
    """

    def __init__(self, model):
        self.model = model
        self.terms = None  # StepTerms of the last step that computed the loss
        self._batches = {}

    def workspace(self, n: int) -> Batch:
        """The minibatch buffers for ``n`` examples, made on first use."""
        if n not in self._batches:
            self._batches[n] = Batch(self.model, n)
        return self._batches[n]

    def __call__(self, batch: Batch, rng, beta: float = 1.0, need_loss: bool = False):
        """One forward and backward pass on ``batch``; the noise is drawn from ``rng`` as the fast step draws it.

        Returns the loss (a 0-d array) when ``need_loss``, and sets ``self.terms``; else ``None``. The loss is
        always computed (the forward pass gives it), only not returned.
        """
        model = self.model
        loss, cache = model.forward(batch.x, batch.c, rng=rng, beta=beta)  # -ELBO (eq. neg-elbo) or -bound (iwae-loss)
        model.backward(cache)  # every parameter's gradient, into model.params.grad
        if not need_loss:
            return None
        mu, log_var = model.encode(batch.x, batch.c)  # q(z|x), for the KL per latent dimension in the history
        self.terms = StepTerms(loss.kl, loss.nll, kl_per_dim(mu, log_var).mean(axis=0))
        return loss.total


def default_engine(model) -> str:
    """The engine a trainer uses when none is named: the fast one for the ELBO, the reference for an
    importance-weighted objective (:mod:`minivae.iwae`), which only the reference computes."""
    return "fast" if model.config.objective == "elbo" else "reference"


def make_step(engine: str, model, kernels: str = "plain"):
    """The training step of ``engine``: a :class:`ReferenceStep` or a :class:`minivae.fast.FastStep`.

    ``kernels`` picks the fast step's elementwise operations; the reference has only array code, so it takes
    ``"plain"`` only. The fast step computes the ELBO only: a model whose ``config.objective`` is an
    importance-weighted bound trains with ``engine="reference"``, and ``"fast"`` is refused by name.
    """
    if check_engine(engine) == "fast":
        check_objective(model.config.objective, model.config.n_samples, model.config.k_train, engine)
        return FastStep(model, kernels)
    if kernels != "plain":
        raise ValueError(f"kernels: expected 'plain' with engine='reference' (fused kernels belong to the fast "
                         f"engine), got {kernels!r}")
    return ReferenceStep(model)
