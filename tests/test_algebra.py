"""Laws of the algebra, checked against direct formulas on random energies and points."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import composable_ebm as ebm

LAW = settings(deadline=None, max_examples=25, derandomize=True)
RTOL, ATOL = 1e-4, 1e-4


def close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol, atol)


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


@st.composite
def quadratics(draw, d, name="x"):
    """A random quadratic energy over ``name`` (shape (d,)) and its float64 formula."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["cov", "precision", "function"]))
    mean, mat = rng.normal(size=d), _spd(rng, d)
    if kind == "cov":
        prec, offset = np.linalg.inv(mat), 0.0
        E = ebm.Gaussian(name, mean.astype(np.float32), cov=mat.astype(np.float32))
    elif kind == "precision":
        prec, offset = mat, 0.0
        E = ebm.Gaussian(name, mean.astype(np.float32), precision=mat.astype(np.float32))
    else:  # not a Gaussian: an offset, so minima differ from zero
        prec, offset = mat, float(rng.normal())
        m32, p32 = jnp.asarray(mean, jnp.float32), jnp.asarray(mat, jnp.float32)

        def fn(**v):
            r = v[name] - m32
            return 0.5 * r @ p32 @ r + offset

        E = ebm.energy(fn, **{name: (d,)})

    def ref(x):
        r = np.asarray(x, np.float64) - mean
        return 0.5 * r @ prec @ r + offset

    return E, ref


def points(d):
    return st.lists(st.floats(-3.0, 3.0, allow_nan=False, width=32), min_size=d, max_size=d).map(
        lambda v: np.asarray(v, np.float32)
    )


@st.composite
def problems(draw, n=3):
    d = draw(st.integers(1, 3))
    terms = [draw(quadratics(d)) for _ in range(n)]
    return [t for t, _ in terms], [r for _, r in terms], draw(points(d))


@st.composite
def joint_problems(draw):
    """Energies over x (shape (d,)) and y (shape (2,)), with their formulas."""
    d = draw(st.integers(1, 3))
    out = []
    for _ in range(2):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        p, b = _spd(rng, d + 2), rng.normal(size=d + 2)
        p32, b32 = jnp.asarray(p, jnp.float32), jnp.asarray(b, jnp.float32)

        def fn(x, y, p32=p32, b32=b32):
            z = jnp.concatenate([x, y])
            return 0.5 * z @ p32 @ z + b32 @ z

        def ref(x, y, p=p, b=b):
            z = np.concatenate([x, y]).astype(np.float64)
            return 0.5 * z @ p @ z + b @ z

        out.append((ebm.energy(fn, x=(d,), y=(2,)), ref))
    gy, ry = draw(quadratics(2, name="y"))
    return out, (gy, ry), draw(points(d)), draw(points(2))


weights = st.floats(-5.0, 5.0, allow_nan=False, width=32)
temperatures = st.floats(0.25, 5.0, width=32)
positive_weights = st.floats(0.0625, 5.0, width=32)


# ---------------------------------------------------------------- sums
@LAW
@given(problems())
def test_sum_is_associative_and_commutative(p):
    (A, B, C), (ra, rb, rc), x = p
    want = ra(x) + rb(x) + rc(x)
    for E in ((A + B) + C, A + (B + C), C + B + A, B + (C + A), sum([A, B, C])):
        close(E(x), want)
    assert len(((A + B) + C).terms) == len((A + (B + C)).terms) == 3


@LAW
@given(problems(), weights)
def test_weights_distribute_over_sums(p, c):
    (A, B, _), (ra, rb, _), x = p
    want = c * (ra(x) + rb(x))
    for E in (c * (A + B), (A + B) * c, c * A + c * B, A * c + B * c):
        close(E(x), want)


@LAW
@given(problems(), temperatures)
def test_temperature_is_inverse_weight(p, t):
    (A, *_), (ra, *_), x = p
    close((A / t)(x), ra(x) / t)
    close((A / t)(x), ((1.0 / t) * A)(x))


@LAW
@given(problems())
def test_difference_and_negation(p):
    (A, B, _), (ra, rb, _), x = p
    close((A - B)(x), ra(x) - rb(x))
    close((-A)(x), -ra(x))
    close((A - A)(x), 0.0)
    neg = -A
    close((-neg)(x), ra(x))


