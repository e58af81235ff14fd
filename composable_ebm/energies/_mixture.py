"""Normalised mixtures: −log Σᵢ wᵢ exp(−Eᵢ − log Zᵢ), so the weights are the components' masses.

``ebm.logsumexp`` weights unnormalised densities: a component's mass is wᵢ·Zᵢ, so a narrow
component gets less mass than its weight says. ``ebm.mixture`` divides each component by
its normaliser first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._param import Param, as_float
from .._space import Var, merge_spaces
from ._base import Energy, Values
from ._combinators import describe
from ._wrappers import Frozen, Named, Renamed

__all__ = ["Mixture", "mixture"]


def _unwrap(e: Energy) -> Energy:
    """Strip wrappers that keep the normaliser (labels, renaming, freezing)."""
    while isinstance(e, (Named, Renamed, Frozen)):
        e = e.energy
    return e


def _has_closed_form(e: Energy) -> bool:
    """Whether the component's log Z is a property, cheap to evaluate on every call."""
    return isinstance(getattr(type(_unwrap(e)), "log_partition", None), property)


def _closed_form(e: Energy) -> jax.Array:
    return as_float(_unwrap(e).log_partition)


def _is_log_z_result(x: Any) -> bool:
    return isinstance(x, tuple) and getattr(x, "_fields", None) == ("value", "stderr")


def _component_log_z(i: int, e: Energy, given: Any) -> tuple[float | jax.Array, bool]:
    """(log Zᵢ, whether it is re-evaluated from the component's closed form)."""
    if isinstance(given, Param):
        raise TypeError(f"mixture: log_z of component {i} cannot be a Param (it is not trained)")
    if _is_log_z_result(given):
        given = given.value
    if given is not None:
        what = f"mixture: log_z of component {i}"
        v = as_float(given, what)
        if v.shape != ():
            raise ValueError(f"{what} must be a scalar, got {v.shape}")
        _validate.finite(v, what)
        return v, False
    if _has_closed_form(e):
        return _closed_form(e), True
    method = getattr(_unwrap(e), "log_partition", None)
    if callable(method):  # computed once (e.g. by enumeration), stored
        return as_float(method()), False
    raise ValueError(
        f"mixture: component {i} ({describe(e)}) has no closed-form log Z; pass it as "
        f"log_z[{i}], e.g. from ebm.log_partition(component) or NCE's FitResult.log_z"
    )


class Mixture(Energy):
    """−log Σᵢ wᵢ exp(−Eᵢ − log Zᵢ): a mixture of normalised components. Build it with
    :func:`mixture`.

    ``weights`` (summing to one) and ``log_z`` are array leaves, never trained. A
    component whose log Z is a closed-form property (``Gaussian``, ``FromDistribution``)
    is normalised with its current value at every evaluation, so it stays normalised when
    ``fit`` trains it; its entry in ``log_z`` records the value at construction.

    Example:
        >>> import composable_ebm as ebm
        >>> E = ebm.mixture(ebm.Gaussian("x", 0.0, cov=1.0), ebm.Gaussian("x", 5.0, cov=0.01),
        ...                 weights=[3.0, 7.0])
        >>> [round(w, 6) for w in E.weights.tolist()], E.closed_form
        ([0.3, 0.7], (True, True))
    """

    components: tuple[Energy, ...]
    weights: jax.Array
    log_z: jax.Array
    closed_form: tuple[bool, ...] = eqx.field(static=True)

    def __init__(
        self,
        components: tuple[Energy, ...],
        weights: jax.Array,
        log_z: jax.Array,
        closed_form: tuple[bool, ...],
    ):
        self.components, self.weights, self.log_z = tuple(components), weights, log_z
        self.closed_form = tuple(closed_form)
        self._merged()

    def _merged(self) -> dict[str, Var]:
        labels = tuple(f"component {i} ({describe(c)})" for i, c in enumerate(self.components))
        return merge_spaces(*(c.space for c in self.components), labels=labels)

    @property
    def space(self) -> dict[str, Var]:
        return self._merged()

    @property
    def log_partition(self) -> jax.Array:
        """0: the mixture is normalised (exactly so when every component's log Z is)."""
        return jnp.zeros((), self.log_z.dtype)

    def current_log_z(self) -> jax.Array:
        """Each component's log Z as used now (closed forms re-evaluated)."""
        if not any(self.closed_form):
            return self.log_z
        return jnp.stack(
            [
                _closed_form(c) if cf else self.log_z[i]
                for i, (c, cf) in enumerate(zip(self.components, self.closed_form))
            ]
        )

    def evaluate(self, values: Values) -> jax.Array:
        es = jnp.stack([c.evaluate({k: values[k] for k in c.space}) for c in self.components])
        return -jax.nn.logsumexp(-es - self.current_log_z(), b=self.weights)


