"""``ebm.fit`` features: validation and early stopping, clipping, callbacks, history,
what is (not) trained, margin loss, regularisers, non-finite stops, NCE noise warnings."""

from __future__ import annotations

import re
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import composable_ebm as ebm
from composable_ebm import datasets


def _normal(n, mean, std, seed, d=2):
    return np.random.default_rng(seed).normal(mean, std, (n, d)).astype(np.float32)


def _trainable(E):
    return jax.tree_util.tree_leaves(eqx.filter(E, ebm.trainable_mask(E)))


def _fixed(E):
    mask = jax.tree_util.tree_map(lambda m: not m, ebm.trainable_mask(E))
    return jax.tree_util.tree_leaves(eqx.filter(E, mask))


def _same(a, b) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        x.shape == y.shape and x.dtype == y.dtype and bool(jnp.all(x == y)) for x, y in zip(la, lb)
    )


def _gauss(mean=0.0, d=2):
    return ebm.Gaussian("x", jnp.full(d, mean), cov=jnp.eye(d))


def test_history_has_per_step_loss_and_decreases():
    x = _normal(2048, 2.0, 0.5, 0)
    r = ebm.fit(
        _gauss(),
        x,
        ebm.ScoreMatching("exact"),
        steps=300,
        chunk_size=64,
        optimizer=optax.adam(3e-2),
        key=jax.random.key(0),
        progress=False,
    )
    assert r.steps == 300 and r.stopped is None
    loss = r.history["loss"]
    assert loss.shape == (300,) and np.all(np.isfinite(loss))
    # minimum of ½ tr(P²S) − tr P is −d/(2σ²)·… = −½ tr S⁻¹ = −4 for σ = 0.5, d = 2
    assert loss[:20].mean() > loss[-50:].mean()
    assert abs(loss[-50:].mean() - (-4.0)) < 0.3  # minibatch spread of the loss ≈ 0.1


def test_validation_patience_returns_best_parameters():
    # Train data at 0, validation at 1, start at 3: the validation loss falls while the
    # mean passes 1, then rises, so patience stops training and the best chunk is kept.
    x, xv = _normal(2048, 0.0, 1.0, 0), _normal(1024, 1.0, 1.0, 1)
    seen = []
    r = ebm.fit(
        _gauss(3.0),
        x,
        ebm.ScoreMatching("exact"),
        steps=2000,
        chunk_size=10,
        optimizer=optax.sgd(0.02),
        validation=xv,
        patience=3,
        callback=lambda step, m, e: seen.append((step, e)),
        key=jax.random.key(0),
        progress=False,
    )
    assert r.stopped is not None and "early stopping" in r.stopped
    assert r.steps < 2000
    val = r.history["val_loss"]
    assert len(val) == len(seen) == len(r.history["val_step"])
    best = int(np.argmin(val))
    assert best < len(val) - 3  # three chunks without improvement followed
    assert np.all(val[best + 1 :] >= val[best])
    assert int(r.history["val_step"][best]) == seen[best][0]
    assert _same(r.energy, seen[best][1])  # the best parameters, bit for bit
    assert not _same(r.energy, seen[-1][1])


def test_clip_norm_bounds_each_update():
    x = _normal(512, 5.0, 0.3, 0)  # far from the start: large raw gradients
    lr, clip = 0.1, 0.01
    seen = []
    r = ebm.fit(
        _gauss(),
        x,
        ebm.ScoreMatching("exact"),
        steps=5,
        chunk_size=1,
        optimizer=optax.sgd(lr),
        clip_norm=clip,
        callback=lambda step, m, e: seen.append(_trainable(e)),
        key=jax.random.key(0),
        progress=False,
    )
    before = [_trainable(_gauss()), *seen[:-1]]
    for a, b in zip(before, seen):
        step = np.sqrt(sum(float(jnp.sum((p - q) ** 2)) for p, q in zip(a, b)))
        assert step <= lr * clip * (1 + 1e-4)
        assert step > 0.5 * lr * clip  # the raw gradient is far larger: clipped to the bound
    unclipped = ebm.fit(
        _gauss(),
        x,
        ebm.ScoreMatching("exact"),
        steps=1,
        optimizer=optax.sgd(lr),
        key=jax.random.key(0),
        progress=False,
    )
    moved = np.sqrt(
        sum(
            float(jnp.sum((p - q) ** 2))
            for p, q in zip(_trainable(_gauss()), _trainable(unclipped.energy))
        )
    )
    assert moved > 100 * lr * clip
    assert r.steps == 5


