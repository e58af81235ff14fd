"""Errors are raised where the mistake is made, and name what is wrong."""

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import composable_ebm as ebm

G2 = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
XY = ebm.energy(lambda x, y: jnp.sum(x) * y, x=(2,), y=())


# ---------------------------------------------------------------- evaluation
def test_non_scalar_energy():
    E = ebm.energy(lambda x: x * 2.0, x=(3,))
    with pytest.raises(ValueError, match="scalar"):
        E(jnp.ones(3))
    with pytest.raises(ValueError, match="scalar"):
        E.batch(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="scalar"):
        (E + ebm.Confinement("x"))(jnp.ones(3))


def test_unknown_names():
    with pytest.raises(KeyError, match=r"unknown.*'z'") as info:
        XY(x=jnp.zeros(2), y=1.0, z=3.0)
    assert "'x'" in str(info.value) and "'y'" in str(info.value)  # lists the real ones
    with pytest.raises(KeyError, match=r"unknown.*'z'"):
        XY.batch({"x": jnp.zeros((3, 2)), "y": jnp.zeros(3), "z": jnp.zeros(3)})


def test_missing_names():
    with pytest.raises(KeyError, match=r"missing.*'y'"):
        XY(x=jnp.zeros(2))
    with pytest.raises(KeyError, match=r"missing.*'x'"):
        XY({"y": 1.0})
    with pytest.raises(KeyError, match=r"unknown.*'q'.*missing.*'y'"):
        XY(x=jnp.zeros(2), q=1.0)


def test_bare_array_needs_one_variable():
    with pytest.raises(TypeError, match="exactly one variable"):
        XY(jnp.zeros(2))


def test_mapping_and_keywords_together():
    with pytest.raises(TypeError, match="either"):
        XY({"x": jnp.zeros(2)}, y=1.0)


@pytest.mark.parametrize("bad", [jnp.zeros(3), jnp.zeros((2, 2)), jnp.zeros(()), jnp.zeros((1, 2))])
def test_wrong_value_shape_names_variable_and_both_shapes(bad):
    with pytest.raises(ValueError, match="'x'") as info:
        G2(bad)
    msg = str(info.value)
    assert "(2,)" in msg and str(tuple(bad.shape)) in msg


def test_an_extra_axis_is_not_silently_summed():
    with pytest.raises(ValueError, match="batch"):
        G2(jnp.zeros((5, 2)))  # points to E.batch


def test_batch_shape_errors():
    with pytest.raises(ValueError, match=r"'x'.*\(2,\).*\(4, 3\)"):
        G2.batch(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="batch axes disagree"):
        XY.batch(x=jnp.zeros((4, 2)), y=jnp.zeros(5))


def test_discrete_variable_needs_integers():
    E = ebm.energy(lambda k: k * 1.0, k=ebm.Var((), constraints.integer_interval(0, 3)))
    assert float(E(jnp.array(2))) == 2.0
    with pytest.raises(TypeError, match=r"'k'.*discrete"):
        E(jnp.array(2.0))


# ---------------------------------------------------------------- building
def test_shape_clash_when_summing_names_variable_and_both_sides():
    G3 = ebm.Gaussian("x", jnp.zeros(3), cov=1.0)
    with pytest.raises(ValueError, match="'x'") as info:
        G2 + G3
    msg = str(info.value)
    assert "(2,)" in msg and "(3,)" in msg
    assert "term 0" in msg and "term 1" in msg and "Gaussian" in msg
    with pytest.raises(ValueError, match=r"'x'.*\(2,\).*\(3,\)"):
        G2 | G3
    with pytest.raises(ValueError, match="'x'"):
        XY + G3


def test_clash_names_labelled_terms():
    a = G2.named("prior")
    b = ebm.energy(lambda x: jnp.sum(x), x=(5,)).named("likelihood")
    with pytest.raises(ValueError, match="'x'") as info:
        a + b
    assert "prior" in str(info.value) and "likelihood" in str(info.value)


def test_support_clash_names_variable_and_both_supports():
    a = ebm.FromDistribution("s", dist.Exponential(1.0))
    b = ebm.FromDistribution("s", dist.Beta(2.0, 2.0))
    with pytest.raises(ValueError, match="'s'") as info:
        a + b
    msg = str(info.value)
    assert "greater_than(0.0)" in msg and "interval(0.0, 1.0)" in msg


def test_conditioning_with_wrongly_shaped_value():
    with pytest.raises(ValueError, match=r"'x'.*\(2,\).*\(3,\)"):
        XY.condition(x=jnp.zeros(3))
    with pytest.raises(ValueError, match=r"'y'.*\(\).*\(2,\)"):
        XY.condition(y=[1.0, 2.0])


def test_conditioning_unknown_name():
    with pytest.raises(KeyError, match=r"unknown.*'z'") as info:
        XY.condition(z=1.0)
    assert "'x'" in str(info.value)
    with pytest.raises(KeyError, match="'y'"):
        XY.condition(y=1.0).condition(y=2.0)  # already fixed: no longer a variable


def test_conditioning_on_nothing():
    with pytest.raises(ValueError, match="at least one"):
        XY.condition()


def test_conditioning_discrete_needs_integer():
    E = ebm.energy(lambda k: k * 1.0, k=ebm.Var((), constraints.integer_interval(0, 3)))
    with pytest.raises(TypeError, match=r"'k'.*integer"):
        E.condition(k=1.5)
    assert float(E.condition(k=np.int32(3))()) == 3.0


def test_renaming_unknown_name():
    with pytest.raises(KeyError, match=r"unknown.*'q'") as info:
        XY.rename(q="z")
    assert "'x'" in str(info.value)


def test_rename_collisions():
    with pytest.raises(ValueError, match=r"\['y'\] collide"):
        XY.rename(x="y")
    with pytest.raises(ValueError, match=r"\['z'\] collide"):
        XY.rename(x="z", y="z")
    # a swap is not a collision
    assert set(XY.rename(x="y", y="x").space) == {"x", "y"}
    with pytest.raises(ValueError, match="valid name"):
        XY.rename(x="not a name")


def test_variable_names_must_be_identifiers():
    with pytest.raises(TypeError, match="identifier"):
        ebm.Gaussian("a b", 0.0, cov=1.0)
    with pytest.raises(TypeError, match="identifier"):
        ebm.Confinement(3)


def test_operators_reject_non_numbers_and_non_energies():
    with pytest.raises(TypeError):
        G2 * "2"
    with pytest.raises(TypeError):
        G2 * jnp.ones(2)  # a weight is a scalar
    with pytest.raises(TypeError):
        G2 + 1.0
    with pytest.raises(TypeError):
        G2 | 1.0
    with pytest.raises(TypeError):
        G2 - 1.0
    with pytest.raises(TypeError):
        G2 / G2
    with pytest.raises(TypeError):
        G2 * ebm.Param(jnp.ones(2))


def test_logsumexp_argument_errors():
    with pytest.raises(TypeError, match="energies"):
        ebm.logsumexp()
    with pytest.raises(TypeError, match="energies"):
        ebm.logsumexp(G2, 1.0)
    with pytest.raises(ValueError, match=r"2 energies.*\(3,\)"):
        ebm.logsumexp(G2, G2, weights=[1.0, 1.0, 1.0])


def test_freeze_needs_an_energy():
    with pytest.raises(TypeError, match="Energy"):
        ebm.freeze(1.0)
