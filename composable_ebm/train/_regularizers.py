"""Margin loss over paired data, and regularisers that add to any loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._param import as_float
from ..energies import Energy, trainable_mask
from ._loss import Loss, batch_energies, normalize_data

__all__ = ["L2", "EnergyL2", "MarginLoss"]


class MarginLoss(Loss):
    """max(0, m + E(x⁺) − E(x⁻)) over paired data: positives should sit lower by m.

    ``data`` for ``fit`` is a pair ``(positives, negatives)``, each an array (one-variable
    energies) or a mapping name → array, with the same number of rows.

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.zeros(1), cov=1.0)
        >>> pos, neg = jnp.zeros((4, 1)), jnp.full((4, 1), 2.0)  # E = 0 and 2
        >>> float(ebm.MarginLoss(margin=3.0)(E, (pos, neg), jax.random.key(0)))
        1.0
    """

    margin: Any = 1.0

    def __post_init__(self):
        self.margin = as_float(self.margin)

    def normalize(self, energy: Energy, data: Any) -> Any:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise TypeError("MarginLoss data must be a pair (positives, negatives)")
        pos = normalize_data(energy, data[0], "positives")
        neg = normalize_data(energy, data[1], "negatives")
        n_pos, n_neg = (next(iter(d.values())).shape[0] for d in (pos, neg))
        if n_pos != n_neg:
            raise ValueError(f"MarginLoss: {n_pos} positives but {n_neg} negatives")
        return (pos, neg)

    def value(self, energy, params, state, batch, key):
        pos, neg = batch
        gap = batch_energies(energy, pos) - batch_energies(energy, neg)
        loss = jnp.mean(jax.nn.relu(self.margin + gap))
        return loss, {"loss": loss, "violations": jnp.mean(self.margin + gap > 0)}, state


class _Regularizer(Loss):
    """A penalty added to another loss: reads whatever data form that loss takes."""

    regularizer: ClassVar[bool] = True

    def __post_init__(self):
        self.weight = as_float(self.weight)

    def normalize(self, energy: Energy, data: Any) -> Any:
        return data if isinstance(data, (tuple, list)) else normalize_data(energy, data)


class L2(_Regularizer):
    """weight · Σ θ² over the energy's trainable arrays (weight decay as a loss term).

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.ones(2), cov=1.0)  # trainable: mean (1, 1), log-diag 0
        >>> float(ebm.L2(0.5)(E, jnp.zeros((3, 2)), jax.random.key(0)))
        1.0
    """

    weight: Any = 1e-4

    def value(self, energy, params, state, batch, key):
        leaves = jax.tree_util.tree_leaves(eqx.filter(energy, trainable_mask(energy)))
        penalty = self.weight * sum(jnp.sum(jnp.square(x)) for x in leaves)
        return penalty, {"l2": penalty}, state


class EnergyL2(_Regularizer):
    """weight · mean E(x)² over the data batch: keeps energies near zero (IGEBM's recipe).

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.zeros(1), cov=1.0)
        >>> float(ebm.EnergyL2(1.0)(E, jnp.full((5, 1), 2.0), jax.random.key(0)))  # E = 2
        4.0
    """

    weight: Any = 1.0

    def value(self, energy, params, state, batch, key):
        rows = batch[0] if isinstance(batch, tuple) else batch
        assert isinstance(rows, Mapping)
        penalty = self.weight * jnp.mean(jnp.square(batch_energies(energy, rows)))
        return penalty, {"energy_l2": penalty}, state
