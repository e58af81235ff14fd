"""Property-based fuzzing of constructors and the algebra: every refusal is a ValueError,
TypeError or KeyError raised by composable_ebm itself (never an internal JAX, NumPy or
NumPyro error), and whatever is accepted evaluates without NaN."""

import math

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpyro.distributions import constraints

import composable_ebm as ebm

FUZZ = settings(
    deadline=None,
    max_examples=60,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

LIBRARY_ERRORS = (ValueError, TypeError, KeyError)


def raised_by_library(exc: BaseException) -> None:
    """The error is one of ours: a library error type, raised from composable_ebm code."""
    assert isinstance(exc, LIBRARY_ERRORS), f"{type(exc).__name__}: {exc}"
    assert type(exc).__module__ in ("builtins", "composable_ebm.energies._distribution"), (
        f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    )
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    where = last.tb_frame.f_code.co_filename
    assert "composable_ebm" in where and "tests" not in where.split("composable_ebm")[-1], (
        f"{type(exc).__name__} raised in {where}: {exc}"
    )
    assert str(exc), "an error needs a message"


def attempt(build):
    """``build()``, or None after checking that its error is the library's own."""
    try:
        return build()
    except Exception as e:  # the point is to look at every error
        raised_by_library(e)
        return None


# ---------------------------------------------------------------- numbers
special = st.sampled_from([0.0, -0.0, -1.0, math.nan, math.inf, -math.inf, 1e39, -1e39, 1e-300])
moderate = st.floats(-10.0, 10.0, allow_nan=False, width=32)
numbers = st.one_of(moderate, special, st.integers(-3, 3))
anything = st.one_of(
    numbers,
    st.sampled_from(["a", "1.0", None, b"x", 1 + 2j, [1.0, "a"], [[1.0], [1.0, 2.0]], {}]),
)
shapes = st.sampled_from([(), (1,), (2,), (3,), (2, 2)])


def arrays(shape_strategy=shapes, elements=numbers):
    return shape_strategy.flatmap(
        lambda s: st.lists(elements, min_size=math.prod(s), max_size=math.prod(s)).map(
            lambda v, s=s: np.asarray(v, dtype=np.float64).reshape(s)
        )
    )


@st.composite
def matrices(draw):
    """Covariances and precisions: scalars, diagonals, SPD, indefinite, non-symmetric,
    singular, wrongly shaped, non-finite."""
    kind = draw(st.sampled_from(["scalar", "diag", "spd", "random", "asym", "singular", "3d"]))
    d = draw(st.integers(1, 3))
    if kind == "scalar":
        return draw(numbers)
    if kind == "diag":
        return draw(arrays(st.just((d,))))
    if kind == "3d":
        return np.ones((d, d, d))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.normal(size=(d, d))
    if kind == "spd":
        return a @ a.T + draw(st.sampled_from([1e-3, 1.0, 1e3])) * np.eye(d)
    if kind == "asym":
        return a @ a.T + np.eye(d) + np.triu(np.ones((d, d)), 1)
    if kind == "singular":
        v = rng.normal(size=(d, 1))
        return v @ v.T
    m = draw(arrays(st.just((d, d))))
    return m


@FUZZ
@given(mean=st.one_of(arrays(), anything), mat=st.one_of(matrices(), anything), which=st.booleans())
def test_gaussian_constructor(mean, mat, which):
    kw = {"cov": mat} if which else {"precision": mat}
    E = attempt(lambda: ebm.Gaussian("x", mean, **kw))
    if E is not None:
        # accepted: finite parameters, and exactly zero at the mean
        assert np.all(np.isfinite(np.asarray(E.mean))) and np.all(np.isfinite(E.tril))
        assert float(E(E.mean)) == 0.0


@FUZZ
@given(c=anything, op=st.sampled_from(["mul", "rmul", "div", "param"]))
def test_weights_and_temperatures(c, op):
    if op == "rmul" and isinstance(c, (list, bytes)):
        return  # `[1.0] * E` is refused by list.__mul__ before the energy is asked
    G = ebm.Gaussian("x", 0.0, cov=1.0)
    build = {
        "mul": lambda: G * c,
        "rmul": lambda: c * G,
        "div": lambda: G / c,
        "param": lambda: ebm.Param(c) * G,
    }[op]
    E = attempt(build)
    if E is not None:
        assert not np.isnan(float(E(1.0)))


@FUZZ
@given(w=st.one_of(st.lists(numbers, min_size=1, max_size=3), anything))
def test_logsumexp_weights(w):
    a, b = ebm.Gaussian("x", -1.0, cov=1.0), ebm.Gaussian("x", 1.0, cov=1.0)
    E = attempt(lambda: ebm.logsumexp(a, b, weights=w))
    if E is not None:
        assert np.isfinite(float(E(0.0)))


SPACE = {
    "x": ebm.Var(()),
    "s": ebm.Var((), constraints.positive),
    "p": ebm.Var((2,), constraints.unit_interval),
    "k": ebm.Var((), constraints.integer_interval(0, 3)),
}


def _joint(x, s, p, k):
    return (x**2 + 1.0) * s + jnp.sum(p) + k


JOINT = ebm.energy(_joint, **SPACE)
GOOD = {"x": 0.5, "s": 1.5, "p": jnp.array([0.2, 0.7]), "k": jnp.array(2)}


@FUZZ
@given(
    values=st.dictionaries(
        st.sampled_from(["x", "s", "p", "k", "zz"]),
        st.one_of(anything, arrays(), st.integers(-5, 5)),
        min_size=1,
        max_size=3,
    )
)
def test_condition_values(values):
    E = attempt(lambda: JOINT.condition(**values))
    if E is not None:
        rest = {k: v for k, v in GOOD.items() if k in E.space}
        assert not np.isnan(float(E(rest)))


names = st.one_of(
    st.sampled_from(["x", "y", "z", "s", "k", "p"]),
    st.text(max_size=4),
    st.sampled_from(["not a name", "1x", "", "λ"]),
)


@FUZZ
@given(mapping=st.dictionaries(st.sampled_from(["x", "s", "p", "k", "q"]), names, max_size=3))
def test_rename(mapping):
    E = attempt(lambda: JOINT.rename(**mapping))
    if E is not None:
        assert sorted(E.space) == sorted(mapping.get(k, k) for k in SPACE)


@FUZZ
@given(name=st.one_of(names, st.integers(), st.none()))
def test_variable_names(name):
    for build in (
        lambda: ebm.Gaussian(name, 0.0, cov=1.0),
        lambda: ebm.Confinement(name, shape=(2,)),
        lambda: ebm.FromDistribution(name, dist.Exponential(1.0)),
    ):
        E = attempt(build)
        if E is not None:
            assert list(E.space) == [name]


supports = st.sampled_from(
    [
        constraints.real,
        constraints.positive,
        constraints.unit_interval,
        constraints.interval(0.0, 2.0),
        constraints.greater_than(-1.0),
        constraints.integer_interval(0, 3),
        constraints.boolean,
        constraints.simplex,
    ]
)
var_shapes = st.sampled_from([(), (1,), (2,), (3,), None])


@FUZZ
@given(
    decls=st.lists(
        st.tuples(st.sampled_from(["x", "y"]), var_shapes, supports), min_size=2, max_size=4
    ),
    how=st.sampled_from(["sum", "logsumexp", "mixture"]),
)
def test_sums_with_conflicting_spaces(decls, how):
    def term(name, shape, support):
        return ebm.energy(lambda **v: jnp.zeros(()), **{name: ebm.Var(shape, support)})

    energies = [attempt(lambda d=d: term(*d)) for d in decls]
    energies = [e for e in energies if e is not None]
    if len(energies) < 2:
        return
    build = {
        "sum": lambda: sum(energies[1:], energies[0]),
        "logsumexp": lambda: ebm.logsumexp(*energies),
        "mixture": lambda: ebm.mixture(
            *energies, weights=np.ones(len(energies)), log_z=[0.0] * len(energies)
        ),
    }[how]
    E = attempt(build)
    if E is not None:
        for name, var in E.space.items():
            shapes_seen = {v.shape for e in energies for n, v in e.space.items() if n == name}
            assert var.shape in shapes_seen


@FUZZ
@given(
    shape=st.one_of(shapes, st.sampled_from([(0,), "ab", (2.5,), (-1,), None])),
    hidden=st.one_of(
        st.lists(st.integers(-2, 4), max_size=2).map(tuple),
        st.sampled_from([3, "16", (2.0,), (True,)]),
    ),
)
def test_neural_energy_sizes(shape, hidden):
    from jax import random

    E = attempt(lambda: ebm.NeuralEnergy("x", shape, hidden=hidden, key=random.key(0)))
    if E is not None:
        assert all(h >= 1 for h in hidden)
        assert np.isfinite(float(E(jnp.zeros(E.space["x"].shape))))


@FUZZ
@given(
    loc=st.one_of(numbers, anything),
    scale=st.one_of(numbers, anything),
    trainable=st.booleans(),
)
def test_from_distribution_parameters(loc, scale, trainable):
    try:  # NumPyro's own constructor is not under test
        d = dist.Normal(loc, scale, validate_args=False)
    except Exception:
        return
    E = attempt(lambda: ebm.FromDistribution("x", d, trainable=trainable))
    if E is not None:
        assert not np.isnan(float(E(jnp.zeros(E.space["x"].shape))))


@pytest.mark.parametrize(
    "fn, kwargs",
    [
        ("two_moons", {"noise": math.nan}),
        ("two_moons", {"noise": -0.1}),
        ("spirals", {"turns": math.inf}),
        ("rings", {"radii": ()}),
        ("pinwheel", {"arms": 2.5}),
    ],
)
def test_dataset_settings(fn, kwargs):
    from composable_ebm import datasets

    with pytest.raises(LIBRARY_ERRORS) as info:
        datasets.DATASETS[fn](16, **kwargs)
    raised_by_library(info.value)
