"""Guardrails of training and checkpoints: bad files and mismatched structures are refused
with one clear error, NaN never reaches parameters, killed saves leave nothing behind."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest
from _helpers import array_leaves, assert_bitwise

import composable_ebm as ebm
from composable_ebm.train._noise import DefaultNoise

REPO = pathlib.Path(__file__).resolve().parents[1]


def _pair(seed):
    rng = np.random.default_rng(seed)
    a = ebm.Gaussian("x", rng.normal(size=2), cov=1.0)
    b = ebm.Gaussian("y", rng.normal(size=2), cov=2.0)
    return a, b


def _rewrite(path, header_changes=None, arrays_changes=None, drop_paths=False):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(bytes(arrays["__header__"]).decode())
    header.update(header_changes or {})
    if drop_paths:
        for m in header["leaves"]:
            m.pop("path", None)
    arrays.update(arrays_changes or {})
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


# ---------------------------------------------------------------- 1. structure is recorded
def test_load_refuses_terms_in_another_order(tmp_path):
    a, b = _pair(0)
    path = ebm.save(tmp_path / "e.npz", a + b)
    a2, b2 = _pair(1)
    with pytest.raises(ValueError, match="different terms") as err:
        ebm.load(path, b2 + a2)  # same shapes, swapped variables: once loaded silently
    msg = str(err.value)
    file_part, like_part = msg.split("the file has terms:")[1].split("`like` has terms:")
    assert file_part.index("over x") < file_part.index("over y")
    assert like_part.index("over y") < like_part.index("over x")
    assert_bitwise(ebm.load(path, a2 + b2), a + b)  # the right structure still loads


def test_load_refuses_another_layout_with_the_same_shapes(tmp_path):
    net = ebm.NeuralEnergy("x", (2,), hidden=(2,), key=jax.random.key(0))
    path = ebm.save(tmp_path / "e.npz", net)
    renamed = ebm.NeuralEnergy("z", (2,), hidden=(2,), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"the file has terms:\s+NeuralEnergy: .* over x"):
        ebm.load(path, renamed)


def test_old_format_files_still_load_with_a_warning(tmp_path):
    a, b = _pair(0)
    path = ebm.save(tmp_path / "e.npz", a + b)
    _rewrite(path, {"version": 1, "terms": None}, drop_paths=True)
    with pytest.warns(UserWarning, match="format version 1.*order, shape and dtype only"):
        assert_bitwise(ebm.load(path, _pair(1)[0] + _pair(1)[1]), a + b)


# ---------------------------------------------------------------- 2. foreign and damaged files
def _corruptions(good: bytes, arr: np.ndarray) -> dict[str, bytes]:
    at = good.find(arr.tobytes())
    assert at > 0
    flipped = bytearray(good)
    flipped[at + 3] ^= 0xFF
    buf = __import__("io").BytesIO()
    np.savez(buf, a=np.arange(3.0))
    npy = __import__("io").BytesIO()
    np.save(npy, np.arange(3.0))
    return {
        "truncated": good[: len(good) // 2],
        "crc": bytes(flipped),
        "random": np.random.default_rng(0).bytes(len(good)),
        "text": b"mean = [1.0, 2.0]\n",
        "plain_npz": buf.getvalue(),
        "npy": npy.getvalue(),
        "pickle": pickle.dumps({"mean": [1.0, 2.0]}),
        "empty": b"",
    }


@pytest.mark.parametrize(
    "kind", ["truncated", "crc", "random", "text", "plain_npz", "npy", "pickle", "empty"]
)
def test_foreign_or_corrupt_files_give_one_clear_error(tmp_path, kind):
    E = ebm.Gaussian("x", jnp.array([1.5, -2.5]), cov=1.0)
    path = ebm.save(tmp_path / "e.npz", E)
    bad = _corruptions(path.read_bytes(), np.asarray(E.mean))[kind]
    target = tmp_path / f"{kind}.npz"
    target.write_bytes(bad)
    with pytest.raises(ValueError) as err:
        ebm.load(target, E)
    msg = str(err.value)
    assert str(target) in msg
    assert "is not a composable_ebm file" in msg or "is corrupt" in msg, msg
    assert type(err.value).__module__.startswith("composable_ebm") or type(err.value) is ValueError


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz does not exist"):
        ebm.load(tmp_path / "nope.npz", ebm.Gaussian("x", jnp.zeros(2), cov=1.0))


def test_nan_in_a_file_is_refused_naming_the_leaf(tmp_path):
    E = ebm.Gaussian("x", jnp.array([1.0, 2.0]), cov=1.0)
    path = ebm.save(tmp_path / "e.npz", E)
    _rewrite(path, arrays_changes={"leaf_0": np.array([np.nan, 2.0], np.float32)})
    with pytest.raises(ValueError, match=r"leaf \.mean .*1 NaN value.*refusing to load"):
        ebm.load(path, E)
    _rewrite(path, arrays_changes={"leaf_0": np.array([np.inf, 2.0], np.float32)})
    with pytest.raises(ValueError, match=r"leaf \.mean .*1 infinite value.*refusing to load"):
        ebm.load(path, E)


def test_save_refuses_nan_and_keeps_the_previous_file(tmp_path):
    E = ebm.Gaussian("x", jnp.array([1.0, 2.0]), cov=1.0)
    path = ebm.save(tmp_path / "e.npz", E)
    before = path.read_bytes()
    broken = eqx.tree_at(lambda e: e.mean, E, jnp.array([jnp.nan, 0.0]))
    with pytest.raises(ValueError, match=r"refusing to save .*leaf \.mean .*NaN"):
        ebm.save(path, broken)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["e.npz"]


# ---------------------------------------------------------------- 3. killed saves
CHILD = """
import os, sys, time
import jax.numpy as jnp
import composable_ebm as ebm
real_fsync = os.fsync
def slow_fsync(fd):  # the temporary file is written: announce it, then hang
    print("writing", flush=True)
    time.sleep(120)
