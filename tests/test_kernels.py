"""MALA and ULA through ``ebm.sample``, the kernel interface, and kernel-agnostic results.

Tolerances: moments within 5 Monte-Carlo standard errors (``_helpers``); ULA against the
exact stationary variance of its biased chain on a Gaussian, σ²/(1 − ε/(2σ²)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import assert_expectation, assert_moments, poe_exact, product_of_experts

import composable_ebm as ebm
from composable_ebm.infer._sample import TRACE_COUNT
from composable_ebm.infer.kernels import KERNELS, MALA

pytestmark = pytest.mark.slow

RUN = dict(num_warmup=1000, num_samples=2000, num_chains=4)
CASE = (
    np.array([1.0, 0.0]),
    np.eye(2),
    np.array([-1.0, 2.0]),
    np.array([[2.0, 0.5], [0.5, 1.0]]),
)


@pytest.fixture(scope="module")
def mala_run():
    E = product_of_experts(*(jnp.asarray(v, jnp.float32) for v in CASE))
    return E, ebm.sample(E, jax.random.key(0), kernel="mala", **RUN)


@pytest.mark.x64
def test_mala_reproduces_gaussian_moments(mala_run):
    _, s = mala_run
    mean, cov = poe_exact(*CASE)
    assert_moments(s.draws["x"], mean, cov, "MALA x", min_ess=300)


def test_mala_adapts_towards_its_target_acceptance(mala_run):
    _, s = mala_run
    acc = float(s.stats["accept_prob"].mean())
    assert 0.45 < acc < 0.7, acc  # dual averaging towards 0.574
    step = np.asarray(s.stats["step_size"])
    np.testing.assert_array_equal(step, np.broadcast_to(step[:, :1], step.shape))  # fixed
    # the diagonal mass matrix estimates the marginal variances
    _, cov = poe_exact(*CASE)
    imm = np.asarray(s.state.kernel_state.adapt.inverse_mass_matrix)
    np.testing.assert_allclose(imm.mean(0), np.diag(cov), rtol=0.35)


def test_mala_step_size_follows_the_target_scale():
    """A target 10x wider gets a step size (in ε·D) about 100x larger; same compiled run."""
    n = TRACE_COUNT["sample"]
    out = []
    for scale in (1.0, 10.0):
        E = ebm.Gaussian("x", jnp.zeros(3), cov=scale**2)
        s = ebm.sample(E, jax.random.key(1), kernel="mala", num_warmup=500, num_samples=500)
        d = np.asarray(s.state.kernel_state.adapt.inverse_mass_matrix).mean()
        out.append(float(s.stats["step_size"][:, -1].mean()) * d)
        assert 0.4 < float(s.stats["accept_prob"].mean()) < 0.75
        assert_expectation(s.draws["x"] ** 2, scale**2, "E[x²]", min_ess=100)
    assert TRACE_COUNT["sample"] == n + 1  # new values only: compiled once
    assert 30 < out[1] / out[0] < 300


@pytest.mark.x64
def test_ula_matches_its_exact_biased_variance():
    sigma, eps = 1.0, 0.5
    E = ebm.Gaussian("x", 0.0, cov=sigma**2)
    s = ebm.sample(
        E, jax.random.key(2), kernel="ula", step_size=eps, num_warmup=100, num_samples=4000
    )
    exact = sigma**2 / (1.0 - eps / (2.0 * sigma**2))  # 4/3: ULA's own stationary law
    assert_expectation(s.draws["x"] ** 2, exact, "ULA E[x²]", min_ess=400)
    assert abs(float((s.draws["x"] ** 2).mean()) - sigma**2) > 0.2  # the bias is visible
    assert bool(s.stats["is_accepted"].all())
    # with a small step the bias vanishes
    s = ebm.sample(
        E, jax.random.key(3), kernel="ula", step_size=0.02, num_warmup=100, num_samples=4000
    )
    assert abs(float((s.draws["x"] ** 2).mean()) - 1.0 / (1.0 - 0.01)) < 0.08


def test_mala_continues_from_its_state(mala_run):
    E, s = mala_run
    more = ebm.sample(E, jax.random.key(5), num_warmup=0, num_samples=200, state=s.state)
    assert more.kernel == "mala" and more.draws["x"].shape == (4, 200, 2)
    np.testing.assert_allclose(
        more.stats["step_size"][:, 0], s.stats["step_size"][:, -1], rtol=1e-6
    )
    assert int(more.state.kernel_state.i[0]) == int(s.state.kernel_state.i[0]) + 200
    with pytest.raises(ValueError, match="keeps the kernel"):
        ebm.sample(E, jax.random.key(5), num_warmup=0, state=s.state, kernel="nuts")


def test_mala_arviz_statistics(mala_run):
    _, s = mala_run
    idata = s.to_inference_data()
    st = idata.sample_stats
    for name in ("acceptance_rate", "step_size", "lp", "model_energy", "term_energy"):
        assert name in st, name
    assert "diverging" not in st
    np.testing.assert_allclose(np.asarray(st["lp"]), -np.asarray(s.stats["potential_energy"]))
    summary = s.summary()
    assert float(summary["r_hat"].max()) < 1.01


def test_chunked_progress_gives_the_same_draws():
    E = ebm.Gaussian("x", jnp.ones(2), cov=0.5)
    run = dict(kernel="mala", num_warmup=50, num_samples=70, num_chains=2)
    a = ebm.sample(E, jax.random.key(7), **run)
    b = ebm.sample(E, jax.random.key(7), progress=True, **run)
    np.testing.assert_array_equal(a.draws["x"], b.draws["x"])


def test_kernel_steps_take_the_energy_as_an_argument():
    """One step function, a batch of temperatures by vmap: no new trace per target."""
    kernel, params = MALA.from_options(0, {"step_size": 0.3})

    def energy_fn(x):
        return 0.5 * jnp.sum(x["x"] ** 2)

    temps = jnp.array([1.0, 4.0, 16.0])

    @jax.jit
    def run(key):
        def chain(key, t):
            fn = lambda x: energy_fn(x) / t  # noqa: E731
            st = kernel.init({"x": jnp.zeros(2)}, fn, params)

            def body(st, k):
                st, _ = kernel.step(k, st, fn, params)
                return st, st.position["x"]

            return jax.lax.scan(body, st, jax.random.split(key, 4000))[1]

        return jax.vmap(chain)(jax.random.split(key, 3), temps)

    xs = np.asarray(run(jax.random.key(0)))[:, 500:]
    var = xs.var(axis=(1, 2))
    np.testing.assert_allclose(var, np.asarray(temps), rtol=0.25)  # N(0, T) at each T


def test_kernel_options_are_checked():
    E = ebm.Gaussian("x", 0.0, cov=1.0)
    key = jax.random.key(0)
    assert {"nuts", "hmc", "mala", "ula"} <= set(KERNELS)
    with pytest.raises(TypeError, match=r"max_tree_depth.*mala"):
        ebm.sample(E, key, kernel="mala", max_tree_depth=5)
    with pytest.raises(ValueError, match="step_size"):
        ebm.sample(E, key, kernel="ula", step_size=-1.0)
    with pytest.raises(ValueError, match="target_accept_prob"):
        ebm.sample(E, key, kernel="mala", target_accept_prob=1.5)
    with pytest.raises(TypeError, match="adapt_mass_matrix"):
        ebm.sample(E, key, kernel="mala", adapt_mass_matrix="yes")
