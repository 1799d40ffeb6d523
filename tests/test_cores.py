"""Rows split over the CPU's cores (minivae.cores): the blocks, the threads, the BLAS held to one thread."""

import multiprocessing
import os
import threading

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import cores


@given(n=st.integers(1, 2000), threads=st.integers(1, 16))
def test_row_blocks_cover_every_row_once_in_order(n, threads):
    blocks = cores.row_blocks(n, threads)
    assert blocks[0].start == 0 and blocks[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(blocks[:-1], blocks[1:]))
    assert len(blocks) == max(1, min(threads, n // cores.MIN_ROWS))
    if len(blocks) > 1:
        assert min(b.stop - b.start for b in blocks) >= cores.MIN_ROWS
        assert max(b.stop - b.start for b in blocks) - min(b.stop - b.start for b in blocks) <= 1


def test_map_rows_returns_the_blocks_results_in_order_from_distinct_threads():
    if cores._controller() is None:
        pytest.skip("threadpoolctl is not installed: every block runs on the calling thread")
    blocks = cores.row_blocks(300, 3)
    seen = []
    barrier = threading.Barrier(len(blocks), timeout=10)  # every block must be running at once to pass it

    def fn(rows):
        seen.append(threading.get_ident())
        barrier.wait()
        return rows.start

    assert cores.map_rows(fn, blocks) == [b.start for b in blocks]
    assert len(set(seen)) == len(blocks) and threading.get_ident() in seen


def test_map_rows_holds_the_blas_to_one_thread_and_gives_it_back():
    controller = cores._controller()
    if controller is None or not controller.lib_controllers:
        pytest.skip("no BLAS that threadpoolctl can hold")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):  # two to hold, whatever the count the test runs with
        before = [lib.num_threads for lib in controller.lib_controllers]
        inside = cores.map_rows(lambda rows: [lib.num_threads for lib in controller.lib_controllers],
                                cores.row_blocks(256, 2))
        assert all(counts == [1] * len(before) for counts in inside) and max(before) == 2
        assert [lib.num_threads for lib in controller.lib_controllers] == before


def test_the_usable_cores_are_the_affinity_or_else_every_core(monkeypatch):
    if hasattr(os, "sched_getaffinity"):
        assert cores.usable_cores() == len(os.sched_getaffinity(0))
        monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert cores.usable_cores() == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # the count is unknown
    assert cores.usable_cores() == 1


def test_the_threads_follow_the_blas_thread_count_of_the_moment():
    controller = cores._controller()
    if controller is None or not controller.lib_controllers:
        pytest.skip("no BLAS that threadpoolctl can hold")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        assert cores.cpu_threads() == 1 and len(cores.row_blocks(1000)) == 1
    with threadpool_limits(limits=2, user_api="blas"):
        assert cores.cpu_threads() == min(2, cores.usable_cores())


def test_an_exception_in_a_block_is_raised_after_every_block_has_ended():
    finished = []

    def fn(rows):
        if rows.start > 0:
            raise ValueError(f"block at {rows.start}")
        threading.Event().wait(0.05)
        finished.append(rows.start)
        return rows.start

    with pytest.raises(ValueError, match="block at 128"):
        cores.map_rows(fn, cores.row_blocks(256, 2))
    assert finished == [0]

    def first_fails(rows):
        if rows.start == 0:
            raise KeyError("first")
        threading.Event().wait(0.05)
        finished.append(rows.start)

    finished.clear()
    with pytest.raises(KeyError, match="first"):
        cores.map_rows(first_fails, cores.row_blocks(256, 2))
    assert finished == ([128] if cores._controller() is not None else [])


def test_without_threadpoolctl_everything_runs_on_the_calling_thread(monkeypatch):
    monkeypatch.setitem(cores._state, "controller", False)  # as _controller() records a failed import
    assert cores.cpu_threads() == 1 and cores.row_blocks(10_000) == [slice(0, 10_000)]
    idents = cores.map_rows(lambda rows: threading.get_ident(), [slice(0, 100), slice(100, 200)])
    assert idents == [threading.get_ident()] * 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_of_one_product_give_the_rows_of_the_whole_product_up_to_the_blas_rounding(dtype):
    # the BLAS may round a row differently for another number of rows or threads (float64 on some CPUs)
    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((300, 400)).astype(dtype), rng.standard_normal((400, 784)).astype(dtype)
    whole = a @ w
    parts = cores.map_rows(lambda rows: a[rows] @ w, cores.row_blocks(300, 2))
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=80 * np.finfo(dtype).eps * 20)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_gets_threads_of_its_own():
    if cores._controller() is None:
        pytest.skip("threadpoolctl is not installed: every block runs on the calling thread")
    blocks = cores.row_blocks(256, 2)
    cores.map_rows(lambda rows: rows.start, blocks)  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply_async(_split_in_a_child).get(timeout=60) == [0, 128]


def _split_in_a_child():
    return cores.map_rows(lambda rows: rows.start, cores.row_blocks(256, 2))