def test_callback_returning_false_stops():
    x = _normal(256, 0.0, 1.0, 0)
    calls = []

    def cb(step, metrics, energy):
        calls.append(step)
        assert "loss" in metrics and isinstance(energy, ebm.Gaussian)
        return step < 30

    r = ebm.fit(
        _gauss(),
        x,
        ebm.ScoreMatching("exact"),
        steps=1000,
        chunk_size=10,
        callback=cb,
        key=jax.random.key(0),
        progress=False,
    )
    assert calls == [10, 20, 30]
    assert r.steps == 30 and "callback" in r.stopped
    assert r.history["loss"].shape == (30,)


def test_frozen_and_conditioned_values_unchanged():
    prior = ebm.freeze(ebm.Gaussian("x", jnp.array([0.5, -0.5]), cov=jnp.eye(2) * 2.0))
    coupling = ebm.energy(lambda x, y: 0.5 * jnp.sum((x - y) ** 2), x=(2,), y=(2,))
    E = prior + _gauss() + coupling.condition(y=jnp.array([1.0, 2.0]))
    x = _normal(1024, 1.0, 0.7, 0)
    r = ebm.fit(
        E,
        x,
        ebm.ScoreMatching("exact"),
        steps=200,
        optimizer=optax.adam(1e-2),
        key=jax.random.key(0),
        progress=False,
    )
    assert _same(_fixed(r.energy), _fixed(E))  # prior's mean, tril and y: bit for bit
    assert len(_fixed(E)) == 3
    assert all(not bool(jnp.all(a == b)) for a, b in zip(_trainable(r.energy), _trainable(E)))


def test_residual_training_keeps_the_prior_bitwise():
    prior = ebm.freeze(ebm.Gaussian("x", jnp.zeros(2), cov=4.0 * jnp.eye(2)))
    E = prior + ebm.NeuralEnergy("x", (2,), hidden=(16, 16), key=jax.random.key(0))
    x = datasets.two_moons(2048, seed=0)
    r = ebm.fit(E, x, ebm.ScoreMatching("sliced"), steps=200, key=jax.random.key(1), progress=False)
    trained_prior = r.energy.terms[0]
    assert _same(trained_prior, prior)
    assert not _same(r.energy.terms[1], E.terms[1])  # the network did train
    assert np.all(np.isfinite(r.history["loss"]))


def test_param_weight_is_trained():
    # E = w · ½x² on data of variance 0.25: score matching gives w = 1/var = 4
    E = ebm.Param(1.0) * ebm.freeze(ebm.Gaussian("x", 0.0, cov=1.0))
    x = np.random.default_rng(0).normal(0.0, 0.5, 4096).astype(np.float32)
    r = ebm.fit(
        E,
        x,
        ebm.ScoreMatching("exact"),
        steps=1500,
        batch_size=512,
        optimizer=optax.adam(optax.exponential_decay(5e-2, 1500, 0.01)),
        key=jax.random.key(0),
        progress=False,
    )
    (w,) = _trainable(r.energy)
    target = 1.0 / float(np.mean(x.astype(np.float64) ** 2))
    # optimum on this data is 1/mean(x²); optimiser noise measured < 0.5 %: 2 %
    assert abs(float(w) - target) < 0.02 * target
    assert abs(float(r.energy(1.0)) - float(w) / 2) < 1e-5


