"""Sums of identical terms are evaluated together (one vmap over stacked leaves)."""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import composable_ebm as ebm
from composable_ebm.energies._stack import MIN_STACK, groups


def _unrolled(terms, values):
    """The sum term by term, each through its own checked call."""
    return sum(t({k: values[k] for k in t.space}) for t in terms)


def _ring(x, r):
    return (jnp.linalg.norm(x) - r) ** 2


KINDS = ("gaussian", "scaled_named", "conditioned_fn", "confinement")


def _term(kind, i, var, rng):
    mean = jnp.asarray(rng.normal(size=2), jnp.float32)
    if kind == "gaussian":
        a = rng.normal(size=(2, 2))
        return ebm.Gaussian(var, mean, cov=jnp.asarray(a @ a.T + np.eye(2), jnp.float32))
    if kind == "scaled_named":
        return (float(rng.uniform(0.5, 2.0)) * ebm.Gaussian(var, mean, cov=1.0)).named(f"t{i}")
    if kind == "conditioned_fn":
        ring = ebm.energy(_ring, x=(2,), r=())
        return ring.condition(r=float(rng.uniform(0.5, 2.0))).rename(x=var)
    return ebm.Confinement(var, scale=float(rng.uniform(0.1, 1.0)), shape=(2,))


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(MIN_STACK, 12),
    num_vars=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_a_stacked_sum_equals_the_unrolled_sum_in_value_and_gradient(kind, n, num_vars, seed):
    rng = np.random.default_rng(seed)
    terms = [_term(kind, i, f"x{i % num_vars}", rng) for i in range(n)]
    stacked = ebm.sum(terms)  # stacked when built: a few arrays, one vmap
    assert isinstance(stacked, ebm.Stacked) and len(stacked) == n
    grouped = functools.reduce(operator.add, terms)  # built by `+`: grouped when traced
    assert groups(grouped.terms) == [list(range(n))]
    values = {f"x{j}": jnp.asarray(rng.normal(size=2), jnp.float32) for j in range(num_vars)}
    want = _unrolled(terms, values)
    g_unrolled = jax.grad(lambda v: _unrolled(terms, v))(values)
    gp_unrolled = jax.tree_util.tree_leaves(jax.grad(lambda ts: _unrolled(ts, values))(terms))
    for E in (stacked, grouped):
        np.testing.assert_allclose(E(values), want, rtol=1e-5, atol=1e-5)
        g = jax.grad(lambda v, E=E: E(v))(values)
        for k in values:
            np.testing.assert_allclose(g[k], g_unrolled[k], rtol=1e-4, atol=1e-5)
    # gradients with respect to the parameters of every term flow through the stack
    per_leaf = len(gp_unrolled) // n
    gp = jax.tree_util.tree_leaves(jax.grad(lambda e: e(values))(stacked))
    assert len(gp) == per_leaf
    for j, g in enumerate(gp):
        for i in range(n):
            np.testing.assert_allclose(g[i], gp_unrolled[i * per_leaf + j], rtol=1e-4, atol=1e-5)
    gp = jax.tree_util.tree_leaves(jax.grad(lambda e: e(values))(grouped))
    for a, b in zip(gp, gp_unrolled, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_groups_split_by_class_static_fields_and_leaf_shapes():
    g2 = [ebm.Gaussian(f"a{i}", jnp.zeros(2), cov=1.0) for i in range(4)]
    g3 = [ebm.Gaussian(f"b{i}", jnp.zeros(3), cov=1.0) for i in range(4)]  # other shapes
    conf = [ebm.Confinement(f"a{i}", scale=0.5) for i in range(4)]
    fn = ebm.energy(lambda x: jnp.sum(x), x=(2,))  # a function energy: never relabelled away
    assert groups([*g2, *g3, *conf, fn]) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12]]
    # a label does not split a group, nor does a different weight value; freezing does
    # (it changes what fit trains)
    mixed = [g2[0], g2[1].named("x"), 2.0 * g2[2], 3.0 * g2[3], ebm.freeze(g2[0])]
    assert groups(mixed) == [[0, 1], [2, 3], [4]]


