r"""The exercises on the network's pieces: the affine layer, tanh and the two-layer MLP; and what every exercise's
cases are built with. For each exercise: its cases, the forward whose gradient is asked, minivae's own answer,
and the typical wrong answers a learner writes, each with the mistake it makes.

Every answer function has the learner's signature (the stub's in ``minivae/exercises/stubs/``) and is built from the
library's own forward and backward functions, so the checker compares the learner with the code the model runs.
The cases differ in every size (a batch of one, non-square weights, S > 1) and seed, so that hard-coded shapes,
a transposed product or a missing 1/S cannot pass on all of them, and include each exercise's numerical extremes.
"""

from __future__ import annotations

import numpy as np

from ..layers import affine_backward, affine_forward, get_activation, tanh_backward, tanh_forward
from ..mlp import mlp_backward, mlp_forward
from .checker import Case, Exercise, Mistake

TANH = get_activation("tanh")


def uses(*functions):
    """Mark an answer function with the library functions it calls: ``--answer`` prints their source too."""
    def mark(answer):
        answer.library = functions
        return answer
    return mark


def cases(build, *specs):
    """The cases of an exercise, drawn once: ``build(rng, **sizes)`` for each ``(label, sizes, fd)`` in ``specs``,
    the seed the case's number. Labels say what each case is about; a size's letter is the stub's."""
    drawn = []

    def get():
        if not drawn:
            for seed, (label, sizes, fd) in enumerate(specs):
                said = ", ".join(f"{k}={v}" for k, v in sizes.items() if k != "extreme")
                drawn.append(Case(f"{label}: {said}, seed {seed}" if label else f"{said}, seed {seed}",
                                  build(np.random.default_rng(seed), **sizes), fd))
        return drawn
    return get


def pairs(prefix, grads):
    """``{"dW1": ..., "db1": ..., ...}``: a list of layer gradients by the stub's names."""
    out = {}
    for layer, (dW, db) in enumerate(grads):
        out[f"{prefix}dW{layer + 1}"] = dW
        out[f"{prefix}db{layer + 1}"] = db
    return out


def layer_names(prefix, n_layers):
    return tuple((f"{prefix}dW{layer + 1}", f"{prefix}db{layer + 1}") for layer in range(n_layers))


def layers(rng, sizes):
    return [(rng.normal(0, 0.6, (a, b)), rng.normal(0, 0.3, b)) for a, b in zip(sizes[:-1], sizes[1:])]

# --------------------------------------------------------------------------- affine


def _affine_inputs(rng, N, I, O):
    return {"dout": rng.normal(size=(N, O)), "x": rng.normal(size=(N, I)), "W": rng.normal(size=(I, O)),
            "b": rng.normal(size=O)}


@uses(affine_forward, affine_backward)
def affine_answer(dout, x, W, b):
    _, cache = affine_forward(x, W, b)
    return affine_backward(dout, cache)


AFFINE = Exercise(
    name="affine", function="affine_backward", summary="Y = XW + b: dX, dW, db", page="derivations/layers.md",
    cases=cases(_affine_inputs, ("", dict(N=4, I=3, O=5), True), ("a batch of one", dict(N=1, I=2, O=3), False),
                ("more inputs than outputs", dict(N=6, I=5, O=2), False),
                ("one input", dict(N=3, I=1, O=4), False)),
    covers="a batch of one, non-square W", reference=affine_answer, returns=("dx", "dW", "db"),
    loss=lambda a: float(np.sum((a["x"] @ a["W"] + a["b"]) * a["dout"])),
    wrt=lambda a: {"dx": a["x"], "dW": a["W"], "db": a["b"]},
    factors=lambda a: {"N": float(len(a["x"]))},
    mistakes=(
        Mistake("dW transposed", "dW = dY^T X is a transposed product: dW = X^T dY has W's shape (I, O)",
                lambda dout, x, W, b: (dout @ W.T, dout.T @ x, dout.sum(axis=0))),
        Mistake("db averaged", "db averaged over the batch: b is added to every row, so its gradient is the sum "
                "over n, with no 1/N", lambda dout, x, W, b: (dout @ W.T, x.T @ dout, dout.mean(axis=0))),
        Mistake("dW sign", "a sign: dW = X^T dY, not -X^T dY",
                lambda dout, x, W, b: (dout @ W.T, -(x.T @ dout), dout.sum(axis=0))),
    ),
    derivation=r"""
Y_nj = sum_i X_ni W_ij + b_j, so with dY = dL/dY (eq. affine-bwd):
  dX = dY W^T      (N, I)
  dW = X^T dY      (I, O)
  db = sum_n dY_n  (O,)   b is broadcast over the batch, so its gradients add up.
""")

# --------------------------------------------------------------------------- activation