def test_margin_loss_on_paired_data():
    pos, neg = _normal(1024, 1.0, 0.3, 0), _normal(1024, -1.0, 0.3, 1)
    r = ebm.fit(
        _gauss(),
        (pos, neg),
        ebm.MarginLoss(margin=1.0),
        steps=500,
        optimizer=optax.adam(3e-2),
        key=jax.random.key(0),
        progress=False,
    )
    gap = r.energy.batch(jnp.asarray(neg)) - r.energy.batch(jnp.asarray(pos))
    assert float(jnp.mean(gap >= 1.0)) > 0.95  # positives sit lower by the margin
    assert r.history["violations"][-50:].mean() < 0.1
    with pytest.raises(ValueError, match="positives but"):
        ebm.fit(
            _gauss(),
            (pos, neg[:10]),
            ebm.MarginLoss(),
            steps=1,
            key=jax.random.key(0),
            progress=False,
        )


def test_l2_regulariser_closed_form_step():
    # L2 alone with SGD: θ ← θ − lr·2wθ exactly, on every trainable leaf only
    E = ebm.freeze(ebm.Gaussian("x", jnp.ones(2), cov=jnp.eye(2))) + ebm.Gaussian(
        "x", jnp.array([1.0, -2.0]), cov=jnp.array([[2.0, 0.3], [0.3, 1.0]])
    )
    x = _normal(64, 0.0, 1.0, 0)
    w, lr = 0.5, 0.1
    assert (
        abs(
            float(ebm.L2(w)(E, x, jax.random.key(0)))
            - w * sum(float(jnp.sum(p**2)) for p in _trainable(E))
        )
        < 1e-5
    )
    r = ebm.fit(
        E, x, ebm.L2(w), optimizer=optax.sgd(lr), steps=1, key=jax.random.key(0), progress=False
    )
    d = 2.0 / 11.0  # the average's decay at step 1: min(ema, (1 + 1) / (10 + 1))
    for new, avg, old in zip(_trainable(r.final_energy), _trainable(r.energy), _trainable(E)):
        stepped = (1 - 2 * lr * w) * np.asarray(old)
        np.testing.assert_allclose(np.asarray(new), stepped, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(
            np.asarray(avg), d * np.asarray(old) + (1 - d) * stepped, rtol=1e-6, atol=1e-7
        )
    assert _same(_fixed(r.energy), _fixed(E)) and _same(_fixed(r.final_energy), _fixed(E))
    # as a term of a sum: both metrics recorded
    r2 = ebm.fit(
        E,
        x,
        ebm.ScoreMatching("exact") + ebm.L2(1e-3),
        steps=10,
        key=jax.random.key(0),
        progress=False,
    )
    assert {"loss", "l2"} <= set(r2.history)


def test_energy_l2_closed_form_step():
    # E = w · ½x² at x = 2 (½x² = 2): loss λ w² · 4, gradient 8λw
    E = ebm.Param(0.5) * ebm.freeze(ebm.Gaussian("x", 0.0, cov=1.0))
    x = np.full(32, 2.0, np.float32)
    lam, lr = 1.0, 0.01
    assert abs(float(ebm.EnergyL2(lam)(E, x, jax.random.key(0))) - 1.0) < 1e-6
    r = ebm.fit(
        E,
        x,
        ebm.EnergyL2(lam),
        optimizer=optax.sgd(lr),
        steps=1,
        key=jax.random.key(0),
        progress=False,
    )
    (w,) = _trainable(r.final_energy)
    assert abs(float(w) - (0.5 - lr * 8 * lam * 0.5)) < 1e-6


def test_nan_data_rejected_naming_the_variable():
    x = _normal(64, 0.0, 1.0, 0)
    x[3, 1] = np.nan
    E = ebm.Gaussian("theta", jnp.zeros(2), cov=jnp.eye(2))
    with pytest.raises(ValueError, match=r"data\['theta'\] has 1 NaN"):
        ebm.fit(E, x, ebm.ScoreMatching("exact"), steps=1, key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match=r"data\['theta'\].*NaN or infinite"):
        ebm.fit(
            E,
            {"theta": np.where(np.isnan(x), np.inf, x)},
            ebm.NCE(),
            steps=1,
            key=jax.random.key(0),
            progress=False,
        )
    good = _normal(64, 0.0, 1.0, 1)
    with pytest.raises(ValueError, match=r"data\['theta'\]"):
        ebm.fit(
            E,
            good,
            ebm.ScoreMatching("exact"),
            validation=x,
            steps=1,
            key=jax.random.key(0),
            progress=False,
        )
    with pytest.raises(ValueError, match=r"negatives\['theta'\]"):
        ebm.fit(E, (good, x), ebm.MarginLoss(), steps=1, key=jax.random.key(0), progress=False)


def _blowing_up():
    # a = 1 → the data (variance 0.25) pulls a towards 4; √(2 − a) is NaN once a > 2
    f = ebm.energy(lambda x, a: 0.5 * a * x**2 + jnp.sqrt(2.0 - a), x=(), a=())
    return f.condition(a=ebm.Param(1.0))


def _a(E):
    (a,) = _trainable(E)
    return float(a)


def test_nonfinite_loss_stops_with_last_good_parameters():
    x = np.random.default_rng(0).normal(0.0, 0.5, 1024).astype(np.float32)
    kw = dict(optimizer=optax.sgd(0.2), key=jax.random.key(0), progress=False, chunk_size=16)
    with pytest.warns(RuntimeWarning, match=r"non-finite at step \d+"):
        r = ebm.fit(_blowing_up(), x, ebm.NCE(), steps=500, **kw)
    bad = int(re.search(r"non-finite at step (\d+);", r.stopped).group(1))
    assert 1 < bad < 500
    assert r.stopped == (
        f"the loss became non-finite at step {bad}; training stopped and the parameters of "
        f"step {bad - 1}, the last with a finite loss, are returned"
    )
    assert r.steps == bad - 1  # updates applied to the returned parameters
    assert r.history["loss"].shape == (bad,) and np.all(np.isfinite(r.history["loss"]))
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in _trainable(r.energy))
    # the returned parameters are the ones whose loss was last finite: a has not passed 2
    assert 1.0 < _a(r.energy) <= 2.0
    assert bool(jnp.isfinite(r.energy(0.5)))
    # equal to a run of exactly bad − 1 steps (same key, same minibatches)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good = ebm.fit(_blowing_up(), x, ebm.NCE(), steps=bad - 1, **kw)
    assert good.stopped is None
    assert _same(good.energy, r.energy) and _same(good.loss_params, r.loss_params)
    np.testing.assert_array_equal(good.history["loss"], r.history["loss"][: bad - 1])

    with pytest.raises(ebm.FitError, match=f"step {bad}") as info:
        ebm.fit(_blowing_up(), x, ebm.NCE(), steps=500, on_nonfinite="raise", **kw)
    assert info.value.result.steps == bad - 1
    assert _same(info.value.result.energy, r.energy)


