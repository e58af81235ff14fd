"""The loss interface shared by every trainer, and sums of losses with regularisers."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._values import leading_axis_values
from ..energies import Energy

__all__ = ["Loss", "LossSum", "flat_energy", "normalize_data"]

Batch = Any  # a mapping name → array (batch, *shape), or a loss-specific pytree of them


def normalize_data(energy: Energy, data: Any, what: str = "data") -> dict[str, jax.Array]:
    """``data`` as a mapping name → array (N, *shape), checked against the energy's space.

    A bare array is accepted for a one-variable energy. NaN or infinite values are rejected.
    """
    out, _ = leading_axis_values(energy.space, data, what)
    for name, x in out.items():
        if jnp.issubdtype(x.dtype, jnp.inexact):
            bad = int(np.size(x) - np.isfinite(np.asarray(x)).sum())  # on the host
            if bad:
                raise ValueError(
                    f"{what}[{name!r}] has {bad} NaN or infinite value(s); clean the data first"
                )
    return out


def flat_energy(energy: Energy, example: Mapping[str, jax.Array]) -> tuple[Any, Any]:
    """The energy as a function of one flat vector, and the function that flattens a point.

    Score-based losses work on x ∈ R^D: the continuous variables of one configuration,
    concatenated.
    """
    _, unravel = ravel_pytree(dict(example))

    def fn(x: jax.Array) -> jax.Array:
        return energy.evaluate(unravel(x))

    return fn, lambda point: ravel_pytree(dict(point))[0]


class Loss(eqx.Module):
    """A training objective: a pure function of (energy, batch, key).

    ``setup`` runs once before training (fit noise to the data, make buffers) and returns
    the configured loss, its own trainable parameters (NCE's log Z) and its non-trainable
    state (contrastive divergence's replay buffer); ``value`` evaluates one batch. Losses
    add: ``loss + ebm.L2(1e-4)``.

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> loss = ebm.ScoreMatching("exact") + ebm.L2(0.0)
        >>> E = ebm.Gaussian("x", jnp.zeros(1), cov=1.0)
        >>> float(loss(E, jnp.zeros((4, 1)), jax.random.key(0)))  # ½·0 − tr(1)
        -1.0
    """

    regularizer: ClassVar[bool] = False  # True: reads any data form, defers to the others

    def normalize(self, energy: Energy, data: Any) -> Any:
        """Check the training data and bring it to the form ``value`` takes."""
        return normalize_data(energy, data)

    def setup(self, energy: Energy, data: Any, key: jax.Array) -> tuple[Loss, Any, Any]:
        """(configured loss, trainable parameters of the loss, state) before training."""
        return self, None, None

    @abc.abstractmethod
    def value(
        self, energy: Energy, params: Any, state: Any, batch: Batch, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array], Any]:
        """(scalar loss, metrics, new state) on one batch."""

    def log_z(self, params: Any) -> jax.Array | None:
        """The learned log-normaliser, for losses that learn one."""
        return None

    def check_start(self, metrics: Mapping[str, Any]) -> str | None:
        """A warning about the first steps' metrics (e.g. NCE noise far from the data)."""
        return None

    def __call__(self, energy: Energy, batch: Batch, key: jax.Array) -> jax.Array:
        """The loss on one batch with freshly set-up parameters (for quick checks)."""
        loss, params, state = self.setup(energy, batch, key)
        return loss.value(energy, params, state, loss.normalize(energy, batch), key)[0]

    def __add__(self, other: Any) -> Loss:
        if not isinstance(other, Loss):
            return NotImplemented
        return LossSum((self, other))


class LossSum(Loss):
    """The sum of losses (typically one objective and regularisers)."""

    terms: tuple[Loss, ...]

    def __init__(self, terms: tuple[Loss, ...]):
        flat: list[Loss] = []
        for t in terms:
            flat.extend(t.terms if isinstance(t, LossSum) else (t,))
        self.terms = tuple(flat)

    def normalize(self, energy: Energy, data: Any) -> Any:
        primary = next((t for t in self.terms if not t.regularizer), self.terms[0])
        return primary.normalize(energy, data)

    def setup(self, energy: Energy, data: Any, key: jax.Array) -> tuple[Loss, Any, Any]:
        keys = jax.random.split(key, len(self.terms))
        out = [t.setup(energy, data, k) for t, k in zip(self.terms, keys)]
        return LossSum(tuple(o[0] for o in out)), tuple(o[1] for o in out), tuple(o[2] for o in out)

    def value(self, energy, params, state, batch, key):
        keys = jax.random.split(key, len(self.terms))
        total, metrics, states = 0.0, {}, []
        for i, (t, p, s, k) in enumerate(zip(self.terms, params, state, keys)):
            v, m, s = t.value(energy, p, s, batch, k)
            total = total + v
            states.append(s)
            for name, val in m.items():
                metrics[name if name not in metrics else f"{name}_{i}"] = val
        metrics["loss"] = total
        return total, metrics, tuple(states)

    def log_z(self, params: Any) -> jax.Array | None:
        for t, p in zip(self.terms, params):
            z = t.log_z(p)
            if z is not None:
                return z
        return None

    def check_start(self, metrics: Mapping[str, Any]) -> str | None:
        for t in self.terms:
            msg = t.check_start(metrics)
            if msg:
                return msg
        return None


def batch_energies(energy: Energy, batch: Mapping[str, jax.Array]) -> jax.Array:
    """E at every row of a batch (no checks: the batch was normalised)."""
    return jax.vmap(energy.evaluate)(dict(batch))


def mean_sq(x: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(x))
