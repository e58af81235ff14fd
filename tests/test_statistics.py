"""Closed forms under ``ebm.sample``: tolerances from the Monte-Carlo error, fixed seeds.

Every check is |estimate − exact| < 5 · MCSE, with MCSE = sd / sqrt(ESS) from ArviZ and a
floor on the ESS (``_helpers``). The energies share their structure with test_sample.py, so
the samplers compile once; each test samples two sets of values through the same compiled
sampler where it can.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from _helpers import (
    K_SIGMA,
    RUN,
    assert_converged,
    assert_expectation,
    assert_moments,
    conditional_xy,
    correlated,
    gamma_times_exp,
    poe_exact,
    product_of_experts,
)
from jax.scipy.special import digamma
from jax.scipy.stats import norm

import composable_ebm as ebm
from composable_ebm.infer._sample import TRACE_COUNT

pytestmark = pytest.mark.slow

POE_CASES = [
    (
        np.array([1.0, 0.0]),
        np.eye(2),
        np.array([-1.0, 2.0]),
        np.array([[2.0, 0.5], [0.5, 1.0]]),
    ),
    (
        np.array([3.0, 1.0]),
        2.0 * np.eye(2),
        np.array([0.0, 0.0]),
        np.diag([1.0, 3.0]),
    ),
]


@pytest.mark.x64
def test_product_of_gaussian_experts():
    """Precisions add; the mean is the precision-weighted mean."""
    n = None
    for i, case in enumerate(POE_CASES):
        E = product_of_experts(*(jnp.asarray(v, jnp.float32) for v in case))
        s = ebm.sample(E, jax.random.key(1 + 3 * i), **RUN)
        n = TRACE_COUNT["sample"] if n is None else n
        assert_converged(s)
        mean, cov = poe_exact(*case)
        assert_moments(s.draws["x"], mean, cov, f"product of experts {i}")
    assert TRACE_COUNT["sample"] == n  # the second case reused the compiled sampler


CX = np.array([[1.0, 0.6], [0.6, 2.0]])
MUX, MUY, VY = np.array([1.0, -1.0]), 2.0, 0.5


@pytest.mark.parametrize(("c", "t"), [(4.0, 3.0), (0.5, 0.25)])
def test_weighted_and_tempered_gaussians(c, t):
    """c·E scales the covariance by 1/c; E/T scales it by T."""
    E = c * ebm.Gaussian("x", MUX, cov=CX) + ebm.Gaussian("y", MUY, cov=VY) / t
    s = ebm.sample(E, jax.random.key(11), **RUN)
    assert_converged(s)
    assert_moments(s.draws["x"], MUX, CX / c, f"x under weight {c}")
    assert_moments(s.draws["y"][..., None], MUY, VY * t, f"y at temperature {t}")


@pytest.mark.parametrize("y", [1.5, -2.0])
def test_conditional_of_correlated_gaussian(y):
    s = ebm.sample(correlated(y), jax.random.key(21), **RUN)
    assert list(s.draws) == ["x"]
    assert_converged(s)
    m, v = conditional_xy(y)
    assert_moments(s.draws["x"][..., None], m, v, f"x | y={y}")


@pytest.mark.x64
@pytest.mark.parametrize(("a", "b", "c"), [(3.0, 2.0, 1.5), (5.0, 1.0, 0.5)])
def test_gamma_times_exponential_is_gamma(a, b, c):
    """Gamma(a, b) from NumPyro times exp(−c s) is Gamma(a, b + c)."""
    s = ebm.sample(gamma_times_exp(a, b, c), jax.random.key(31), **RUN)
    assert_converged(s)
    x = s.draws["s"]
    assert bool(jnp.all(x > 0))
    rate = b + c
    assert_moments(x[..., None], a / rate, a / rate**2, "Gamma")
    # the whole shape, not only two moments: E[log s] = ψ(a) − log(b + c)
    assert_expectation(np.log(x), float(digamma(a)) - np.log(rate), "E[log s]")


def test_logsumexp_mixture_of_gaussians():
    """−log(w₁ e^{−E₁} + w₂ e^{−E₂}), equal widths: mixture weights w / Σw."""
    mu, sigma = 1.5, 0.75
    w = np.array([0.3, 0.7])
    E = ebm.logsumexp(
        ebm.Gaussian("x", -mu, cov=sigma**2),
        ebm.Gaussian("x", mu, cov=sigma**2),
        weights=jnp.asarray(w),
    )
    s = ebm.sample(E, jax.random.key(41), **RUN)
    assert_converged(s)
    x = np.asarray(s.draws["x"], np.float64)
    # P(x > 0): binomial error with the indicator's ESS
    import arviz as az

    p = float(w[0] * norm.cdf(-mu / sigma) + w[1] * norm.cdf(mu / sigma))
    ind = (x > 0).astype(np.float64)
    ess = float(az.ess(ind, method="bulk"))
    assert ess > 200, f"indicator ESS {ess:.0f}: the chains do not move between the modes"
    se = np.sqrt(p * (1 - p) / ess)
    assert abs(ind.mean() - p) < K_SIGMA * se, (ind.mean(), p, se)
    # the weights themselves, through the mean: E[x] = (w₂ − w₁) μ
    mean = (w[1] - w[0]) * mu
    var = sigma**2 + mu**2 - mean**2
    assert_moments(x[..., None], mean, var, "mixture", min_ess=200)
    # and the recovered weight of the right mode is 0.7, up to the MC error and the modes'
    # overlap (the mass of each mode on the other side of 0 is Φ(−2) ≈ 2.3 %)
    assert abs(ind.mean() - w[1]) < K_SIGMA * se + norm.cdf(-mu / sigma)


def test_hmc_kernel():
    mean = np.array([0.5, -1.0])
    cov = np.array([[1.0, 0.4], [0.4, 0.5]])
    E = ebm.Gaussian("x", mean, cov=cov)
    s = ebm.sample(E, jax.random.key(51), kernel="hmc", trajectory_length=1.5, **RUN)
    assert s.kernel == "hmc"
    assert_converged(s)
    assert bool(jnp.all(s.stats["tree_depth"] == 0))
    steps = np.asarray(s.stats["num_steps"])
    np.testing.assert_array_equal(steps, np.broadcast_to(steps[:, :1], steps.shape))
    assert_moments(s.draws["x"], mean, cov, "HMC")


@pytest.mark.x64
def test_dirichlet_on_the_simplex():
    """A simplex variable (stick-breaking transform), from a given starting point too."""
    alpha = np.array([2.0, 3.0, 4.0])
    E = ebm.FromDistribution("p", dist.Dirichlet(jnp.asarray(alpha)))
    a0 = alpha.sum()
    mean = alpha / a0
    cov = (np.diag(mean) - np.outer(mean, mean)) / (a0 + 1)
    for i, init in enumerate((None, {"p": jnp.full(3, 1.0 / 3.0)})):
        s = ebm.sample(E, jax.random.key(61 + i), init=init, **RUN)
        p = s.draws["p"]
        assert p.shape == (4, 1000, 3)
        assert bool(jnp.all(p > 0))
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
        assert_converged(s)
        assert_moments(p, mean, cov, f"Dirichlet (init={init})")
