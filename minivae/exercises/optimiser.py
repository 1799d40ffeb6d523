r"""The exercise on the optimiser: one Adam step, on cases that vary every hyper-parameter (beta1, beta2, eps, the
learning rate, the step number t) and take second moments near 0, where eps inside the square root shows.
"""

from __future__ import annotations

import numpy as np

from ..optim import Adam
from ..params import ParamBuffer
from .checker import Exercise, Mistake
from .pieces import uses, cases

# --------------------------------------------------------------------------- one Adam step


def _adam_inputs(rng, shape, t, lr, beta1, beta2, eps, tiny=False):
    grad = rng.normal(size=shape)
    v = rng.random(shape) * 0.05
    if tiny:  # second moments near 0: sqrt(v_hat) ~ 1e-9, far below eps, and sqrt(v_hat + eps) far above it
        grad, v = grad * 1e-9, v * 1e-18
    return {"theta": rng.normal(size=shape), "grad": grad, "m": rng.normal(0, 0.1, shape) * (1e-9 if tiny else 1),
            "v": v, "t": t, "lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps}


@uses(Adam.step)
def adam_answer(theta, grad, m, v, t, lr, beta1, beta2, eps):
    # minivae's Adam keeps the moments as decaying sums M = m / (1 - beta1), V = v / (1 - beta2) (eq. adam-sums)
    params = ParamBuffer({"theta": theta.shape}, np.float64)
    params.values["theta"][...] = theta
    params.grads["theta"][...] = grad
    adam = Adam(params, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    adam.load_state({"m": m.reshape(-1) / (1 - beta1), "v": v.reshape(-1) / (1 - beta2)}, t - 1)
    adam.step()
    return (params.values["theta"].copy(), adam.m.reshape(theta.shape) * (1 - beta1),
            adam.v.reshape(theta.shape) * (1 - beta2))


def _adam_wrong(theta, grad, m, v, t, lr, beta1, beta2, eps, correct=True, root=True, t_shift=0,
                eps_inside=False, defaults=False):
    if defaults:  # the hyper-parameters of the paper written in, the arguments ignored
        beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    tc = t + t_shift
    m_hat = m / (1 - beta1 ** tc) if correct else m
    v_hat = v / (1 - beta2 ** tc) if correct else v
    if eps_inside:
        return theta - lr * m_hat / np.sqrt(v_hat + eps), m, v
    return theta - lr * m_hat / ((np.sqrt(v_hat) if root else v_hat) + eps), m, v


ADAM = Exercise(
    name="adam", function="adam_step", summary="one Adam update: theta, m, v", page="derivations/adam.md",
    reference=adam_answer, returns=("theta", "m", "v"), may_change=("theta", "m", "v"),
    cases=cases(_adam_inputs, ("", dict(shape=(4, 3), t=3, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8), False),
                ("the first step", dict(shape=(1,), t=1, lr=0.01, beta1=0.5, beta2=0.8, eps=1e-3), False),
                ("", dict(shape=(2, 5), t=7, lr=0.3, beta1=0.7, beta2=0.95, eps=1e-6), False),
                ("second moments near 0", dict(shape=(3, 2), t=2, lr=0.05, beta1=0.8, beta2=0.99, eps=1e-8,
                                               tiny=True), False)),
    covers="beta1, beta2, eps, lr and t varied, second moments near 0",
    mistakes=(
        Mistake("hyper-parameters written in", "beta1, beta2 and eps are arguments: the update uses the ones "
                "passed, not 0.9, 0.999 and 1e-8", lambda **a: _adam_wrong(**a, defaults=True)),
        Mistake("eps inside the root", "eps belongs outside the square root: theta - lr m_hat / (sqrt(v_hat) + "
                "eps); sqrt(v_hat + eps) differs where v_hat is near 0", lambda **a: _adam_wrong(**a, eps_inside=True)),
        Mistake("no bias correction", "the bias correction is missing: m_hat = m / (1 - beta1^t), "
                "v_hat = v / (1 - beta2^t)", lambda **a: _adam_wrong(**a, correct=False)),
        Mistake("no square root", "the step divides by v_hat; Adam divides by sqrt(v_hat) + eps",
                lambda **a: _adam_wrong(**a, root=False)),
        Mistake("t - 1 in the correction", "the bias correction uses the previous step count: t is this update's "
                "number, 1 for the first", lambda **a: _adam_wrong(**a, t_shift=-1)),
    ),
    derivation=r"""
Not a gradient: the checker compares the new theta, m and v with minivae's Adam (eq. adam):
  m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
  m_hat = m / (1 - beta1^t),     v_hat = v / (1 - beta2^t)
  theta = theta - lr m_hat / (sqrt(v_hat) + eps)
minivae keeps M = m / (1 - beta1) and V = v / (1 - beta2) instead, which is the same update (eq. adam-sums).
""")
