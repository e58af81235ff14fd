"""Wrappers that change how an energy is seen: conditioned, renamed, frozen, named."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._param import Param, leaf, value
from .._space import Var
from ._base import Energy, Values
from ._relabel import positional, replace_fields

__all__ = ["Conditioned", "Frozen", "Named", "Renamed", "freeze"]


def _store(name: str, v: Any, var: Var) -> Any:
    """A condition value as a leaf, checked: numbers, shape, finite, inside the support."""
    what = f"the condition value of variable {name!r}"
    if var.is_discrete:
        if isinstance(v, Param):
            raise TypeError(f"discrete variable {name!r} cannot be conditioned on a Param")
        _validate.numeric(v, what)
        arr = jnp.asarray(v)
        if not (jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == jnp.bool_):
            raise TypeError(f"discrete variable {name!r} needs an integer value, got {arr.dtype}")
        if arr.weak_type or arr.dtype == jnp.bool_:  # strongly typed: no recompiles
            arr = jnp.asarray(np.asarray(v), dtype=jnp.result_type(int))
        stored = arr
    else:
        stored = leaf(v, what, finite=True)
    shape = jnp.shape(value(stored))
    if var.shape is not None and shape != var.shape:
        raise ValueError(
            f"cannot condition {name!r}: the energy's space has shape {var.shape} but the "
            f"value has shape {shape}"
        )
    _validate.in_support(value(stored), var.support, what)
    return stored


class Conditioned(Energy):
    """An energy with some variables fixed; values are array leaves, never constants.

    Example:
        >>> import composable_ebm as ebm
        >>> E = ebm.energy(lambda x, y: (x - y) ** 2, x=(), y=()).condition(y=3.0)
        >>> float(E(1.0))
        4.0
    """

    energy: Energy
    values: dict[str, Any]

    def __init__(self, energy: Energy, values: dict[str, Any]):
        space = energy.space
        unknown = sorted(set(values) - set(space))
        if unknown:
            raise KeyError(
                f"cannot condition on unknown variable(s) {unknown}; the energy's variables "
                f"are {sorted(space)}"
            )
        if not values:
            raise ValueError("condition() needs at least one name=value")
        stored = {k: _store(k, v, space[k]) for k, v in values.items()}
        if isinstance(energy, Conditioned):  # flatten: keep one wrapper
            stored = {**energy.values, **stored}
            energy = energy.energy
        self.energy, self.values = energy, stored

    wraps = True
    variable_fields = ()

    @property
    def space(self) -> dict[str, Var]:
        return {k: v for k, v in self.energy.space.items() if k not in self.values}

    def evaluate(self, values: Values) -> jax.Array:
        fixed = {k: value(v) for k, v in self.values.items()}
        return self.energy.evaluate({**values, **fixed})

    def relabel(self, mapping: Mapping[str, str]) -> Energy | None:
        # conditioned names get positional names too, so terms conditioned on different
        # variables of the same kind share a structure
        # numbered after the conditioned names of enclosing wrappers: unique when nested
        start = sum(1 for v in mapping.values() if v.startswith(positional("fixed", "")))
        fixed = {k: positional("fixed", start + i) for i, k in enumerate(self.values)}
        inner = self.energy.relabel({**mapping, **fixed})
        if inner is None:
            return None
        return replace_fields(
            self, {"energy": inner, "values": {fixed[k]: v for k, v in self.values.items()}}
        )

    def rewrap(self, inner: Energy) -> Energy:
        vals = {k: v for k, v in self.values.items() if k in inner.space}
        return Conditioned(inner, vals) if vals else inner


class Renamed(Energy):
    """The same energy over renamed variables.

    Example:
        >>> import composable_ebm as ebm
        >>> E = ebm.Gaussian("x", 1.0, cov=1.0).rename(x="z")
        >>> float(E(z=3.0))
        2.0
    """

    energy: Energy
    mapping: tuple[tuple[str, str], ...] = eqx.field(static=True)

    def __init__(self, energy: Energy, mapping: dict[str, str]):
        space = energy.space
        unknown = sorted(set(mapping) - set(space))
        if unknown:
            raise KeyError(
                f"cannot rename unknown variable(s) {unknown}; the energy's variables are "
                f"{sorted(space)}"
            )
        for old, new in mapping.items():
            if not isinstance(new, str) or not new.isidentifier():
                raise ValueError(f"cannot rename {old!r} to {new!r}: not a valid name")
        new_names = [mapping.get(k, k) for k in space]
        dup = sorted({n for n in new_names if new_names.count(n) > 1})
        if dup:
            raise ValueError(f"renaming {mapping} makes variable name(s) {dup} collide")
        if isinstance(energy, Renamed):  # compose the two renamings
            inner = dict(energy.mapping)
            mapping = {o: mapping.get(n, n) for o, n in inner.items()} | {
                k: v for k, v in mapping.items() if k not in inner.values()
            }
            energy = energy.energy
        self.energy = energy
        self.mapping = tuple((o, n) for o, n in mapping.items() if o != n)

    @property
    def space(self) -> dict[str, Var]:
        m = dict(self.mapping)
        return {m.get(k, k): v for k, v in self.energy.space.items()}

    wraps = True
    variable_fields = ()

    def evaluate(self, values: Values) -> jax.Array:
        m = dict(self.mapping)
        return self.energy.evaluate({k: values[m.get(k, k)] for k in self.energy.space})

    def relabel(self, mapping: Mapping[str, str]) -> Energy | None:
        inner = {o: n for o, n in self.mapping}
        # the inner names are relabelled positionally, then mapped to the outer ones
        pos = {k: positional("inner", i) for i, k in enumerate(self.energy.space)}
        e = self.energy.relabel(pos)
        if e is None:
            return None
        out = tuple((pos[k], mapping.get(inner.get(k, k), inner.get(k, k))) for k in pos)
        return replace_fields(self, {"energy": e, "mapping": out})

    def rewrap(self, inner: Energy) -> Energy:
        m = {o: n for o, n in self.mapping if o in inner.space}
        return Renamed(inner, m) if m else inner


class Frozen(Energy):
    """The same energy, excluded from training by ``fit``. Build it with :func:`freeze`."""

    energy: Energy

    wraps = True
    variable_fields = ()

    @property
    def space(self) -> dict[str, Var]:
        return self.energy.space

    def evaluate(self, values: Values) -> jax.Array:
        return self.energy.evaluate(values)

    def relabel(self, mapping: Mapping[str, str]) -> Energy | None:
        inner = self.energy.relabel(mapping)
        return None if inner is None else replace_fields(self, {"energy": inner})

    def trainable_flags(self, walk: Any, frozen: bool) -> list[bool]:
        return super().trainable_flags(walk, True)  # nothing inside trains

    def rewrap(self, inner: Energy) -> Energy:
        return Frozen(inner)


def freeze(energy: Energy) -> Energy:
    """The same energy with every array excluded from training by ``ebm.fit``.

    Example:
        >>> import composable_ebm as ebm
        >>> prior = ebm.freeze(ebm.Gaussian("x", 0.0, cov=1.0))
        >>> float(prior(2.0))
        2.0
    """
    if not isinstance(energy, Energy):
        raise TypeError(f"freeze expects an Energy, got {type(energy).__name__}")
    return energy if isinstance(energy, Frozen) else Frozen(energy)


class Named(Energy):
    """The same energy with a label, used by diagnostics (per-term energies)."""

    energy: Energy
    label: str = eqx.field(static=True)

    variable_fields = ()

    def relabel(self, mapping: Mapping[str, str]) -> Energy | None:
        inner = self.energy.relabel(mapping)  # the label stays: terms() reports it
        return None if inner is None else replace_fields(self, {"energy": inner})

    @property
    def space(self) -> dict[str, Var]:
        return self.energy.space

    def evaluate(self, values: Values) -> jax.Array:
        return self.energy.evaluate(values)
