"""``ebm.log_partition`` (grid quadrature, AIS) and ``ebm.mixture`` against closed forms."""

import math
import pickle

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import composable_ebm as ebm

# Grid quadrature of smooth integrands that vanish at the box's edges converges faster than
# any power of the spacing; what remains is float32 round-off in a logsumexp of ~10⁵ terms
# (~1e-6), so 1e-3 leaves room for coarser defaults but would catch a wrong weight or cell.
GRID_TOL = 1e-3


def gaussians(means, var, weights=None):
    """logsumexp of isotropic Gaussians (no normalisers) and its exact log Z."""
    means = [np.atleast_1d(np.asarray(m, np.float64)) for m in means]
    w = np.ones(len(means)) if weights is None else np.asarray(weights, np.float64)
    comps = [ebm.Gaussian("x", jnp.asarray(m, jnp.float32), cov=var) for m in means]
    d = means[0].size
    log_z = math.log(np.sum(w) * (2 * math.pi * var) ** (d / 2))
    return ebm.logsumexp(*comps, weights=w), log_z


def eight_gaussians(radius=2.0, sd=0.2):
    """The eight-Gaussian mixture of ``ebm.datasets.eight_gaussians`` (unnormalised)."""
    angles = 2 * np.pi * np.arange(8) / 8
    return gaussians(radius * np.stack([np.cos(angles), np.sin(angles)], 1), sd**2)


# ---------------------------------------------------------------------------- grid
def test_grid_1d_mixture_exact():
    E = ebm.logsumexp(ebm.Gaussian("x", 0.0, cov=1.0), ebm.Gaussian("x", 5.0, cov=0.01),
                      weights=[0.3, 0.7])  # fmt: skip
    exact = math.log(0.3 * math.sqrt(2 * math.pi) + 0.7 * math.sqrt(2 * math.pi * 0.01))
    r = ebm.log_partition(E, bounds={"x": (-8.0, 8.0)})
    assert isinstance(r, ebm.LogZ) and isinstance(r.value, float)
    assert abs(r.value - exact) < GRID_TOL
    assert r.stderr < GRID_TOL  # the doubled-spacing grid agrees too
    trap = ebm.log_partition(E, bounds=(-8.0, 8.0), rule="trapezoid", num_points=1001)
    assert abs(trap.value - exact) < GRID_TOL


def test_grid_2d_eight_gaussians_and_a_function_energy():
    E, exact = eight_gaussians()
    assert abs(ebm.log_partition(E, bounds=(-4.0, 4.0)).value - exact) < GRID_TOL
    # the same mixture as −log of a sum of normalised densities: log Z = 0
    angles = np.arange(8) * np.pi / 4
    centres = jnp.asarray(2 * np.stack([np.cos(angles), np.sin(angles)], 1), jnp.float32)

    @ebm.energy(x=(2,))
    def density(x):
        sq = jnp.sum((x[None, :] - centres) ** 2, axis=1)
        return -jax.nn.logsumexp(-0.5 * sq / 0.04) + math.log(8 * 2 * math.pi * 0.04)

    r = ebm.log_partition(density, bounds=[(-4.0, 4.0), (-4.5, 4.5)])
    assert abs(r.value) < GRID_TOL


def test_grid_two_variables_and_three_dimensions():
    # a correlated Gaussian over two scalar variables: log Z = log 2π + ½ log det Σ
    rho = 0.6
    E = ebm.energy(lambda x, y: 0.5 * (x * x - 2 * rho * x * y + y * y) / (1 - rho**2), x=(), y=())
    exact = math.log(2 * math.pi) + 0.5 * math.log(1 - rho**2)
    r = ebm.log_partition(E, bounds={"x": (-7.0, 7.0), "y": (-7.0, 7.0)})
    assert abs(r.value - exact) < GRID_TOL
    G = ebm.Gaussian("x", jnp.array([0.5, -1.0, 2.0]), cov=jnp.array([0.5, 1.0, 2.0]))
    r = ebm.log_partition(G, bounds=[(-4.5, 5.5), (-8.0, 6.0), (-8.0, 12.0)])
    assert abs(r.value - float(G.log_partition)) < GRID_TOL