def _tanh_inputs(rng, N, O, scale=1.0):
    return {"dout": rng.normal(size=(N, O)), "x": rng.normal(0, scale, size=(N, O))}


@uses(tanh_forward, tanh_backward)
def tanh_answer(dout, x):
    _, cache = tanh_forward(x)
    return tanh_backward(dout, cache)


ACTIVATION = Exercise(
    name="activation", function="tanh_backward", summary="y = tanh(x): dx", page="derivations/layers.md",
    cases=cases(_tanh_inputs, ("", dict(N=4, O=5), True), ("a batch of one", dict(N=1, O=3), False),
                ("saturated inputs", dict(N=3, O=2, scale=20.0), False)),
    covers="a batch of one, |x| up to ~40", reference=tanh_answer, returns="dx",
    loss=lambda a: float(np.sum(np.tanh(a["x"]) * a["dout"])), wrt=lambda a: {"dx": a["x"]},
    mistakes=(
        Mistake("derivative at the input", "tanh'(x) = 1 - tanh(x)^2 = 1 - y^2 with y the OUTPUT; 1 - x^2 uses "
                "the input", lambda dout, x: dout * (1.0 - x * x)),
        Mistake("square missing", "tanh'(x) = 1 - tanh(x)^2: the square is missing",
                lambda dout, x: dout * (1.0 - np.tanh(x))),
        Mistake("upstream missing", "the chain rule: dx = dout * tanh'(x), the upstream gradient dout is missing",
                lambda dout, x: 1.0 - np.tanh(x) ** 2),
    ),
    derivation=r"""
y = tanh(x) elementwise, dy/dx = 1 - tanh(x)^2 = 1 - y^2 (eq. tanh, eq. act-from-output):
  dx = dout * (1 - y^2)   the backward keeps y from the forward, so it needs no second tanh.
""")

# --------------------------------------------------------------------------- the MLP


def _mlp_inputs(rng, N, I, H, O):
    return {"dout": rng.normal(size=(N, O)), "x": rng.normal(size=(N, I)), "weights": layers(rng, (I, H, O))}


@uses(mlp_forward, mlp_backward)
def mlp_answer(dout, x, weights):
    _, cache = mlp_forward(x, weights, TANH)
    return mlp_backward(dout, cache, TANH)


def _mlp_wrong(dout, x, weights, transpose=False, at_input=False, last_act=False):
    (W1, b1), (W2, b2) = weights
    a1 = x @ W1 + b1
    h1 = np.tanh(a1)
    da2 = dout * (1 - np.tanh(h1 @ W2 + b2) ** 2) if last_act else dout
    dW2 = da2.T @ h1 if transpose else h1.T @ da2
    dh1 = da2 @ W2.T
    da1 = dh1 * (1 - (a1 if at_input else h1) ** 2)
    return da1 @ W1.T, [(x.T @ da1, da1.sum(0)), (dW2, da2.sum(0))]


MLP = Exercise(
    name="mlp", function="mlp_backward", summary="two affine layers with tanh between: dx and every dW, db",
    page="derivations/layers.md", reference=mlp_answer, returns=("dx", layer_names("", 2)),
    cases=cases(_mlp_inputs, ("", dict(N=4, I=3, H=4, O=5), True),
                ("a batch of one", dict(N=1, I=2, H=3, O=2), False), ("", dict(N=5, I=4, H=2, O=3), False)),
    covers="a batch of one, non-square weights",
    loss=lambda a: float(np.sum(mlp_forward(a["x"], a["weights"], TANH)[0] * a["dout"])),
    wrt=lambda a: {"dx": a["x"], **pairs("", a["weights"])},
    factors=lambda a: {"N": float(len(a["x"]))},
    mistakes=(
        Mistake("dW transposed", "a transposed product: dW = H^T dA has W's shape; dA^T H is its transpose",
                lambda dout, x, weights: _mlp_wrong(dout, x, weights, transpose=True)),
        Mistake("derivative at the pre-activation", "tanh'(a) = 1 - h^2 with h = tanh(a) the layer's OUTPUT; "
                "1 - a^2 uses its input", lambda dout, x, weights: _mlp_wrong(dout, x, weights, at_input=True)),
        Mistake("activation after the last layer", "the last layer has no activation (out = a_L, unconstrained): "
                "its gradient is dout itself", lambda dout, x, weights: _mlp_wrong(dout, x, weights, last_act=True)),
    ),
    derivation=r"""
h_0 = x, a_l = h_{l-1} W_l + b_l, h_l = tanh(a_l) for l < L, out = a_L. Backward from dA_L = dout (eq. mlp-bwd):
  dW_l = h_{l-1}^T dA_l,  db_l = sum_n dA_l,  dh_{l-1} = dA_l W_l^T,  dA_{l-1} = dh_{l-1} * (1 - h_{l-1}^2)
and dx = dh_0.
""")
