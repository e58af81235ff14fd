"""Two-dimensional toy data sets, made in code (nothing is downloaded).

Every function takes ``n`` and a ``seed`` and returns a NumPy array of shape (n, 2) in
float32, roughly centred and of unit scale, so the same energies and plots fit them all.

Example:
    >>> from composable_ebm import datasets
    >>> x = datasets.two_moons(1000, seed=0)
    >>> x.shape, x.dtype
    ((1000, 2), dtype('float32'))
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _validate

__all__ = [
    "DATASETS",
    "checkerboard",
    "eight_gaussians",
    "pinwheel",
    "rings",
    "spirals",
    "two_moons",
]


def _check(n: int, **settings: float) -> None:
    """``n`` a positive integer; every setting a finite number, non-negative for spreads."""
    _validate.positive_int(n, "n")
    for name, x in settings.items():
        if name.endswith("std") or name == "noise":
            _validate.positive(x, name, allow_zero=True)
        else:
            _validate.finite(x, name)


def _finish(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x[rng.permutation(len(x))].astype(np.float32)


def two_moons(n: int, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """Two interleaved half circles.

    n//2 points on the upper arc (cos t, sin t), the rest on the lower arc
    (1 − cos t, 0.5 − sin t), t uniform on [0, π]; N(0, noise²) added to both coordinates;
    shifted by −(0.5, 0.25); shuffled.

    Example:
        >>> from composable_ebm import datasets
        >>> x = datasets.two_moons(8192, seed=0)
        >>> bool(abs(x.mean(0)).max() < 0.05)
        True
    """
    _check(n, noise=noise)
    rng = np.random.default_rng(seed)
    n_up = n // 2
    t_up = rng.uniform(0.0, np.pi, n_up)
    t_lo = rng.uniform(0.0, np.pi, n - n_up)
    up = np.stack([np.cos(t_up), np.sin(t_up)], axis=1)
    lo = np.stack([1.0 - np.cos(t_lo), 0.5 - np.sin(t_lo)], axis=1)
    x = np.concatenate([up, lo]) + rng.normal(0.0, noise, (n, 2))
    return _finish(x - np.array([0.5, 0.25]), rng)


def eight_gaussians(n: int, scale: float = 2.0, std: float = 0.2, seed: int = 0) -> np.ndarray:
    """Eight Gaussian blobs (std ``std``) evenly spaced on a circle of radius ``scale``.

    Example:
        >>> from composable_ebm import datasets
        >>> r = (datasets.eight_gaussians(4000, seed=1) ** 2).sum(1) ** 0.5
        >>> bool(abs(r.mean() - 2.0) < 0.05)
        True
    """
    _check(n, scale=scale, std=std)
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * rng.integers(0, 8, n) / 8
    centres = scale * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return _finish(centres + rng.normal(0.0, std, (n, 2)), rng)


def checkerboard(n: int, seed: int = 0) -> np.ndarray:
    """Uniform on the black squares of a 4 × 4 checkerboard over [−2, 2]².

    Example:
        >>> from composable_ebm import datasets
        >>> x = datasets.checkerboard(1000, seed=0)
        >>> bool(((x >= -2) & (x <= 2)).all())
        True
    """
    _check(n)
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(-2.0, 2.0, n)
    x2 = rng.uniform(0.0, 1.0, n) - rng.integers(0, 2, n) * 2.0
    x2 = x2 + np.floor(x1) % 2
    return _finish(np.stack([x1, x2], axis=1), rng)


def rings(
    n: int, radii: tuple[float, ...] = (0.5, 1.25, 2.0), std: float = 0.08, seed: int = 0
) -> np.ndarray:
    """Concentric rings of the given radii, points spread in proportion to circumference.

    Example:
        >>> from composable_ebm import datasets
        >>> r = (datasets.rings(3000, seed=0) ** 2).sum(1) ** 0.5
        >>> bool(r.min() > 0.2 and r.max() < 2.5)
        True
    """
    _check(n, std=std)
    _validate.positive(radii, "radii")
    radii_arr = np.asarray(radii, dtype=float)
    if radii_arr.ndim != 1 or radii_arr.size == 0:
        raise ValueError(f"radii must be a non-empty sequence of radii, got {radii!r}")
    rng = np.random.default_rng(seed)
    which = rng.choice(len(radii_arr), n, p=radii_arr / radii_arr.sum())
    t = rng.uniform(0.0, 2 * np.pi, n)
    r = radii_arr[which] + rng.normal(0.0, std, n)
    return _finish(np.stack([r * np.cos(t), r * np.sin(t)], axis=1), rng)


def spirals(n: int, noise: float = 0.05, turns: float = 1.5, seed: int = 0) -> np.ndarray:
    """Two interleaved spirals (arms rotated by π), radius growing with the angle.

    Example:
        >>> from composable_ebm import datasets
        >>> datasets.spirals(500, seed=0).shape
        (500, 2)
    """
    _check(n, noise=noise, turns=turns)
    rng = np.random.default_rng(seed)
    u = np.sqrt(rng.uniform(0.0, 1.0, n))  # uniform along the arm's length
    theta = 2 * np.pi * turns * u
    r = 2.0 * u
    arm = np.where(rng.integers(0, 2, n) == 1, np.pi, 0.0)
    x = np.stack([r * np.cos(theta + arm), r * np.sin(theta + arm)], axis=1)
    return _finish(x + rng.normal(0.0, noise, (n, 2)), rng)


def pinwheel(
    n: int,
    arms: int = 5,
    radial_std: float = 0.3,
    tangential_std: float = 0.1,
    rate: float = 0.25,
    seed: int = 0,
) -> np.ndarray:
    """A pinwheel: ``arms`` elongated Gaussian blobs, each bent by a rotation growing with
    the distance from the centre.

    Example:
        >>> from composable_ebm import datasets
        >>> datasets.pinwheel(500, seed=0).shape
        (500, 2)
    """
    _check(n, radial_std=radial_std, tangential_std=tangential_std, rate=rate)
    _validate.positive_int(arms, "arms")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, arms, n)
    feats = rng.normal(0.0, 1.0, (n, 2)) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    angles = 2 * np.pi * labels / arms + rate * np.exp(feats[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    x = np.stack([c * feats[:, 0] - s * feats[:, 1], s * feats[:, 0] + c * feats[:, 1]], axis=1)
    return _finish(1.5 * x, rng)


DATASETS: dict[str, Callable[..., np.ndarray]] = {
    "two_moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "rings": rings,
    "spirals": spirals,
    "pinwheel": pinwheel,
}
