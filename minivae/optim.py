r"""Optimizers, written by hand, acting on the one flat parameter buffer.

Both update every parameter of the model with a few whole-buffer array
operations (no loop over layers). Derivations: ``docs/derivations/adam.md``.
:class:`SGD` and :class:`Adam` update the buffers in place, in as few passes as
the maths allows (the fast engine's); :class:`ReferenceSGD` and
:class:`ReferenceAdam` compute the same updates line by line as the
derivations write them, every result a new array (the reference engine's, see
:mod:`minivae.engines`).
"""

from __future__ import annotations

from .engines import check_engine
from .ops import PlainOps
from .params import ParamBuffer
from .validate import check_float


class SGD:
    r"""Stochastic gradient descent with (heavy-ball) momentum (eq. ``sgd``).

    .. math::  v \leftarrow \mu v + g,\qquad \theta \leftarrow \theta - \eta v
    """

    name = "sgd"

    def __init__(self, params: ParamBuffer, lr: float = 0.01, momentum: float = 0.9, *, ops=None):
        self.params = params  # (``ops`` is accepted for symmetry with Adam: SGD is two passes, with no kernel of its own)
        self.lr = check_float("lr", lr, minimum=0.0, strict_minimum=True)
        self.momentum = check_float("momentum", momentum, minimum=0.0, maximum=1.0)
        self.velocity = params.xp.zeros_like(params.data)
        self.t = 0

    def step(self):
        v, g = self.velocity, self.params.grad
        v *= self.momentum  # v = momentum * v + g
        v += g
        self.params.data -= self.lr * v  # theta = theta - lr * v  (one temporary: lr * v)
        self.t += 1

    def hyperparameters(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum}

    def state(self) -> dict:
        return {"velocity": self.velocity}

    def load_state(self, arrays: dict, t: int):
        self.velocity[...] = arrays["velocity"]
        self.t = t


class Adam:
    r"""Adam (Kingma & Ba 2015; eq. ``adam``).

    .. math::
        m &\leftarrow \beta_1 m + (1-\beta_1) g,\qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        \hat m &= m / (1-\beta_1^t),\qquad \hat v = v / (1-\beta_2^t) \\
        \theta &\leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)

    The buffers ``m`` and ``v`` hold the moments as decaying sums, :math:`M = m / (1-\beta_1)` and
    :math:`V = v / (1-\beta_2)`, which update in fewer passes (eq. ``adam-sums``); so do
    :meth:`state` and :meth:`load_state`, which keeps a resumed run exact.
    """

    name = "adam"

    def __init__(self, params: ParamBuffer, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, *, ops=None):
        self.params = params
        self.ops = PlainOps() if ops is None else ops  # the update itself: array code or one CUDA kernel
        self.lr = check_float("lr", lr, minimum=0.0, strict_minimum=True)
        # beta < 1: at beta = 1 the average never forgets and its bias correction 1 - beta^t is 0.
        self.beta1 = check_float("beta1", beta1, minimum=0.0, maximum=1.0, strict_maximum=True)
        self.beta2 = check_float("beta2", beta2, minimum=0.0, maximum=1.0, strict_maximum=True)
        self.eps = check_float("eps", eps, minimum=0.0, strict_minimum=True)
        xp = params.xp
        self.m = xp.zeros_like(params.data)  # M = sum_j beta1^(t-j) g_j = m / (1 - beta1): first moment, as a sum
        self.v = xp.zeros_like(params.data)  # V = sum_j beta2^(t-j) g_j^2 = v / (1 - beta2): second moment, as a sum
        self.scratch = xp.empty_like(params.data)  # the update's one temporary, reused every step
        self.t = 0

    def step(self):
        r"""One update (:meth:`minivae.ops.PlainOps.adam`: 10 passes over the buffer, no allocation).

        With the moments kept as sums, :math:`\hat m = M / S_1` and :math:`\hat v = V / S_2` where
        :math:`S_i = (1-\beta_i^t)/(1-\beta_i)` is the sum of the weights, and the bias corrections fold into two
        scalars (eq. ``adam-sums``): :math:`\eta\,\hat m / (\sqrt{\hat v} + \epsilon) = \eta_t\, M / (\sqrt V + \epsilon_t)`
        with :math:`\eta_t = \eta\sqrt{S_2}/S_1` and :math:`\epsilon_t = \epsilon\sqrt{S_2}`.
        """
        self.t += 1
        s1 = (1.0 - self.beta1 ** self.t) / (1.0 - self.beta1)  # sum of the weights beta1^(t-j), j = 1..t
        root_s2 = ((1.0 - self.beta2 ** self.t) / (1.0 - self.beta2)) ** 0.5
        self.ops.adam(self.params.data, self.params.grad, self.m, self.v, self.scratch, self.beta1, self.beta2,
                      self.lr * root_s2 / s1, self.eps * root_s2)

    def hyperparameters(self) -> dict:
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def state(self) -> dict:
        """The moment buffers: the decaying sums :math:`M` (``"m"``) and :math:`V` (``"v"``) of eq. ``adam-sums``."""
        return {"m": self.m, "v": self.v}

    def load_state(self, arrays: dict, t: int):
        """Restore the sums :math:`M`, :math:`V` (as :meth:`state` gives them) and the step count."""
        self.m[...] = arrays["m"]
        self.v[...] = arrays["v"]
        self.t = t


