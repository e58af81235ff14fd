"""The NumPyro bridge: potentials, initial values, constraining, model, factor, distribution."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from _helpers import assert_moments, conditional_xy, correlated_xy
from hypothesis import given, settings
from hypothesis import strategies as st
from numpyro.distributions import constraints
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import initialize_model, potential_energy

import composable_ebm as ebm

LO, HI = -1.0, 2.0


def _ring(x):
    return 0.5 * (jnp.sum(x**2) - 1.0) ** 2


def _energies() -> dict[str, ebm.Energy]:
    """One energy per kind of support, and one over all of them."""
    real = ebm.Gaussian("x", jnp.array([0.5, -1.0]), cov=jnp.array([[1.0, 0.3], [0.3, 2.0]]))
    positive = ebm.FromDistribution("s", dist.Gamma(jnp.array([2.0, 3.0, 1.5]), 1.5))
    interval = ebm.energy(
        lambda b: jnp.sum((b - 0.5) ** 2) + jnp.sin(b[0]),
        b=ebm.Var((2,), constraints.interval(LO, HI)),
    )
    simplex = ebm.FromDistribution("p", dist.Dirichlet(jnp.array([2.0, 3.0, 4.0])))
    ring = ebm.energy(lambda x, s: _ring(x) + 0.1 * jnp.sum(s * x[0]), x=(2,), s=(3,))
    return {
        "real": real,
        "positive": positive,
        "interval": interval,
        "simplex": simplex,
        "all": real + positive + interval + simplex + ring,
    }


ENERGIES = _energies()
UNCONSTRAINED_SHAPES = {"x": (2,), "s": (3,), "b": (2,), "p": (2,)}
SHAPES = {"x": (2,), "s": (3,), "b": (2,), "p": (3,)}


def _random_unconstrained(E: ebm.Energy, key: jax.Array, batch: tuple = ()) -> dict:
    keys = jax.random.split(key, len(E.space))
    return {
        k: 1.5 * jax.random.normal(kk, batch + UNCONSTRAINED_SHAPES[k])
        for kk, k in zip(keys, sorted(E.space))
    }


# ---------------------------------------------------------------------------- potential_fn
def test_potential_of_positive_variable_includes_log_jacobian():
    E = ebm.energy(lambda s: 2.0 * s - 3.0 * jnp.log(s), s=ebm.Var((), constraints.positive))
    pe = ebm.potential_fn(E)
    for u in (-2.0, -0.3, 0.0, 0.7, 1.9):
        x = np.exp(u)
        expected = (2.0 * x - 3.0 * u) - u  # E(exp(u)) − u
        np.testing.assert_allclose(float(pe({"s": jnp.asarray(u)})), expected, rtol=1e-5)


@settings(deadline=None, max_examples=30)
@given(
    u=st.lists(st.floats(-4.0, 4.0), min_size=3, max_size=3),
    shape=st.floats(0.5, 5.0),
    rate=st.floats(0.2, 3.0),
)
def test_potential_of_positive_vector_matches_closed_form_and_numpyro(u, shape, rate):
    """Gamma energy on s = exp(u): potential = Σ[−log Gamma(exp(u)) − u], NumPyro's too."""
    g = dist.Gamma(shape, rate)
    E = ebm.FromDistribution("s", g.expand([3]))
    z = {"s": jnp.asarray(u, jnp.float32)}
    ours = float(ebm.potential_fn(E)(z))
    s = np.exp(np.asarray(u, np.float64))
    log_gamma = shape * np.log(rate) + (shape - 1) * np.log(s) - rate * s - math.lgamma(shape)
    np.testing.assert_allclose(ours, np.sum(-log_gamma - np.asarray(u)), rtol=1e-4, atol=1e-3)
    theirs = float(potential_energy(ebm.model(E), (), {}, z))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_potential_of_interval_variable_includes_log_jacobian():
    E = ENERGIES["interval"]
    pe = ebm.potential_fn(E)
    u = jnp.array([-1.2, 0.8])
    sig = 1.0 / (1.0 + np.exp(-np.asarray(u, np.float64)))
    b = LO + (HI - LO) * sig
    log_jac = np.sum(np.log(HI - LO) + np.log(sig) + np.log1p(-sig))
    expected = float(E(jnp.asarray(b, jnp.float32))) - log_jac
    np.testing.assert_allclose(float(pe({"b": u})), expected, rtol=1e-5)


