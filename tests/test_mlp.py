"""The multilayer perceptron: every weight, bias and the input checked by finite differences, at every depth."""

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from conftest import GRAD_TOL
from minivae.gradcheck import numerical_vjp, relative_error
from minivae.layers import ACTIVATIONS, get_activation
from minivae.mlp import mlp_backward, mlp_forward

#: Pre-activations closer than this to a relu kink are skipped: a finite-difference step of 1e-6 moves them by
#: about 1e-6 times the input's scale, far less than this margin.
KINK_MARGIN = 1e-3

#: relative_error divides by each array's own largest gradient entry, while a central difference carries an absolute
#: rounding error of about eps * |f| / h ~ 1e-10 * |f| (up to 3e-10 measured here). A gradient below
#: TINY_GRADIENT * max(1, sum|out * dout|) (three leaky_relu slopes of 0.01 in a row, stacked sigmoid derivatives <= 1/4 through
#: width-1 layers) tests the step size, not the backward. A draw is skipped only when every failing array has BOTH its
#: analytic and its numerical gradient below that floor, so a backward wrong by more than the floor is never excused.
TINY_GRADIENT = 1e-3


def random_mlp(rng, n, widths):
    """Input x (n, widths[0]) and non-zero weights [(W, b), ...] for the given layer widths."""
    x = rng.normal(size=(n, widths[0]))
    weights = [(rng.normal(size=(i, o)) * 0.8, rng.normal(size=o) * 0.5) for i, o in zip(widths[:-1], widths[1:])]
    return x, weights


def flatten(weights):
    return [p for layer in weights for p in layer]


def unflatten(flat):
    return list(zip(flat[0::2], flat[1::2]))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 5),
       widths=st.lists(st.integers(1, 6), min_size=2, max_size=5))  # 0..3 hidden layers
def test_mlp_backward_matches_finite_differences(name, seed, n, widths):
    act = get_activation(name)
    rng = np.random.default_rng(seed)
    x, weights = random_mlp(rng, n, widths)
    out, cache = mlp_forward(x, weights, act)
    assert len(cache.affine) == len(weights) and len(cache.act) == len(weights) - 1
    if act.kink:  # ActCache.saved is the pre-activation for relu and leaky_relu
        assume(all(np.abs(c.saved).min() > KINK_MARGIN for c in cache.act))
    dout = rng.normal(size=out.shape)

    dx, grads = mlp_backward(dout, cache, act)
    analytic = [dx, *flatten(grads)]
    numeric = numerical_vjp(lambda x, *flat: mlp_forward(x, unflatten(flat), act)[0], [x, *flatten(weights)], dout)
    assert [a.shape for a in analytic] == [p.shape for p in [x, *flatten(weights)]]
    failing = [(a, n_) for a, n_ in zip(analytic, numeric, strict=True) if relative_error(a, n_) > GRAD_TOL]
    if failing:  # only then: were the failing gradients too small for central differences to resolve?
        floor = TINY_GRADIENT * max(1.0, float(np.abs(out * dout).sum()))
        assume(not all(max(np.abs(a).max(), np.abs(n_).max()) < floor for a, n_ in failing))
    assert not failing, [relative_error(a, n_) for a, n_ in failing]


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 5), i=st.integers(1, 6), o=st.integers(1, 6),
       name=st.sampled_from(sorted(ACTIVATIONS)))
def test_zero_hidden_layers_is_exactly_the_affine_map(seed, n, i, o, name):
    rng = np.random.default_rng(seed)
    x, [(W, b)] = random_mlp(rng, n, [i, o])
    out, cache = mlp_forward(x, [(W, b)], get_activation(name))
    np.testing.assert_array_equal(out, x @ W + b)  # no activation after the last (here only) layer
    assert cache.act == []


@pytest.mark.parametrize("widths", [[3, 2], [3, 4, 2], [3, 4, 5, 2]])
def test_need_dx_false_gives_no_input_gradient_and_the_same_parameter_gradients(rng, widths):
    act = get_activation("tanh")
    x, weights = random_mlp(rng, 4, widths)
    out, cache = mlp_forward(x, weights, act)
    dout = rng.normal(size=out.shape)
    dx, grads = mlp_backward(dout, cache, act, need_dx=False)
    dx_full, grads_full = mlp_backward(dout, cache, act)
    assert dx is None and dx_full is not None
    for (dW, db), (dW_full, db_full) in zip(grads, grads_full, strict=True):
        np.testing.assert_array_equal(dW, dW_full)
        np.testing.assert_array_equal(db, db_full)


def test_no_layers_is_refused(rng):
    with pytest.raises(ValueError, match=r"^weights:"):
        mlp_forward(rng.normal(size=(2, 3)), [], get_activation("relu"))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("widths", [[3, 2], [3, 4, 2], [3, 4, 5, 2]])
def test_buffers_receive_the_same_values_and_are_returned(rng, name, widths):
    act = get_activation(name)
    x, weights = random_mlp(rng, 4, widths)
    out, cache = mlp_forward(x, weights, act)
    dout = rng.normal(size=out.shape)
    dx, grads = mlp_backward(dout, cache, act)

    outs = [np.full((4, W.shape[1]), np.nan) for W, _ in weights]
    out_b, cache_b = mlp_forward(x, weights, act, outs=outs)
    assert out_b is outs[-1]
    np.testing.assert_allclose(out_b, out, rtol=1e-14, atol=1e-15)
    grad_out = [(np.full((4, W.shape[0]), np.nan), np.full_like(W, np.nan), np.full_like(b, np.nan))
                for W, b in weights]
    dx_b, grads_b = mlp_backward(dout, cache_b, act, out=grad_out)
    assert dx_b is grad_out[0][0]
    np.testing.assert_allclose(dx_b, dx, rtol=1e-12, atol=1e-14)
    for (dW_b, db_b), (dW, db), (_, dW_buf, db_buf) in zip(grads_b, grads, grad_out, strict=True):
        assert dW_b is dW_buf and db_b is db_buf
        np.testing.assert_allclose(dW_b, dW, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(db_b, db, rtol=1e-12, atol=1e-14)
