"""The ring's exact density (minivae.ring_density) against independent oracles: Monte Carlo over z, a 2-D quadrature
over z that integrates the angle numerically (no Bessel function), and the total mass over the plane."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import integrate

from minivae.data import ring
from minivae.ring_density import ring_log_density, ring_nll

#: Monte Carlo with M draws of z: the estimate of p(x) has relative standard error sd/mean/sqrt(M); we allow
#: six standard errors (estimated from the same draws), so a correct density fails about once in 10^8 runs.
MC_DRAWS = 400_000
MC_SIGMAS = 6.0
#: scipy's adaptive quadrature is asked for 1e-10 relative accuracy; the log-densities then agree to ~1e-9.
QUAD_TOL = 1e-7


def f(z):
    """The ring's map x = z/10 + z/||z|| (minivae.data.ring without the noise)."""
    return z / 10.0 + z / np.linalg.norm(z, axis=-1, keepdims=True)


def point_near_the_ring(seed, noise):
    """A point drawn from the ring itself, or a bit off it (where the density is smaller but not negligible)."""
    rng = np.random.default_rng(seed)
    x = ring(1, noise, rng=rng)[0]
    return x * rng.uniform(0.9, 1.1)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31), noise=st.floats(0.05, 0.6))
def test_it_matches_a_monte_carlo_estimate_of_the_expectation_over_z(seed, noise):
    x = point_near_the_ring(seed, noise)
    z = np.random.default_rng(seed + 1).standard_normal((MC_DRAWS, 2))
    dens = np.exp(-((x - f(z)) ** 2).sum(axis=1) / (2 * noise**2)) / (2 * math.pi * noise**2)  # N(x; f(z), s^2 I)
    mean, se = dens.mean(), dens.std() / math.sqrt(MC_DRAWS)
    assert abs(np.exp(ring_log_density(x[None], noise)[0]) - mean) <= MC_SIGMAS * se


def density_by_2d_quadrature(x, noise):
    """p(x) = int int N(x; f(z), s^2 I) N(z; 0, I) dz over z in polar coordinates, the angle done numerically."""
    t, phi = np.hypot(*x), math.atan2(x[1], x[0])

    def integrand(theta, r):
        rho = r / 10.0 + 1.0
        d2 = t * t + rho * rho - 2.0 * t * rho * math.cos(theta - phi)  # ||x - f(z)||^2
        return r * math.exp(-r * r / 2) / (2 * math.pi) * math.exp(-d2 / (2 * noise**2)) / (2 * math.pi * noise**2)

    r_peak = max(10.0 * (t - 1.0), 0.0)  # where the Gaussian in r is centred, so quad does not step over it
    parts = [(0.0, r_peak), (r_peak, 12.0)] if r_peak > 0 else [(0.0, 12.0)]
    total = 0.0
    for lo, hi in parts:
        total += integrate.dblquad(integrand, lo, hi, phi - math.pi, phi + math.pi, epsabs=0, epsrel=1e-10)[0]
    return total


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), noise=st.floats(0.1, 1.0))
def test_it_matches_a_2d_quadrature_over_z(seed, noise):
    x = point_near_the_ring(seed, noise)
    expected = math.log(density_by_2d_quadrature(x, noise))
    assert ring_log_density(x[None], noise)[0] == pytest.approx(expected, abs=QUAD_TOL)


@pytest.mark.parametrize("noise", [0.01, 0.05, 0.3])
def test_it_integrates_to_one_over_the_plane(noise):
    # The density depends on ||x|| only: int p(x) dx = int_0^inf 2 pi t p(t) dt, done by adaptive quadrature.
    def radial(t):
        return 2 * math.pi * t * math.exp(ring_log_density(np.array([[t, 0.0]]), noise)[0])

    peaks = [1.0, 1.1, 1.2, 1.4]  # most of the mass lies just outside the unit circle
    mass = integrate.quad(radial, 0.0, 8.0, points=peaks, limit=400, epsabs=1e-12, epsrel=1e-10)[0]
    assert mass == pytest.approx(1.0, abs=1e-8)


def test_it_is_finite_far_from_the_ring_and_agrees_on_a_grid_with_a_dense_2d_sum():
    # Far points: a very negative log-density, not -inf. And a direct 2-D sum over x of p(x) on a grid.
    far = ring_log_density(np.array([[0.0, 0.0], [6.0, 0.0], [0.5, 0.0]]), 0.05)
    assert np.isfinite(far).all() and (far < -50).all()
    ticks = np.linspace(-2.2, 2.2, 221)
    grid = np.stack(np.meshgrid(ticks, ticks), axis=-1).reshape(-1, 2)
    mass = np.exp(ring_log_density(grid, 0.1)).sum() * (ticks[1] - ticks[0]) ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)  # the grid's own error: spacing 0.02 against noise 0.1


def test_it_is_rotation_invariant_and_the_mean_nll_is_its_negative_mean():
    x = ring(50, 0.05, rng=3)
    angle = 0.7
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    np.testing.assert_allclose(ring_log_density(x @ rotation.T, 0.05), ring_log_density(x, 0.05), rtol=1e-12)
    assert ring_nll(x, 0.05) == pytest.approx(-ring_log_density(x, 0.05).mean(), rel=1e-15)
    assert ring_log_density(x.astype(np.float32), 0.05).dtype == np.float64


@pytest.mark.parametrize("x, noise, error, name", [
    ([[1.0, 0.0]], 0.05, TypeError, "x"),
    (np.ones((3, 3)), 0.05, ValueError, "x"),
    (np.ones(2), 0.05, ValueError, "x"),
    (np.array([[np.nan, 0.0]]), 0.05, ValueError, "x"),
    (np.ones((2, 2), dtype=int), 0.05, TypeError, "x"),
    (np.ones((2, 2)), 0.0, ValueError, "noise"),
    (np.ones((2, 2)), -1.0, ValueError, "noise"),
    (np.ones((2, 2)), "0.1", TypeError, "noise"),
    (np.ones((2, 2)), math.inf, ValueError, "noise"),
])
def test_bad_input_names_the_argument(x, noise, error, name):
    with pytest.raises(error, match=rf"^{name}: expected"):
        ring_log_density(x, noise)


def test_the_package_exports_the_density_without_hiding_the_data_set():
    import minivae
    from minivae import data

    assert minivae.ring is data.ring and minivae.ring_log_density is ring_log_density
