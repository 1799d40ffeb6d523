r"""Rows of one computation split over the CPU's cores, for the passes NumPy runs on one.

NumPy runs every elementwise operation on one core; only its matrix products
use more, through the BLAS library's own threads. Where a computation is made
of independent rows (the importance samples of :mod:`minivae.scoring`: the
decoder's products, then the log-likelihood of every logit), :func:`map_rows`
gives each of ``T`` Python threads its own block of rows, products and
elementwise work alike, with the BLAS held to one thread meanwhile. NumPy releases the interpreter lock
inside its loops, so the threads run at once; the BLAS would otherwise keep a
thread spinning on the second core after each product, and a Python thread
started beside it gains nothing (docs/performance.md).

The split changes no formula: every row goes through the same operations
whichever thread runs it. The elementwise passes give the same numbers bit
for bit; a matrix product may not: the BLAS chooses its kernel and how it
blocks the sums from the number of rows and threads, and another blocking adds
a row's terms in another order, so a row can differ in its last bit between a
block and the whole batch, as between two thread counts without any split
(``tests/test_cores.py`` allows for it).
``T`` is the number of threads the BLAS would use at that moment (so
``OPENBLAS_NUM_THREADS=1`` or ``threadpoolctl.threadpool_limits(1)`` keeps
scoring on one thread), at most one per
:data:`MIN_ROWS` rows; without ``threadpoolctl``, or where it finds no BLAS it
can hold, everything runs on the calling thread.

The BLAS's own threads pay only for large products: waking a second thread
for a small one costs more than it saves, and after a product the thread
spins, waiting for the next, on a core that the elementwise passes or another
program could use. :func:`blas_threads` is the rule that picks the BLAS's
threads from the size of the products, and :func:`held_for` applies it to a
piece of work (a call of ``fit``, one training step).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

#: Fewest rows a thread is given: below this a block's matrix products are too small to run at full speed.
MIN_ROWS = 64

#: Multiply-adds of a piece of work's largest matrix product below which its products run on one BLAS thread: 2^22
#: (4.2 million). Measured with OpenBLAS on two cores (docs/performance.md, *Threads by size*), a training step's
#: best times on two threads against one: 1.15x one thread's time for the digits' model at batch 64 (0.5 million,
#: its largest product) and 1.11x for the ring's at batch 128, S = 4 (2.1 million); 0.88-1.13x at 2.1 million, 0.99x
#: for 784-400-20 at batch 8 (2.4 million), 0.83x for 256-512-16 at batch 64 (8.4 million). With the cores busy,
#: two threads' median step took 9 to 74 times one thread's up to 784-400-20 at batch 128 (38 million): a product
#: waits for the thread whose core another program holds. The MNIST-shaped step from batch 16 (5.0 million) keeps
#: every thread, as its quiet times ask.
SMALL_PRODUCT = 2**22

_lock = threading.Lock()
_state = {"controller": None, "pool": None, "workers": 0, "pid": None}


def _controller():
    """threadpoolctl's controller of the loaded BLAS libraries, made once; ``None`` without threadpoolctl."""
    with _lock:
        if _state["controller"] is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                _state["controller"] = False
            else:
                _state["controller"] = ThreadpoolController().select(user_api="blas")
        return _state["controller"] or None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system keeps one, else every core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_threads() -> int:
    """The threads :func:`map_rows` may use now: the BLAS's own thread count at this moment (so
    ``OPENBLAS_NUM_THREADS`` or ``threadpoolctl.threadpool_limits`` set it), at most the cores this process may
    run on; 1 without ``threadpoolctl`` or a BLAS it can hold."""
    controller = _controller()
    if controller is None or not controller.lib_controllers:
        return 1
    return max(1, min(min(lib.num_threads for lib in controller.lib_controllers), usable_cores()))


def blas_threads(multiply_adds: int) -> int | None:
    """The BLAS threads for work whose largest matrix product takes ``multiply_adds`` multiply-adds (rows x fan-in x
    fan-out): 1 below :data:`SMALL_PRODUCT`, else ``None``, as many as the BLAS has."""
    return 1 if multiply_adds < SMALL_PRODUCT else None


def held_for(multiply_adds: int):
    """A context that holds the BLAS to :func:`blas_threads` threads while its ``with`` block runs, then gives back
    its count.

    It only ever lowers the count, never raises it: the user's own setting
    (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, a ``threadpoolctl.threadpool_limits`` block) stays the upper
    bound. Where the rule keeps every thread (a large product) it does nothing, and costs under a microsecond; where
    it lowers the count, a few microseconds (threadpoolctl's own ``limit`` context costs about 50).
    """
    threads = blas_threads(multiply_adds)
    controller = None if threads is None else _controller()
    if controller is None:
        return nullcontext()
    return _holding(controller.lib_controllers, threads)


@contextmanager
def _holding(libs, threads: int):
    """Each library in ``libs`` held to at most ``threads`` threads while the ``with`` block runs."""
    held = [(lib, lib.num_threads) for lib in libs if lib.num_threads > threads]
    for lib, _ in held:
        lib.set_num_threads(threads)
    try:
        yield
    finally:
        for lib, count in held:
            lib.set_num_threads(count)


def row_blocks(n: int, threads: int | None = None, min_rows: int = MIN_ROWS) -> list[slice]:
    """``n`` rows as at most ``threads`` contiguous blocks of at least ``min_rows`` rows (one if ``n`` is small)."""
    threads = cpu_threads() if threads is None else threads
    count = max(1, min(threads, n // min_rows))
    bounds = [round(i * n / count) for i in range(count + 1)]
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def map_rows(fn, blocks, threads: int | None = None) -> list:
    """``[fn(block) for block in blocks]``, one block per thread with the BLAS on one thread each.

    The calling thread runs the first block. An exception in any block is
    raised here after every block has ended (no thread is left writing).
    With ``threads`` fewer than the blocks (the BLAS held to fewer threads
    since the blocks were cut), every block runs on the calling thread, one
    after another: the same results, since no block depends on where it runs.
    """
    controller = _controller()
    if len(blocks) == 1 or controller is None or (threads is not None and threads < len(blocks)):
        return [fn(block) for block in blocks]
    with _lock:
        # a new pool after a fork too: the child inherits the pool but not its threads
        if _state["pool"] is None or _state["workers"] < len(blocks) - 1 or _state["pid"] != os.getpid():
            _state["pool"] = ThreadPoolExecutor(max_workers=len(blocks) - 1, thread_name_prefix="minivae-rows")
            _state["workers"], _state["pid"] = len(blocks) - 1, os.getpid()
        pool = _state["pool"]
    with controller.limit(limits=1):
        futures = [pool.submit(fn, block) for block in blocks[1:]]
        try:
            first = fn(blocks[0])
        finally:
            for future in futures:  # wait for every block, even when the first one failed
                future.exception()
    return [first, *(future.result() for future in futures)]  # result() re-raises a block's exception
