"""Variables, supports and the merging of spaces."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import composable_ebm as ebm


def _support_energy(support, shape=()):
    return ebm.energy(lambda x: jnp.sum(x), x=ebm.Var(shape, support))


# ---------------------------------------------------------------- Var itself
@pytest.mark.parametrize(
    ("given", "expected"),
    [((), ()), (3, (3,)), ((2, 3), (2, 3)), ([4], (4,)), (np.int64(2), (2,)), (None, None)],
)
def test_var_shape_normalised(given, expected):
    assert ebm.Var(given).shape == expected


def test_var_defaults_and_size():
    v = ebm.Var()
    assert v.shape == ()
    assert v.support is constraints.real
    assert v.size == 1
    assert ebm.Var((2, 3)).size == 6
    with pytest.raises(ValueError, match="unknown shape"):
        ebm.Var(None).size  # noqa: B018


def test_var_rejects_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        ebm.Var((-1,))
    with pytest.raises(TypeError, match="constraints"):
        ebm.Var((), support="positive")


def test_var_is_immutable():
    v = ebm.Var((2,))
    with pytest.raises(AttributeError):
        v.shape = (3,)


def test_var_discrete_flag():
    assert ebm.Var((), constraints.integer_interval(0, 3)).is_discrete
    assert ebm.Var((), constraints.boolean).is_discrete
    assert not ebm.Var((), constraints.positive).is_discrete


# ---------------------------------------------------------------- supports as sets
@pytest.mark.parametrize(
    ("a", "b"),
    [
        (constraints.unit_interval, constraints.interval(0, 1)),
        (constraints.unit_interval, constraints.interval(0.0, 1.0)),
        (constraints.positive, constraints.greater_than(0)),
        (constraints.positive, constraints.greater_than(np.float64(0.0))),
        (constraints.real, constraints.real_vector),
        (constraints.positive, constraints.independent(constraints.positive, 1)),
    ],
)
def test_equal_sets_are_equal_supports(a, b):
    assert ebm.Var((), a) == ebm.Var((), b)
    assert hash(ebm.Var((), a)) == hash(ebm.Var((), b))
    # and they merge without complaint in a sum
    E = _support_energy(a) + _support_energy(b)
    assert E.space["x"] == ebm.Var((), a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (constraints.positive, constraints.greater_than(1.0)),
        (constraints.unit_interval, constraints.interval(0.0, 2.0)),
        (constraints.positive, constraints.unit_interval),
    ],
)
def test_different_sets_are_different_supports(a, b):
    assert ebm.Var((), a) != ebm.Var((), b)


def test_shape_is_part_of_equality():
    assert ebm.Var((2,)) != ebm.Var((3,))
    assert ebm.Var((2,)) != ebm.Var(None)


@pytest.mark.parametrize(
    "narrow",
    [constraints.positive, constraints.unit_interval, constraints.greater_than(2.0)],
)
def test_real_merged_with_narrower_gives_narrower(narrow):
    real = ebm.Gaussian("x", 0.0, cov=1.0)
    other = _support_energy(narrow)
    for E in (real + other, other + real, ebm.logsumexp(real, other)):
        assert E.space["x"] == ebm.Var((), narrow)
        assert not isinstance(E.space["x"].support, constraints._Real)


def test_support_taken_from_distribution_survives_a_sum():
    E = ebm.FromDistribution("p", dist.Dirichlet(jnp.ones(3))) + ebm.Confinement("p")
    assert isinstance(E.space["p"].support, constraints._Simplex)
    assert E.space["p"].shape == (3,)
    E = ebm.Gaussian("s", 1.0, cov=1.0) + ebm.FromDistribution("s", dist.Exponential(2.0))
    assert E.space["s"] == ebm.Var((), constraints.positive)


def test_beta_and_uniform_supports_merge_as_sets():
    E = ebm.FromDistribution("u", dist.Beta(2.0, 3.0)) + ebm.FromDistribution(
        "u", dist.Uniform(0.0, 1.0)
    )
    assert E.space["u"] == ebm.Var((), constraints.unit_interval)


def test_two_different_supports_raise_naming_variable_and_both():
    pos = _support_energy(constraints.positive)
    unit = _support_energy(constraints.unit_interval)
    with pytest.raises(ValueError, match="'x'") as info:
        pos + unit
    msg = str(info.value)
    assert "greater_than(0" in msg
    assert "interval(0" in msg and "1.0)" in msg
    with pytest.raises(ValueError, match="'x'"):
        ebm.logsumexp(unit, pos)


def test_support_bounds_must_be_concrete():
    def build(b):
        return ebm.Var((), constraints.greater_than(b)).shape

    with pytest.raises(TypeError, match="concrete"):
        jax.jit(build)(1.0)


# ---------------------------------------------------------------- wildcard shapes
def test_confinement_without_shape_is_a_wildcard():
    C = ebm.Confinement("x")
    assert C.space["x"].shape is None
    assert C.space["x"] == ebm.Var(None)


@pytest.mark.parametrize("confinement_first", [True, False])
def test_wildcard_resolved_by_sum(confinement_first):
    C = ebm.Confinement("x", scale=0.5, eps=0.0)
    G = ebm.Gaussian("x", jnp.zeros(3), cov=1.0)
    E = C + G if confinement_first else G + C
    assert E.space["x"].shape == (3,)
    x = jnp.array([1.0, 2.0, 2.0])
    np.testing.assert_allclose(E(x), 0.5 * 3.0 + 0.5 * 9.0, rtol=1e-6)
    # the resolved shape is checked exactly
    with pytest.raises(ValueError, match="shape"):
        E(jnp.zeros(2))


def test_wildcard_resolved_by_logsumexp_and_two_wildcards_stay_wildcard():
    C = ebm.Confinement("x")
    assert ebm.logsumexp(C, ebm.Gaussian("x", jnp.zeros(2), cov=1.0)).space["x"].shape == (2,)
    assert (C + ebm.Confinement("x", scale=2.0)).space["x"].shape is None


def test_unresolved_wildcard_batch_is_an_error_naming_the_variable():
    with pytest.raises(ValueError, match=r"'x'.*shape"):
        ebm.Confinement("x").batch(jnp.zeros((4, 2)))
