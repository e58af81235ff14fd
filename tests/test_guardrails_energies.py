"""Bad input to energies, operators and data sets: a clear error naming the problem."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import composable_ebm as ebm
from composable_ebm import _validate, datasets
from composable_ebm.energies._distribution import InvalidParameterError

G = ebm.Gaussian("x", 0.0, cov=1.0)
XS = ebm.energy(lambda x, s: s * x**2, x=(), s=ebm.Var((), constraints.positive))


# ---------------------------------------------------------------- NaN and infinity
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_condition_value(bad):
    with pytest.raises(ValueError, match=r"condition value of variable 'x' must be finite"):
        XS.condition(x=bad)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weight(bad):
    with pytest.raises(ValueError, match="a weight must be finite"):
        bad * G
    with pytest.raises(ValueError, match="a weight must be finite"):
        G * jnp.asarray(bad)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_bad_temperature(bad):
    with pytest.raises(ValueError, match=r"a temperature must be (positive|finite)") as info:
        G / bad
    assert repr(float(bad)) in str(info.value) or "inf" in str(info.value)


def test_non_finite_param():
    with pytest.raises(ValueError, match=r"ebm.Param value must be finite, got nan"):
        ebm.Param(np.nan)
    with pytest.raises(ValueError, match=r"ebm.Param value must be finite.*index 1"):
        ebm.Param(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match=r"ebm.Param value must be finite in float32, got 1e\+39"):
        ebm.Param(1e39)


@pytest.mark.parametrize("w", [[np.nan, 1.0], [np.inf, 1.0], [1.0, -1.0], [0.0, 1.0]])
def test_bad_logsumexp_weights(w):
    with pytest.raises(ValueError, match=r"logsumexp weights must be (finite|positive)"):
        ebm.logsumexp(G, G, weights=w)


def test_non_finite_gaussian_mean_and_cov():
    with pytest.raises(ValueError, match=r"Gaussian 'x': mean must be finite.*nan at index 1"):
        ebm.Gaussian("x", [0.0, np.nan], cov=1.0)
    with pytest.raises(ValueError, match=r"Gaussian 'x': mean must be finite in float32"):
        ebm.Gaussian("x", 1e39, cov=1.0)
    with pytest.raises(ValueError, match=r"Gaussian 'x': cov must be finite"):
        ebm.Gaussian("x", np.zeros(2), cov=[[1.0, np.nan], [np.nan, 1.0]])
    with pytest.raises(ValueError, match=r"Gaussian 'x': precision must be finite"):
        ebm.Gaussian("x", 0.0, precision=np.inf)


def test_dataset_parameters():
    with pytest.raises(ValueError, match="noise must be finite, got nan"):
        datasets.two_moons(10, noise=np.nan)
    with pytest.raises(ValueError, match=r"noise must be non-negative, got -0\.1"):
        datasets.two_moons(10, noise=-0.1)
    with pytest.raises(ValueError, match="std must be non-negative"):
        datasets.eight_gaussians(10, std=-1.0)
    with pytest.raises(ValueError, match="radii must be positive"):
        datasets.rings(10, radii=(1.0, 0.0))
    with pytest.raises(ValueError, match="arms must be a positive integer"):
        datasets.pinwheel(10, arms=0)
    with pytest.raises(ValueError, match="turns must be finite"):
        datasets.spirals(10, turns=np.inf)
    assert np.isfinite(datasets.two_moons(10, noise=0.0)).all()


# ---------------------------------------------------------------- supports
@pytest.mark.parametrize("bad", [-1.0, 0.0])
def test_condition_value_outside_support(bad):
    with pytest.raises(ValueError, match=r"variable 's' must lie in its support") as info:
        XS.condition(s=bad)
    assert "greater_than(0.0)" in str(info.value) and repr(bad) in str(info.value)
    assert float(XS.condition(s=2.0)(1.0)) == 2.0


def test_discrete_condition_outside_support():
    E = ebm.energy(lambda k: k * 1.0, k=ebm.Var((), constraints.integer_interval(0, 3)))
    with pytest.raises(ValueError, match=r"'k'.*integer_interval\(0, 3\).*got 5"):
        E.condition(k=5)


def test_vector_condition_outside_support_names_the_entry():
    E = ebm.energy(lambda p: jnp.sum(p), p=ebm.Var((3,), constraints.unit_interval))
    with pytest.raises(ValueError, match=r"'p'.*interval\(0.0, 1.0\).*1.5 at index 2"):
        E.condition(p=[0.1, 0.2, 1.5])


def test_traced_condition_values_are_not_checked():
    # inside jit the value is abstract: nothing to check, nothing raised
    out = jax.jit(lambda s: XS.condition(s=s)(1.0))(-1.0)
    assert float(out) == -1.0


# ---------------------------------------------------------------- matrices
def test_non_symmetric_cov_is_refused():
    with pytest.raises(ValueError, match=r"Gaussian 'x': cov must be symmetric.*\[0, 1\]"):
        ebm.Gaussian("x", np.zeros(2), cov=[[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"Gaussian 'x': precision must be symmetric"):
        ebm.Gaussian("x", np.zeros(2), precision=[[1.0, 0.0], [0.3, 1.0]])


def test_round_off_asymmetry_is_accepted():
    a = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    cov = a @ a.T + np.eye(3, dtype=np.float32)
    cov[0, 1] += 1e-7 * abs(cov[0, 1])
    E = ebm.Gaussian("x", np.zeros(3), cov=cov)
    np.testing.assert_allclose(E.cov, 0.5 * (cov + cov.T), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "cov", [[[1.0, 1.0], [1.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]
)
@pytest.mark.parametrize("arg", ["cov", "precision"])
def test_singular_or_indefinite_matrix(cov, arg):
    with pytest.raises(ValueError, match=rf"Gaussian 'x': {arg} is not positive definite"):
        ebm.Gaussian("x", np.zeros(2), **{arg: np.asarray(cov)})


def test_non_positive_diagonal():
    with pytest.raises(ValueError, match=r"Gaussian 'x': the cov is not positive definite"):
        ebm.Gaussian("x", np.zeros(2), cov=[1.0, -1.0])


# ---------------------------------------------------------------- integers
@pytest.mark.parametrize("hidden", [(0,), (16, -1), (2.5,)])
def test_non_positive_layer_sizes(hidden):
    with pytest.raises(ValueError, match=r"NeuralEnergy 'x': hidden\[\d\] must be a positive"):
        ebm.NeuralEnergy("x", (2,), hidden=hidden, key=jax.random.key(0))


def test_layer_sizes_must_be_a_sequence():
    with pytest.raises(TypeError, match=r"hidden must be a sequence of positive integers"):
        ebm.NeuralEnergy("x", (2,), hidden=16, key=jax.random.key(0))
    with pytest.raises(ValueError, match="no entries"):
        ebm.NeuralEnergy("x", (0,), hidden=(4,), key=jax.random.key(0))


def test_rbm_sizes():
    with pytest.raises(TypeError, match="num_visible must be a positive integer, got str"):
        ebm.BernoulliRBM("v", "h", "3", 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="sigma must be finite"):
        ebm.GaussianBernoulliRBM("v", "h", 2, 2, key=jax.random.key(0), sigma=np.inf)


# ---------------------------------------------------------------- strings and objects
@pytest.mark.parametrize("bad", ["a", None, {"a": 1}, 1 + 2j])
def test_non_numeric_value_in_a_call(bad):
    with pytest.raises(TypeError, match=r"variable 'x'") as info:
        G({"x": bad})
    assert repr(bad)[:3] in str(info.value) or "real numbers" in str(info.value)


def test_non_numeric_constructor_arguments():
    with pytest.raises(TypeError, match=r"Gaussian 'x': mean must be a number.*str 'a'"):
        ebm.Gaussian("x", "a", cov=1.0)
    with pytest.raises(TypeError, match=r"Gaussian 'x': cov must be a number.*NoneType|None"):
        ebm.Gaussian("x", 0.0, cov=[None])
    with pytest.raises(TypeError, match=r"ebm.Param value must be a number.*str"):
        ebm.Param("1.0")
    with pytest.raises(TypeError, match=r"condition value of variable 'x'.*str"):
        XS.condition(x="1.0")
    with pytest.raises(TypeError, match=r"Confinement 'x': scale must be a number"):
        ebm.Confinement("x", scale="big")
    with pytest.raises(TypeError, match=r"Var shape must be a tuple of integers"):
        ebm.Var(("a",))


def test_non_numeric_data_rows():
    from composable_ebm._values import leading_axis_values

    with pytest.raises(TypeError, match=r"data\['x'\] must be a number"):
        leading_axis_values(G.space, {"x": np.array(["a", "b"])}, "data")


# ---------------------------------------------------------------- NumPyro parameters
def test_distribution_parameters_outside_their_constraint():
    with pytest.raises(InvalidParameterError, match=r"FromDistribution 's'.*Normal.*'scale'"):
        ebm.FromDistribution("s", dist.Normal(0.0, -1.0, validate_args=False))
    with pytest.raises(ValueError, match=r"FromDistribution 's'.*'loc' must be finite"):
        ebm.FromDistribution("s", dist.Normal(np.nan, 1.0, validate_args=False))
    # a scale that underflows float32 is caught where it is stored
    with pytest.raises(ValueError, match=r"'scale' \(stored as float32\)"):
        ebm.FromDistribution("s", dist.Normal(0.0, 1e-50))


def test_numpyro_rejection_at_construction_names_variable_and_parameter():
    # trainable=True rebuilds the distribution; NumPyro's "invalid scale parameter" is
    # re-raised naming the variable
    with pytest.raises(InvalidParameterError, match=r"FromDistribution 's'.*'scale'") as info:
        ebm.FromDistribution("s", dist.Normal(0.0, 1e-50), trainable=True)
    assert "NumPyro" in str(info.value)
    assert "invalid scale parameter" in str(info.value.__cause__)


def test_numpyro_rejection_at_evaluation_names_variable_and_parameter():
    import equinox as eqx

    E = ebm.FromDistribution("s", dist.Normal(0.0, 1.0), trainable=True)
    bad = eqx.tree_at(lambda e: e.params["scale"], E, jnp.asarray(-jnp.inf))
    with numpyro.validation_enabled(True):
        with pytest.raises(ValueError, match=r"FromDistribution 's'.*Normal parameter 'scale'"):
            bad(0.0)


# ---------------------------------------------------------------- energy functions
def test_python_if_in_an_energy_function():
    def hinge(x):
        if x > 0:
            return x
        return -x

    E = ebm.energy(hinge, x=())
    assert float(E(-2.0)) == 2.0  # concrete: Python control flow works
    for run in (
        lambda: E.batch(jnp.ones(3)),
        lambda: jax.jit(E)(1.0),
        lambda: ebm.sample(E, jax.random.key(0), num_warmup=2, num_samples=2, num_chains=1),
    ):
        with pytest.raises(TypeError, match=r"energy function 'test_python_if.*hinge'") as info:
            run()
        msg = str(info.value)
        assert "jnp.where" in msg and "jax.lax.cond" in msg and "`if" in msg
        assert isinstance(info.value.__cause__, jax.errors.ConcretizationTypeError)


def test_float_and_int_on_traced_values():
    def as_float(x):
        return float(x) ** 2

    def as_index(x):
        return [x, 2.0 * x][(x > 0).astype(jnp.int32)]  # a list indexed by a tracer

    for fn, cause in (
        (as_float, jax.errors.ConcretizationTypeError),
        (as_index, jax.errors.TracerIntegerConversionError),
    ):
        E = ebm.energy(fn, x=())
        with pytest.raises(TypeError, match=rf"'{fn.__qualname__}'.*float\(\)") as info:
            jax.jit(jax.grad(lambda x, E=E: E.evaluate({"x": x})))(jnp.asarray(1.0))
        assert isinstance(info.value.__cause__, cause)


def test_non_scalar_result_inside_a_trace():
    def field(x):
        return x * 2.0

    E = ebm.energy(field, x=(3,))
    with pytest.raises(ValueError, match=r"energy function '.*field' must return a scalar.*\(3,\)"):
        jax.jit(jax.grad(lambda x: E.evaluate({"x": x})))(jnp.ones(3))
    with pytest.raises(ValueError, match="scalar"):
        ebm.sample(E, jax.random.key(0), num_warmup=2, num_samples=2, num_chains=1)


def test_non_numeric_result():
    E = ebm.energy(lambda x: "high", x=())
    with pytest.raises(TypeError, match=r"result of energy function .*<lambda>.*str 'high'"):
        E(1.0)


# ---------------------------------------------------------------- the helpers themselves
def test_checks_skip_tracers_and_compile_nothing():
    seen = []

    @jax.jit
    def f(x):
        for check in (
            lambda: _validate.finite(x, "x"),
            lambda: _validate.positive(x, "x"),
            lambda: _validate.in_support(x, constraints.positive, "x"),
            lambda: _validate.symmetric(x, "x"),
        ):
            check()
        seen.append(_validate.positive_definite(x, "x"))
        return x

    f(-jnp.ones((2, 2)))
    assert seen == [None]


def test_show_keeps_messages_short():
    assert _validate.show("a" * 200).endswith("…")
    assert _validate.show(np.zeros((50, 50))) == "an array of shape (50, 50) and dtype float64"
