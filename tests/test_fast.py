"""The fast training step (minivae.fast) equals the readable reference (VAE.forward + VAE.backward)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import fast, ops
from minivae.ops import PlainOps
from minivae.layers import ACTIVATIONS
from minivae.likelihoods import LIKELIHOODS, bernoulli_nll_forward
from minivae.mlp import mlp_backward, mlp_forward
from minivae.model import VAE


@given(seed=st.integers(0, 2**31), activation=st.sampled_from(sorted(ACTIVATIONS)),
       likelihood=st.sampled_from(LIKELIHOODS), depth=st.integers(0, 2), n_samples=st.integers(1, 3),
       condition_dim=st.sampled_from([0, 3]), n=st.integers(1, 6), beta=st.floats(0.0, 2.0),
       need_loss=st.booleans())
def test_fast_step_matches_the_reference(seed, activation, likelihood, depth, n_samples, condition_dim, n, beta,
                                         need_loss):
    rng = np.random.default_rng(seed)
    model = VAE(5, 2, tuple(rng.integers(1, 7, depth)), activation=activation, likelihood=likelihood,
                n_samples=n_samples, condition_dim=condition_dim, dtype="float64")
    model.params.data[:] = rng.normal(0.0, 0.5, model.params.size)
    x = rng.random((n, 5))
    c = np.eye(3)[rng.integers(0, 3, n)] if condition_dim else None

    step = fast.FastStep(model)
    ws = step.workspace(n)
    ws.x[...] = x
    if c is not None:
        ws.enc_in[:, 5:] = c
    loss = step(ws, np.random.default_rng(seed + 1), beta=beta, need_loss=need_loss)
    fast_grad = model.params.grad.copy()
    model.params.grad[:] = np.nan  # the reference must overwrite every entry
    ref_loss, _ = model.loss_and_grads(x, c, rng=np.random.default_rng(seed + 1), beta=beta)

    np.testing.assert_allclose(fast_grad, model.params.grad, rtol=1e-10, atol=1e-12)
    if need_loss:
        assert float(loss) == pytest.approx(float(ref_loss), rel=1e-12)
    else:
        assert loss is None


@given(seed=st.integers(0, 2**31), n_samples=st.integers(1, 3), n=st.integers(1, 9), d=st.integers(1, 7),
       block=st.integers(1, 40), dtype=st.sampled_from(["float32", "float64"]))
def test_bernoulli_loss_in_row_blocks_is_the_reference_sum(seed, n_samples, n, d, block, dtype):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, (n_samples, n, d)).astype(dtype)
    x = rng.random((n, d)).astype(dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ops, "LOSS_BLOCK_ELEMENTS", {"cpu": block})  # from one row per block to all rows in one
        loss = PlainOps().bernoulli_grad(logits, x, 1.0, np.empty_like(logits), need_loss=True)
    expected = bernoulli_nll_forward(logits.astype(np.float64), x.astype(np.float64))[0].sum()
    assert loss.dtype == dtype
    assert float(loss) == pytest.approx(expected, rel=1e-12 if dtype == "float64" else 1e-5)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_in_place_activations_match_their_reference(name, rng):
    a = rng.normal(0.0, 3.0, (4, 7))
    a[a == 0] = 0.5
    expected, cache = ACTIVATIONS[name].forward(a.copy())
    b = rng.normal(size=a.shape[1])
    h = PlainOps().bias_act(a.copy() - b, b, name)  # (a - b) + b = a to rounding; the bias add is tested below
    np.testing.assert_allclose(h, expected, rtol=1e-12, atol=1e-14)
    dout = rng.normal(size=a.shape)
    np.testing.assert_allclose(PlainOps().act_backward(dout.copy(), h, name),
                               ACTIVATIONS[name].backward(dout, cache), rtol=1e-9, atol=1e-15)


def test_the_step_allocates_its_buffers_once():
    model = VAE(6, 2, (5,))
    step = fast.FastStep(model)
    ws = step.workspace(4)
    assert step.workspace(4) is ws and step.workspace(3) is not ws
    ws.x[...] = np.random.default_rng(0).random((4, 6))
    step(ws, np.random.default_rng(0))
    buffers = [id(a) for a in ws.enc + ws.dec + ws.denc + ws.ddec]
    step(ws, np.random.default_rng(1))
    assert buffers == [id(a) for a in ws.enc + ws.dec + ws.denc + ws.ddec]
    assert ws.dec[-1].dtype == np.float32  # no silent promotion to float64


@given(seed=st.integers(0, 2**31), likelihood=st.sampled_from(LIKELIHOODS), n_samples=st.integers(1, 3),
       n=st.integers(1, 6), latent=st.integers(1, 3), beta=st.floats(0.0, 2.0))
def test_the_step_reports_the_references_kl_and_reconstruction_terms(seed, likelihood, n_samples, n, latent, beta):
    rng = np.random.default_rng(seed)
    model = VAE(4, latent, (3,), likelihood=likelihood, n_samples=n_samples, dtype="float64")
    model.params.data[:] = rng.normal(0.0, 0.5, model.params.size)
    x = rng.random((n, 4))
    step = fast.FastStep(model)
    ws = step.workspace(n)
    ws.x[...] = x
    loss = step(ws, np.random.default_rng(seed + 1), beta=beta, need_loss=True)
    ref = model.loss(x, rng=np.random.default_rng(seed + 1), beta=beta)
    assert float(step.terms.kl) == pytest.approx(float(ref.kl), rel=1e-12, abs=1e-15)
    assert float(step.terms.nll) == pytest.approx(float(ref.nll), rel=1e-12)
    assert step.terms.kl_per_dim.shape == (latent,) and (step.terms.kl_per_dim >= 0).all()
    assert float(step.terms.kl_per_dim.sum()) == pytest.approx(float(ref.kl), rel=1e-12, abs=1e-15)
    assert float(loss) == pytest.approx(beta * float(ref.kl) + float(ref.nll), rel=1e-12)


@given(seed=st.integers(0, 2**31), activation=st.sampled_from(sorted(ACTIVATIONS)),
       likelihood=st.sampled_from(LIKELIHOODS), n_samples=st.integers(1, 3), condition_dim=st.sampled_from([0, 2]),
       blocks=st.integers(2, 3), n=st.integers(3, 11), beta=st.floats(0.0, 2.0), need_loss=st.booleans(),
       serial=st.booleans())
def test_a_step_split_over_threads_equals_the_whole_batch_step(seed, activation, likelihood, n_samples,
                                                               condition_dim, blocks, n, beta, need_loss, serial):
    rng = np.random.default_rng(seed)
    model = VAE(4, 2, (5,), activation=activation, likelihood=likelihood, n_samples=n_samples,
                condition_dim=condition_dim, dtype="float64")
    model.params.data[:] = rng.normal(0.0, 0.5, model.params.size)
    x = rng.random((n, 4))
    c = np.eye(2)[rng.integers(0, 2, n)] if condition_dim else None

    def run(threads, min_rows):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fast, "STEP_MIN_ROWS", min_rows)
            # serial: the BLAS has fewer threads at the step than when the blocks were cut (map_rows runs them in turn)
            patch.setattr(fast, "cpu_threads", iter([threads, 1 if serial else threads]).__next__)
            step = fast.FastStep(model)
            ws = step.workspace(n)
            ws.x[...] = x
            if c is not None:
                ws.enc_in[:, 4:] = c
            model.params.grad[:] = np.nan  # every block must write every entry it adds
            loss = step(ws, np.random.default_rng(seed + 1), beta=beta, need_loss=need_loss)
        return ws, loss, step.terms, model.params.grad.copy()

    ws, loss, terms, grad = run(blocks, 1)
    assert ws.blocks is not None and len(ws.blocks) == blocks
    assert sum(block.n for block in ws.blocks) == n
    _, whole_loss, whole_terms, whole_grad = run(1, 1)  # one thread: one block
    np.testing.assert_allclose(grad, whole_grad, rtol=1e-10, atol=1e-12)  # the sums over rows in another order
    ref_loss, _ = model.loss_and_grads(x, c, rng=np.random.default_rng(seed + 1), beta=beta)
    np.testing.assert_allclose(grad, model.params.grad, rtol=1e-10, atol=1e-12)
    if need_loss:
        assert float(loss) == pytest.approx(float(ref_loss), rel=1e-12)
        for split, whole in zip(terms, whole_terms):
            np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-15)
    else:
        assert loss is None and whole_loss is None


def test_a_batch_is_split_only_with_enough_rows_per_thread(monkeypatch):
    model = VAE(6, 2, (5,))
    monkeypatch.setattr(fast, "cpu_threads", lambda: 2)
    step = fast.FastStep(model)
    assert step.workspace(2 * fast.STEP_MIN_ROWS - 1).blocks is None
    ws = step.workspace(2 * fast.STEP_MIN_ROWS + 1)
    assert [block.n for block in ws.blocks] == [fast.STEP_MIN_ROWS, fast.STEP_MIN_ROWS + 1]
    assert np.shares_memory(ws.blocks[1].enc_in, ws.enc_in)  # the blocks read the batch in place
    assert np.shares_memory(ws.blocks[1].noise, ws.noise)
    assert not np.shares_memory(ws.blocks[1].grad, model.params.grad)  # the second block adds its own gradients
    assert ws.blocks[1].layers.ops is not step.ops  # and has scratch arrays of its own


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("widths", [[3, 2], [3, 4, 5, 2]])
def test_the_step_layers_run_the_reference_loop_to_the_same_values(rng, name, widths):
    act = ACTIVATIONS[name]
    x = rng.normal(size=(4, widths[0]))
    weights = [(rng.normal(size=(i, o)), rng.normal(size=o)) for i, o in zip(widths[:-1], widths[1:])]
    out, cache = mlp_forward(x, weights, act)
    dout = rng.normal(size=out.shape)
    dx, grads = mlp_backward(dout, cache, act)

    layers = fast.StepLayers(PlainOps(), {4: np.ones(4)})
    outs = [np.empty((4, W.shape[1])) for W, _ in weights]
    grad_out = [(np.empty((4, W.shape[0])), np.empty_like(W), np.empty_like(b)) for W, b in weights]
    fast_out, fast_cache = mlp_forward(x, weights, act, outs=outs, ops=layers)
    np.testing.assert_allclose(fast_out, out, rtol=1e-12, atol=1e-14)
    fast_dx, fast_grads = mlp_backward(dout.copy(), fast_cache, act, out=grad_out, ops=layers)
    assert fast_dx is grad_out[0][0] and all(g[0] is o[1] and g[1] is o[2] for g, o in zip(fast_grads, grad_out))
    for got, expected in zip([fast_dx, *[g for pair in fast_grads for g in pair]],
                             [dx, *[g for pair in grads for g in pair]], strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
