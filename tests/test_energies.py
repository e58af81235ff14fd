"""Every closed-form energy against its formula; evaluation, batching and scores."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

import composable_ebm as ebm

RTOL = 1e-5
ATOL = 1e-5

COV = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
MEAN = np.array([0.5, -1.0, 2.0])


def close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol, atol)


def quad(x, mean, prec):
    r = np.asarray(x, np.float64).ravel() - np.asarray(mean, np.float64).ravel()
    return 0.5 * r @ prec @ r


# ---------------------------------------------------------------- Gaussian
@pytest.mark.parametrize(
    ("kwargs", "prec"),
    [
        ({"cov": 2.5}, np.eye(3) / 2.5),
        ({"cov": np.array([1.0, 2.0, 0.5])}, np.diag([1.0, 0.5, 2.0])),
        ({"cov": COV}, np.linalg.inv(COV)),
        ({"precision": 4.0}, 4.0 * np.eye(3)),
        ({"precision": np.array([1.0, 3.0, 0.25])}, np.diag([1.0, 3.0, 0.25])),
        ({"precision": COV}, COV),
    ],
    ids=["cov-scalar", "cov-diag", "cov-matrix", "prec-scalar", "prec-diag", "prec-matrix"],
)
def test_gaussian_energy_precision_cov_log_partition(kwargs, prec):
    E = ebm.Gaussian("x", MEAN, **kwargs)
    assert E.space == {"x": ebm.Var((3,))}
    cov = np.linalg.inv(prec)
    close(E.precision, prec, rtol=1e-5, atol=1e-5)
    close(E.cov, cov, rtol=1e-4, atol=1e-5)
    for x in (np.zeros(3), np.array([1.0, -2.0, 0.3]), MEAN):
        close(E(jnp.asarray(x, jnp.float32)), quad(x, MEAN, prec))
    logz = 1.5 * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(cov)[1]
    close(E.log_partition, logz)
    # E + log Z is exactly the negative log density of the normal distribution
    x = jnp.array([0.2, 0.1, -0.4])
    mvn = dist.MultivariateNormal(jnp.asarray(MEAN, jnp.float32), precision_matrix=prec)
    close(E(x) + E.log_partition, -mvn.log_prob(x))


def test_gaussian_scalar_variable():
    E = ebm.Gaussian("t", 1.0, cov=4.0)
    assert E.space == {"t": ebm.Var(())}
    close(E(3.0), 0.5 * 4.0 / 4.0)
    close(E.log_partition, 0.5 * math.log(2 * math.pi * 4.0))


def test_gaussian_scalar_mean_broadcasts_to_matrix_cov():
    E = ebm.Gaussian("x", 1.0, cov=COV)
    assert E.space["x"].shape == (3,)
    x = np.array([0.0, 2.0, 1.0])
    close(E(jnp.asarray(x, jnp.float32)), quad(x, np.ones(3), np.linalg.inv(COV)))


def test_gaussian_matrix_valued_variable():
    mean = np.arange(6.0).reshape(2, 3)
    E = ebm.Gaussian("w", mean, cov=np.arange(1.0, 7.0))
    assert E.space["w"].shape == (2, 3)
    x = np.ones((2, 3))
    close(E(jnp.asarray(x, jnp.float32)), quad(x, mean, np.diag(1.0 / np.arange(1.0, 7.0))))


def test_gaussian_needs_exactly_one_of_cov_and_precision():
    with pytest.raises(ValueError, match="exactly one"):
        ebm.Gaussian("x", jnp.zeros(2))
    with pytest.raises(ValueError, match="exactly one"):
        ebm.Gaussian("x", jnp.zeros(2), cov=1.0, precision=1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cov": np.array([[1.0, 2.0], [2.0, 1.0]])},
        {"precision": np.array([[1.0, 2.0], [2.0, 1.0]])},
        {"cov": np.array([1.0, -1.0])},
        {"precision": -1.0},
    ],
)
def test_gaussian_not_positive_definite(kwargs):
    with pytest.raises(ValueError, match="positive definite") as info:
        ebm.Gaussian("x", jnp.zeros(2), **kwargs)
    assert "'x'" in str(info.value)


def test_gaussian_shape_mismatch_names_both():
    with pytest.raises(ValueError, match=r"'x'.*3.*\(2, 2\)"):
        ebm.Gaussian("x", jnp.zeros(3), cov=jnp.eye(2))
    with pytest.raises(ValueError, match="square"):
        ebm.Gaussian("x", jnp.zeros(2), cov=jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="diagonal"):
        ebm.Gaussian("x", jnp.zeros(2), cov=jnp.ones(3))


# ---------------------------------------------------------------- FromDistribution
DISTRIBUTIONS = [
    (
        "normal-batch",
        dist.Normal(jnp.array([0.0, 1.0, -2.0]), jnp.array([1.0, 0.5, 2.0])),
        jnp.array([0.3, 0.9, -1.0]),
    ),
    ("gamma", dist.Gamma(2.0, 3.0), jnp.array(0.7)),
    ("exponential", dist.Exponential(2.0), jnp.array(1.5)),
    (
        "mvn",
        dist.MultivariateNormal(jnp.array([1.0, -1.0]), jnp.array([[2.0, 0.3], [0.3, 1.0]])),
        jnp.array([0.5, 0.2]),
    ),
    ("dirichlet", dist.Dirichlet(jnp.array([1.5, 2.0, 3.0])), jnp.array([0.2, 0.3, 0.5])),
    ("beta", dist.Beta(2.0, 5.0), jnp.array(0.25)),
    ("lognormal-batch-2d", dist.LogNormal(jnp.zeros((2, 2)), 0.5), jnp.full((2, 2), 1.3)),
]


@pytest.mark.parametrize(
    ("d", "x"), [(d, x) for _, d, x in DISTRIBUTIONS], ids=[n for n, _, _ in DISTRIBUTIONS]
)
@pytest.mark.parametrize("trainable", [False, True])
def test_from_distribution_is_minus_log_prob(d, x, trainable):
    E = ebm.FromDistribution("v", d, trainable=trainable)
    shape = tuple(d.batch_shape) + tuple(d.event_shape)
    assert E.space["v"].shape == shape
    assert E.space["v"] == ebm.Var(shape, d.support)
    close(E(x), -jnp.sum(d.log_prob(x)), rtol=1e-5, atol=1e-5)


def test_from_distribution_support():
    assert ebm.FromDistribution("s", dist.Gamma(2.0, 1.0)).space["s"] == ebm.Var(
        (), constraints.positive
    )
    simplex = ebm.FromDistribution("p", dist.Dirichlet(jnp.ones(4))).space["p"].support
    assert isinstance(simplex, constraints._Simplex)


@pytest.mark.parametrize(
    ("d", "x"), [(d, x) for _, d, x in DISTRIBUTIONS], ids=[n for n, _, _ in DISTRIBUTIONS]
)
def test_from_distribution_trainable_round_trips_parameters(d, x):
    E = ebm.FromDistribution("v", d, trainable=True)
    back = E.distribution
    assert type(back) is type(d)
    assert (back.batch_shape, back.event_shape) == (d.batch_shape, d.event_shape)
    fields = type(d).gather_pytree_data_fields()
    given = [n for n in d.arg_constraints if n in fields and d.__dict__.get(n) is not None]
    assert set(E.unconstrained) == set(given)
    for name in given:
        close(getattr(back, name), getattr(d, name), rtol=1e-5, atol=1e-5)
    if isinstance(d, dist.MultivariateNormal):
        close(back.covariance_matrix, d.covariance_matrix, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("make", "x"),
    [
        (lambda a, b: dist.Beta(a, b), 0.3),
        (lambda a, b: dist.Gamma(a, b), 0.7),
        (lambda a, b: dist.LogNormal(a, b), 1.7),
        (lambda a, b: dist.StudentT(a, 0.5, b), 0.2),
    ],
    ids=["beta", "gamma", "lognormal", "studentt"],
)
def test_from_distribution_trainable_parameters_drive_the_energy(make, x):
    """Changing a stored (unconstrained) parameter changes the energy as the distribution
    with the new parameter says, including for distributions with derived fields."""
    E = ebm.FromDistribution("v", make(2.0, 3.0), trainable=True)
    first = E.unconstrained[0]
    names = list(E.distribution.arg_constraints)
    new = {**{n: getattr(E.distribution, n) for n in E.unconstrained}, first: 4.0}
    c = type(E.distribution).arg_constraints[first]
    moved = eqx.tree_at(lambda e: e.params[first], E, biject_to(c).inv(jnp.asarray(4.0)))
    want = -type(E.distribution)(**{n: new[n] for n in names if n in new}).log_prob(x)
    close(moved(x), want, rtol=1e-5, atol=1e-5)
    assert abs(float(moved(x)) - float(E(x))) > 1e-3
    # and its gradient is not zero
    g = jax.grad(lambda p: eqx.tree_at(lambda e: e.params, E, p)(x))(E.params)
    assert all(abs(float(jnp.sum(v))) > 0 for v in jax.tree_util.tree_leaves(g))


def test_from_distribution_trainable_stores_unconstrained_values():
    d = dist.Gamma(2.0, 3.0)
    E = ebm.FromDistribution("s", d, trainable=True)
    stored = E.params
    close(stored["concentration"], math.log(2.0))  # biject_to(positive) is exp
    close(stored["rate"], math.log(3.0))
    assert ebm.FromDistribution("s", d).params == {}
    close(ebm.FromDistribution("s", d).fixed["concentration"], 2.0)


def test_from_distribution_with_python_int_parameters():
    E = ebm.FromDistribution("z", dist.Normal(0, 1))
    close(E(1.0), 0.5 + 0.5 * math.log(2 * math.pi))
    for p in E.fixed.values():
        assert isinstance(p, jax.Array)
        assert p.dtype == jnp.result_type(float) and not p.weak_type
    Et = ebm.FromDistribution("z", dist.Normal(0, 1), trainable=True)
    assert set(Et.unconstrained) == {"loc", "scale"}
    close(Et(1.0), E(1.0))


def test_from_distribution_rejects_non_distributions():
    with pytest.raises(TypeError, match="Distribution"):
        ebm.FromDistribution("x", jnp.zeros(2))


# ---------------------------------------------------------------- energy(fn, **space)
def _ring(x):
    return 5.0 * (jnp.linalg.norm(x) - 1.0) ** 2


def test_energy_call_form_and_decorator_form_agree():
    as_call = ebm.energy(_ring, x=(2,))

    @ebm.energy(x=(2,))
    def as_decorator(x):
        return 5.0 * (jnp.linalg.norm(x) - 1.0) ** 2

    assert isinstance(as_decorator, ebm.Energy)
    x = jnp.array([3.0, 4.0])
    close(as_call(x), 5.0 * 16.0)
    close(as_decorator(x), 5.0 * 16.0)
    assert as_call.space == as_decorator.space == {"x": ebm.Var((2,))}


def test_energy_space_entries():
    E = ebm.energy(
        lambda a, b, c, d: jnp.sum(a) + jnp.sum(b) + c + d,
        a=(2, 3),
        b=4,
        c=(),
        d=ebm.Var((), constraints.positive),
    )
    assert E.space == {
        "a": ebm.Var((2, 3)),
        "b": ebm.Var((4,)),
        "c": ebm.Var(()),
        "d": ebm.Var((), constraints.positive),
    }
    close(E(a=jnp.ones((2, 3)), b=jnp.ones(4), c=1.0, d=2.0), 13.0)


def test_energy_needs_a_space_and_a_function():
    with pytest.raises(TypeError, match="space"):
        ebm.energy(_ring)
    with pytest.raises(TypeError, match="function"):
        ebm.energy(3.0, x=())
    with pytest.raises(TypeError, match="identifier"):
        ebm.energy(_ring, **{"not a name": (2,)})


# ---------------------------------------------------------------- Confinement
@pytest.mark.parametrize(("scale", "eps"), [(1.0, 1e-3), (2.0, 0.0), (0.3, 1.5)])
def test_confinement_formula(scale, eps):
    E = ebm.Confinement("x", scale=scale, eps=eps, shape=(3,))
    assert E.space == {"x": ebm.Var((3,))}
    for x in (np.zeros(3), np.array([3.0, 4.0, 0.0]), np.array([-1.0, 0.5, 2.0])):
        want = scale * math.sqrt(float(x @ x) + eps**2)
        close(E(jnp.asarray(x, jnp.float32)), want)


def test_confinement_defaults_and_settings_must_be_scalar():
    close(ebm.Confinement("x", shape=())(0.0), 1e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="scalar"):
        ebm.Confinement("x", scale=jnp.ones(2))


# ---------------------------------------------------------------- NeuralEnergy
@pytest.mark.parametrize("shape", [(), (2,), (2, 3)])
def test_neural_energy_scalar_output(shape):
    E = ebm.NeuralEnergy("x", shape, hidden=(8, 4), key=jax.random.key(0))
    assert E.space == {"x": ebm.Var(shape)}
    out = E(jnp.ones(shape))
    assert out.shape == ()
    assert jnp.isfinite(out)
    assert E.batch(jnp.ones((5, *shape))).shape == (5,)
    sizes = [(layer.in_features, layer.out_features) for layer in E.layers]
    assert sizes == [(math.prod(shape), 8), (8, 4), (4, 1)]


def test_neural_energy_matches_a_hand_written_mlp():
    E = ebm.NeuralEnergy("x", (2,), hidden=(5,), key=jax.random.key(1), activation=jax.nn.tanh)
    x = jnp.array([0.3, -0.7])
    l0, l1 = E.layers
    want = (l1.weight @ jnp.tanh(l0.weight @ x + l0.bias) + l1.bias)[0]
    close(E(x), want)


@pytest.mark.parametrize(
    ("activation", "name"), [(jax.nn.silu, None), (jax.nn.tanh, "tanh"), ("softplus", "softplus")]
)
def test_neural_energy_activation_stored_by_name(activation, name):
    E = ebm.NeuralEnergy("x", (2,), hidden=(3,), key=jax.random.key(0), activation=activation)
    assert isinstance(E.activation, str)
    if name is not None:
        assert E.activation == name
    assert getattr(jax.nn, E.activation) is (
        activation if callable(activation) else getattr(jax.nn, activation)
    )


def test_neural_energy_default_activation_is_silu():
    E = ebm.NeuralEnergy("x", (2,), hidden=(3,), key=jax.random.key(0))
    assert getattr(jax.nn, E.activation) is jax.nn.silu


def test_neural_energy_errors():
    with pytest.raises(ValueError, match="activation"):
        ebm.NeuralEnergy("x", (2,), key=jax.random.key(0), activation="no_such_fn")
    with pytest.raises(ValueError, match="shape"):
        ebm.NeuralEnergy("x", None, key=jax.random.key(0))


# ---------------------------------------------------------------- evaluation forms
def _pair(x, y):
    return jnp.sum((x - 1.0) ** 2) + 3.0 * y**2 + jnp.sum(x) * y


PAIR = ebm.energy(_pair, x=(2,), y=())


def test_mapping_keywords_and_bare_array_agree():
    x, y = jnp.array([0.5, 2.0]), jnp.array(-1.5)
    want = _pair(x, y)
    close(PAIR({"x": x, "y": y}), want)
    close(PAIR(x=x, y=y), want)
    G = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
    close(G(x), G({"x": x}))
    close(G(x), G(x=x))
    close(G(x), 0.5 * (0.25 + 4.0))


def test_python_and_numpy_values_accepted():
    close(PAIR(x=[0.5, 2.0], y=-1.5), _pair(jnp.array([0.5, 2.0]), -1.5))
    close(PAIR(x=np.array([0.5, 2.0]), y=np.float64(-1.5)), _pair(jnp.array([0.5, 2.0]), -1.5))


@pytest.mark.parametrize("batch_shape", [(4,), (2, 3)])
def test_batch_equals_python_loop(batch_shape):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(*batch_shape, 2)).astype(np.float32)
    ys = rng.normal(size=batch_shape).astype(np.float32)
    E = PAIR + ebm.Gaussian("x", jnp.array([1.0, 0.0]), cov=COV[:2, :2]) + ebm.Confinement("y")
    got = E.batch({"x": xs, "y": ys})
    assert got.shape == batch_shape
    loop = np.array([float(E(x=xs[i], y=ys[i])) for i in np.ndindex(*batch_shape)]).reshape(
        batch_shape
    )
    close(got, loop)
    close(E.batch(x=xs, y=ys), loop)


def test_batch_without_batch_axes_is_a_scalar():
    G = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
    out = G.batch(jnp.array([1.0, 1.0]))
    assert out.shape == ()
    close(out, 1.0)


def test_score_is_minus_grad():
    x, y = jnp.array([0.5, 2.0]), jnp.array(-1.5)
    s = PAIR.score(x=x, y=y)
    gx, gy = jax.grad(_pair, argnums=(0, 1))(x, y)
    assert set(s) == {"x", "y"}
    close(s["x"], -gx)
    close(s["y"], -gy)


def test_gaussian_score_closed_form():
    E = ebm.Gaussian("x", MEAN, cov=COV)
    x = np.array([1.0, 0.0, -1.0])
    s = E.score(jnp.asarray(x, jnp.float32))
    close(s["x"], -np.linalg.inv(COV) @ (x - MEAN), rtol=1e-4, atol=1e-4)
    close(s["x"], -jax.grad(lambda v: E(v))(jnp.asarray(x, jnp.float32)))


def test_score_skips_discrete_variables():
    E = ebm.energy(
        lambda x, k: (x - k) ** 2, x=(), k=ebm.Var((), constraints.integer_interval(0, 3))
    )
    s = E.score(x=jnp.array(0.5), k=jnp.array(2))
    assert set(s) == {"x"}
    close(s["x"], 3.0)
