"""Chains and training across devices: four CPU devices in a subprocess, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import composable_ebm as ebm

SCRIPT = r"""
import json
import jax, jax.numpy as jnp, numpy as np, equinox as eqx
import composable_ebm as ebm

out = {"devices": len(jax.devices())}
mean, cov = np.array([1.0, -1.0]), np.array([[1.0, 0.6], [0.6, 1.0]])
E = ebm.Gaussian("x", jnp.asarray(mean, jnp.float32), cov=jnp.asarray(cov, jnp.float32))
s = ebm.sample(E, jax.random.key(0), num_warmup=300, num_samples=1000, num_chains=8,
               devices="all")
x = np.asarray(s.draws["x"])
out["sharding"] = [len(s.draws["x"].sharding.device_set), str(s.draws["x"].sharding.spec)]
out["mean"] = x.reshape(-1, 2).mean(0).tolist()
out["cov"] = np.cov(x.reshape(-1, 2).T).tolist()
out["ess"] = np.asarray(s.summary()["ess_bulk"]).tolist()
# devices=None: every device when the chains divide evenly (here: the same program)
d = ebm.sample(E, jax.random.key(0), num_warmup=300, num_samples=1000, num_chains=8)
out["none_equals_all"] = float(np.max(np.abs(np.asarray(d.draws["x"]) - x)))
# a continued run keeps its chains on their devices
c = ebm.sample(E, jax.random.key(1), num_warmup=0, num_samples=50, num_chains=8, state=s.state)
out["continued"] = [list(c.draws["x"].shape), len(c.draws["x"].sharding.device_set)]
# MALA: the same keys per chain as on one device, so the same draws up to floating point
run = dict(num_warmup=100, num_samples=200, num_chains=8, kernel="mala")
a = ebm.sample(E, jax.random.key(2), devices="all", **run)
b = ebm.sample(E, jax.random.key(2), devices=jax.devices()[:1], **run)
out["mala_diff"] = float(np.max(np.abs(np.asarray(a.draws["x"]) - np.asarray(b.draws["x"]))))
try:
    ebm.sample(E, jax.random.key(0), num_warmup=10, num_samples=10, num_chains=6, devices="all")
except ValueError as e:
    out["uneven"] = str(e)
# data-parallel fit: each batch split over the devices, the same steps as on one device
x = ebm.datasets.two_moons(2048, seed=0)
net = ebm.NeuralEnergy("x", (2,), hidden=(32, 32), key=jax.random.key(1))
fits = {}
for name, dev in [("one", jax.devices()[:1]), ("all", "all")]:
    fits[name] = ebm.fit(net, x, ebm.ScoreMatching("sliced"), steps=200, batch_size=128,
                         key=jax.random.key(2), progress=False, devices=dev)
leaves = {k: jax.tree_util.tree_leaves(eqx.filter(r.energy, eqx.is_array))
          for k, r in fits.items()}
out["fit_diff"] = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
                      for u, v in zip(leaves["one"], leaves["all"]))
out["fit_moved"] = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(
    leaves["one"], jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_array))))
out["fit_devices"] = len(leaves["all"][0].sharding.device_set)
# arrays from other devices move to the run's devices: a state made on four devices
# continued on two, an energy trained on four sampled on one
c2 = ebm.sample(E, jax.random.key(3), num_warmup=0, num_samples=20, num_chains=8,
                state=s.state, devices=jax.devices()[2:])
f1 = ebm.sample(fits["all"].energy, jax.random.key(4), num_warmup=20, num_samples=20,
                num_chains=2, devices=jax.devices()[:1], kernel="mala")
out["moved"] = [len(c2.draws["x"].sharding.device_set), len(f1.draws["x"].devices()),
                bool(np.isfinite(np.asarray(f1.draws["x"])).all())]
print("RESULT", json.dumps(out))
"""


@pytest.fixture(scope="module")
def four_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_sharded_chains_reproduce_the_closed_form_moments(four_devices):
    r = four_devices
    assert r["devices"] == 4
    assert r["sharding"][0] == 4 and "devices" in r["sharding"][1]  # chain axis split 4 ways
    ess = min(r["ess"])
    assert ess > 1000  # 8 chains × 1000 draws of a 2-D Gaussian
    tol = 4.0 / ess**0.5  # 4 Monte-Carlo standard errors (unit variances)
    for m, want in zip(r["mean"], [1.0, -1.0]):
        assert abs(m - want) < tol
    cov = r["cov"]
    # sd of a sample variance ≈ sqrt(2/ESS), of a covariance 0.6 ≈ sqrt((1+0.36)/ESS)
    assert abs(cov[0][0] - 1.0) < 4 * (2 / ess) ** 0.5
    assert abs(cov[1][1] - 1.0) < 4 * (2 / ess) ** 0.5
    assert abs(cov[0][1] - 0.6) < 4 * (1.36 / ess) ** 0.5


def test_devices_none_uses_every_device_and_continued_runs_stay_sharded(four_devices):
    assert four_devices["none_equals_all"] == 0.0
    assert four_devices["continued"] == [[8, 50, 2], 4]


def test_sharded_chains_draw_what_one_device_draws(four_devices):
    # the same per-chain keys: equal up to floating point (MALA has no tree to amplify it)
    assert four_devices["mala_diff"] < 1e-4


def test_chains_that_do_not_divide_over_the_devices_are_refused(four_devices):
    msg = four_devices["uneven"]
    assert "num_chains=6" in msg and "4 devices" in msg


def test_arrays_from_other_devices_move_to_the_run(four_devices):
    assert four_devices["moved"] == [2, 1, True]


def test_data_parallel_fit_matches_one_device(four_devices):
    assert four_devices["fit_moved"] > 1e-2  # it trained
    assert four_devices["fit_diff"] < 1e-5  # the same steps, up to summation order
    assert four_devices["fit_devices"] == 4  # the parameters live on every device


E = ebm.Gaussian("x", 0.0, cov=1.0)


@pytest.mark.parametrize(
    "devices, error, match",
    [
        ("gpu", ValueError, 'None, "all" or a list'),
        ([], ValueError, "empty"),
        ([0], TypeError, "jax devices"),
        (3, TypeError, "int"),
    ],
)
def test_bad_devices_are_refused_by_name(devices, error, match):
    with pytest.raises(error, match=match):
        ebm.sample(E, jax.random.key(0), num_warmup=5, num_samples=5, devices=devices)
    with pytest.raises(error, match=match):
        ebm.fit(
            E,
            np.zeros(4, np.float32),
            ebm.ScoreMatching("exact"),
            steps=1,
            batch_size=1,
            key=jax.random.key(0),
            progress=False,
            devices=devices,
        )


def test_one_listed_device_runs_there():
    dev = jax.devices()[0]
    s = ebm.sample(
        E,
        jax.random.key(0),
        num_warmup=20,
        num_samples=20,
        num_chains=2,
        kernel="mala",
        devices=[dev],
    )
    assert s.draws["x"].devices() == {dev}
