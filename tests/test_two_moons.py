"""Two moons, REFERENCE.md's protocol: train, score by held-out NLL (grid quadrature),
then compose the trained energy with a constraint and sample it.

Settings: 8192 training points (seed 0), 4096 held-out (seed 1); NeuralEnergy 2-128-128-1
SiLU; Adam 1e-3; batch 256; 2000 steps; the default parameter averaging (ema=0.99). Each
(loss, seed) is trained once per module, and the network and ``fit`` get the same key
(``fit`` derives independent streams from it). Limits (issue "training"): with averaging,
the median held-out NLL over three seeds is below 1.10 (sliced SM), 1.22 (denoising SM,
σ = 0.1) and 1.30 (NCE), and no seed is worse than the median by more than 0.08. Measured
here over five seeds: sliced 1.066 (1.046-1.067) averaged against 1.101 (1.065-1.195) for
the last iterate; denoising 1.163 (1.155-1.217) against 1.195 (1.165-1.288); NCE 1.141
(1.123-1.165) against 1.142 (1.113-1.158).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from _grid import grid_log_z, held_out_nll

import composable_ebm as ebm
from composable_ebm import datasets

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2)
STEPS = 2000
LOSSES = {
    "sliced": (ebm.ScoreMatching("sliced"), 1.10),
    "denoising": (ebm.ScoreMatching("denoising", sigma=0.1), 1.22),
    "nce": (ebm.NCE(), 1.30),
}


@functools.cache
def _data():
    return datasets.two_moons(8192, seed=0), datasets.two_moons(4096, seed=1)


@functools.cache
def _train(name, seed):
    loss = LOSSES[name][0]
    train, held = _data()
    key = jax.random.key(seed)  # one key for the network and for fit, as users write it
    net = ebm.NeuralEnergy("x", (2,), hidden=(128, 128), key=key)
    r = ebm.fit(net, train, loss, steps=STEPS, batch_size=256, key=key, progress=False)
    assert r.stopped is None and r.steps == STEPS
    return r, held_out_nll(r.energy, held), held_out_nll(r.final_energy, held)


@pytest.fixture(scope="module", params=list(LOSSES))
def runs(request):
    name = request.param
    return name, LOSSES[name][1], [_train(name, s) for s in SEEDS]


def test_averaged_nll_median_and_worst_seed(runs):
    name, limit, results = runs
    avg = np.array([a for _, a, _ in results])
    last = np.array([f for _, _, f in results])
    print(f"{name}: NLL averaged {np.round(avg, 4)}, last iterate {np.round(last, 4)}")
    assert np.all(np.isfinite(avg))
    assert np.median(avg) < limit
    assert np.max(avg) - np.median(avg) <= 0.08


def test_averaging_does_not_make_the_median_worse(runs):
    name, _, results = runs
    avg = np.array([a for _, a, _ in results])
    last = np.array([f for _, _, f in results])
    # NCE's last iterate is still improving at 2000 steps: the average lags it by up to
    # about 0.01 (five seeds: 1.141 against 1.142 at the median)
    assert np.median(avg) <= np.median(last) + 0.015
    if name != "nce":  # score matching's last iterate is noisy: averaging narrows the spread
        assert np.ptp(avg) < np.ptp(last)


def test_nce_learns_log_z():
    # NCE's learned c estimates log Z: compare with the grid's (seed spread about 0.05)
    r, _, _ = _train("nce", 0)
    assert abs(r.log_z - grid_log_z(r.energy)) < 0.15


def _wall(x):
    # a soft wall: 20·softplus(10·x₀) ≈ 200·x₀ for x₀ > 0, ≈ 0 for x₀ < 0
    return 20.0 * jax.nn.softplus(10.0 * x[0])


def test_trained_energy_composes_with_a_constraint():
    trained = _train("sliced", 0)[0].energy
    E = ebm.freeze(trained) + ebm.energy(_wall, x=(2,)).named("wall")
    s = ebm.sample(E, jax.random.key(0), num_warmup=300, num_samples=500, num_chains=4)
    x = np.asarray(s.draws["x"]).reshape(-1, 2)
    assert np.all(np.isfinite(x))
    allowed = float(np.mean(x[:, 0] < 0))
    # the wall costs 200 nats per unit of x₀ > 0: draws on the wrong side sit within a
    # few hundredths of the line
    assert allowed >= 0.95, allowed
    assert float(np.max(x[:, 0])) < 0.1
    # on the moons: the draws' NLL under the trained (unconstrained) model is that of
    # data restricted to x₀ < 0, about the held-out NLL (measured about 1.1); a draw off
    # the moons costs several nats
    _, held = _data()
    left = held[held[:, 0] < 0]
    nll_draws, nll_left = held_out_nll(trained, x), held_out_nll(trained, left)
    print(f"compose: allowed {allowed:.3f}, NLL draws {nll_draws:.3f}, left data {nll_left:.3f}")
    assert nll_draws < nll_left + 0.3
    assert float(np.mean(np.asarray(s.stats["diverging"]))) < 0.01
