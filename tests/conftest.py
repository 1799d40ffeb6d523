"""Shared test settings.

Gradient checks are exact-arithmetic tests in float64; hypothesis draws the
shapes, seeds and options. ``HYPOTHESIS_PROFILE=thorough`` runs many more examples.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minivae.gradcheck import TOLERANCE

settings.register_profile("default", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: Largest relative error a float64 backward may show against central differences: the package's one tolerance.
GRAD_TOL = TOLERANCE


#: The suite's workers (pytest-xdist, setup.cfg) share the CPU's cores: each worker's BLAS gets its share of them,
#: as minivae.cores gives a small product one thread, so that no worker's BLAS threads spin on a core another
#: worker is computing on. Tests that need more threads ask for them (threadpoolctl.threadpool_limits); processes the
#: tests start get the BLAS's own default, as on a user's machine.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    from threadpoolctl import threadpool_limits

    from minivae.cores import usable_cores

    threadpool_limits(limits=max(1, usable_cores() // WORKERS), user_api="blas")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


#: The test files that take longest, in the order the workers start them (setup.cfg runs whole files to a worker,
#: in collection order: --dist loadfile --no-loadscope-reorder). Each worker holds the file it runs and the next one
#: queued, so the third file, queued behind the docs build, is a short one. The other files follow in name order.
FIRST = ("test_docs.py", "test_notebooks.py", "test_images.py", "test_bench_cpu.py", "test_bench_time_to_result.py",
         "test_bench_engines.py", "test_bench_iwae_digits.py", "test_device_discipline.py", "test_signals.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # a stable sort: name order after FIRST