os.fsync = slow_fsync
ebm.save(sys.argv[1], ebm.Gaussian("x", jnp.array([7.0, 8.0]), cov=1.0))
"""


def test_killed_save_keeps_the_old_file_and_the_next_save_cleans_up(tmp_path):
    E = ebm.Gaussian("x", jnp.array([1.0, 2.0]), cov=1.0)
    path = ebm.save(tmp_path / "e.npz", E)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    stale = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].startswith(f".e.npz.{child.pid}.")
    assert_bitwise(ebm.load(path, E), E)  # the previous file, bit for bit
    # a live writer's file (this process) and an unrelated file are left alone
    live = tmp_path / f".e.npz.{os.getpid()}.abcd.tmp"
    live.write_bytes(b"")
    other = tmp_path / ".f.npz.1.abcd.tmp"
    other.write_bytes(b"")
    old_untagged = tmp_path / ".e.npz.k2j4x9q1.tmp"  # written before temp files had an id
    old_untagged.write_bytes(b"")
    os.utime(old_untagged, (time.time() - 7200, time.time() - 7200))
    E2 = ebm.Gaussian("x", jnp.array([3.0, 4.0]), cov=1.0)
    ebm.save(path, E2)
    assert sorted(os.listdir(tmp_path)) == sorted(["e.npz", live.name, other.name])
    assert_bitwise(ebm.load(path, E), E2)


# ---------------------------------------------------------------- 4. checkpoint past steps
def test_fit_with_a_checkpoint_past_steps_warns(tmp_path):
    x = np.random.default_rng(0).normal(size=(256, 1)).astype("float32")
    kw = dict(key=jax.random.key(0), progress=False, checkpoint=tmp_path / "run.npz")
    E = ebm.Gaussian("x", jnp.zeros(1), cov=1.0)
    done = ebm.fit(E, x, ebm.ScoreMatching("exact"), steps=20, **kw)
    with pytest.warns(UserWarning, match=r"already at step 20, past the requested steps=10"):
        again = ebm.fit(E, x, ebm.ScoreMatching("exact"), steps=10, **kw)
    assert again.steps == 20 and again.history["loss"].shape == (20,)
    assert_bitwise(again.energy, done.energy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exactly at the requested steps: no warning
        ebm.fit(E, x, ebm.ScoreMatching("exact"), steps=20, **kw)


def test_checkpoint_of_another_energy_is_refused(tmp_path):
    x = np.random.default_rng(0).normal(size=(256, 2)).astype("float32")
    kw = dict(key=jax.random.key(0), progress=False, checkpoint=tmp_path / "run.npz", steps=5)
    ebm.fit(ebm.Gaussian("x", jnp.zeros(2), cov=1.0), x, ebm.ScoreMatching("exact"), **kw)
    other = ebm.Gaussian("x", jnp.zeros(2), cov=1.0) + ebm.Param(1.0) * ebm.Confinement("x")
    with pytest.raises(ValueError, match=r"the file has terms:[\s\S]*`like` has terms:"):
        ebm.fit(other, x, ebm.ScoreMatching("exact"), **kw)


# ---------------------------------------------------------------- 5. float64 end to end
SCRIPT64 = """
import pathlib, tempfile
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np, optax
import composable_ebm as ebm

def f64(tree):
    leaves = [l for l in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(l.dtype, jnp.inexact)]
    assert leaves and all(l.dtype == jnp.float64 for l in leaves), [l.dtype for l in leaves]
    assert all(bool(jnp.all(jnp.isfinite(l))) for l in leaves)

