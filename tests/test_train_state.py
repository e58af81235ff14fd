"""The public training step: ``TrainState``, ``train_step``, independent key streams,
parameter averaging and the options that build the default optimizer."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import composable_ebm as ebm
from composable_ebm.train._options import optimizer_for


def _data(n=512, seed=0):
    return np.random.default_rng(seed).normal(1.5, 0.7, (n, 2)).astype(np.float32)


def _gauss():
    return ebm.Gaussian("x", jnp.zeros(2), cov=jnp.eye(2))


def _leaves(tree):
    out = []
    for x in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array)):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out.append(np.asarray(x))
    return out


def _key_data(k):
    return tuple(np.asarray(jax.random.key_data(k)).ravel().tolist())


def test_fit_is_a_loop_over_train_step():
    # fit's steps, replayed by hand with the public pieces: TrainState.create with the same
    # key, fit's batch scheme, train_step with an explicit key
    x, steps, batch = _data(), 25, 32
    loss = ebm.ScoreMatching("sliced")
    r = ebm.fit(
        _gauss(),
        x,
        loss,
        steps=steps,
        batch_size=batch,
        chunk_size=10,
        key=jax.random.key(3),
        progress=False,
    )
    state = ebm.TrainState.create(_gauss(), x, loss, key=jax.random.key(3))
    step = jax.jit(ebm.train_step)
    losses = []
    for _ in range(steps):
        key, k_batch, k_loss = jax.random.split(state.key, 3)
        idx = jax.random.randint(k_batch, (batch,), 0, x.shape[0])
        state = dataclasses.replace(state, key=key)
        state, metrics = step(state, {"x": jnp.asarray(x)[idx]}, k_loss)
        assert bool(metrics["finite"])
        losses.append(float(metrics["loss"]))
    assert int(state.step) == steps == int(r.state.step)
    np.testing.assert_allclose(losses, r.history["loss"], rtol=1e-4, atol=1e-5)
    for a, b in zip(_leaves(r.state.params), _leaves(state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(_leaves(r.energy), _leaves(state.averaged_energy)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_train_step_is_pure_and_scans():
    x = jnp.asarray(_data())
    state = ebm.TrainState.create(
        _gauss(), x, ebm.ScoreMatching("exact"), key=jax.random.key(0), learning_rate=0.05
    )
    batches = x.reshape(16, 32, 2)

    @jax.jit
    def run(state):
        return jax.lax.scan(lambda s, b: ebm.train_step(s, b), state, batches)

    a, ma = run(state)
    b, _ = run(state)  # the same inputs give the same outputs: nothing hidden is mutated
    assert all(np.array_equal(u, v) for u, v in zip(_leaves(a), _leaves(b)))
    assert int(a.step) == 16 and ma["loss"].shape == (16,)
    assert int(state.step) == 0  # the input state is untouched
    assert _key_data(a.key) != _key_data(state.key)  # the state's stream advanced
    # the loss went down, and the averaged mean moved towards the data's mean from 0
    assert float(ma["loss"][-4:].mean()) < float(ma["loss"][:4].mean())
    avg_mean = np.asarray(a.averaged_energy.mean)
    assert np.all(avg_mean > 0.1) and np.all(avg_mean < np.asarray(a.energy.mean) + 1e-6)


def test_train_step_does_not_apply_a_nonfinite_step():
    f = ebm.energy(lambda x, a: 0.5 * a * jnp.sum(x**2) + jnp.sqrt(2.0 - a), x=(2,), a=())
    E = f.condition(a=ebm.Param(1.0))
    x = jnp.asarray(_data(64))
    state = ebm.TrainState.create(E, x, ebm.NCE(), key=jax.random.key(0), optimizer=optax.sgd(0.0))
    bad = dataclasses.replace(
        state, params=jax.tree_util.tree_map(lambda p: p + 2.0, state.params)
    )  # a = 3
    new, metrics = jax.jit(ebm.train_step)(bad, x)
    assert not bool(metrics["finite"]) and not np.isfinite(float(metrics["loss"]))
    assert int(new.step) == 0
    assert all(np.array_equal(u, v) for u, v in zip(_leaves(new.params), _leaves(bad.params)))
    assert all(np.isfinite(u).all() for u in _leaves(new.averaged))


def test_bare_array_batch_needs_one_variable():
    E = ebm.Gaussian("x", jnp.zeros(1), cov=1.0) + ebm.Gaussian("y", jnp.zeros(1), cov=1.0)
    data = {"x": jnp.zeros((8, 1)), "y": jnp.zeros((8, 1))}
    state = ebm.TrainState.create(E, data, ebm.ScoreMatching("exact"), key=jax.random.key(0))
    with pytest.raises(TypeError, match=r"\['x', 'y'\].*mapping"):
        ebm.train_step(state, jnp.zeros((8, 1)))
    new, _ = ebm.train_step(state, data)
    assert int(new.step) == 1


def test_network_and_fit_given_the_same_key_share_no_stream():
    # NeuralEnergy(key=k) initialises its layers from split(k, layers) (each Linear splits
    # its key again for weight and bias); fit and TrainState.create fold a tag into k
    # first. Before, fit split k into three as well: with two hidden layers its training
    # stream was the first hidden layer's initialisation key.
    k = jax.random.key(7)
    net = ebm.NeuralEnergy("x", (2,), hidden=(16, 16), key=k)
    init_keys = set()
    for n in range(1, 5):
        for layer_key in jax.random.split(k, n):
            init_keys.add(_key_data(layer_key))
            init_keys.update(_key_data(s) for s in jax.random.split(layer_key, 2))
    init_keys.add(_key_data(k))
    state = ebm.TrainState.create(net, _data(), ebm.ScoreMatching("sliced"), key=k)
    train_keys = {_key_data(state.key)}
    s = state.key
    for _ in range(3):  # fit's first steps: (next, batch, loss) from the state's key
        s, kb, kl = jax.random.split(s, 3)
        train_keys.update(_key_data(q) for q in (s, kb, kl))
    assert not train_keys & init_keys
    # and the streams are really different numbers: the first step's projections are not
    # the first layer's initial weights' signs
    _, _, kl = jax.random.split(state.key, 3)
    v = jax.random.rademacher(kl, (16, 2))
    w = jnp.sign(net.layers[0].weight)
    assert not bool(jnp.all(v == w))


@pytest.mark.parametrize(
    "value, error, match",
    [
        (1.0, ValueError, r"ema must be a decay in \[0, 1\).*got 1\.0"),
        (-0.5, ValueError, "got -0.5"),
        (float("nan"), ValueError, "got nan"),
        ("0.99", TypeError, "ema must be"),
        (True, TypeError, "ema must be"),
        ([0.9, 0.99], TypeError, "ema must be a number"),
    ],
)
def test_bad_ema_is_refused(value, error, match):
    with pytest.raises(error, match=match):
        ebm.fit(
            _gauss(),
            _data(),
            ebm.ScoreMatching(),
            ema=value,
            steps=5,
            key=jax.random.key(0),
            progress=False,
        )


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(schedule="exponential"), ValueError, "schedule must be one of"),
        (dict(warmup_steps=10), ValueError, r"warmup_steps must be in \[0, steps=10\)"),
        (dict(warmup_steps=2.5), TypeError, "warmup_steps must be an integer"),
        (dict(learning_rate=-1e-3), ValueError, "learning_rate must be positive"),
        (dict(learning_rate=float("inf")), ValueError, "learning_rate must be finite"),
        (
            dict(optimizer=optax.sgd(0.1), learning_rate=0.1),
            ValueError,
            "learning_rate configure the default Adam",
        ),
        (dict(optimizer=optax.sgd(0.1), schedule="cosine"), ValueError, "schedule configure"),
        (dict(optimizer="adam"), TypeError, "optimizer must be an optax"),
        (dict(clip_norm=0.0), ValueError, "clip_norm must be positive"),
        (dict(patience=0), ValueError, "patience must be a positive integer"),
        (dict(checkpoint_every=-1), ValueError, "checkpoint_every must be a positive"),
    ],
)
def test_bad_optimizer_options_are_refused(kw, error, match):
    with pytest.raises(error, match=match):
        ebm.fit(
            _gauss(),
            _data(),
            ebm.ScoreMatching(),
            steps=10,
            key=jax.random.key(0),
            progress=False,
            **kw,
        )


def _adam_step_sizes(opt, steps):
    """|update| per step for a constant unit gradient: Adam's step is the learning rate."""
    params = jnp.zeros(1)
    state = opt.init(params)
    sizes = []
    for _ in range(steps):
        updates, state = opt.update(jnp.ones(1), state, params)
        sizes.append(float(-updates[0]))
    return np.array(sizes)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_schedules_follow_their_formulas(schedule):
    lr, steps, warmup = 0.1, 40, 10
    got = _adam_step_sizes(optimizer_for(None, lr, schedule, warmup, steps, None), steps)
    t = np.arange(steps)
    frac = np.clip((t - warmup) / (steps - warmup), 0.0, 1.0)
    after = {
        "constant": np.full(steps, lr),
        "cosine": 0.5 * lr * (1 + np.cos(np.pi * frac)),
        "linear": lr * (1 - frac),
    }[schedule]
    want = np.where(t < warmup, lr * t / warmup, after)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_default_optimizer_is_one_object_per_setting():
    a = optimizer_for(None, None, None, 0, 100, None)
    assert a is optimizer_for(None, 1e-3, "constant", 0, 500, None)  # steps do not matter
    assert a is not optimizer_for(None, 2e-3, None, 0, 100, None)
    assert optimizer_for(None, None, "cosine", 0, 100, None) is not optimizer_for(
        None, None, "cosine", 0, 200, None
    )