def test_per_term_labels_and_energies_survive_stacking():
    terms = [ebm.Gaussian("x", float(m), cov=1.0).named(f"e{m}") for m in range(6)]
    E = ebm.sum(terms)
    assert [label for label, _ in ebm.terms(E)] == [f"e{m}" for m in range(6)]
    s = ebm.sample(E, jax.random.key(0), num_warmup=50, num_samples=50, num_chains=2)
    total = sum(np.asarray(v) for v in s.term_energies.values())
    np.testing.assert_allclose(total, np.asarray(s.stats["model_energy"]), rtol=1e-4, atol=1e-4)


def test_sampling_a_stacked_product_of_experts_gives_the_closed_form_moments():
    # 200 unit Gaussian experts over one x: a Gaussian with mean mean(m) and variance 1/200;
    # 50 experts over x0..x49 each: independent unit Gaussians at their own means
    n = 200
    means = np.linspace(-2.0, 2.0, n)
    shared = ebm.sum(ebm.Gaussian("x", float(m), cov=1.0) for m in means)
    indep = ebm.sum(ebm.Gaussian(f"y{i}", float(i) / 10, cov=1.0) for i in range(50))
    E = shared + indep
    s = ebm.sample(E, jax.random.key(1), num_warmup=300, num_samples=500, num_chains=2)
    x = np.asarray(s.draws["x"]).ravel()
    ess = float(np.asarray(s.summary()["ess_bulk"]["x"]))
    sd = np.sqrt(1.0 / n)
    assert abs(x.mean() - means.mean()) < 4 * sd / np.sqrt(ess)
    assert abs(x.std() / sd - 1.0) < 4 / np.sqrt(2 * ess) + 0.02
    ys = np.stack([np.asarray(s.draws[f"y{i}"]).ravel() for i in range(50)])
    err = ys.mean(axis=1) - np.arange(50) / 10
    # 50 means, each with Monte-Carlo error ≈ 1/sqrt(ESS): their RMS error stays near it
    assert np.sqrt(np.mean(err**2)) < 2.0 / np.sqrt(ess)


def test_tracing_a_stacked_sum_is_flat_in_the_number_of_terms():
    def size(n):
        E = ebm.sum(ebm.Gaussian("x", jnp.full(2, i / n), cov=1.0) for i in range(n))
        jaxpr = jax.make_jaxpr(jax.grad(lambda v: E.evaluate({"x": v})))(jnp.zeros(2))
        return len(jax.tree_util.tree_leaves(E)), len(jaxpr.eqns)

    assert size(1000) == size(MIN_STACK)  # the same leaves and the same program


def test_stack_refuses_terms_of_other_structures_naming_them():
    g = [ebm.Gaussian(f"x{i}", 0.0, cov=1.0) for i in range(3)]
    with pytest.raises(ValueError, match=r"term 3 \(Confinement over \['x0'\]\) differs"):
        ebm.stack([*g, ebm.Confinement("x0")])
    with pytest.raises(ValueError, match="cannot be stacked"):
        ebm.stack([g[0] | g[1], g[1] | g[2]])  # a disjunction has no variable fields
    with pytest.raises(TypeError, match="term 1 is a float"):
        ebm.stack([g[0], 1.0])
    with pytest.raises(ValueError, match="at least one"):
        ebm.stack([])
    with pytest.raises(TypeError, match="iterable"):
        ebm.stack(g[0])


def test_a_stack_trains_saves_and_lists_its_members(tmp_path):
    terms = [ebm.Gaussian(f"x{i}", float(i), cov=1.0).named(f"g{i}") for i in range(5)]
    S = ebm.stack(terms)
    assert all(jax.tree_util.tree_leaves(ebm.trainable_mask(S)))  # means and factors train
    assert not any(jax.tree_util.tree_leaves(ebm.trainable_mask(ebm.freeze(S))))
    members = ebm.terms(S)
    assert [label for label, _ in members] == [f"g{i}" for i in range(5)]
    for (_, m), t in zip(members, terms):
        np.testing.assert_allclose(m({t.energy.var: 0.5}), t(0.5), rtol=1e-6)
    path = ebm.save(tmp_path / "stack.eqx", S)
    like = ebm.stack(ebm.Gaussian(f"x{i}", 0.0, cov=1.0).named(f"g{i}") for i in range(5))
    back = ebm.load(path, like)
    v = {f"x{i}": jnp.asarray(0.3 * i) for i in range(5)}
    np.testing.assert_allclose(back(v), S(v), rtol=1e-6)
    # fit trains every member's parameters through the stack
    data = {
        f"x{i}": np.random.default_rng(i).normal(2.0, 1.0, 4000).astype("float32") for i in range(5)
    }
    r = ebm.fit(
        S,
        data,
        ebm.ScoreMatching("exact"),
        steps=300,
        learning_rate=5e-2,
        key=jax.random.key(0),
        progress=False,
    )
    means = np.asarray(r.energy.leaves[0])
    np.testing.assert_allclose(means, 2.0, atol=0.15)