@LAW
@given(problems(), weights, weights)
def test_weights_compose(p, c1, c2):
    (A, *_), (ra, *_), x = p
    close((c1 * (c2 * A))(x), c1 * c2 * ra(x))


# ---------------------------------------------------------------- disjunction
def _lse_ref(es, w=None):
    es = np.asarray(es, np.float64)
    w = np.ones_like(es) if w is None else np.asarray(w, np.float64)
    return -np.log(np.sum(w * np.exp(-es)))


@LAW
@given(problems())
def test_or_is_logsumexp(p):
    (A, B, C), (ra, rb, rc), x = p
    close((A | B)(x), _lse_ref([ra(x), rb(x)]))
    close(ebm.logsumexp(A, B)(x), _lse_ref([ra(x), rb(x)]))
    want = _lse_ref([ra(x), rb(x), rc(x)])
    for E in ((A | B) | C, A | (B | C), A | B | C, ebm.logsumexp(A, B, C)):
        close(E(x), want)
    nested = (A | B) | C
    assert len(nested.terms) == 3


@LAW
@given(problems(), st.lists(positive_weights, min_size=3, max_size=3))
def test_weighted_logsumexp(p, w):
    (A, B, C), (ra, rb, rc), x = p
    es = [ra(x), rb(x), rc(x)]
    close(ebm.logsumexp(A, B, C, weights=w)(x), _lse_ref(es, w))
    # nested weights multiply: w0·(v0, v1) and w1 for C
    inner = ebm.logsumexp(A, B, weights=w[:2])
    outer = ebm.logsumexp(inner, C, weights=[0.5, w[2]])
    close(outer(x), _lse_ref(es, [*np.multiply(w[:2], 0.5), w[2]]))
    # a trainable inner weight is kept as one term, same value
    trained = ebm.logsumexp(A, B, weights=ebm.Param(jnp.asarray(w[:2])))
    close((trained | C)(x), _lse_ref(es, [*w[:2], 1.0]))


def test_logsumexp_of_one_energy_is_the_energy():
    G = ebm.Gaussian("x", 1.0, cov=1.0)
    close(ebm.logsumexp(G)(3.0), 2.0)
    close(ebm.logsumexp(G, weights=[2.0])(3.0), 2.0 - np.log(2.0))


def test_logsumexp_is_stable_for_large_energies():
    a = ebm.energy(lambda x: x + 1000.0, x=())
    b = ebm.energy(lambda x: x + 1001.0, x=())
    close((a | b)(0.0), 1000.0 - np.log1p(np.exp(-1.0)), rtol=1e-6)


# ---------------------------------------------------------------- conditioning and renaming
@LAW
@given(joint_problems())
def test_conditioning_commutes_with_sums(p):
    ((A, ra), (B, rb)), (G, rg), x, y = p
    want = ra(x, y) + rb(x, y) + rg(y)
    S = A + B + G
    close(S.condition(y=y)(x), want)
    close((A.condition(y=y) + B.condition(y=y))(x) + G(y), want)
    close((A + B).condition(y=y)(x=x), ra(x, y) + rb(x, y))
    assert set(S.condition(y=y).space) == {"x"}
    # conditioning on x leaves y free
    close(S.condition(x=x)(y), want)
    close((A.condition(x=x) + B.condition(x=x) + G)(y), want)


@LAW
@given(joint_problems(), weights)
def test_condition_then_evaluate_equals_evaluate(p, c):
    ((A, ra), _), _, x, y = p
    close(A.condition(y=y)(x=x), A(x=x, y=y))
    close(A.condition(y=y)(x=x), ra(x, y))
    close(A.condition(y=y).condition(x=x)(), ra(x, y))
    close(A.condition(x=x, y=y)({}), ra(x, y))
    close((c * A).condition(y=y)(x), c * ra(x, y))
    close((A | A).condition(y=y)(x), ra(x, y) - np.log(2.0))


