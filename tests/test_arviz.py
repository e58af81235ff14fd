"""ArviZ conversion: ``Samples`` and NumPyro ``MCMC`` runs to ArviZ's data object."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from _helpers import RUN, gamma_times_exp, product_of_experts
from numpyro.infer import MCMC, NUTS

import composable_ebm as ebm

az = pytest.importorskip("arviz")

EXTRA = ("potential_energy", "accept_prob", "num_steps", "energy", "adapt_state.step_size")


@pytest.fixture(scope="module")
def run():
    """Samples of a positive and of a vector variable (the structures of test_sample.py)."""
    E = gamma_times_exp(3.0, 2.0, 1.5)
    F = product_of_experts(jnp.zeros(2), jnp.eye(2), jnp.ones(2), jnp.eye(2))
    return E, ebm.sample(E, jax.random.key(0), **RUN), ebm.sample(F, jax.random.key(1), **RUN)


def _mcmc(postprocess_fn=None, **kwargs) -> MCMC:
    return MCMC(
        NUTS(**kwargs),
        num_warmup=100,
        num_samples=100,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
        postprocess_fn=postprocess_fn,
    )


GAMMA = ebm.FromDistribution("s", dist.Gamma(3.0, 2.0))


@pytest.fixture(scope="module")
def potential_mcmc():
    """An MCMC built from potential_fn, without postprocess_fn: its draws are unconstrained."""
    mcmc = _mcmc(potential_fn=ebm.potential_fn(GAMMA))
    mcmc.run(
        jax.random.key(1),
        init_params=ebm.init_params(GAMMA, jax.random.key(2), 2),
        extra_fields=EXTRA,
    )
    return mcmc


# ---------------------------------------------------------------------------- Samples
def test_samples_posterior(run):
    _, s, v = run
    idata = s.to_inference_data()
    assert list(idata.posterior.data_vars) == ["s"]
    assert idata.posterior["s"].dims == ("chain", "draw")
    assert idata.posterior["s"].shape == (4, 1000)
    np.testing.assert_array_equal(idata.posterior["s"].values, np.asarray(s.draws["s"]))
    assert float(idata.posterior["s"].min()) > 0  # constrained
    vector = ebm.to_inference_data(v)
    assert list(vector.posterior.data_vars) == ["x"]
    assert vector.posterior["x"].dims[:2] == ("chain", "draw")
    assert vector.posterior["x"].shape == (4, 1000, 2)
    np.testing.assert_array_equal(vector.posterior["x"].values, np.asarray(v.draws["x"]))


def test_samples_sample_stats(run):
    E, s, _ = run
    stats = s.to_inference_data().sample_stats
    for name in (
        "diverging",
        "lp",
        "acceptance_rate",
        "n_steps",
        "energy",
        "step_size",
        "tree_depth",
    ):
        assert name in stats, name
        assert stats[name].dims == ("chain", "draw"), name
    np.testing.assert_array_equal(stats["diverging"].values, np.asarray(s.stats["diverging"]))
    np.testing.assert_array_equal(
        stats["acceptance_rate"].values, np.asarray(s.stats["accept_prob"])
    )
    np.testing.assert_array_equal(stats["n_steps"].values, np.asarray(s.stats["num_steps"]))
    # ArviZ's energy is the Hamiltonian; lp is −potential (unconstrained, Jacobian included)
    np.testing.assert_array_equal(stats["energy"].values, np.asarray(s.stats["hamiltonian"]))
    np.testing.assert_array_equal(stats["lp"].values, -np.asarray(s.stats["potential_energy"]))
    lp = -(E.batch(s.draws) - jnp.log(s.draws["s"]))  # s = exp(u): potential = E − u
    np.testing.assert_allclose(stats["lp"].values, lp, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats["model_energy"].values, E.batch(s.draws), rtol=1e-5)


def test_reached_max_treedepth(run):
    _, s, _ = run
    stats = s.to_inference_data().sample_stats
    reached = stats["reached_max_treedepth"].values
    assert reached.dtype == bool and reached.shape == (4, 1000)
    # the default limit (10) is far above what a 1-D Gamma needs
    assert not reached.any()
    # a limit of 2 leapfrog doublings is hit by a strongly correlated Gaussian (no dense mass)
    E = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.array([[1.0, 0.99], [0.99, 1.0]]))
    tight = ebm.sample(
        E, jax.random.key(3), num_warmup=100, num_samples=100, num_chains=2, max_tree_depth=(5, 2)
    )
    depth = np.asarray(tight.stats["tree_depth"])
    assert depth.max() <= 2
    flag = ebm.to_inference_data(tight).sample_stats["reached_max_treedepth"].values
    np.testing.assert_array_equal(flag, depth >= 2)
    assert flag.mean() > 0.5


def test_summary_has_diagnostics(run):
    _, s, v = run
    table = s.summary()
    for col in ("mean", "sd", "ess_bulk", "ess_tail", "r_hat"):
        assert col in table.columns, col
    assert list(table.index) == ["s"]
    assert float(table.loc["s", "mean"]) == pytest.approx(float(np.mean(s.draws["s"])), abs=1e-3)
    exact = s.summary(round_to="none")  # keyword arguments go to arviz.summary
    assert float(exact.loc["s", "r_hat"]) < 1.01 and float(exact.loc["s", "ess_bulk"]) > 400
    assert list(v.summary().index) == ["x[0]", "x[1]"]


def test_rejects_other_objects():
    with pytest.raises(TypeError, match="Samples or numpyro"):
        ebm.to_inference_data({"x": np.zeros((2, 3))})


# ---------------------------------------------------------------------------- NumPyro MCMC
def test_mcmc_from_potential_fn_without_energy_warns(potential_mcmc):
    with pytest.warns(UserWarning, match="unconstrained"):
        idata = ebm.to_inference_data(potential_mcmc)
    u = np.asarray(potential_mcmc.get_samples(group_by_chain=True)["s"])
    np.testing.assert_array_equal(idata.posterior["s"].values, u)  # left as they are
    assert (u < 0).any()  # ... which is not a positive variable's draws


def test_mcmc_from_potential_fn_with_energy(potential_mcmc):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idata = ebm.to_inference_data(potential_mcmc, energy=GAMMA)
    u = np.asarray(potential_mcmc.get_samples(group_by_chain=True)["s"])
    assert idata.posterior["s"].dims == ("chain", "draw")
    np.testing.assert_allclose(idata.posterior["s"].values, np.exp(u), rtol=1e-6)
    stats = idata.sample_stats
    for name in ("diverging", "lp", "acceptance_rate", "n_steps", "energy", "step_size"):
        assert name in stats, name
        assert stats[name].shape == (2, 100), name
    extra = potential_mcmc.get_extra_fields(group_by_chain=True)
    np.testing.assert_array_equal(stats["lp"].values, -np.asarray(extra["potential_energy"]))
    # NumPyro's potential is ours: E(exp(u)) − u
    pe = GAMMA.batch(jnp.exp(u)) - u
    np.testing.assert_allclose(stats["lp"].values, -pe, rtol=1e-4, atol=1e-4)


def test_mcmc_with_postprocess_fn():
    mcmc = _mcmc(potential_fn=ebm.potential_fn(GAMMA), postprocess_fn=ebm.postprocess_fn(GAMMA))
    mcmc.run(jax.random.key(3), init_params=ebm.init_params(GAMMA, jax.random.key(4), 2))
    s = mcmc.get_samples(group_by_chain=True)["s"]
    assert s.shape == (2, 100) and bool(jnp.all(s > 0))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idata = ebm.to_inference_data(mcmc)
    np.testing.assert_array_equal(idata.posterior["s"].values, np.asarray(s))
    assert "diverging" in idata.sample_stats


def test_mcmc_over_model():
    import warnings

    E = GAMMA + ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
    mcmc = _mcmc(model=ebm.model(E))
    mcmc.run(jax.random.key(5), extra_fields=("potential_energy",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idata = ebm.to_inference_data(mcmc)
    assert sorted(idata.posterior.data_vars) == ["s", "x"]
    assert idata.posterior["s"].dims == ("chain", "draw")
    assert idata.posterior["x"].shape == (2, 100, 2)
    assert float(idata.posterior["s"].min()) > 0
    assert "lp" in idata.sample_stats and "diverging" in idata.sample_stats
