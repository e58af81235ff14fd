"""Sampling guardrails: every mistake gets an error or a warning that names it."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import composable_ebm as ebm


def _runtime_warnings(fn):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in rec if issubclass(w.category, RuntimeWarning)]


def vector_energy(x):
    return x**2  # not summed: a vector


def branchy(x):
    if x > 0:  # Python control flow on a traced value
        return x
    return -x


def test_a_non_scalar_energy_function_is_named_at_sample():
    E = ebm.Gaussian("x", jnp.zeros(3), cov=1.0).named("prior") + ebm.energy(
        vector_energy, x=(3,)
    ).named("squares")
    with pytest.raises(ValueError, match="scalar") as info:
        ebm.sample(E, jax.random.key(0), num_warmup=5, num_samples=5)
    message = str(info.value)
    assert "(3,)" in message and ("squares" in message or "vector_energy" in message), message


def test_python_control_flow_on_traced_values_is_named():
    E = ebm.Gaussian("x", 0.0, cov=1.0).named("prior") + ebm.energy(branchy, x=()).named("kink")
    with pytest.raises(TypeError, match=r"(?s)(kink|branchy).*jnp\.where"):
        ebm.sample(E, jax.random.key(0), num_warmup=5, num_samples=5)


def test_init_outside_the_support_or_not_numbers():
    E = ebm.FromDistribution("s", dist.Gamma(2.0, 1.0))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"init\['s'\] = -1\.0 .*outside.*support"):
        ebm.sample(E, key, init={"s": -1.0}, num_warmup=5, num_samples=5)
    with pytest.raises(ValueError, match=r"init\['s'\] = -3\.0 \(chain 2\)"):
        ebm.sample(E, key, init={"s": jnp.array([1.0, 2.0, -3.0, 1.0])}, num_samples=5)
    with pytest.raises(TypeError, match=r"init\['s'\] must be a number"):
        ebm.sample(E, key, init={"s": "one"}, num_samples=5)
    with pytest.raises(ValueError, match=r"init\['s'\] must be finite, got nan"):
        ebm.sample(E, key, init={"s": float("nan")}, num_samples=5)


@pytest.mark.parametrize("kernel", ["nuts", "mala"])
def test_inverse_mass_matrix_of_the_wrong_size(kernel):
    E = ebm.Gaussian("x", jnp.zeros(3), cov=1.0)
    with pytest.raises(ValueError, match=r"inverse_mass_matrix has shape \(2,\).*3"):
        ebm.sample(E, jax.random.key(0), kernel=kernel, inverse_mass_matrix=jnp.ones(2))


def test_max_tree_depth_must_be_positive():
    E = ebm.Gaussian("x", 0.0, cov=1.0)
    with pytest.raises(ValueError, match="max_tree_depth must be a positive integer"):
        ebm.sample(E, jax.random.key(0), max_tree_depth=0)


@pytest.mark.parametrize("weight", [0.0, -1.0])
@pytest.mark.parametrize("kernel", ["nuts", "mala"])
def test_runaway_chains_of_an_energy_that_cannot_be_normalised(weight, kernel):
    E = weight * ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
    _, msgs = _runtime_warnings(
        lambda: ebm.sample(E, jax.random.key(0), kernel=kernel, num_warmup=500, num_samples=500)
    )
    assert any("run away" in m and "Confinement" in m for m in msgs), msgs
    assert len(msgs) == 1  # nothing else about such a run means anything


def test_a_confined_energy_does_not_run_away():
    E = 0.0 * ebm.Gaussian("x", jnp.zeros(2), cov=1.0) + ebm.Confinement("x", scale=1.0)
    _, msgs = _runtime_warnings(
        lambda: ebm.sample(E, jax.random.key(1), num_warmup=300, num_samples=300)
    )
    assert not any("run away" in m for m in msgs), msgs


def root(x):
    return jnp.sum(jnp.sqrt(x))


def test_langevin_reports_non_finite_proposals_and_never_returns_them():
    E = ebm.Gaussian("x", jnp.ones(2), cov=1.0) + ebm.energy(root, x=(2,))
    init = {"x": jnp.full((64, 2), 1.0)}
    out, msgs = _runtime_warnings(
        lambda: ebm.langevin(E, jax.random.key(0), init, step_size=0.5, num_steps=50)
    )
    assert bool(jnp.all(jnp.isfinite(out["x"])))
    assert any("non-finite" in m and "refused" in m for m in msgs), msgs
    with pytest.raises(ValueError, match="not finite at init for chain 3"):
        bad = init["x"].at[3, 0].set(-1.0)
        ebm.langevin(E, jax.random.key(0), {"x": bad}, step_size=0.01, num_steps=5)
    # a step too large for the energy's curvature: energies overflow, chains stay finite
    G = ebm.Gaussian("x", jnp.zeros(2), cov=1e-4)
    out, msgs = _runtime_warnings(
        lambda: ebm.langevin(
            G, jax.random.key(1), {"x": jnp.full((8, 2), 0.01)}, step_size=1e3, num_steps=200
        )
    )
    assert np.isfinite(np.asarray(out["x"])).all()