@LAW
@given(joint_problems())
def test_rename_round_trips(p):
    ((A, ra), _), (G, _), x, y = p
    E = A + G
    back = E.rename(x="z").rename(z="x")
    assert back.space == E.space
    close(back(x=x, y=y), E(x=x, y=y))
    close(E.rename(x="z")(z=x, y=y), ra(x, y) + G(y))
    swapped = A.rename(y="x2").rename(x="y").rename(x2="x") if len(x) == 2 else None
    if swapped is not None:  # a swap: y holds x's values and x holds y's
        close(swapped(x=y, y=x), ra(x, y))
    close(A.rename(x="u").condition(y=y)(u=x), ra(x, y))
    close(A.condition(y=y).rename(x="u")(u=x), ra(x, y))


def test_rename_swap_in_one_call_and_composed():
    E = ebm.energy(lambda a, b: a - 2.0 * b, a=(), b=())
    close(E.rename(a="b", b="a")(a=1.0, b=10.0), 10.0 - 2.0)
    # a → c → b and b → c: the composed renaming is a → b, b → c
    composed = E.rename(a="c").rename(c="b", b="c")
    assert set(composed.space) == {"b", "c"}
    close(composed(b=1.0, c=10.0), 1.0 - 20.0)
    # renaming onto a name freed by conditioning
    close(E.condition(b=1.0).rename(a="b")(b=5.0), 5.0 - 2.0)


def test_energies_built_inside_jit_keep_values_traced():
    x = jnp.array([1.0, 2.0])

    @jax.jit
    def f(mean, var, w, r):
        G = ebm.Gaussian("x", mean, cov=var)
        L = ebm.logsumexp(G, ebm.Confinement("x", eps=0.0), weights=w)
        D = ebm.FromDistribution("s", dist.Gamma(2.0, r), trainable=True)
        return G(x), L(x), D(1.0)

    g, lse, d = f(jnp.zeros(2), jnp.array(2.0), jnp.array([0.5, 0.5]), jnp.array(3.0))
    close(g, 1.25)
    close(lse, _lse_ref([1.25, np.sqrt(5.0)], [0.5, 0.5]))
    close(d, -dist.Gamma(2.0, 3.0).log_prob(1.0))


# ---------------------------------------------------------------- numbers stored as arrays
G2 = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
XY = ebm.energy(lambda x, y: jnp.sum(x) * y, x=(2,), y=())


def _constructions():
    G2 = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
    XY = ebm.energy(lambda x, y: jnp.sum(x) * y, x=(2,), y=())
    return {
        "gaussian-python": ebm.Gaussian("x", 1, cov=2),
        "weight-int": 2 * G2,
        "weight-float": G2 * 0.5,
        "weight-numpy": np.float64(1.5) * G2,
        "weight-jax-weak": jnp.asarray(2.0) * G2,
        "temperature": G2 / 3,
        "negation": -G2,
        "difference": G2 - G2,
        "lse-default": G2 | G2,
        "lse-weights": ebm.logsumexp(G2, G2, weights=[1, 2]),
        "lse-nested": (G2 | G2) | G2,
        "condition-python": XY.condition(y=2),
        "condition-list": XY.condition(x=[1, 2]),
        "confinement": ebm.Confinement("x", scale=2, eps=0),
        "param": ebm.Param(3) * G2,
        "from-distribution": ebm.FromDistribution("x", dist.Normal(0, 1)),
        "from-distribution-trainable": ebm.FromDistribution("x", dist.Gamma(2, 1), trainable=True),
    }


@pytest.mark.parametrize("x64", [False, True])
def test_numbers_are_strongly_typed_default_float(x64):
    with jax.enable_x64(x64):
        want = jnp.dtype(jnp.float64 if x64 else jnp.float32)
        for label, E in _constructions().items():
            leaves = jax.tree_util.tree_leaves(E)
            assert leaves, label
            for leaf in leaves:
                assert leaf.dtype == want, (label, leaf.dtype)
                assert leaf.weak_type is False, label


def test_jax_scalar_weight():
    x = jnp.array([1.0, 2.0])
    for c in (jnp.array(2.0), jnp.float32(2.0), np.float32(2.0)):
        close((c * G2)(x), 5.0)
        close((G2 * c)(x), 5.0)
        close((G2 / c)(x), 1.25)
    traced = jax.jit(lambda w, v: (w * G2)(v) + (G2 / w)(v))
    close(traced(jnp.array(4.0), x), 4.0 * 2.5 + 2.5 / 4.0)