@pytest.mark.parametrize("kind", list(ENERGIES))
def test_potential_fn_equals_numpyro_potential_of_model(kind):
    E = ENERGIES[kind]
    pe = jax.jit(ebm.potential_fn(E))
    model = ebm.model(E)
    for i in range(4):
        z = _random_unconstrained(E, jax.random.key(i))
        ours = float(pe(z))
        theirs = float(potential_energy(model, (), {}, z))
        assert np.isfinite(ours)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(ENERGIES))
def test_initialize_model_agrees_with_bridge(kind):
    E = ENERGIES[kind]
    info = initialize_model(jax.random.key(0), ebm.model(E))
    z = info.param_info.z
    assert sorted(z) == sorted(E.space)  # the model's sites are the energy's variables
    ours = ebm.init_params(E, jax.random.key(0))
    assert {k: v.shape for k, v in z.items()} == {k: v.shape for k, v in ours.items()}
    np.testing.assert_allclose(
        float(info.potential_fn(z)), float(ebm.potential_fn(E)(z)), rtol=1e-5, atol=1e-5
    )
    theirs = info.postprocess_fn(z)
    mine = ebm.postprocess_fn(E)(z)
    for k in E.space:
        np.testing.assert_allclose(mine[k], theirs[k], rtol=1e-6, atol=1e-6)


def test_potential_fn_gradient_matches_numpyro():
    E = ENERGIES["all"]
    z = _random_unconstrained(E, jax.random.key(7))
    ours = jax.grad(ebm.potential_fn(E))(z)
    theirs = jax.grad(lambda z: potential_energy(ebm.model(E), (), {}, z))(z)
    for k in z:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-4, atol=1e-5)


def test_potential_fn_missing_variable():
    with pytest.raises(KeyError, match="'p'"):
        ebm.potential_fn(ENERGIES["all"])({"x": jnp.zeros(2), "s": jnp.zeros(3), "b": jnp.zeros(2)})


def test_potential_fn_refuses_discrete_and_unknown_shape():
    k = ebm.energy(lambda k: 0.1 * k, k=ebm.Var((), constraints.integer_interval(0, 3)))
    with pytest.raises(ValueError, match="marginalize"):
        ebm.potential_fn(k)
    with pytest.raises(ValueError, match=r"'x'.*shape"):
        ebm.potential_fn(ebm.Confinement("x"))


# ---------------------------------------------------------------------------- init_params
def test_init_params_shapes_and_range():
    E = ENERGIES["all"]
    one = ebm.init_params(E, jax.random.key(0))
    assert {k: v.shape for k, v in one.items()} == UNCONSTRAINED_SHAPES
    many = ebm.init_params(E, jax.random.key(0), num_chains=3)
    assert {k: v.shape for k, v in many.items()} == {
        k: (3, *s) for k, s in UNCONSTRAINED_SHAPES.items()
    }
    for v in (*one.values(), *many.values()):
        assert v.dtype == jnp.float32
        assert bool(jnp.all((v > -2.0) & (v < 2.0)))
    # chains start at different points, and the potential is finite at each
    assert not np.allclose(many["x"][0], many["x"][1])
    pe = jax.vmap(ebm.potential_fn(E))(many)
    assert pe.shape == (3,) and bool(jnp.all(jnp.isfinite(pe)))


