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


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