def test_huge_learning_rate_stops_with_finite_parameters():
    x = _normal(1024, 0.0, 0.1, 0)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        r = ebm.fit(
            _gauss(),
            x,
            ebm.ScoreMatching("exact"),
            optimizer=optax.sgd(10.0),
            steps=200,
            key=jax.random.key(0),
            progress=False,
        )
    assert r.stopped is not None and f"step {r.steps}" in r.stopped
    assert r.steps < 200
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in _trainable(r.energy))


def test_update_overflow_stops_with_finite_parameters():
    # finite loss and gradient, but lr·gradient overflows float32: the parameters after
    # that update are infinite, so the step counts as bad and is not applied
    x = _normal(256, 5.0, 1.0, 0)
    with pytest.warns(RuntimeWarning, match="non-finite at step 0"):
        r = ebm.fit(
            _gauss(),
            x,
            ebm.ScoreMatching("exact"),
            optimizer=optax.sgd(1e38),
            steps=10,
            key=jax.random.key(0),
            progress=False,
        )
    assert r.steps == 0
    assert _same(r.energy, _gauss())


def test_nce_warns_when_noise_is_far_from_data():
    x = _normal(1024, 0.0, 1.0, 0)
    far = dist.MultivariateNormal(100.0 * jnp.ones(2), jnp.eye(2))
    with pytest.warns(RuntimeWarning, match="noise is too far from the data"):
        ebm.fit(_gauss(), x, ebm.NCE(noise=far), steps=50, key=jax.random.key(0), progress=False)
    with warnings.catch_warnings():  # the default, fitted noise does not warn
        warnings.simplefilter("error", RuntimeWarning)
        ebm.fit(_gauss(), x, ebm.NCE(), steps=50, key=jax.random.key(0), progress=False)
        # nor a broad noise around two moons (REFERENCE.md's N(0, 1.5²I), ν = 4)
        moons = datasets.two_moons(2048, seed=0)
        broad = dist.MultivariateNormal(jnp.zeros(2), 1.5**2 * jnp.eye(2))
        net = ebm.NeuralEnergy("x", (2,), hidden=(16, 16), key=jax.random.key(0))
        r = ebm.fit(
            net,
            moons,
            ebm.NCE(noise=broad, ratio=4),
            steps=50,
            key=jax.random.key(0),
            progress=False,
        )
    assert r.history["separation"][:20].mean() < 0.5