def test_conditioned_values_are_leaves_not_constants():
    v = jnp.array([3.0, -1.0])
    E = XY.condition(x=v)
    leaves = jax.tree_util.tree_leaves(E)
    assert any(leaf is v or (leaf.shape == v.shape and bool(jnp.all(leaf == v))) for leaf in leaves)
    # swapping the leaf changes the value: it is read at evaluation time
    E2 = jax.tree_util.tree_map(lambda a: a * 2.0, E)
    close(E(y=1.0), 2.0)
    close(E2(y=1.0), 4.0)


def test_new_values_do_not_retrace():
    traces = []

    @jax.jit
    def f(E, y):
        traces.append(1)
        return E(y=y)

    for v in ([1.0, 2.0], [3.0, 4.0], np.array([5.0, 6.0])):
        close(f(XY.condition(x=v), 1.0), sum(v))
    for w in (2, 3.0, jnp.asarray(4.0)):
        f(w * XY.condition(x=[1.0, 1.0]), 1.0)
    assert len(traces) == 2  # one per structure: plain conditioned, then weighted


def test_sum_of_list():
    parts = [ebm.Gaussian("x", float(i), cov=1.0) for i in range(4)]
    E = sum(parts)
    assert isinstance(E, ebm.Energy)
    close(E(0.0), 0.5 * (0 + 1 + 4 + 9))
    assert sum(parts[:1]) is parts[0]


class _CountingGaussian(ebm.Gaussian):
    """A Gaussian that counts how often its space is asked for (a test-side counter)."""

    asked = 0

    @property
    def space(self):
        type(self).asked += 1
        return super().space


@pytest.mark.parametrize("build", ["plus", "ebm.sum"])
def test_sums_build_in_linear_time(build):
    # each term's space is read a bounded number of times however long the sum: building
    # by `+` in a loop used to merge every earlier term again (quadratic)
    n = 300
    parts = [_CountingGaussian(f"x{i % 7}", float(i), cov=1.0) for i in range(n)]
    _CountingGaussian.asked = 0
    if build == "plus":
        E = parts[0]
        for p in parts[1:]:
            E = E + p
    else:
        E = ebm.sum(parts)
    assert _CountingGaussian.asked <= 2 * n
    assert len(ebm.terms(E)) == n and sorted(E.space) == [f"x{i}" for i in range(7)]
    _CountingGaussian.asked = 0
    for _ in range(10):
        _ = E.space  # stored, not recomputed from the terms
    assert _CountingGaussian.asked == 0


def test_ebm_sum_equals_the_chain_of_pluses_in_value_and_gradient():
    rng = np.random.default_rng(0)
    parts = [
        ebm.Gaussian("x", rng.normal(size=3), cov=float(rng.uniform(0.5, 2.0))) for _ in range(40)
    ] + [ebm.Confinement("x", scale=0.1), ebm.Gaussian("y", 0.0, cov=2.0)]
    plus = parts[0]
    for p in parts[1:]:
        plus = plus + p
    summed = ebm.sum(iter(parts))  # any iterable
    v = {"x": jnp.asarray(rng.normal(size=3)), "y": jnp.asarray(0.3)}
    close(summed(v), plus(v))
    g1, g2 = jax.grad(summed.evaluate)(v), jax.grad(plus.evaluate)(v)
    for k in v:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-6)
    assert ebm.sum([parts[0]]) is parts[0]
    assert len(ebm.terms(ebm.sum([plus, plus]))) == 2 * len(parts)  # nested sums flatten


def test_ebm_sum_refuses_bad_input_and_names_clashing_terms():
    g = ebm.Gaussian("x", 0.0, cov=1.0)
    with pytest.raises(ValueError, match="at least one energy"):
        ebm.sum([])
    with pytest.raises(TypeError, match="term 1 is a float"):
        ebm.sum([g, 3.0])
    with pytest.raises(TypeError, match="iterable of energies"):
        ebm.sum(g)
    clash = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
    with pytest.raises(ValueError, match=r"'x' has shape \(\) in term 0 .* shape \(2,\) in term 2"):
        ebm.sum([g, g, clash])