# ---------------------------------------------------------------------------- constraining
def test_constrain_unconstrain_round_trip_with_batch_axes():
    E = ENERGIES["all"]
    batch = (5, 4)
    z = _random_unconstrained(E, jax.random.key(1), batch)
    x = ebm.constrain(E, z)
    assert {k: v.shape for k, v in x.items()} == {k: batch + s for k, s in SHAPES.items()}
    assert bool(jnp.all(x["s"] > 0))
    assert bool(jnp.all((x["b"] > LO) & (x["b"] < HI)))
    assert bool(jnp.all(x["p"] > 0))
    np.testing.assert_allclose(x["p"].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(x["x"], z["x"])  # real: identity
    back = ebm.unconstrain(E, x)
    for k in z:
        np.testing.assert_allclose(back[k], z[k], rtol=1e-3, atol=1e-3)
    # and from the constrained side
    again = ebm.constrain(E, ebm.unconstrain(E, x))
    for k in x:
        np.testing.assert_allclose(again[k], x[k], rtol=1e-4, atol=1e-5)


def test_postprocess_fn_constrains_draws():
    E = ENERGIES["all"]
    z = _random_unconstrained(E, jax.random.key(2), (3,))
    out = ebm.postprocess_fn(E)(z)
    ref = ebm.constrain(E, z)
    assert sorted(out) == sorted(E.space)
    for k in out:
        np.testing.assert_array_equal(out[k], ref[k])
    np.testing.assert_allclose(out["s"], jnp.exp(z["s"]), rtol=1e-6)


# ---------------------------------------------------------------------------- model
def test_model_sites_and_discrete_support():
    E = ebm.Gaussian("x", jnp.zeros(2), cov=1.0) + ebm.energy(
        lambda x, k: 0.1 * k * jnp.sum(x), x=(2,), k=ebm.Var((), constraints.integer_interval(0, 3))
    )
    values = {"x": jnp.array([0.5, -1.0]), "k": jnp.asarray(2)}

    def trace(m):
        return numpyro.handlers.trace(numpyro.handlers.substitute(m, values)).get_trace()

    tr = trace(ebm.model(E))
    assert sorted(tr) == ["energy", "k", "x"]
    assert isinstance(tr["k"]["fn"], dist.DiscreteUniform)
    assert isinstance(tr["x"]["fn"], dist.ImproperUniform)
    assert tr["x"]["fn"].event_shape == (2,)
    # the factor adds −E: its log density at the substituted values
    np.testing.assert_allclose(
        float(tr["energy"]["fn"].log_prob(tr["energy"]["value"])), -float(E(values)), rtol=1e-6
    )
    tr2 = trace(ebm.model(ebm.Gaussian("x", jnp.zeros(2), cov=1.0), factor_name="E"))
    assert sorted(tr2) == ["E", "x"]
    with pytest.raises(ValueError, match="'x'"):
        ebm.model(ebm.Confinement("x"))


def test_condition_handler_on_model_matches_condition():
    E = _correlated()
    y = 1.5
    conditioned = numpyro.handlers.condition(ebm.model(E), data={"y": jnp.asarray(y)})
    pe = ebm.potential_fn(E.condition(y=y))
    for u in (-1.0, 0.2, 2.5):
        z = {"x": jnp.asarray(u)}
        np.testing.assert_allclose(
            float(potential_energy(conditioned, (), {}, z)), float(pe(z)), rtol=1e-6
        )


def _correlated() -> ebm.Energy:
    return ebm.energy(correlated_xy, x=(), y=())


def _run(model, key, num_samples=1000, **kwargs):
    mcmc = MCMC(
        NUTS(model, **kwargs),
        num_warmup=500,
        num_samples=num_samples,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(key)
    return mcmc


@pytest.mark.slow
def test_model_in_numpyro_nuts_matches_closed_form():
    mean = jnp.array([1.0, -2.0])
    cov = jnp.array([[1.0, 0.5], [0.5, 2.0]])
    a, b = 3.0, 2.0
    E = ebm.Gaussian("x", mean, cov=cov) + ebm.FromDistribution("s", dist.Gamma(a, b))
    mcmc = _run(ebm.model(E), jax.random.key(0))
    draws = mcmc.get_samples(group_by_chain=True)
    assert sorted(draws) == ["s", "x"]
    assert draws["x"].shape == (4, 1000, 2) and draws["s"].shape == (4, 1000)
    assert bool(jnp.all(draws["s"] > 0))
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
    assert_moments(draws["x"], mean, cov, "x")
    assert_moments(draws["s"][..., None], a / b, a / b**2, "s")


@pytest.mark.slow
def test_condition_handler_in_numpyro_nuts():
    y = 1.5
    conditioned = numpyro.handlers.condition(ebm.model(_correlated()), data={"y": jnp.asarray(y)})
    mcmc = _run(conditioned, jax.random.key(1))
    draws = mcmc.get_samples(group_by_chain=True)
    assert sorted(draws) == ["x"]
    m, v = conditional_xy(y)
    assert_moments(draws["x"][..., None], m, v, "x | y")


@pytest.mark.slow
def test_factor_and_energy_distribution_in_numpyro_nuts():
    """Prior N(0, 1) as an EnergyDistribution; unit-variance likelihood through factor."""
    data = jnp.array([0.3, 1.1, 2.0, 0.6])
    n = data.shape[0]
    lik = ebm.energy(lambda y, mu: 0.5 * (y - mu) ** 2, y=(), mu=())
    prior = ebm.EnergyDistribution(ebm.Gaussian("mu", 0.0, cov=1.0))

    def m():
        mu = numpyro.sample("mu", prior)
        ebm.factor("lik", lik, y=data, mu=jnp.broadcast_to(mu, data.shape))

    tr = numpyro.handlers.trace(numpyro.handlers.substitute(m, {"mu": 0.25})).get_trace()
    np.testing.assert_allclose(
        float(jnp.sum(tr["lik"]["fn"].log_prob(tr["lik"]["value"]))),
        -float(jnp.sum(0.5 * (data - 0.25) ** 2)),
        rtol=1e-6,
    )
    mcmc = _run(m, jax.random.key(2))
    draws = mcmc.get_samples(group_by_chain=True)
    assert_moments(draws["mu"][..., None], float(data.sum()) / (1 + n), 1.0 / (1 + n), "mu")


# ---------------------------------------------------------------------------- EnergyDistribution
def test_energy_distribution_log_prob_support_and_sample():
    g = dist.Gamma(2.0, 1.5)
    E = ebm.FromDistribution("s", g)
    d = ebm.EnergyDistribution(E)
    v = jnp.array([0.2, 1.0, 3.5])
    np.testing.assert_allclose(d.log_prob(v), g.log_prob(v), rtol=1e-6)
    np.testing.assert_allclose(float(d.log_prob(jnp.asarray(1.0))), -float(E(1.0)), rtol=1e-6)
    assert d.support is constraints.positive or isinstance(d.support, constraints._GreaterThan)
    assert bool(d.support(jnp.asarray(1.0))) and not bool(d.support(jnp.asarray(-1.0)))
    assert d.event_shape == () and d.batch_shape == ()
    with pytest.raises(NotImplementedError, match="cannot be sampled"):
        d.sample(jax.random.key(0))

    G = ebm.Gaussian("x", jnp.array([1.0, 2.0]), cov=jnp.array([0.5, 2.0]))
    dg = ebm.EnergyDistribution(G)
    assert dg.event_shape == (2,)
    assert dg.support.event_dim == 1
    xs = jax.random.normal(jax.random.key(1), (4, 3, 2))
    lp = dg.log_prob(xs)
    assert lp.shape == (4, 3)
    np.testing.assert_allclose(lp, -G.batch(xs), rtol=1e-6)
    np.testing.assert_allclose(float(lp[1, 2]), -float(G(xs[1, 2])), rtol=1e-6)


def test_energy_distribution_needs_one_variable():
    with pytest.raises(ValueError, match="exactly one variable"):
        ebm.EnergyDistribution(ENERGIES["all"])
    with pytest.raises(TypeError):
        ebm.EnergyDistribution(dist.Normal())