x = np.random.default_rng(0).normal(1.0, 0.5, (512, 2))
losses = {
    "nce": ebm.NCE(), "exact": ebm.ScoreMatching("exact"),
    "sliced": ebm.ScoreMatching("sliced"),
    "denoising": ebm.ScoreMatching("denoising", sigma=0.1),
    "cd": ebm.ContrastiveDivergence(steps=5, buffer_size=256),
    "margin": ebm.MarginLoss(1.0),
}
E = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
for name, loss in losses.items():
    data = (x, x + 3.0) if name == "margin" else x
    r = ebm.fit(E, data, loss, steps=20, batch_size=64, key=jax.random.key(1), progress=False,
                optimizer=optax.adam(1e-2))
    assert r.stopped is None, (name, r.stopped)
    f64(r.energy)
    assert r.history["loss"].dtype == np.float64, name
    assert np.isfinite(r.history["loss"]).all(), name
out = ebm.langevin(r.energy, jax.random.key(2), {"x": jnp.zeros((8, 2))}, step_size=1e-2,
                   num_steps=20)
assert out["x"].dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(out["x"])))
p = pathlib.Path(tempfile.mkdtemp()) / "e.npz"
ebm.save(p, r.energy)
back = ebm.load(p, E)
f64(back)
for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(r.energy)):
    assert a.dtype == b.dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes()
ck = p.parent / "run.npz"
kw = dict(batch_size=64, key=jax.random.key(1), progress=False, checkpoint=ck)
ebm.fit(E, x, ebm.NCE(), steps=20, **kw)
r2 = ebm.fit(E, x, ebm.NCE(), steps=30, **kw)
assert r2.steps == 30 and r2.stopped is None and np.isfinite(r2.log_z)
f64(r2.energy)
print("ok")
"""


@pytest.mark.slow
def test_fit_every_loss_in_float64_mode():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT64], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


# ---------------------------------------------------------------- 6. NCE on constrained data
@pytest.mark.parametrize(
    "data_dist, model, truth",
    [
        (dist.Gamma(3.0, 2.0), dist.Gamma(1.0, 1.0), {"concentration": 3.0, "rate": 2.0}),
        (dist.Exponential(0.5), dist.Exponential(1.0), {"rate": 0.5}),
    ],
    ids=["gamma", "exponential"],
)
def test_nce_default_noise_on_a_positive_variable(data_dist, model, truth):
    x = np.asarray(data_dist.sample(jax.random.key(0), (4096,)))
    E = ebm.FromDistribution("s", model, trainable=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no non-finite stop, no far noise
        r = ebm.fit(E, x, ebm.NCE(), steps=600, optimizer=optax.adam(3e-2),
                    key=jax.random.key(1), progress=False)  # fmt: skip
    assert r.stopped is None and r.steps == 600
    got = r.energy.distribution
    for name, want in truth.items():
        value = float(getattr(got, name))
        assert np.isfinite(value) and abs(value - want) < 0.25 * want, (name, value)
    assert abs(r.log_z) < 0.1  # a normalised model: NCE's log Z tends to 0


def test_default_noise_density_is_normalised_on_the_support():
    space = {"s": ebm.Var((), dist.constraints.positive)}
    x = np.asarray(dist.Gamma(3.0, 2.0).sample(jax.random.key(0), (2000,)))
    noise = DefaultNoise(space, {"s": jnp.asarray(x)})
    grid = np.linspace(1e-4, 40.0, 400_001)
    density = np.exp(np.asarray(noise.log_prob({"s": jnp.asarray(grid)}), np.float64))
    assert abs(np.trapezoid(density, grid) - 1.0) < 2e-3
    draws = noise.sample(jax.random.key(1), 1000)["s"]
    assert bool(jnp.all(draws > 0))


def test_nce_default_noise_on_an_interval_variable():
    x = np.asarray(dist.Beta(2.0, 5.0).sample(jax.random.key(0), (2048,)))
    E = ebm.FromDistribution("p", dist.Beta(1.0, 1.0), trainable=True)
    r = ebm.fit(E, x, ebm.NCE(), steps=200, optimizer=optax.adam(3e-2), key=jax.random.key(1),
                progress=False)  # fmt: skip
    assert r.stopped is None
    assert all(np.isfinite(np.asarray(v)).all() for v in array_leaves(r.energy))


def test_nce_default_noise_refuses_data_on_the_boundary():
    x = np.array([0.0, 1.0, 2.0, 0.5], np.float32)
    E = ebm.FromDistribution("s", dist.Exponential(1.0), trainable=True)
    with pytest.raises(ValueError, match=r"variable 's' .*1 data value.*boundary.*noise="):
        ebm.fit(E, x, ebm.NCE(), steps=2, key=jax.random.key(0), progress=False)
