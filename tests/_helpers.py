"""Shared pieces of the inference tests: Monte-Carlo tolerances and common sampler runs.

Compilation dominates the suite's time, so the statistical tests share one set of sampler
settings (``RUN``): an energy of the same structure sampled again with new values reuses
the compiled sampler, across test modules too (the cache lives in the process).
"""

from __future__ import annotations

import numpy as np

# Settings shared by every statistical test: 4 chains x 1000 draws after 500 warmup steps.
RUN = dict(num_warmup=500, num_samples=1000, num_chains=4)
# Tolerance in Monte-Carlo standard errors (a false alarm is a > 5-sigma event).
K_SIGMA = 5.0
# Lowest effective sample size accepted for a checked quantity: below it the MCSE, and so
# the tolerance, is itself unreliable.
MIN_ESS = 400.0
MAX_RHAT = 1.01


def _components(values: object) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    assert x.ndim >= 2, f"expected (chain, draw, ...) values, got shape {x.shape}"
    return x.reshape(x.shape[0], x.shape[1], -1)


def assert_expectation(
    values: object, expected: object, what: str, *, min_ess: float = MIN_ESS
) -> None:
    """Check E[f] against its exact value, per component, within K_SIGMA Monte-Carlo errors.

    Args:
        values: f evaluated at the draws, shape (chain, draw, *shape).
        expected: the exact expectation, broadcastable to ``shape``.
        what: a name for the assertion messages.
        min_ess: lowest bulk ESS accepted for each component.
    """
    import arviz as az

    flat = _components(values)
    exact = np.broadcast_to(np.asarray(expected, np.float64), np.shape(values)[2:]).ravel()
    for i in range(flat.shape[2]):
        f = flat[:, :, i]
        ess = float(az.ess(f, method="bulk"))
        assert ess > min_ess, f"{what}[{i}]: ESS {ess:.0f} is below {min_ess:.0f}"
        se = float(az.mcse(f, method="mean"))
        est = float(f.mean())
        assert abs(est - exact[i]) < K_SIGMA * se, (
            f"{what}[{i}]: estimate {est:.5f}, exact {exact[i]:.5f}, "
            f"tolerance {K_SIGMA}·MCSE = {K_SIGMA * se:.5f} (ESS {ess:.0f})"
        )


def assert_moments(
    draws: object, mean: object, cov: object, what: str, *, min_ess: float = MIN_ESS
) -> None:
    """Check the mean and the covariance (second moments about the exact mean)."""
    x = _components(draws)
    mu = np.broadcast_to(np.asarray(mean, np.float64), np.shape(draws)[2:]).ravel()
    sigma = np.asarray(cov, np.float64).reshape(mu.size, mu.size)
    assert_expectation(x, mu, f"{what} mean", min_ess=min_ess)
    r = x - mu
    second = r[:, :, :, None] * r[:, :, None, :]
    assert_expectation(second, sigma, f"{what} covariance", min_ess=min_ess)


def assert_converged(samples: object, *, max_rhat: float = MAX_RHAT) -> None:
    """Rank-normalised split R-hat below ``max_rhat`` for every component, no divergences."""
    import arviz as az

    for name, v in samples.draws.items():
        flat = _components(v)
        for i in range(flat.shape[2]):
            r = float(az.rhat(flat[:, :, i]))
            assert r < max_rhat, f"R-hat of {name}[{i}] is {r:.4f}"
    div = int(np.asarray(samples.stats["diverging"]).sum())
    assert div == 0, f"{div} divergent transitions"


# ---------------------------------------------------------------------------- shared energies
# Builders with module-level functions: a function energy is part of the compiled structure,
# so the same function object must be used for two runs to share a compiled sampler.
RHO, SX, SY, MX, MY = 0.8, 1.0, 2.0, 0.5, -1.0


def correlated_xy(x, y):
    """Joint N((MX, MY), [[SX², ρ SX SY], [ρ SX SY, SY²]]) energy over two scalars."""
    a, b = (x - MX) / SX, (y - MY) / SY
    return 0.5 * (a * a - 2.0 * RHO * a * b + b * b) / (1.0 - RHO**2)


def conditional_xy(y: float) -> tuple[float, float]:
    """Exact mean and variance of x | y under :func:`correlated_xy`."""
    return MX + RHO * SX / SY * (y - MY), SX**2 * (1.0 - RHO**2)


def correlated(y: float):
    """The correlated Gaussian conditioned on y (a leaf: new values reuse the sampler)."""
    import composable_ebm as ebm

    return ebm.energy(correlated_xy, x=(), y=()).condition(y=y)


def identity(s):
    return s


def gamma_times_exp(a: float, b: float, c: float):
    """Gamma(a, b) · exp(−c s): a Gamma(a, b + c) on the positive half-line."""
    import numpyro.distributions as dist

    import composable_ebm as ebm

    return ebm.FromDistribution("s", dist.Gamma(a, b)) + c * ebm.energy(identity, s=())


def product_of_experts(m1, p1, m2, p2):
    """Two Gaussian experts over x (shape (2,)), given by mean and precision."""
    import composable_ebm as ebm

    return ebm.Gaussian("x", m1, precision=p1) + ebm.Gaussian("x", m2, precision=p2)


def poe_exact(m1, p1, m2, p2) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a product of Gaussian experts: precisions add."""
    m1, p1, m2, p2 = (np.asarray(v, np.float64) for v in (m1, p1, m2, p2))
    cov = np.linalg.inv(p1 + p2)
    return cov @ (p1 @ m1 + p2 @ m2), cov


def array_leaves(tree):
    """The array leaves of a pytree (an energy, a training state)."""
    import equinox as eqx
    import jax

    return jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))


def assert_bitwise(a, b):
    """Two pytrees hold the same arrays, bit for bit (shapes, dtypes and bytes)."""
    la, lb = array_leaves(a), array_leaves(b)
    assert len(la) == len(lb) > 0
    for x, y in zip(la, lb):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(
            np.atleast_1d(np.asarray(x)).view(np.uint8), np.atleast_1d(np.asarray(y)).view(np.uint8)
        )
