"""Two moons, REFERENCE.md's protocol: train, score by held-out NLL (grid quadrature),
then compose the trained energy with a constraint and sample it.

Settings: 8192 training points (seed 0), 4096 held-out (seed 1); NeuralEnergy 2-128-128-1
SiLU; Adam 1e-3; batch 256; 2000 steps. Each (method, seed) is trained once per module.
Measured here (2 CPU cores): sliced 1.074 / 1.071 / 1.096 (median 1.074); NCE 1.147 /
1.173 / 1.114 (median 1.147); denoising (σ = 0.1, seed 0) 1.206. REFERENCE.md's seed spread
over 5 seeds is 1.05–1.11 (sliced) and 1.10–1.16 (NCE), so the issue's limits on the
median (1.10, 1.30) hold with margin; the denoising limit 1.5 is loose by design (it
learns the σ-smoothed density, about 1.2).
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


@functools.cache
def _data():
    return datasets.two_moons(8192, seed=0), datasets.two_moons(4096, seed=1)


def _train(loss, seed):
    train, held = _data()
    net = ebm.NeuralEnergy("x", (2,), hidden=(128, 128), key=jax.random.key(seed))
    r = ebm.fit(
        net,
        train,
        loss,
        steps=STEPS,
        batch_size=256,
        key=jax.random.key(100 + seed),
        progress=False,
    )  # default optimizer: Adam 1e-3
    assert r.stopped is None and r.steps == STEPS
    return r, held_out_nll(r.energy, held)


@pytest.fixture(scope="module")
def sliced():
    return [_train(ebm.ScoreMatching("sliced"), s) for s in SEEDS]


@pytest.fixture(scope="module")
def nce():
    return [_train(ebm.NCE(), s) for s in SEEDS]


def _report(name, runs):
    nlls = [nll for _, nll in runs]
    print(f"{name}: NLL per seed {[round(v, 4) for v in nlls]}, median {np.median(nlls):.4f}")
    assert all(np.isfinite(nlls))
    return float(np.median(nlls))


def test_sliced_score_matching_nll(sliced):
    assert _report("sliced", sliced) < 1.10


def test_nce_nll(nce):
    assert _report("nce", nce) < 1.30
    # NCE's learned c estimates log Z: compare with the grid's (seed spread about 0.05)

    for r, _ in nce:
        assert abs(r.log_z - grid_log_z(r.energy)) < 0.15


def test_denoising_trains():
    _, nll = _train(ebm.ScoreMatching("denoising", sigma=0.1), 0)
    print(f"denoising sigma=0.1: NLL {nll:.4f}")
    assert np.isfinite(nll) and nll < 1.5


def _wall(x):
    # a soft wall: 20·softplus(10·x₀) ≈ 200·x₀ for x₀ > 0, ≈ 0 for x₀ < 0
    return 20.0 * jax.nn.softplus(10.0 * x[0])


def test_trained_energy_composes_with_a_constraint(sliced):
    trained = sliced[0][0].energy
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