def test_fit_argument_errors():
    x = _normal(64, 0.0, 1.0, 0)
    with pytest.raises(TypeError, match=r"ebm\.Energy"):
        ebm.fit(lambda v: v, x, ebm.NCE(), key=jax.random.key(0))
    with pytest.raises(TypeError, match="loss"):
        ebm.fit(_gauss(), x, "nce", key=jax.random.key(0))
    with pytest.raises(ValueError, match="on_nonfinite"):
        ebm.fit(_gauss(), x, ebm.NCE(), on_nonfinite="ignore", key=jax.random.key(0))
    with pytest.raises(ValueError, match="nothing to train"):
        ebm.fit(ebm.freeze(_gauss()), x, ebm.ScoreMatching(), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"data\['x'\] has shape \(64, 3\)"):
        ebm.fit(_gauss(), _normal(64, 0.0, 1.0, 0, d=3), ebm.ScoreMatching(), key=jax.random.key(0))


class _CountingScoreMatching(ebm.ScoreMatching):
    """Exact score matching that counts how often it is traced (a test-side counter)."""

    traces = 0

    def value(self, energy, params, state, batch, key):
        type(self).traces += 1
        return super().value(energy, params, state, batch, key)


def test_one_trace_per_fit_call_and_none_for_a_repeat():
    loss = _CountingScoreMatching("exact")
    kw = dict(steps=30, chunk_size=10, progress=False)
    ebm.fit(_gauss(), _normal(256, 0.0, 1.0, 0), loss, key=jax.random.key(0), **kw)
    assert _CountingScoreMatching.traces == 1  # three chunks, one compiled function
    # the same structure with new values, a new key and new data of the same shape: the
    # compiled chunk is reused (the default optimizer is one object per setting)
    ebm.fit(_gauss(1.0), _normal(256, 1.0, 2.0, 1), loss, key=jax.random.key(1), **kw)
    assert _CountingScoreMatching.traces == 1
    ebm.fit(_gauss(), _normal(256, 0.0, 1.0, 0), loss, key=jax.random.key(0), ema=None, **kw)
    assert _CountingScoreMatching.traces == 2  # averaging off: another program
