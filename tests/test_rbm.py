"""RBMs: free energies and log Z against enumeration, block Gibbs against exact marginals,
CD-1 / PCD on bars and stripes, errors."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import composable_ebm as ebm
from composable_ebm.infer.kernels.gibbs import Gibbs  # registers kernel="gibbs"


def bits(n):
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def with_params(rbm, seed, scale=1.0):
    """The RBM with N(0, scale²) weights and N(0, 0.5²) biases (zero-ish ones test little)."""
    rng = np.random.default_rng(seed)
    nv, nh = rbm.W.shape
    new = (rng.normal(0, scale, (nv, nh)), rng.normal(0, 0.5, nv), rng.normal(0, 0.5, nh))
    return eqx.tree_at(
        lambda r: (r.W, r.b, r.c), rbm, tuple(jnp.asarray(x, "float32") for x in new)
    )


def joint_table(rbm):
    """E(v, h) over all binary (v, h), in float64 NumPy: (2^nv, 2^nh)."""
    W, b, c = (np.asarray(x, np.float64) for x in (rbm.W, rbm.b, rbm.c))
    V, H = bits(W.shape[0]), bits(W.shape[1])
    return -(V @ W @ H.T) - (V @ b)[:, None] - (H @ c)[None], V, H


def logsumexp(a, axis=None):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


@pytest.fixture(scope="module")
def small():
    return with_params(ebm.BernoulliRBM("v", "h", 4, 3, key=jax.random.key(0)), seed=0)


def test_energy_free_energy_and_log_partition_match_enumeration(small):
    E, V, H = joint_table(small)
    vals = {"v": jnp.asarray(V[5], jnp.int32), "h": jnp.asarray(H[3], jnp.int32)}
    np.testing.assert_allclose(float(small(vals)), E[5, 3], rtol=1e-5, atol=1e-5)
    F = small.free_energy()
    assert list(F.space) == ["v"] and F.space["v"] == small.space["v"]
    np.testing.assert_allclose(
        F.batch(jnp.asarray(V, jnp.int32)), -logsumexp(-E, axis=1), rtol=1e-5, atol=1e-5
    )
    # booleans, and float 0./1. inside samplers (unchecked evaluation), give the same values
    floats = jax.vmap(lambda v: F.evaluate({"v": v}))(jnp.asarray(V, "float32"))
    np.testing.assert_allclose(floats, F.batch(jnp.asarray(V > 0)), rtol=1e-6)
    log_z = logsumexp(-E)
    np.testing.assert_allclose(float(small.log_partition()), log_z, rtol=1e-5)
    np.testing.assert_allclose(float(F.log_partition()), log_z, rtol=1e-5)
    # the other branch: more hidden than visible units (enumerates v)
    wide = with_params(ebm.BernoulliRBM("v", "h", 3, 5, key=jax.random.key(1)), seed=1)
    np.testing.assert_allclose(float(wide.log_partition()), logsumexp(-joint_table(wide)[0]),
                               rtol=1e-5)  # fmt: skip


@pytest.mark.parametrize("nv", [1, 2])
def test_gaussian_bernoulli_free_energy_and_log_z_against_quadrature(nv):
    rbm = ebm.GaussianBernoulliRBM("v", "h", nv, 3, key=jax.random.key(0),
                                   sigma=np.linspace(0.7, 1.3, nv))  # fmt: skip
    rbm = with_params(rbm, seed=2)
    H = bits(3)
    grid1 = np.linspace(-9.0, 9.0, 721 if nv == 1 else 241)
    pts = np.stack(np.meshgrid(*[grid1] * nv, indexing="ij"), -1).reshape(-1, nv)
    energies = jax.vmap(
        lambda v: jax.vmap(lambda h: rbm.evaluate({"v": v, "h": h}))(jnp.asarray(H))
    )(jnp.asarray(pts, "float32"))
    free = -logsumexp(-np.asarray(energies, np.float64), axis=1)
    np.testing.assert_allclose(rbm.free_energy().batch(jnp.asarray(pts, "float32")), free,
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    # rectangle rule on a grid reaching ≥ 6σ beyond the shifted means: error ≪ 1e-4
    cell = (grid1[1] - grid1[0]) ** nv
    np.testing.assert_allclose(float(rbm.log_partition()), logsumexp(-free) + np.log(cell),
                               atol=2e-4)  # fmt: skip


def run_chains(kernel, energy, position, key, num_draws):
    """Our own driver: scan over vmap(step); draws (chain, draw, ...) and infos."""

    @jax.jit
    def go(key, position, energy):
        state = jax.vmap(lambda p: kernel.init(p, energy.evaluate, {}))(position)
        n = state.energy.shape[0]

        def body(state, k):
            step = jax.vmap(lambda k, s: kernel.step(k, s, energy.evaluate, {}))
            state, info = step(jax.random.split(k, n), state)
            return state, (state.position, info)

        _, (draws, info) = jax.lax.scan(body, state, jax.random.split(key, num_draws))
        return jax.vmap(kernel.is_valid)(state), jax.tree_util.tree_map(
            lambda x: jnp.swapaxes(x, 0, 1), (draws, info)
        )

    return go(key, position, energy)


def assert_means_match(samples, exact, what):
    """Per-chain means (one batch each, chains independent): SE from their spread."""
    per_chain = np.asarray(samples, np.float64).mean(axis=1)
    est, se = per_chain.mean(0), per_chain.std(0, ddof=1) / np.sqrt(per_chain.shape[0])
    z = np.abs(est - exact) / np.maximum(se, 1e-4)
    assert np.all(z < 5), f"{what}: estimate {est}, exact {exact}, z {z}"


def test_block_gibbs_matches_exact_marginals(small):
    E, V, H = joint_table(small)
    P = np.exp(-E - logsumexp(-E))
    kernel, params = Gibbs.from_options(0, {"blocks": (("v",), ("h",))})
    assert params == {} and Gibbs.unconstrained is False and Gibbs.discrete is True
    chains = 64
    start = {"v": jnp.zeros((chains, 4)), "h": jnp.ones((chains, 3))}
    valid, (draws, info) = run_chains(kernel, small, start, jax.random.key(3), 800)
    assert bool(jnp.all(valid))
    v, h = np.asarray(draws["v"]), np.asarray(draws["h"])
    assert set(np.unique(v)) <= {0.0, 1.0} and set(np.unique(h)) <= {0.0, 1.0}
    assert_means_match(v, P.sum(1) @ V, "visible means")
    assert_means_match(h, P.sum(0) @ H, "hidden means")
    pairs = {
        "v0 v1": (v[..., 0] * v[..., 1], P.sum(1) @ (V[:, 0] * V[:, 1])),
        "v2 h1": (v[..., 2] * h[..., 1], np.sum(P * np.outer(V[:, 2], H[:, 1]))),
        "h0 h2": (h[..., 0] * h[..., 2], P.sum(0) @ (H[:, 0] * H[:, 2])),
    }
    for what, (x, exact) in pairs.items():
        assert_means_match(x[..., None], np.array([exact]), what)
    # statistics: energy_change is the change of E, num_flips counts changed units
    e = jax.vmap(jax.vmap(small.evaluate))(draws)
    np.testing.assert_allclose(np.diff(e, axis=1), info.energy_change[:, 1:], atol=1e-4)
    flips = np.sum(np.abs(np.diff(v, axis=1)), -1) + np.sum(np.abs(np.diff(h, axis=1)), -1)
    np.testing.assert_array_equal(flips, info.num_flips[:, 1:])


def test_block_gibbs_gaussian_bernoulli_moments():
    rbm = ebm.GaussianBernoulliRBM("v", "h", 2, 3, key=jax.random.key(0), sigma=0.8)
    rbm = with_params(rbm, seed=4)
    W, b, c = (np.asarray(x, np.float64) for x in (rbm.W, rbm.b, rbm.c))
    H = bits(3)
    means = b[None] + H @ W.T  # v | h ~ N(b + Wh, σ²)
    logw = H @ c + np.sum((means**2 - b[None] ** 2) / (2 * 0.64), -1)
    ph = np.exp(logw - logsumexp(logw))
    kernel = Gibbs.from_options(0, {})[0].for_space(rbm.space)  # blocks v, then h
    assert kernel.blocks == (("v",), ("h",)) and kernel.binary == ("h",)
    start = {"v": jnp.zeros((64, 2)), "h": jnp.zeros((64, 3))}
    valid, (draws, _) = run_chains(kernel, rbm, start, jax.random.key(5), 800)
    assert bool(jnp.all(valid))
    v = np.asarray(draws["v"])
    assert_means_match(v, ph @ means, "E[v]")
    assert_means_match(v**2, ph @ (means**2 + 0.64), "E[v²]")
    assert_means_match(np.asarray(draws["h"]), ph @ H, "hidden means")
    # without binary= the kind of each variable comes from the start values: same law
    auto, _ = Gibbs.from_options(0, {})
    start = {"v": jnp.full((64, 2), 0.3), "h": jnp.zeros((64, 3))}
    _, (draws, _) = run_chains(auto, rbm, start, jax.random.key(6), 800)
    assert_means_match(np.asarray(draws["v"]), ph @ means, "E[v], kinds from values")


def test_free_energy_composes_and_samples_with_langevin():
    rbm = with_params(ebm.GaussianBernoulliRBM("v", "h", 2, 3, key=jax.random.key(0)), seed=4)
    F = rbm.free_energy()
    prior = ebm.Gaussian("v", jnp.zeros(2), cov=4.0)
    total = F + prior
    x = jnp.array([0.5, -1.0])
    np.testing.assert_allclose(total(x), F(x) + prior(x), rtol=1e-6)
    assert ebm.trainable_mask(F).rbm.W and not ebm.trainable_mask(F).rbm.sigma
    # MALA on F alone: E[v] matches the exact mixture mean
    W, b, c = (np.asarray(a, np.float64) for a in (rbm.W, rbm.b, rbm.c))
    H = bits(3)
    means = b[None] + H @ W.T
    logw = H @ c + np.sum((means**2 - b[None] ** 2) / 2, -1)
    exact = np.exp(logw - logsumexp(logw)) @ means
    out = ebm.langevin(F, jax.random.key(7), jnp.zeros((2000, 2)), step_size=0.2, num_steps=200,
                       adjusted=True)  # fmt: skip
    se = np.asarray(out["v"]).std(0) / np.sqrt(2000)  # independent chains
    assert np.all(np.abs(np.asarray(out["v"]).mean(0) - exact) < 5 * se)


def test_gibbs_check_rejects_energies_of_the_wrong_form():
    from numpyro.distributions import constraints

    boolean = ebm.Var((3,), constraints.boolean)
    kernel = Gibbs(binary=("x",))
    pos = {"x": jnp.array([0.0, 1.0, 0.0])}
    # a coupling inside the block: units are not conditionally independent
    coupled = ebm.energy(lambda x: x[0] * x[1] - x[2], x=boolean)
    with pytest.raises(ValueError, match=r"variable 'x' \(binary\).*not affine"):
        kernel.check(pos, coupled.evaluate)
    assert not bool(kernel.is_valid(kernel.init(pos, coupled.evaluate, {})))
    # a non-polynomial energy: the gradient does not give E(1) − E(0)
    curved = ebm.energy(lambda x: jnp.sum(jnp.exp(x)), x=boolean)
    with pytest.raises(ValueError, match="not affine"):
        kernel.check(pos, curved.evaluate)
    with pytest.raises(ValueError, match=r"not all 0\. or 1\."):
        kernel.check({"x": jnp.array([0.5, 1.0, 0.0])}, curved.evaluate)
    # real units: a correlated Gaussian is not separable, a linear energy has no curvature
    real = Gibbs(binary=())
    corr = ebm.Gaussian("y", jnp.zeros(2), cov=jnp.array([[1.0, 0.8], [0.8, 1.0]]))
    with pytest.raises(ValueError, match=r"variable 'y' \(real\).*separable quadratic"):
        real.check({"y": jnp.array([0.3, -0.2])}, corr.evaluate)
    linear = ebm.energy(lambda y: jnp.sum(y), y=(2,))
    with pytest.raises(ValueError, match="curvature"):
        real.check({"y": jnp.array([0.3, -0.2])}, linear.evaluate)
    # the RBM passes
    rbm = ebm.BernoulliRBM("v", "h", 3, 2, key=jax.random.key(0))
    Gibbs().for_space(rbm.space).check({"v": jnp.ones(3), "h": jnp.zeros(2)}, rbm.evaluate)


def test_kernel_options_and_blocks_errors():
    with pytest.raises(TypeError, match=r"unknown kernel option\(s\) \['step_size'\]"):
        Gibbs.from_options(0, {"step_size": 0.1})
    with pytest.raises(ValueError, match="blocks"):
        Gibbs.from_options(0, {"blocks": "v"})
    with pytest.raises(ValueError, match="disjoint"):
        Gibbs.from_options(0, {"blocks": (("v", "h"), ("h",))})
    rbm = ebm.BernoulliRBM("v", "h", 3, 2, key=jax.random.key(0))
    kernel, _ = Gibbs.from_options(0, {"blocks": (("v",),)})
    with pytest.raises(ValueError, match="cover the variables"):
        kernel.init({"v": jnp.ones(3), "h": jnp.zeros(2)}, rbm.evaluate, {})
    from numpyro.distributions import constraints

    with pytest.raises(ValueError, match="variable 'k'"):
        Gibbs().for_space({"k": ebm.Var((2,), constraints.integer_interval(0, 4))})


def bars_and_stripes(n=3):
    rows = []
    for b in itertools.product([0, 1], repeat=n):
        b = np.array(b)
        rows.append(np.repeat(b[:, None], n, 1).ravel())  # horizontal stripes
        rows.append(np.repeat(b[None, :], n, 0).ravel())  # vertical bars
    return np.unique(np.array(rows), axis=0)


def log_likelihood(rbm, data):
    return float(-jnp.mean(rbm.free_energy().batch(jnp.asarray(data))) - rbm.log_partition())


@pytest.mark.parametrize(
    "persistent,lr,expect", [(False, 0.05, -4.75), (True, 0.01, -4.5)], ids=["CD-1", "PCD-1"]
)
def test_contrastive_divergence_raises_the_exact_log_likelihood(persistent, lr, expect):
    data = bars_and_stripes()
    assert data.shape == (14, 9)
    rbm = ebm.BernoulliRBM("v", "h", 9, 12, key=jax.random.key(0))
    before = log_likelihood(rbm, data)
    np.testing.assert_allclose(before, -9 * np.log(2), atol=0.05)  # tiny weights: uniform
    loss = ebm.ContrastiveDivergence(sampler="gibbs", steps=1, persistent=persistent,
                                     buffer_size=1024, reinit=0.0)  # fmt: skip
    r = ebm.fit(rbm, data, loss, steps=1500, batch_size=64, optimizer=optax.adam(lr),
                key=jax.random.key(1), progress=False)  # fmt: skip
    after = log_likelihood(r.energy, data)
    # from −6.24 (uniform); the optimum is log(1/14) = −2.64. Seeds 0–2 reached −3.65 to
    # −4.22 (CD-1) and −3.21 to −3.72 (PCD-1): the thresholds leave ≥ 0.5 to spare
    assert r.stopped is None and after > expect, (before, after)
    if persistent:
        buf = r.loss_state["buffer"]["v"]
        assert buf.shape == (1024, 9) and set(np.unique(buf)) <= {0.0, 1.0}


def test_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="two names"):
        ebm.BernoulliRBM("v", "v", 3, 2, key=key)
    with pytest.raises(ValueError, match="num_hidden must be a positive integer"):
        ebm.BernoulliRBM("v", "h", 3, 0, key=key)
    with pytest.raises(ValueError, match=r"sigma must be a scalar or have shape \(3,\)"):
        ebm.GaussianBernoulliRBM("v", "h", 3, 2, key=key, sigma=np.ones(2))
    with pytest.raises(ValueError, match="sigma must be positive"):
        ebm.GaussianBernoulliRBM("v", "h", 3, 2, key=key, sigma=-1.0)
    big = ebm.BernoulliRBM("v", "h", 30, 21, key=key)
    with pytest.raises(ValueError, match=r"2\^21 .*num_visible=30, num_hidden=21"):
        big.log_partition()
    rbm = ebm.BernoulliRBM("v", "h", 3, 2, key=key)
    with pytest.raises(TypeError, match="discrete"):
        rbm({"v": jnp.ones(3), "h": jnp.zeros(2, jnp.int32)})  # floats for a boolean variable
    loss = ebm.ContrastiveDivergence(sampler="gibbs", steps=1, persistent=False)
    with pytest.raises(ValueError, match=r"data\['v'\] has 1 value\(s\) other than 0 and 1"):
        ebm.fit(rbm, np.array([[0, 1, 2], [1, 1, 0]]), loss, steps=1, key=key, progress=False)
    with pytest.raises(ValueError, match="expected"):  # the hidden units are not data
        ebm.fit(rbm, np.zeros((4, 5), np.int32), loss, steps=1, key=key, progress=False)
    with pytest.raises(ValueError, match="sampler must be 'langevin' or 'gibbs'"):
        ebm.ContrastiveDivergence(sampler="hmc")


def test_sample_with_kernel_gibbs_end_to_end(small):
    E, V, H = joint_table(small)
    P = np.exp(-E - logsumexp(-E))
    s = ebm.sample(small, jax.random.key(8), kernel="gibbs", num_warmup=20, num_samples=500,
                   num_chains=32, blocks=(("v",), ("h",)))  # fmt: skip
    v, h = np.asarray(s.draws["v"]), np.asarray(s.draws["h"])
    assert v.shape == (32, 500, 4) and np.issubdtype(v.dtype, np.integer)
    assert {"energy_change", "num_flips"} <= set(s.stats)
    assert_means_match(v, P.sum(1) @ V, "visible means")
    assert_means_match(h, P.sum(0) @ H, "hidden means")


def test_nuts_on_the_gaussian_bernoulli_free_energy():
    import arviz as az

    rbm = with_params(ebm.GaussianBernoulliRBM("v", "h", 2, 3, key=jax.random.key(0)), seed=4)
    W, b, c = (np.asarray(a, np.float64) for a in (rbm.W, rbm.b, rbm.c))
    H = bits(3)
    means = b[None] + H @ W.T
    logw = H @ c + np.sum((means**2 - b[None] ** 2) / 2, -1)
    exact = np.exp(logw - logsumexp(logw)) @ means
    s = ebm.sample(rbm.free_energy(), jax.random.key(9), num_warmup=300, num_samples=500)
    v = np.asarray(s.draws["v"])
    for i in range(2):
        se = v[..., i].std() / np.sqrt(az.ess(v[..., i]))
        assert abs(v[..., i].mean() - exact[i]) < 5 * se, (i, v[..., i].mean(), exact[i], se)


def test_gibbs_with_temperatures_keeps_the_exact_marginals(small):
    """Parallel tempering over block Gibbs: swaps move states, T = 1 draws stay exact."""
    E, V, _ = joint_table(small)
    P = np.exp(-E - logsumexp(-E))
    s = ebm.sample(small, jax.random.key(10), kernel="gibbs", temperatures=[1.0, 2.0, 4.0],
                   num_warmup=20, num_samples=500, num_chains=32)  # fmt: skip
    swap = np.asarray(s.stats["swap_accept_prob"])
    assert swap.shape == (32, 500, 2) and 0.1 < swap.mean() <= 1.0
    assert_means_match(np.asarray(s.draws["v"]), P.sum(1) @ V, "visible means (tempered)")