def test_nested_conditioning_stacks_with_the_right_values():
    # tempered, then conditioned: each level's conditioned variables keep their own values
    f = ebm.energy(lambda x, y, z: (x - y) ** 2 + (x - z) ** 2 + y * z, x=(), y=(), z=())
    terms = [(2.0 * f.condition(y=float(i))).condition(z=float(-i)) for i in range(5)]
    x = jnp.asarray(0.7)
    want = sum(float(t(x)) for t in terms)
    stacked = ebm.sum(terms)
    assert isinstance(stacked, ebm.Stacked)
    np.testing.assert_allclose(stacked(x), want, rtol=1e-5)
    plus = functools.reduce(operator.add, terms) + ebm.Gaussian("x", 0.0, cov=1.0)
    np.testing.assert_allclose(plus(x), want + 0.5 * 0.49, rtol=1e-5)


def test_terms_of_open_shape_stack_only_over_values_of_one_shape():
    # Confinement leaves its variable's shape open: the other terms decide it
    gs = [ebm.Gaussian(f"x{i}", jnp.zeros(2 if i < 2 else 3), cov=1.0) for i in range(4)]
    conf = [ebm.Confinement(f"x{i}", scale=0.5) for i in range(4)]
    values = {f"x{i}": jnp.ones(2 if i < 2 else 3) for i in range(4)}
    want = sum(float(t({k: values[k] for k in t.space})) for t in [*gs, *conf])
    for E in (ebm.sum([*gs, *conf]), functools.reduce(operator.add, [*gs, *conf])):
        np.testing.assert_allclose(E(values), want, rtol=1e-5)
    same = [ebm.Confinement(f"y{i}", scale=0.5) for i in range(4)]
    shapes = [ebm.Gaussian(f"y{i}", jnp.zeros(2), cov=1.0) for i in range(4)]
    E = ebm.sum([*same, *shapes])  # shapes known from the Gaussians: both groups stack
    assert [type(t).__name__ for t in E.terms] == ["Stacked", "Stacked"]


def test_ebm_sum_keeps_the_order_of_terms_it_does_not_stack():
    a, b = ebm.Gaussian("x", 0.0, cov=1.0), ebm.Confinement("x")
    c = ebm.Gaussian("y", jnp.zeros(3), cov=1.0)  # other leaf shapes: never with the experts
    E = ebm.sum([b, a, c])
    assert E.terms == (b, a, c)
    experts = [ebm.Gaussian("x", float(m), cov=1.0) for m in range(4)]
    E = ebm.sum([b, *experts, c])  # the stack stands where its first member stood
    assert [type(t).__name__ for t in E.terms] == ["Confinement", "Stacked", "Gaussian"]


def test_sums_of_stacks_list_and_evaluate_every_member():
    sensors = [
        ebm.sum(ebm.Gaussian(f"s{j}", float(i), cov=1.0) for i in range(4)) for j in range(4)
    ]
    E = ebm.sum(sensors)  # stacks are not stacked again
    assert len(E.terms) == 4 and len(ebm.terms(E)) == 16
    s = ebm.sample(E, jax.random.key(0), num_warmup=30, num_samples=30, num_chains=2)
    te = s.term_energies
    assert len(te) == 16
    total = sum(np.asarray(v) for v in te.values())
    np.testing.assert_allclose(total, np.asarray(s.stats["model_energy"]), rtol=1e-4, atol=1e-4)