class ReferenceSGD(SGD):
    r"""Eq. ``sgd`` as written, for the reference engine (:mod:`minivae.engines`): every result a new array.

    .. math::  v \leftarrow \mu v + g,\qquad \theta \leftarrow \theta - \eta v
    """

    def step(self):
        g = self.params.grad
        self.velocity = self.momentum * self.velocity + g  # v = mu v + g
        theta = self.params.data - self.lr * self.velocity  # theta - eta v
        self.params.data[...] = theta  # the new parameters, where the model's named views read them
        self.t += 1


class ReferenceAdam(Adam):
    r"""Eq. ``adam`` as written, for the reference engine (:mod:`minivae.engines`): every result a new array.

    ``m`` and ``v`` are the moving averages of eq. ``adam``, bias-corrected into :math:`\hat m` and
    :math:`\hat v` at every step. :meth:`state` and :meth:`load_state` speak in the decaying sums
    :math:`M = m / (1-\beta_1)` and :math:`V = v / (1-\beta_2)` of eq. ``adam-sums``, as :class:`Adam`'s do, so
    a checkpoint written by either resumes with the other.
    """

    def __init__(self, params: ParamBuffer, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, *, ops=None):
        super().__init__(params, lr, beta1, beta2, eps, ops=ops)
        self.scratch = None  # the update below makes its temporaries as it goes

    def step(self):
        g = self.params.grad
        self.t += 1
        self.m = self.beta1 * self.m + (1.0 - self.beta1) * g  # m = beta1 m + (1 - beta1) g
        self.v = self.beta2 * self.v + (1.0 - self.beta2) * g ** 2  # v = beta2 v + (1 - beta2) g^2
        m_hat = self.m / (1.0 - self.beta1 ** self.t)  # bias correction
        v_hat = self.v / (1.0 - self.beta2 ** self.t)
        theta = self.params.data - self.lr * m_hat / (self.params.xp.sqrt(v_hat) + self.eps)
        self.params.data[...] = theta  # the new parameters, where the model's named views read them

    def state(self) -> dict:
        """The moments as the decaying sums :math:`M` (``"m"``) and :math:`V` (``"v"``) of eq. ``adam-sums``."""
        return {"m": self.m / (1.0 - self.beta1), "v": self.v / (1.0 - self.beta2)}

    def load_state(self, arrays: dict, t: int):
        """Restore the averages from the sums :math:`M`, :math:`V` (as :meth:`state` gives them) and the step count."""
        self.m = (1.0 - self.beta1) * self.params.xp.asarray(arrays["m"], dtype=self.params.dtype)
        self.v = (1.0 - self.beta2) * self.params.xp.asarray(arrays["v"], dtype=self.params.dtype)
        self.t = t


#: The fast engine's optimizers (few passes over the buffer, no allocation), by name.
OPTIMIZERS = {"sgd": SGD, "adam": Adam}
#: The reference engine's: the same updates, written as their derivation page writes them.
REFERENCE_OPTIMIZERS = {"sgd": ReferenceSGD, "adam": ReferenceAdam}


def make_optimizer(name: str, params: ParamBuffer, engine: str = "fast", **hyperparameters):
    """``make_optimizer("adam", model.params, lr=1e-3)``; ``engine="reference"`` gives the reference's update."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got {name!r}")
    optimizers = OPTIMIZERS if check_engine(engine) == "fast" else REFERENCE_OPTIMIZERS
    return optimizers[name](params, **hyperparameters)
