"""Edge cases found in review: each one a bug that once existed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints

import composable_ebm as ebm
from composable_ebm.infer._sample import TRACE_COUNT


def test_nested_single_term_weighted_logsumexp_keeps_its_weight():
    a, b = ebm.Gaussian("x", -1.0, cov=1.0), ebm.Gaussian("x", 1.0, cov=1.0)
    nested = ebm.logsumexp(ebm.logsumexp(a, weights=[3.0]), b)
    flat = ebm.logsumexp(a, b, weights=[3.0, 1.0])
    direct = -np.log(3 * np.exp(-0.5) + np.exp(-0.5))
    assert float(nested(0.0)) == pytest.approx(direct, rel=1e-5)
    assert float(flat(0.0)) == pytest.approx(direct, rel=1e-5)


def test_bad_weights_and_temperatures_are_refused():
    a = ebm.Gaussian("x", 0.0, cov=1.0)
    with pytest.raises(ValueError, match="positive"):
        ebm.logsumexp(a, a, weights=[-1.0, 1.0])
    with pytest.raises(ValueError, match="temperature must be positive"):
        a / 0.0
    with pytest.raises(TypeError, match="only be multiplied or divided by a scalar"):
        a * jnp.ones(2)


def test_a_support_that_needs_more_axes_than_the_shape_is_refused():
    with pytest.raises(ValueError, match="last 1 axes"):
        ebm.Var((), constraints.simplex)


def test_equal_sets_sample_through_the_same_transform():
    def fn(s):
        return 2.0 * s

    a = ebm.energy(fn, s=ebm.Var((), constraints.positive))
    b = ebm.energy(fn, s=ebm.Var((), constraints.softplus_positive))
    assert a.space == b.space
    # the same set gives the same bijection: the potentials agree at any point
    u = {"s": jnp.asarray(0.3)}
    assert float(ebm.potential_fn(a)(u)) == pytest.approx(float(ebm.potential_fn(b)(u)))


def test_discrete_condition_values_are_strongly_typed():
    E = ebm.energy(
        lambda x, n: (x - n) ** 2, x=(), n=ebm.Var((), constraints.integer_interval(0, 9))
    )
    leaves = [E.condition(n=v).values["n"] for v in (2, np.int32(3), True)]
    assert all(not leaf.weak_type and leaf.dtype == leaves[0].dtype for leaf in leaves)


def test_kernel_options_and_key_are_checked():
    E = ebm.Gaussian("x", 0.0, cov=1.0)
    with pytest.raises(ValueError, match="step_size"):
        ebm.sample(E, jax.random.key(0), num_warmup=5, num_samples=5, step_size=-1.0)
    with pytest.raises(ValueError, match="target_accept_prob"):
        ebm.sample(E, jax.random.key(0), num_warmup=5, num_samples=5, target_accept_prob=1.5)
    with pytest.raises(TypeError, match="random key"):
        ebm.sample(E, 0, num_warmup=5, num_samples=5)


@pytest.fixture(scope="module")
def short_run():
    E = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
    return E, ebm.sample(E, jax.random.key(0), num_warmup=100, num_samples=50, num_chains=2)


def test_continuing_uses_the_new_key(short_run):
    E, s = short_run
    a = ebm.sample(E, jax.random.key(1), num_warmup=0, num_samples=20, num_chains=2, state=s.state)
    b = ebm.sample(E, jax.random.key(2), num_warmup=0, num_samples=20, num_chains=2, state=s.state)
    assert not np.allclose(a.draws["x"], b.draws["x"])


def test_continuing_keeps_the_kernel_settings_and_checks_the_energy(short_run):
    E, s = short_run
    with pytest.raises(ValueError, match="keeps the kernel"):
        ebm.sample(
            E,
            jax.random.key(1),
            num_warmup=0,
            num_samples=5,
            num_chains=2,
            state=s.state,
            dense_mass=True,
        )
    other = ebm.Gaussian("x", jnp.zeros(3), cov=1.0)
    with pytest.raises(ValueError, match="do not fit"):
        ebm.sample(
            other, jax.random.key(1), num_warmup=0, num_samples=5, num_chains=2, state=s.state
        )


def test_dense_mass_run_continues():
    E = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.array([[1.0, 0.9], [0.9, 1.0]]))
    s = ebm.sample(
        E, jax.random.key(0), num_warmup=100, num_samples=20, num_chains=2, dense_mass=True
    )
    more = ebm.sample(
        E, jax.random.key(1), num_warmup=0, num_samples=20, num_chains=2, state=s.state
    )
    assert more.draws["x"].shape == (2, 20, 2)


def test_progress_with_a_single_step():
    E = ebm.Gaussian("x", 0.0, cov=1.0)
    s = ebm.sample(E, jax.random.key(0), num_warmup=0, num_samples=1, num_chains=2, progress=True)
    assert s.draws["x"].shape == (2, 1)


def test_new_key_same_structure_does_not_retrace(short_run):
    E, _ = short_run
    n = TRACE_COUNT["sample"]
    ebm.sample(E, jax.random.key(7), num_warmup=100, num_samples=50, num_chains=2)
    assert TRACE_COUNT["sample"] == n
