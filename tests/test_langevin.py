"""Langevin kernels (ULA, MALA) and ``ebm.langevin``: stationary laws, MH, compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm
from numpyro.distributions import constraints

import composable_ebm as ebm
from composable_ebm.infer._langevin import LangevinState, build_kernel, init, run_chains

MEAN = np.array([1.0, -1.0])
COV = np.array([[1.0, 0.5], [0.5, 2.0]])
PREC = np.linalg.inv(COV)
CHAINS, STEPS = 10_000, 300  # slowest mode relaxes as (1 − ε·0.45)^300: < 1e-3 for ε ≥ 0.05


def ula_cov(eps):
    """Stationary covariance of ULA on a Gaussian: Σ = AΣA + 2εI with A = I − εP, whose
    solution is (P − εP²/2)⁻¹ = Σ(I − εP/2)⁻¹: the O(ε) bias."""
    return COV @ np.linalg.inv(np.eye(2) - 0.5 * eps * PREC)


def check_moments(x, mean, cov, k=5.0):
    """Mean and covariance of independent chains within k Monte-Carlo standard errors:
    SE(mean_i) = sqrt(Σ_ii / n), SE(cov_ij) = sqrt((Σ_ii Σ_jj + Σ_ij²) / n) (Gaussian)."""
    n = x.shape[0]
    se_mean = np.sqrt(np.diag(cov) / n)
    d = np.diag(cov)
    se_cov = np.sqrt((np.outer(d, d) + cov**2) / n)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), k * se_mean)
    np.testing.assert_array_less(np.abs(np.cov(x.T) - cov), k * se_cov)
    return se_cov


@pytest.fixture(scope="module")
def draws():
    E = ebm.Gaussian("x", jnp.asarray(MEAN), cov=jnp.asarray(COV))
    start = {"x": jax.random.normal(jax.random.key(1), (CHAINS, 2))}
    out = {}
    for adjusted, eps in ((False, 0.5), (False, 0.05), (True, 0.5)):
        res = ebm.langevin(
            E, jax.random.key(2), start, step_size=eps, num_steps=STEPS, adjusted=adjusted
        )
        out[adjusted, eps] = np.asarray(res["x"], dtype=np.float64)
    return out


def test_ula_reaches_its_discretised_law_and_is_biased(draws):
    x = draws[False, 0.5]
    assert x.shape == (CHAINS, 2)
    se = check_moments(x, MEAN, ula_cov(0.5))
    # the O(ε) bias is real: at ε = 0.5 the diagonal is off by more than 10 standard errors
    assert np.all(np.abs(np.diag(np.cov(x.T) - COV)) > 10 * np.diag(se))


def test_ula_bias_shrinks_with_the_step(draws):
    x = draws[False, 0.05]
    check_moments(x, MEAN, ula_cov(0.05))
    err_small = np.abs(np.cov(x.T) - COV).max()
    err_large = np.abs(np.cov(draws[False, 0.5].T) - COV).max()
    assert err_small < err_large / 3


def test_mala_is_unbiased(draws):
    check_moments(draws[True, 0.5], MEAN, COV)


def energy_fn(v):
    return 0.5 * jnp.sum(v["x"] ** 2) + 0.25 * jnp.sum(v["x"] ** 4)


def test_mala_acceptance_matches_the_metropolis_hastings_formula():
    x0 = {"x": jnp.array([0.7, -1.3])}
    state, eps = init(x0, energy_fn), 0.4
    for seed in range(5):
        key = jax.random.key(seed)
        proposal, ula_info = build_kernel(False)(key, state, energy_fn, eps)
        new, info = build_kernel(True)(key, state, energy_fn, eps)
        assert float(ula_info.acceptance_rate) == 1.0 and bool(ula_info.is_accepted)
        x, y = x0["x"], proposal.position["x"]  # MALA proposes exactly ULA's move

        def log_q(to, frm):
            g = jax.grad(lambda z: energy_fn({"x": z}))(frm)
            return jnp.sum(norm.logpdf(to, frm - eps * g, jnp.sqrt(2 * eps)))

        log_r = energy_fn({"x": x}) - energy_fn({"x": y}) + log_q(x, y) - log_q(y, x)
        expected = min(1.0, float(jnp.exp(log_r)))
        np.testing.assert_allclose(float(info.acceptance_rate), expected, rtol=1e-4)
        moved = new.position["x"]
        target = y if bool(info.is_accepted) else x
        np.testing.assert_array_equal(moved, target)
        np.testing.assert_allclose(new.energy, energy_fn(new.position), rtol=1e-6)


def test_mala_acceptance_in_unit_interval_and_falls_with_the_step():
    # starts near the mode: from far out in the quartic tails a chain with a large step
    # can be stuck (acceptance 0), as MALA should be there
    start = {"x": 0.5 * jax.random.normal(jax.random.key(0), (512, 2))}
    run = jax.jit(lambda eps: run_chains(jax.random.key(1), start, energy_fn, eps, 50, True))
    rates = []
    for eps in (0.05, 0.5):
        _, (acc, _) = run(jnp.float32(eps))
        assert acc.shape == (512,)
        assert bool(jnp.all((acc > 0) & (acc <= 1)))
        rates.append(float(acc.mean()))
    assert rates[0] > 0.95 and rates[1] < rates[0]


def test_state_is_a_documented_namedtuple():
    s = init({"x": jnp.ones(3)}, energy_fn)
    assert isinstance(s, LangevinState) and s._fields == ("position", "energy", "gradient")
    np.testing.assert_allclose(s.gradient["x"], jnp.full(3, 2.0))


def test_no_recompilation_for_new_values():
    traces = []

    def counted(x):
        traces.append(1)  # runs only while tracing
        return 0.1 * jnp.sum(x**2)

    def make(mean):
        return ebm.Gaussian("x", jnp.asarray(mean), cov=1.0) + ebm.energy(counted, x=(2,))

    first = ebm.langevin(
        make([0.0, 0.0]), jax.random.key(0), jnp.zeros((64, 2)), step_size=0.1, num_steps=5
    )
    n = len(traces)
    assert n > 0
    for mean, eps, seed in (([1.0, 2.0], 0.2, 1), ([-3.0, 0.5], jnp.float32(0.05), 2)):
        again = ebm.langevin(
            make(mean), jax.random.key(seed), jnp.ones((64, 2)), step_size=eps, num_steps=5
        )
        assert not np.allclose(again["x"], first["x"])
    assert len(traces) == n, "a second call with new values recompiled"
    for adjusted in (False, True):  # a new setting compiles once, then is cached too
        ebm.langevin(make([0.0, 1.0]), jax.random.key(3), jnp.zeros((64, 2)),
                     step_size=0.1, num_steps=5, adjusted=adjusted)  # fmt: skip
    assert len(traces) == 2 * n


def test_many_variables_and_a_bare_array():
    E = ebm.Gaussian("x", jnp.zeros(2), cov=1.0) + ebm.Gaussian("y", 0.0, cov=1.0)
    out = ebm.langevin(
        E, jax.random.key(0), {"x": jnp.zeros((8, 2)), "y": jnp.zeros(8)},
        step_size=0.1, num_steps=3,
    )  # fmt: skip
    assert set(out) == {"x", "y"} and out["x"].shape == (8, 2) and out["y"].shape == (8,)
    one = ebm.langevin(ebm.Gaussian("x", 0.0, cov=1.0), jax.random.key(0), jnp.zeros(4),
                       step_size=0.1, num_steps=3)  # fmt: skip
    assert one["x"].shape == (4,) and one["x"].dtype == jnp.result_type(float)


GAUSS = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
GOOD = {"x": jnp.zeros((4, 2))}


@pytest.mark.parametrize(
    ("energy", "init_", "kwargs", "error", "match"),
    [
        (GAUSS, {"z": jnp.zeros((4, 2))}, {}, KeyError, "unknown variable.*'z'.*missing.*'x'"),
        (GAUSS, {"x": jnp.zeros(2)}, {}, ValueError, r"init\['x'\] has shape \(2,\)"),
        (GAUSS, GOOD, {"step_size": -0.1}, ValueError, "step_size must be a positive"),
        (GAUSS, GOOD, {"step_size": float("nan")}, ValueError, "step_size"),
        (GAUSS, GOOD, {"num_steps": 0}, ValueError, "num_steps must be positive"),
        (GAUSS, GOOD, {"num_steps": 2.5}, TypeError, "num_steps must be an integer"),
        ("not an energy", GOOD, {}, TypeError, "expects an ebm.Energy"),
        (
            ebm.energy(lambda x: jnp.sum(x), x=ebm.Var((2,), constraints.positive)),
            GOOD, {}, ValueError, "variable 'x' has support greater_than",
        ),
        (
            ebm.energy(lambda k: 1.0 * k, k=ebm.Var((), constraints.integer_interval(0, 3))),
            {"k": jnp.zeros(4, int)}, {}, TypeError, "variable 'k' is discrete",
        ),
        (
            GAUSS + ebm.Gaussian("y", 0.0, cov=1.0),
            {"x": jnp.zeros((4, 2)), "y": jnp.zeros(3)}, {}, ValueError, "numbers of chains",
        ),
    ],
)  # fmt: skip
def test_bad_input(energy, init_, kwargs, error, match):
    kwargs = {"step_size": 0.1, "num_steps": 2, **kwargs}
    with pytest.raises(error, match=match):
        ebm.langevin(energy, jax.random.key(0), init_, **kwargs)