def test_averaging_reduces_the_spread_of_a_noisy_iterate():
    # E = ½(x − m)², exact score matching, SGD at rate 0.3 on batches of 4: m follows
    # m ← m + 0.3 (batch mean − m), an AR(1) process around the data mean with stationary
    # variance 0.3² σ²/4 / (1 − 0.7²) ≈ 0.044 (sd 0.21). The average (window about 45 steps
    # at step 400, autocorrelation time about 6) has an sd near 0.05.
    x = np.random.default_rng(1).normal(1.5, 1.0, (4096, 1)).astype(np.float32)
    f = ebm.energy(lambda x, m: 0.5 * jnp.sum((x - m) ** 2), x=(1,), m=(1,))
    E = f.condition(m=ebm.Param(jnp.zeros(1)))
    sgd = optax.sgd(0.3)  # one object: the compiled chunk is reused across seeds
    finals, avgs = [], []
    for seed in range(16):
        r = ebm.fit(
            E,
            x,
            ebm.ScoreMatching("exact"),
            optimizer=sgd,
            steps=400,
            batch_size=4,
            key=jax.random.key(seed),
            progress=False,
            chunk_size=400,
        )
        (m_last,) = jax.tree_util.tree_leaves(eqx.filter(r.final_energy, ebm.trainable_mask(E)))
        (m_avg,) = jax.tree_util.tree_leaves(eqx.filter(r.energy, ebm.trainable_mask(E)))
        finals.append(float(m_last[0]))
        avgs.append(float(m_avg[0]))
    sd_last, sd_avg = np.std(finals, ddof=1), np.std(avgs, ddof=1)
    print(f"sd of the last iterate {sd_last:.3f}, of the average {sd_avg:.3f}")
    # 16 seeds: each sd is known to about ±18 %; the expected ratio is about 0.25
    assert 0.12 < sd_last < 0.32 and sd_avg < 0.5 * sd_last
    assert abs(np.mean(avgs) - float(x.mean())) < 0.05  # the average is not biased