def mixture(*energies: Energy, weights: Any, log_z: Any = None) -> Mixture:
    """A mixture whose weights are the components' masses: −log Σᵢ wᵢ exp(−Eᵢ − log Zᵢ).

    Args:
        *energies: the components, all over the same variables.
        weights: positive, finite masses, one per component; they are normalised to sum
            to one (``[3, 7]`` is the same mixture as ``[0.3, 0.7]``).
        log_z: one log-normaliser per component: a number, a 0-d array, an ``ebm.LogZ``
            (from ``ebm.log_partition``), or ``None`` to ask the component for its closed
            form (``Gaussian``, ``FromDistribution``). A sequence with one entry per
            component, or ``None`` for all of them.

    Returns:
        The mixture energy; its own log Z is 0.

    Example:
        >>> import composable_ebm as ebm
        >>> a, b = ebm.Gaussian("x", 0.0, cov=1.0), ebm.Gaussian("x", 5.0, cov=0.01)
        >>> E = ebm.mixture(a, b, weights=[0.3, 0.7])
        >>> float(ebm.log_partition(E, bounds=(-8.0, 8.0)).value) < 1e-3
        True
    """
    if not energies:
        raise TypeError("mixture needs one or more energies")
    for i, e in enumerate(energies):
        if not isinstance(e, Energy):
            raise TypeError(f"mixture: component {i} is not an ebm.Energy ({type(e).__name__})")
    n = len(energies)
    names = [sorted(e.space) for e in energies]
    for i, nm in enumerate(names[1:], 1):
        if nm != names[0]:
            raise ValueError(
                f"mixture components must share their variables: component 0 "
                f"({describe(energies[0])}) has {names[0]} but component {i} "
                f"({describe(energies[i])}) has {nm}"
            )
    if isinstance(weights, Param):
        raise TypeError("mixture weights cannot be a Param (they are not trained)")
    w = as_float(weights, "mixture weights", finite=True)
    if w.shape != (n,):
        raise ValueError(f"mixture got {n} energies but weights of shape {w.shape}")
    wn = _validate.concrete(w)  # checked and normalised in NumPy: nothing to compile
    if wn is not None and not np.all(wn > 0):
        raise ValueError(f"mixture weights must be positive and finite, got {wn.tolist()}")
    w = w / jnp.sum(w) if wn is None else as_float(wn / wn.sum(dtype=np.float64))
    if log_z is None or _is_log_z_result(log_z):
        log_z = [log_z] * n if log_z is None or n == 1 else log_z
    if _is_log_z_result(log_z) or not isinstance(log_z, (Sequence, np.ndarray, jax.Array)):
        raise TypeError(f"mixture: log_z must hold one entry per component ({n}), got {log_z!r}")
    if len(log_z) != n:
        raise ValueError(f"mixture got {n} energies but {len(log_z)} log_z entries")
    pairs = [_component_log_z(i, e, g) for i, (e, g) in enumerate(zip(energies, log_z))]
    return Mixture(
        energies, w, jnp.stack([as_float(v) for v, _ in pairs]), tuple(cf for _, cf in pairs)
    )
