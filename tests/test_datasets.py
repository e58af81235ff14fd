"""The 2-D toy data sets: shapes, dtypes, determinism, and two moons exactly as specified."""

from __future__ import annotations

import math

import numpy as np
import pytest

from composable_ebm import datasets

NAMES = sorted(datasets.DATASETS)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_determinism(name):
    fn = datasets.DATASETS[name]
    for n in (1, 7, 1000):
        x = fn(n, seed=0)
        assert x.shape == (n, 2) and x.dtype == np.float32
        assert np.all(np.isfinite(x))
    a, b, c = fn(1000, seed=3), fn(1000, seed=3), fn(1000, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # roughly centred and of unit scale
    assert np.abs(a.mean(0)).max() < 0.6 and 0.2 < a.std() < 2.5


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [0, -1, 2.5])
def test_bad_n(name, n):
    with pytest.raises(ValueError, match="positive integer"):
        datasets.DATASETS[name](n)


def _reference_two_moons(n, noise, seed):
    # REFERENCE.md, word for word
    rng = np.random.default_rng(seed)
    t_up = rng.uniform(0.0, np.pi, n // 2)
    t_lo = rng.uniform(0.0, np.pi, n - n // 2)
    up = np.stack([np.cos(t_up), np.sin(t_up)], axis=1)
    lo = np.stack([1 - np.cos(t_lo), 0.5 - np.sin(t_lo)], axis=1)
    x = np.concatenate([up, lo]) + rng.normal(0.0, noise, (n, 2)) - np.array([0.5, 0.25])
    return x[rng.permutation(n)].astype(np.float32)


@pytest.mark.parametrize("n, seed", [(8192, 0), (4096, 1), (1001, 7)])
def test_two_moons_follows_reference(n, seed):
    np.testing.assert_array_equal(
        datasets.two_moons(n, seed=seed), _reference_two_moons(n, 0.1, seed)
    )


@pytest.mark.parametrize("n", [1000, 1001])
def test_two_moons_arc_geometry(n):
    x = datasets.two_moons(n, noise=0.0, seed=2).astype(np.float64) + np.array([0.5, 0.25])
    upper = np.abs(np.hypot(x[:, 0], x[:, 1]) - 1) < 1e-5
    lower = np.abs(np.hypot(x[:, 0] - 1, x[:, 1] - 0.5) - 1) < 1e-5
    assert np.all(upper | lower)  # every point on an arc (float32 rounding: 1e-5)
    assert upper.sum() == n // 2 and lower.sum() == n - n // 2  # the arcs only meet nowhere
    assert np.all(x[upper, 1] >= -1e-6) and np.all(x[lower, 1] <= 0.5 + 1e-6)
    # t uniform on [0, π]: the angle's mean is π/2 within 5 SE (SE = π/√12/√(n/2))
    t = np.arctan2(x[upper, 1], x[upper, 0])
    assert abs(t.mean() - math.pi / 2) < 5 * math.pi / math.sqrt(12 * (n // 2))


def test_two_moons_noise_is_gaussian_0p1():
    # same seed: same t's and permutation, so the difference is the noise alone
    n = 8192
    d = datasets.two_moons(n, seed=5).astype(np.float64) - datasets.two_moons(n, noise=0.0, seed=5)
    se = 0.1 / math.sqrt(2 * n)  # of the mean over both coordinates
    assert abs(d.mean()) < 5 * se
    assert abs(d.std() - 0.1) < 5 * 0.1 / math.sqrt(2 * 2 * n)  # SE of a std ≈ σ/√(2m)


def test_two_moons_train_and_held_out_sets():
    train, held = datasets.two_moons(8192, seed=0), datasets.two_moons(4096, seed=1)
    assert train.shape == (8192, 2) and held.shape == (4096, 2)
    assert np.abs(train.mean(0)).max() < 0.05  # the shift −(0.5, 0.25) centres it
    assert not set(map(tuple, held.tolist())) & set(map(tuple, train.tolist()))  # no shared rows
