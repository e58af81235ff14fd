"""Training with known answers: a dense Gaussian energy fitted to Gaussian data.

Every estimator is compared with its optimum on *this* data set (the sample mean and
covariance), so the tolerance only has to cover the optimiser: minibatch and
Monte-Carlo noise of the last iterates, made small by a decaying learning rate. The data's
own Monte-Carlo error (about √(Σᵢᵢ/N) ≈ 0.01 for the mean) is checked separately against
the true parameters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import composable_ebm as ebm

N = 8192
MEAN = np.array([1.0, -0.5])
COV = np.array([[1.0, 0.6], [0.6, 0.8]])  # correlation 0.67
STEPS = 1000


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.multivariate_normal(MEAN, COV, N).astype(np.float32)


@pytest.fixture(scope="module")
def sample_stats(data):
    x = data.astype(np.float64)
    mean = x.mean(0)
    cov = np.cov(x, rowvar=False, bias=True)  # score matching's optimum is the biased one
    return mean, cov


def _schedule(lr: float = 3e-2, final: float = 3e-4):
    # Adam whose learning rate decays by 100x over the run: the last iterates average
    # over many minibatches, so their fluctuation is well below the tolerances below.
    return optax.adam(optax.exponential_decay(lr, STEPS, final / lr))


def _start() -> ebm.Gaussian:
    return ebm.Gaussian("x", jnp.zeros(2), cov=jnp.eye(2))  # dense (matrix cov)


def _fit(data, loss, seed=0, batch_size=512):
    return ebm.fit(
        _start(),
        data,
        loss,
        optimizer=_schedule(),
        steps=STEPS,
        batch_size=batch_size,
        key=jax.random.key(seed),
        progress=False,
    )


def test_data_matches_truth(sample_stats):
    # Data Monte-Carlo error: SE of the mean √(Σᵢᵢ/N) ≤ 0.011, SE of a covariance entry
    # ≤ √(2/N)·max Σ ≈ 0.016; 5 SE.
    mean, cov = sample_stats
    np.testing.assert_allclose(mean, MEAN, atol=5 * math.sqrt(1.0 / N))
    np.testing.assert_allclose(cov, COV, atol=5 * math.sqrt(2.0 / N))


@pytest.mark.parametrize("kind", ["exact", "sliced"])
def test_score_matching_recovers_mean_and_precision(data, sample_stats, kind):
    mean, cov = sample_stats
    r = _fit(data, ebm.ScoreMatching(kind))
    E = r.energy
    assert E.tril.ndim == 2  # stayed dense
    assert r.log_z is None and r.stopped is None
    # Score matching's optimum on this data is exactly (sample mean, inverse biased sample
    # covariance). What is left is optimiser noise, measured over seeds and batch sizes:
    # at most 0.005 on the mean and 0.6 % on the precision (exact and sliced alike);
    # tolerance 0.015 on the mean and 2 % on the precision.
    np.testing.assert_allclose(np.asarray(E.mean), mean, atol=0.015)
    np.testing.assert_allclose(np.asarray(E.precision), np.linalg.inv(cov), rtol=0.02, atol=0.02)
    # and the truth within data + optimiser error
    np.testing.assert_allclose(np.asarray(E.mean), MEAN, atol=0.05)
    np.testing.assert_allclose(np.asarray(E.cov), COV, atol=0.05)


def test_nce_recovers_mean_precision_and_log_z(data, sample_stats):
    mean, cov = sample_stats
    r = _fit(data, ebm.NCE(), batch_size=256)  # ν = 10: 2560 noise samples a step
    E = r.energy
    assert E.tril.ndim == 2
    log_z_data = math.log(2 * math.pi) + 0.5 * math.log(np.linalg.det(cov))
    # NCE with ν = 10 fresh noise samples per point is close to maximum likelihood, whose
    # optimum is the sample mean and covariance. Its extra variance (noise Monte-Carlo,
    # minibatches) was measured over 3 seeds at most 0.004 on the mean, 0.8 % on the
    # precision, 0.005 on log Z; tolerance 0.02, 3 % and 0.02 (still below the data's own
    # standard errors, so a biased estimator would fail).
    np.testing.assert_allclose(np.asarray(E.mean), mean, atol=0.02)
    np.testing.assert_allclose(np.asarray(E.precision), np.linalg.inv(cov), rtol=0.03, atol=0.03)
    assert r.log_z is not None
    assert abs(r.log_z - log_z_data) < 0.02, (r.log_z, log_z_data)
    # the learned c is the energy's own log-normaliser
    assert abs(r.log_z - float(E.log_partition)) < 0.02
    assert np.all(np.isfinite(r.history["accuracy"]))


def test_denoising_recovers_smoothed_covariance(data, sample_stats):
    mean, cov = sample_stats
    sigma = 0.5
    r = _fit(data, ebm.ScoreMatching("denoising", sigma=sigma), batch_size=1024)
    E = r.energy
    smoothed = cov + sigma**2 * np.eye(2)
    # The denoising optimum is the Gaussian of the data convolved with N(0, σ²I): mean
    # unchanged, covariance Σ + σ²I. The fresh noise ε each step adds Monte-Carlo error
    # (the per-step gradient noise is larger than for exact score matching), kept down by
    # batches of 1024 and the decaying rate; measured at most 0.004 on the mean and 0.005
    # on Σ + σ²I; tolerance 0.02 on the mean, 3 % on Σ + σ²I.
    np.testing.assert_allclose(np.asarray(E.mean), mean, atol=0.02)
    np.testing.assert_allclose(np.asarray(E.cov), smoothed, rtol=0.03, atol=0.03)
    # and clearly not the unsmoothed covariance (σ² = 0.25 on the diagonal)
    assert np.all(np.diag(np.asarray(E.cov)) - np.diag(cov) > 0.15)


# --- sliced score matching is an unbiased estimate of the exact loss --------------------


def _random_quadratic(d: int, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    prec = a @ a.T / d + 0.5 * np.eye(d)  # positive definite, well conditioned
    mean = rng.normal(size=d)
    x = rng.normal(size=(16, d)).astype(np.float32)
    return ebm.Gaussian("x", mean, precision=prec), prec, x


@pytest.mark.parametrize("d, num_projections", [(2, 1), (5, 1), (20, 1), (5, 3)])
def test_sliced_is_unbiased_for_exact(d, num_projections):
    E, prec, x = _random_quadratic(d, seed=d)
    batch = {"x": jnp.asarray(x)}
    exact = float(ebm.ScoreMatching("exact")(E, x, jax.random.key(0)))

    # direct: ½‖∇E‖² − tr ∇²E with jax.hessian
    f = lambda v: E(v)  # noqa: E731
    g = jax.vmap(jax.grad(f))(batch["x"])
    tr = jax.vmap(lambda v: jnp.trace(jax.hessian(f)(v)))(batch["x"])
    direct = float(jnp.mean(0.5 * jnp.sum(g * g, axis=1) - tr))
    assert math.isclose(exact, direct, rel_tol=1e-5, abs_tol=1e-4)
    # and the closed form: ∇E = P(x − m), tr ∇²E = tr P
    r = (x.astype(np.float64) - np.asarray(E.mean, np.float64)) @ prec
    closed = float(np.mean(0.5 * np.sum(r * r, axis=1)) - np.trace(prec))
    assert math.isclose(exact, closed, rel_tol=1e-4, abs_tol=1e-3)

    sliced = ebm.ScoreMatching("sliced", num_projections=num_projections)
    keys = jax.random.split(jax.random.key(1), 2000)
    values = jax.jit(jax.vmap(lambda k: sliced.value(E, None, None, batch, k)[0]))(keys)
    values = np.asarray(values, np.float64)
    # The estimates differ from the exact loss only through vᵀPv − tr P, whose mean over
    # Rademacher v is 0; tolerance 5 standard errors of the mean over the 2000 keys.
    se = values.std(ddof=1) / math.sqrt(len(values))
    assert se > 0
    assert abs(values.mean() - exact) < 5 * se, (values.mean(), exact, se)
    # the variance matches Rademacher theory: Var(vᵀPv) = 2 Σ_{i≠j} P_ij², averaged over
    # projections and the 16 rows (a loose 25 % check of the spread's size)
    off = prec - np.diag(np.diag(prec))
    var_theory = 2 * np.sum(off**2) / (num_projections * x.shape[0])
    assert abs(values.var(ddof=1) / var_theory - 1) < 0.25
