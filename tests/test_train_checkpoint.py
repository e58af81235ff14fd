"""Checkpoints: ebm.save / ebm.load bit-exact and atomic, and fit resuming from a file."""

from __future__ import annotations

import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _helpers import assert_bitwise

import composable_ebm as ebm
from composable_ebm import datasets


def _energies(seed):
    k = jax.random.key(seed)
    rng = np.random.default_rng(seed)
    g = ebm.Gaussian("x", rng.normal(size=2), cov=np.array([[2.0, 0.3], [0.3, 1.0]]))
    net = ebm.NeuralEnergy("x", (2,), hidden=(8, 8), key=k)
    composite = (
        ebm.freeze(ebm.Gaussian("x", rng.normal(size=2), cov=rng.uniform(0.5, 2, 2)))
        + ebm.Param(float(rng.uniform(0.5, 2))) * net
        + ebm.Confinement("x", scale=float(rng.uniform(0.1, 1)))
    )
    return {"gaussian": g, "neural": net, "composite": composite}


@pytest.mark.parametrize("which", ["gaussian", "neural", "composite"])
def test_save_load_round_trip_bitwise(tmp_path, which):
    E, like = _energies(0)[which], _energies(1)[which]
    path = ebm.save(tmp_path / "e.npz", E)
    assert path.exists()
    assert sorted(os.listdir(tmp_path)) == ["e.npz"]  # no temporary file left behind
    loaded = ebm.load(path, like)
    assert_bitwise(loaded, E)
    assert type(loaded) is type(E)
    x = jnp.array([0.3, -0.7])
    assert float(loaded(x)) == float(E(x))


def test_save_overwrites_atomically(tmp_path, monkeypatch):
    E, other = _energies(0)["neural"], _energies(1)["neural"]
    path = tmp_path / "e.npz"
    ebm.save(path, E)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        ebm.save(path, other)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["e.npz"]  # and the temporary file is gone
    assert_bitwise(ebm.load(path, other), E)


def test_unwritable_or_missing_folder_gives_clear_error(tmp_path, monkeypatch):
    E = _energies(0)["gaussian"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ebm.save(tmp_path / "no_such_dir" / "e.npz", E)
    path = tmp_path / "e.npz"
    ebm.save(path, E)
    before = path.read_bytes()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # a read-only folder (simulated: this suite may run as root, which ignores modes)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match="not writable"):
        ebm.save(path, _energies(1)["gaussian"])
    monkeypatch.undo()
    assert path.read_bytes() == before


def test_real_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    E = _energies(0)["gaussian"]
    ebm.save(folder / "e.npz", E)
    before = (folder / "e.npz").read_bytes()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running with privileges that ignore folder permissions")
        with pytest.raises(PermissionError, match="not writable"):
            ebm.save(folder / "e.npz", _energies(1)["gaussian"])
        assert (folder / "e.npz").read_bytes() == before
    finally:
        folder.chmod(0o700)


def _rewrite_header(path, **changes):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(bytes(arrays["__header__"]).decode())
    header.update(changes)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_version_mismatch_and_wrong_structure(tmp_path):
    E = _energies(0)["neural"]
    path = ebm.save(tmp_path / "e.npz", E)
    with pytest.raises(ValueError, match=r"holds 6 arrays but the target structure has 2"):
        ebm.load(path, _energies(0)["gaussian"])
    wider = ebm.NeuralEnergy("x", (2,), hidden=(8, 16), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"shape \(8, 8\).*in the file but shape \(16, 8\)"):
        ebm.load(path, wider)
    _rewrite_header(path, version=999)
    with pytest.raises(ValueError, match="format version 999; this composable_ebm reads"):
        ebm.load(path, E)
    _rewrite_header(path, format="something else")
    with pytest.raises(ValueError, match="not a composable_ebm file"):
        ebm.load(path, E)


def _fit(path, steps, **kw):
    x = datasets.two_moons(1024, seed=0)
    net = ebm.NeuralEnergy("x", (2,), hidden=(16, 16), key=jax.random.key(0))
    return ebm.fit(
        net,
        x,
        ebm.NCE(),
        steps=steps,
        batch_size=64,
        key=jax.random.key(1),
        optimizer=optax.adam(1e-3),
        checkpoint=path,
        progress=False,
        **kw,
    )


def test_fit_resumes_from_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    full = _fit(None, 120)
    # interrupted after 60 steps (the callback stops it; the checkpoint is written)
    first = _fit(path, 120, checkpoint_every=30, callback=lambda s, m, e: s < 60)
    assert first.steps == 60 and "callback" in first.stopped
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]
    resumed = _fit(path, 120, checkpoint_every=30)
    assert resumed.steps == 120 and resumed.stopped is None
    # history continues: the first 60 steps from the file, then 60 new ones
    assert resumed.history["loss"].shape == (120,)
    np.testing.assert_array_equal(resumed.history["loss"][:60], first.history["loss"])
    # and the run is the uninterrupted one, bit for bit (same key: same minibatches, noise)
    np.testing.assert_array_equal(resumed.history["loss"], full.history["loss"])
    # with averaging on (the default): the average, the last iterate and the optimizer state
    assert_bitwise(resumed.energy, full.energy)
    assert_bitwise(resumed.final_energy, full.final_energy)
    assert_bitwise(resumed.state.opt_state, full.state.opt_state)
    assert resumed.log_z == full.log_z
    assert int(resumed.state.step) == 120
    first_w = jax.tree_util.tree_leaves(full.energy)[0]
    assert not bool(jnp.all(first_w == jax.tree_util.tree_leaves(full.final_energy)[0]))
    # the file holds the finished state: a third fit with the same path does nothing new
    again = _fit(path, 120)
    assert again.steps == 120
    assert_bitwise(again.energy, full.energy)


def test_fit_continues_to_more_steps(tmp_path):
    path = tmp_path / "run.npz"
    short = _fit(path, 50)
    longer = _fit(path, 100)
    assert longer.history["loss"].shape == (100,)
    np.testing.assert_array_equal(longer.history["loss"][:50], short.history["loss"])
    assert_bitwise(longer.energy, _fit(None, 100).energy)


def test_resume_with_another_averaging_setting_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    _fit(path, 30)
    with pytest.raises(ValueError, match=r"ema=0\.99 but this fit has ema=None"):
        _fit(path, 60, ema=None)