def test_grid_bounds_from_interval_supports():
    # Beta(2, 5) and Uniform(0, 2): normalised densities, bounds from their supports
    beta = ebm.FromDistribution("p", dist.Beta(2.0, 5.0))
    assert abs(ebm.log_partition(beta).value) < GRID_TOL
    E = beta + ebm.FromDistribution("u", dist.Uniform(0.0, 2.0))
    assert abs(ebm.log_partition(E).value) < GRID_TOL
    # given bounds are intersected with the support: the same answer
    assert abs(ebm.log_partition(E, bounds={"u": (-5.0, 5.0)}).value) < GRID_TOL
    # a half-line support needs bounds only on its open side
    half = ebm.FromDistribution("s", dist.Exponential(2.0))
    assert abs(ebm.log_partition(half, bounds=(-1.0, 20.0)).value) < GRID_TOL


# ---------------------------------------------------------------------------- AIS
def test_ais_eight_gaussians():
    E, exact = eight_gaussians()
    r = ebm.log_partition(E, method="ais", key=jax.random.key(0))
    # 1000 particles give a reported stderr of about 0.015: 0.1 is over 6 of them
    assert abs(r.value - exact) < 0.1, (r, exact)
    assert 0.0 < r.stderr < 0.05, r


def test_ais_five_dimensional_mixture_within_reported_stderr():
    rng = np.random.default_rng(0)
    d, w = 5, np.array([0.2, 0.5, 0.3])
    means = [rng.normal(0.0, 2.0, d) for _ in w]
    covs = [a @ a.T + 0.2 * np.eye(d) for a in (0.3 * rng.normal(size=(d, d)) for _ in w)]
    comps = [ebm.Gaussian("x", m, cov=c) for m, c in zip(means, covs)]
    E = ebm.logsumexp(*comps, weights=w)
    exact = math.log(sum(wk * (2 * math.pi) ** (d / 2) * math.sqrt(np.linalg.det(c))
                         for wk, c in zip(w, covs)))  # fmt: skip
    r = ebm.log_partition(E, method="ais", key=jax.random.key(1), num_particles=500)
    # calibration of the delta-method stderr was checked over 20 seeds (rms z ≈ 0.9)
    assert abs(r.value - exact) < 3 * r.stderr, (r, exact)
    assert r.stderr < 0.1


TRACES = []


def counted_quartic(x):
    TRACES.append(1)  # runs only while tracing
    return 0.25 * jnp.sum(x**4)


def test_ais_given_reference_constrained_support_and_no_recompilation():
    # ∫ exp(−a x⁴/4 − ½x²/v) dx has no closed form: compare with the grid instead
    def make(a, mean):
        quartic = ebm.Param(1.0) * ebm.energy(counted_quartic, x=(2,))
        return a * quartic + ebm.Gaussian("x", jnp.asarray(mean), cov=1.0)

    opts = dict(num_particles=400, num_temperatures=100, reference=((0.0, 0.0), 1.0))
    results, n = [], None
    for i, (a, mean) in enumerate(((1.0, [0.0, 0.0]), (0.3, [1.0, -0.5]))):
        E = make(a, mean)
        r = ebm.log_partition(E, method="ais", key=jax.random.key(i), **opts)
        truth = ebm.log_partition(E, bounds=(-6.0, 6.0)).value
        assert abs(r.value - truth) < 4 * r.stderr + 1e-3, (r, truth)
        results.append(r.value)
        n = len(TRACES) if n is None else n
    assert len(TRACES) == n, "new parameter values recompiled"
    assert results[0] != results[1]
    # a positive variable: AIS runs in the unconstrained space (log-Jacobian included)
    g = ebm.FromDistribution("s", dist.Gamma(3.0, 2.0)) + ebm.energy(lambda s: s, s=())
    exact = math.log(2.0**3 / 3.0**3)  # Gamma(3, 2) · e^{−s} integrates to (2/3)³
    r = ebm.log_partition(g, method="ais", key=jax.random.key(2), num_particles=400)
    assert abs(r.value - exact) < 4 * r.stderr + 1e-3, (r, exact)


# ---------------------------------------------------------------------------- mixture
PHI_2_5 = 0.5 * (1.0 + math.erf(2.5 / math.sqrt(2.0)))  # P(N(0, 1) < 2.5)


def mass_below(E, cut, low=-8.0, high=10.0):
    """Probability of x < cut under exp(−E), by quadrature."""
    below = ebm.log_partition(E, bounds=(low, cut)).value
    return math.exp(below - ebm.log_partition(E, bounds=(low, high)).value)


