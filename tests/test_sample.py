"""``ebm.sample`` and ``Samples``: shapes, statistics, reuse of compiled samplers, errors.

The closed-form checks of the draws live in test_statistics.py; the energies and settings
here are the same ones (``_helpers``), so the compiled samplers are shared.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import (
    RUN,
    assert_expectation,
    correlated,
    gamma_times_exp,
    product_of_experts,
)
from numpyro.distributions import constraints

import composable_ebm as ebm
from composable_ebm.infer._sample import TRACE_COUNT

STATS = (
    "diverging",
    "accept_prob",
    "num_steps",
    "step_size",
    "tree_depth",
    "hamiltonian",
    "model_energy",
)
A, B, C = 3.0, 2.0, 1.5  # Gamma(a, b) · exp(−c s) = Gamma(a, b + c)


def traces() -> int:
    return TRACE_COUNT["sample"]


@pytest.fixture(scope="module")
def gamma_run():
    E = gamma_times_exp(A, B, C)
    return E, ebm.sample(E, jax.random.key(0), **RUN)


@pytest.fixture(scope="module")
def poe_run():
    E = product_of_experts(
        jnp.array([1.0, 0.0]),
        jnp.eye(2),
        jnp.array([-1.0, 2.0]),
        jnp.array([[2.0, 0.5], [0.5, 1.0]]),
    )
    return E, ebm.sample(E, jax.random.key(1), **RUN)


# ---------------------------------------------------------------------------- Samples
def test_draws_shapes_in_constrained_space(gamma_run, poe_run):
    _, s = gamma_run
    assert list(s.draws) == ["s"]
    assert s.draws["s"].shape == (4, 1000)
    assert bool(jnp.all(s.draws["s"] > 0))  # constrained: a positive variable stays positive
    assert (s.num_chains, s.num_samples) == (4, 1000)
    _, p = poe_run
    assert p.draws["x"].shape == (4, 1000, 2)
    assert "chains=4" in repr(p) and "divergences=0" in repr(p)


def test_stats_keys_and_shapes(gamma_run):
    _, s = gamma_run
    for k in STATS:
        assert k in s.stats, k
        assert s.stats[k].shape == (4, 1000), (k, s.stats[k].shape)
    assert s.stats["diverging"].dtype == jnp.bool_
    assert bool(jnp.all((s.stats["accept_prob"] >= 0) & (s.stats["accept_prob"] <= 1)))
    assert 0.6 < float(s.stats["accept_prob"].mean()) < 0.99  # target 0.8
    depth, steps = np.asarray(s.stats["tree_depth"]), np.asarray(s.stats["num_steps"])
    assert depth.min() >= 1 and depth.max() <= 10
    assert np.all(steps <= 2**depth - 1) and np.all(steps >= 2 ** (depth - 1))
    # after warmup the step size is fixed, one per chain
    step = np.asarray(s.stats["step_size"])
    np.testing.assert_array_equal(step, np.broadcast_to(step[:, :1], step.shape))
    np.testing.assert_allclose(
        step[:, -1], s.state.kernel_state.hmc.adapt_state.step_size, rtol=1e-6
    )


def test_model_energy_is_energy_at_draws(gamma_run):
    E, s = gamma_run
    np.testing.assert_allclose(s.stats["model_energy"], E.batch(s.draws), rtol=1e-5, atol=1e-5)
    # the sampler's potential is unconstrained: E − log-Jacobian (s = exp(u): E − u)
    pe = s.stats["model_energy"] - jnp.log(s.draws["s"])
    np.testing.assert_allclose(s.stats["potential_energy"], pe, rtol=1e-4, atol=1e-4)
    # the Hamiltonian is potential + kinetic energy, so never below the potential
    assert bool(jnp.all(s.stats["hamiltonian"] >= s.stats["potential_energy"] - 1e-4))


def test_continue_from_state(gamma_run):
    E, s = gamma_run
    more = ebm.sample(E, jax.random.key(5), num_warmup=0, num_samples=1000, state=s.state)
    assert more.draws["s"].shape == (4, 1000)
    # no more adaptation: the step size and mass matrix are the ones the first run reached
    np.testing.assert_allclose(
        more.stats["step_size"],
        np.broadcast_to(s.state.kernel_state.hmc.adapt_state.step_size[:, None], (4, 1000)),
    )
    np.testing.assert_array_equal(
        more.state.kernel_state.hmc.adapt_state.inverse_mass_matrix,
        s.state.kernel_state.hmc.adapt_state.inverse_mass_matrix,
    )
    assert int(more.state.kernel_state.hmc.i[0]) == int(s.state.kernel_state.hmc.i[0]) + 1000
    assert not np.allclose(more.draws["s"][:, 0], s.draws["s"][:, -1])  # it moved on
    assert_expectation(more.draws["s"], A / (B + C), "Gamma mean after continuing")
    with pytest.raises(ValueError, match="num_warmup=0"):
        ebm.sample(E, jax.random.key(5), num_warmup=10, num_samples=10, state=s.state)
    with pytest.raises(ValueError, match="chains"):
        ebm.sample(E, jax.random.key(5), num_warmup=0, num_samples=10, num_chains=2, state=s.state)


def test_progress_gives_the_same_draws(gamma_run, capsys):
    E, s = gamma_run
    p = ebm.sample(E, jax.random.key(0), progress=True, **RUN)
    err = capsys.readouterr().err
    assert "sample" in err and "1500/1500" in err
    np.testing.assert_array_equal(p.draws["s"], s.draws["s"])
    for k in STATS:
        np.testing.assert_array_equal(p.stats[k], s.stats[k], err_msg=k)
    np.testing.assert_array_equal(p.state.kernel_state.hmc.z["s"], s.state.kernel_state.hmc.z["s"])
    n = traces()
    ebm.sample(gamma_times_exp(2.0, 1.0, 1.0), jax.random.key(9), progress=True, **RUN)
    assert traces() == n  # the chunked sampler is compiled once too


# ---------------------------------------------------------------------------- no recompilation
def test_new_values_do_not_retrace(gamma_run, poe_run):
    E, _ = gamma_run
    n = traces()
    ebm.sample(gamma_times_exp(2.0, 0.5, 4.0), jax.random.key(2), **RUN)  # new weight c
    ebm.sample(gamma_times_exp(5.0, 1.0, 0.5), jax.random.key(3), **RUN)
    new_means = product_of_experts(
        jnp.array([3.0, 1.0]),
        2.0 * jnp.eye(2),
        jnp.array([0.0, 0.0]),
        jnp.diag(jnp.array([1.0, 3.0])),
    )
    ebm.sample(new_means, jax.random.key(4), **RUN)  # new Gaussian parameters
    assert traces() == n
    # traced kernel options: new values reuse the compiled sampler too
    ebm.sample(E, jax.random.key(5), step_size=0.3, target_accept_prob=0.9, **RUN)
    assert traces() == n
    # a valid init, one per chain, is a value too
    ebm.sample(E, jax.random.key(6), init={"s": jnp.array([0.5, 1.0, 2.0, 3.0])}, **RUN)
    assert traces() == n


def test_new_condition_values_do_not_retrace():
    ebm.sample(correlated(1.5), jax.random.key(0), **RUN)
    n = traces()
    ebm.sample(correlated(-2.0), jax.random.key(1), **RUN)
    ebm.sample(correlated(jnp.asarray(0.25)), jax.random.key(2), **RUN)
    assert traces() == n


def test_settings_and_structure_do_retrace(gamma_run):
    E, _ = gamma_run
    n = traces()
    fewer = {**RUN, "num_samples": 10}
    ebm.sample(E, jax.random.key(0), **fewer)
    assert traces() == n + 1  # new settings: a new sampler
    ebm.sample(E, jax.random.key(1), **fewer)
    assert traces() == n + 1  # ... compiled once
    ebm.sample(E + ebm.Confinement("s", 0.1), jax.random.key(1), **fewer)  # new structure
    assert traces() == n + 2


# ---------------------------------------------------------------------------- errors
def test_nan_energy_names_the_term():
    E = ebm.Gaussian("x", 0.0, cov=1.0).named("prior") + ebm.energy(
        lambda x: jnp.nan * x**2, x=()
    ).named("bad")
    with pytest.raises(ValueError, match=r"(?s)no initial point.*'bad'.*NOT FINITE") as info:
        ebm.sample(E, jax.random.key(0), num_warmup=10, num_samples=10, num_chains=2)
    assert "term 'prior'" in str(info.value)
    assert "prior': energy" in str(info.value) and "[ok]" in str(info.value)


def test_invalid_init_names_the_term_and_chain():
    E = ebm.Gaussian("x", 0.0, cov=1.0).named("prior") + ebm.energy(
        lambda x: x - jnp.log(x), x=()
    ).named("log")
    run = dict(num_warmup=10, num_samples=10, num_chains=3)
    with pytest.raises(ValueError, match=r"(?s)not finite at init for chain 0.*'log'.*NOT FINITE"):
        ebm.sample(E, jax.random.key(0), init={"x": -1.0}, **run)
    with pytest.raises(ValueError, match="chain 2"):
        ebm.sample(E, jax.random.key(0), init={"x": jnp.array([1.0, 2.0, -3.0])}, **run)
    with pytest.raises(KeyError, match="'y'"):
        ebm.sample(E, jax.random.key(0), init={"x": 1.0, "y": 1.0}, **run)
    with pytest.raises(ValueError, match="shape"):
        ebm.sample(E, jax.random.key(0), init={"x": jnp.ones(2)}, **run)


def test_kernel_option_errors():
    E = ebm.Gaussian("x", 0.0, cov=1.0)
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="step_sise"):
        ebm.sample(E, key, step_sise=0.1)
    with pytest.raises(ValueError, match="unknown kernel 'metropolis'"):
        ebm.sample(E, key, kernel="metropolis")
    with pytest.raises(ValueError, match="trajectory_length"):
        ebm.sample(E, key, trajectory_length=1.0)
    with pytest.raises(ValueError, match="num_samples"):
        ebm.sample(E, key, num_samples=0)


def test_discrete_variable_refused():
    E = ebm.energy(lambda k: 0.5 * k, k=ebm.Var((), constraints.integer_interval(0, 4)))
    with pytest.raises(ValueError, match=r"(?s)'k'.*discrete.*marginalize.*DiscreteHMCGibbs"):
        ebm.sample(E, jax.random.key(0))


def test_unknown_shape_and_no_variables_refused():
    with pytest.raises(ValueError, match=r"'x'.*no known shape"):
        ebm.sample(ebm.Confinement("x"), jax.random.key(0))
    # Confinement without shape is fine next to a term that fixes the shape
    E = ebm.Gaussian("x", jnp.zeros(3), cov=1.0) + ebm.Confinement("x")
    assert E.space["x"].shape == (3,)
    with pytest.raises(ValueError, match="free variable"):
        ebm.sample(ebm.Gaussian("x", 0.0, cov=1.0).condition(x=1.0), jax.random.key(0))
    with pytest.raises(TypeError, match="Energy"):
        ebm.sample(lambda x: x**2, jax.random.key(0))
