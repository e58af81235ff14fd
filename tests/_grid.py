"""Held-out negative log-likelihood of a 2-D energy, log Z by grid quadrature.

REFERENCE.md's protocol: log Z = log ∫ exp(−E) over [−3, 3]² by the rectangle rule on a
300 × 300 grid (``linspace`` nodes, cell area h² with h = 6/299); NLL = mean E(x) + log Z
over the held-out points. Mass outside the square is ignored (for two moons it is
negligible once trained).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

LOW, HIGH, POINTS = -3.0, 3.0, 300


def grid_log_z(energy, low: float = LOW, high: float = HIGH, points: int = POINTS) -> float:
    """log ∫ exp(−E) over [low, high]², rectangle rule on a points × points grid."""
    axis = np.linspace(low, high, points, dtype=np.float32)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    grid = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=1))
    e = energy.batch(grid)
    h = (high - low) / (points - 1)
    return float(jax.scipy.special.logsumexp(-e)) + 2.0 * math.log(h)


def held_out_nll(energy, x: np.ndarray) -> float:
    """Mean −log p(x) over held-out points, p = exp(−E) / Z with Z from :func:`grid_log_z`."""
    return float(jnp.mean(energy.batch(jnp.asarray(x)))) + grid_log_z(energy)