def test_logsumexp_weights_are_not_masses_but_mixture_weights_are():
    wide, narrow = ebm.Gaussian("x", 0.0, cov=1.0), ebm.Gaussian("x", 5.0, cov=0.01)
    # logsumexp: masses 0.3·√(2π) : 0.7·√(2π)·0.1, so the wide mode holds 0.3/0.37 ≈ 0.81
    # (x < 2.5 holds Φ(2.5) ≈ 0.994 of the wide mode and none of the narrow one)
    lse = ebm.logsumexp(wide, narrow, weights=[0.3, 0.7])
    assert abs(mass_below(lse, 2.5) - 0.81) < 0.01
    assert abs(mass_below(lse, 2.5) - 0.3 / 0.37 * PHI_2_5) < 1e-4  # quadrature error only
    mix = ebm.mixture(wide, narrow, weights=[0.3, 0.7])
    assert abs(mass_below(mix, 2.5) - 0.3) < 0.03
    assert abs(mass_below(mix, 2.5) - 0.3 * PHI_2_5) < 1e-4
    assert abs(ebm.log_partition(mix, bounds=(-8.0, 10.0)).value) < GRID_TOL
    # closed form: exactly −log of the mixture density, at any point
    xs = np.array([-1.0, 0.0, 2.5, 4.9, 5.2])
    dens = 0.3 * np.exp(-0.5 * xs**2) / math.sqrt(2 * math.pi) + 0.7 * np.exp(
        -0.5 * ((xs - 5.0) / 0.1) ** 2
    ) / (0.1 * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(mix.batch(jnp.asarray(xs)), -np.log(dens), rtol=1e-5, atol=1e-5)


def test_mixture_log_z_sources():
    wide = ebm.Gaussian("x", 0.0, cov=1.0)
    narrow = ebm.energy(lambda x: 0.5 * (x - 5.0) ** 2 / 0.01, x=())  # no closed form
    with pytest.raises(ValueError, match=r"component 1 \(FunctionEnergy.*log_z\[1\]"):
        ebm.mixture(wide, narrow, weights=[0.3, 0.7])
    lz = ebm.log_partition(narrow, bounds=(3.0, 7.0))
    exact = ebm.mixture(wide, ebm.Gaussian("x", 5.0, cov=0.01), weights=[0.3, 0.7])
    for log_z in ([None, lz], [None, lz.value], np.array([0.5 * math.log(2 * math.pi), lz.value])):
        mix = ebm.mixture(wide, narrow, weights=[3.0, 7.0], log_z=log_z)  # weights normalised
        np.testing.assert_allclose(mix.weights, [0.3, 0.7], rtol=1e-6)
        for x in (0.0, 5.0, 2.0):
            assert abs(float(mix(x)) - float(exact(x))) < 1e-4
    # a distribution is normalised: log Z = 0; labels and renaming keep the closed form
    d = ebm.FromDistribution("x", dist.Normal(5.0, 0.1)).named("narrow")
    mix = ebm.mixture(wide.named("wide"), d, weights=[0.3, 0.7])
    assert abs(float(mix(5.0)) - float(exact(5.0))) < 1e-4


def test_mixture_leaves_training_and_compilation():
    wide, narrow = ebm.Gaussian("x", 0.0, cov=1.0), ebm.Gaussian("x", 5.0, cov=0.01)
    mix = ebm.mixture(wide, narrow, weights=[0.3, 0.7])
    flags = dict(zip(map(id, jax.tree_util.tree_leaves(mix)),
                     jax.tree_util.tree_leaves(ebm.trainable_mask(mix))))  # fmt: skip
    assert not flags[id(mix.weights)] and not flags[id(mix.log_z)]
    assert flags[id(mix.components[0].mean)]  # the components still train
    assert mix.weights.dtype == jnp.result_type(float) and not mix.weights.weak_type
    # a trained (changed) Gaussian stays normalised: its log Z is re-read at evaluation
    wider = eqx.tree_at(lambda m: m.components[0].tril, mix, mix.components[0].tril - 0.5)
    assert abs(ebm.log_partition(wider, bounds=(-12.0, 12.0)).value) < GRID_TOL
    back = pickle.loads(pickle.dumps(mix))
    assert float(back(1.0)) == float(mix(1.0))
    # new weights and log Z values are leaves: one compiled function serves both
    f = jax.jit(lambda m, x: m(x))
    f(mix, 1.0)
    other = ebm.mixture(wide, narrow, weights=[0.6, 0.4], log_z=[1.0, 2.0])
    assert other.closed_form == (False, False)
    f(ebm.mixture(wide, narrow, weights=[0.6, 0.4]), 1.0)
    assert f._cache_size() == 1


# ---------------------------------------------------------------------------- errors
def test_log_partition_errors():
    G = ebm.Gaussian("x", 0.0, cov=1.0)
    with pytest.raises(ValueError, match="unknown method 'mc'"):
        ebm.log_partition(G, method="mc", bounds=(-5, 5))
    with pytest.raises(ValueError, match="needs a random key"):
        ebm.log_partition(G, method="ais")
    with pytest.raises(TypeError, match=r"expects an ebm\.Energy"):
        ebm.log_partition(lambda x: x, bounds=(-5, 5))
    with pytest.raises(ValueError, match=r"variable 'x' has unbounded support real.*bounds="):
        ebm.log_partition(G)
    with pytest.raises(ValueError, match=r"at most 3 scalar dimensions.*has 4.*'ais'"):
        ebm.log_partition(ebm.Gaussian("x", jnp.zeros(4), cov=1.0), bounds=(-5, 5))
    with pytest.raises(ValueError, match=r"bounds for variable 'x' \(shape \(\)"):
        ebm.log_partition(G, bounds=[(-5, 5), (-5, 5)])
    with pytest.raises(ValueError, match="empty integration range for variable 'x'"):
        ebm.log_partition(G, bounds=(5, -5))
    with pytest.raises(ValueError, match="must be finite"):
        ebm.log_partition(G, bounds=(-np.inf, 5))
    with pytest.raises(KeyError, match="unknown variable"):
        ebm.log_partition(G, bounds={"y": (-5, 5)})
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['num_particles'\]"):
        ebm.log_partition(G, bounds=(-5, 5), num_particles=10)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['num_points'\]"):
        ebm.log_partition(G, method="ais", key=jax.random.key(0), num_points=10)
    with pytest.raises(ValueError, match="bounds= is for method='grid'"):
        ebm.log_partition(G, method="ais", key=jax.random.key(0), bounds=(-5, 5))
    with pytest.raises(ValueError, match="reference has 2 dimensions but the energy has 1"):
        ebm.log_partition(G, method="ais", key=jax.random.key(0), reference=(np.zeros(2), 1.0))
    discrete = ebm.energy(lambda k: 0.0 * k, k=ebm.Var((), constraints.integer_interval(0, 3)))
    with pytest.raises(ValueError, match=r"variable 'k' is discrete.*marginalize\('k'\)"):
        ebm.log_partition(discrete, bounds=(0, 3))


def test_mixture_errors():
    a, b = ebm.Gaussian("x", 0.0, cov=1.0), ebm.Gaussian("x", 1.0, cov=1.0)
    with pytest.raises(ValueError, match="positive and finite"):
        ebm.mixture(a, b, weights=[0.5, -0.5])
    with pytest.raises(ValueError, match=r"2 energies but weights of shape \(3,\)"):
        ebm.mixture(a, b, weights=[0.2, 0.3, 0.5])
    with pytest.raises(TypeError, match="weights cannot be a Param"):
        ebm.mixture(a, b, weights=ebm.Param(jnp.array([0.5, 0.5])))
    with pytest.raises(ValueError, match=r"component 0 \(Gaussian\) has \['x'\] but component 1"):
        ebm.mixture(a, ebm.Gaussian("y", 0.0, cov=1.0), weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="2 energies but 3 log_z entries"):
        ebm.mixture(a, b, weights=[0.5, 0.5], log_z=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="log_z of component 1 must be finite"):
        ebm.mixture(a, b, weights=[0.5, 0.5], log_z=[None, np.inf])
    with pytest.raises(TypeError, match=r"not an ebm\.Energy"):
        ebm.mixture(a, "b", weights=[0.5, 0.5])


def test_mixture_energy_contract():
    """Scalar, batch == loop, score == −grad, typed leaves (as every energy class)."""
    G = ebm.Gaussian("x", jnp.array([0.5, -1.0]), cov=jnp.array([[2.0, 0.3], [0.3, 1.0]]))
    ring = ebm.energy(lambda x: 5.0 * (jnp.linalg.norm(x) - 1.0) ** 2, x=(2,))
    E = ebm.mixture(G, ring, weights=[0.4, 0.6], log_z=[None, 1.0])
    assert isinstance(E, ebm.Energy) and E.space == {"x": ebm.Var((2,))}
    xs = jnp.array([[0.3, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(E.batch(xs), [float(E(x)) for x in xs], rtol=1e-6)
    for x in xs:
        np.testing.assert_allclose(E.score(x)["x"], -jax.grad(lambda v: E(v))(x), rtol=1e-5)
    for leaf in jax.tree_util.tree_leaves(E):
        assert leaf.dtype == jnp.result_type(float) and not leaf.weak_type
