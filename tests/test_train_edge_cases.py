"""Training edge cases found in review: each one a bug that once existed."""

import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import composable_ebm as ebm
from composable_ebm.energies._neural import spectral_norm


def _gauss(d=2):
    return ebm.Gaussian("x", jnp.zeros(d), cov=jnp.eye(d))


def _pairs(n=64):
    rng = np.random.default_rng(0)
    return (rng.normal(0, 0.3, (n, 2)).astype("float32"),
            rng.normal(2, 0.3, (n, 2)).astype("float32"))  # fmt: skip


def test_regulariser_first_in_a_sum_reads_paired_data():
    kw = dict(steps=5, key=jax.random.key(0), progress=False)
    a = ebm.fit(_gauss(), _pairs(), ebm.L2(1e-3) + ebm.MarginLoss(), **kw)
    b = ebm.fit(_gauss(), _pairs(), ebm.MarginLoss() + ebm.L2(1e-3), **kw)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-6)


def test_checkpoint_every_is_honoured(tmp_path):
    saved = []
    path = tmp_path / "run.npz"
    x = np.random.default_rng(0).normal(size=(256, 2)).astype("float32")

    def record(step, metrics, energy):
        saved.append((step, path.exists() and path.stat().st_mtime_ns))

    ebm.fit(
        _gauss(),
        x,
        ebm.ScoreMatching("exact"),
        steps=210,
        checkpoint=path,
        checkpoint_every=40,
        key=jax.random.key(0),
        progress=False,
        callback=record,
    )
    steps = [s for s, _ in saved]
    for every in (40, 80, 120, 160, 200):
        assert every in steps  # a chunk ends on every checkpoint step


def test_checkpoint_folder_is_checked_before_training(tmp_path):
    x = np.zeros((8, 2), "float32")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ebm.fit(
            _gauss(),
            x,
            ebm.ScoreMatching("exact"),
            steps=5,
            checkpoint=tmp_path / "missing" / "run.npz",
            key=jax.random.key(0),
            progress=False,
        )


def test_saved_files_get_ordinary_permissions(tmp_path):
    path = ebm.save(tmp_path / "e.npz", _gauss())
    mode = stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_nce_noise_of_the_wrong_shape_is_refused():
    x = np.zeros((16, 2), "float32")
    with pytest.raises(ValueError, match=r"noise draws have shape \(\) but variable 'x'"):
        ebm.fit(
            _gauss(),
            x,
            ebm.NCE(noise=dist.Normal(0.0, 1.0)),
            steps=1,
            key=jax.random.key(0),
            progress=False,
        )


def test_spectral_norm_has_a_finite_gradient_at_zero():
    g = jax.grad(spectral_norm)(jnp.zeros((3, 3)))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_patience_reports_the_step_of_the_returned_parameters():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (512, 2)).astype("float32")
    val = rng.normal(3, 1, (512, 2)).astype("float32")  # training moves away from it
    r = ebm.fit(
        ebm.Gaussian("x", jnp.full(2, 3.0), cov=jnp.eye(2)),
        x,
        ebm.ScoreMatching("exact"),
        validation=val,
        patience=100,
        optimizer=optax.adam(5e-2),
        steps=200,
        chunk_size=20,
        key=jax.random.key(0),
        progress=False,
    )
    best = int(r.history["val_step"][np.argmin(r.history["val_loss"])])
    assert r.steps == best