@given(n=st.integers(1, 5000), threads=st.integers(1, 8), min_rows=st.integers(1, 600))
def test_row_blocks_keep_at_least_min_rows_a_block(n, threads, min_rows):
    blocks = cores.row_blocks(n, threads, min_rows)
    assert len(blocks) == max(1, min(threads, n // min_rows))
    assert sum(b.stop - b.start for b in blocks) == n
    if len(blocks) > 1:
        assert min(b.stop - b.start for b in blocks) >= min_rows


def test_map_rows_runs_every_block_on_the_calling_thread_when_given_fewer_threads_than_blocks():
    seen = []

    def fn(rows):
        seen.append(threading.get_ident())
        return rows.start

    blocks = cores.row_blocks(300, 3)
    assert cores.map_rows(fn, blocks, threads=2) == [b.start for b in blocks]
    assert seen == [threading.get_ident()] * len(blocks)


# --------------------------------------------------------------------------- threads by size


def _blas_counts():
    controller = cores._controller()
    if controller is None or not controller.lib_controllers:
        pytest.skip("no BLAS that threadpoolctl can hold")
    return lambda: [lib.num_threads for lib in controller.lib_controllers]


def test_the_rule_gives_small_products_one_thread_and_large_ones_all():
    assert cores.blas_threads(1) == 1 and cores.blas_threads(cores.SMALL_PRODUCT - 1) == 1
    assert cores.blas_threads(cores.SMALL_PRODUCT) is None and cores.blas_threads(10 ** 12) is None


def test_held_for_lowers_the_count_for_small_products_only_and_gives_it_back():
    from threadpoolctl import threadpool_limits

    counts = _blas_counts()
    with threadpool_limits(limits=2, user_api="blas"):
        before = counts()
        with cores.held_for(cores.SMALL_PRODUCT - 1):
            assert counts() == [1] * len(before)
        assert counts() == before
        with cores.held_for(cores.SMALL_PRODUCT):
            assert counts() == before
        with pytest.raises(KeyError), cores.held_for(1):  # given back when the work raises, too
            raise KeyError("inside")
        assert counts() == before


def _threads_seen_by_steps(monkeypatch, counts):
    """Record the BLAS's thread counts at every training step (minivae.fast.FastStep.__call__)."""
    from minivae.fast import FastStep

    seen, step = [], FastStep.__call__

    def recording(self, *args, **kwargs):
        seen.append(tuple(counts()))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(FastStep, "__call__", recording)
    return seen


# one step of each: the digits' model (a small product) and an MNIST-shaped one (a large one)
SMALL = dict(data_dim=64, latent_dim=8, hidden=(128,), batch=64)
LARGE = dict(data_dim=784, latent_dim=20, hidden=(400,), batch=128)


def _fit_once(shape):
    from minivae import VAE, Trainer
    from minivae.fast import largest_product

    model = VAE(shape["data_dim"], shape["latent_dim"], shape["hidden"], seed=0)
    trainer = Trainer(model, batch_size=shape["batch"])
    assert (largest_product(model, shape["batch"]) < cores.SMALL_PRODUCT) == (shape is SMALL)
    x = (np.random.default_rng(0).random((shape["batch"], shape["data_dim"])) < 0.3).astype(np.float32)
    trainer.fit(x, epochs=1, progress=False)
    trainer.step(trainer.workspace(shape["batch"]))
    return trainer


def test_training_holds_small_products_to_one_thread_and_leaves_large_ones_alone(monkeypatch):
    from threadpoolctl import threadpool_limits

    counts = _blas_counts()
    with threadpool_limits(limits=2, user_api="blas"):
        before = tuple(counts())
        seen = _threads_seen_by_steps(monkeypatch, counts)
        _fit_once(SMALL)
        assert seen == [(1,) * len(before)] * 2 and tuple(counts()) == before  # fit's step, then step()
        seen.clear()
        _fit_once(LARGE)
        assert seen == [before] * 2 and tuple(counts()) == before


def test_the_users_limit_wins_nothing_raises_the_thread_count(monkeypatch):
    from threadpoolctl import threadpool_limits

    counts = _blas_counts()
    seen = _threads_seen_by_steps(monkeypatch, counts)
    with threadpool_limits(limits=1, user_api="blas"):
        for shape in (SMALL, LARGE):
            _fit_once(shape)
            assert counts() == [1] * len(counts())
    assert seen and all(set(s) == {1} for s in seen)


ONE_THREAD_CHILD = """
import numpy as np
from threadpoolctl import threadpool_info
from minivae import VAE, Trainer
from minivae.fast import FastStep
seen, step = [], FastStep.__call__
FastStep.__call__ = lambda self, *a, **k: (seen.append([i["num_threads"] for i in threadpool_info()
                                                        if i["user_api"] == "blas"]), step(self, *a, **k))[1]
trainer = Trainer(VAE(784, 20, (400,), seed=0), batch_size=128)  # a large product: the rule would use every thread
trainer.fit((np.random.default_rng(0).random((128, 784)) < 0.3).astype(np.float32), epochs=1, progress=False)
after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
print(len(seen), set(n for counts in seen for n in counts), set(after))
"""


def test_openblas_num_threads_1_keeps_every_step_on_one_thread():
    import subprocess
    import sys

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", ONE_THREAD_CHILD], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "{1}", "{1}"], done.stdout  # one step, every BLAS on one thread throughout
