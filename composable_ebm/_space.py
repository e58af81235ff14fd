"""Named variables with shapes and supports, and merging of spaces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from numpyro.distributions import constraints

from ._validate import nonnegative_shape

Shape = tuple[int, ...]

__all__ = [
    "Var",
    "as_var",
    "by_name",
    "canonical_support",
    "describe_support",
    "merge_spaces",
    "support_key",
]


def _concrete(value: Any, what: str) -> Any:
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{what} must be a concrete number (Python or NumPy), got a traced value; "
            "build supports outside jit/vmap."
        )
    arr = np.asarray(value)
    return arr.item() if arr.ndim == 0 else tuple(arr.ravel().tolist())


def support_key(support: constraints.Constraint) -> tuple:
    """A hashable description of the *set* a support describes.

    Two supports with the same key describe the same set (``unit_interval`` and
    ``interval(0, 1)``; ``positive`` and ``greater_than(0)``).
    """
    c = support
    while isinstance(c, constraints._IndependentConstraint):
        c = c.base_constraint
    if isinstance(c, (constraints._Real, constraints._RealVector, constraints._RealMatrix)):
        return ("real",)
    if isinstance(c, constraints._Circular):
        return ("circular",)
    if isinstance(c, constraints._Interval):
        return (
            "interval",
            _concrete(c.lower_bound, "interval lower bound"),
            _concrete(c.upper_bound, "interval upper bound"),
        )
    if isinstance(c, constraints._GreaterThan):
        return ("greater_than", _concrete(c.lower_bound, "lower bound"))
    if isinstance(c, constraints._LessThan):
        return ("less_than", _concrete(c.upper_bound, "upper bound"))
    if isinstance(c, constraints._Boolean):
        return ("integer_interval", 0, 1)
    if isinstance(c, constraints._IntegerInterval):
        return (
            "integer_interval",
            _concrete(c.lower_bound, "lower bound"),
            _concrete(c.upper_bound, "upper bound"),
        )
    if isinstance(c, constraints._IntegerGreaterThan):
        return ("integer_greater_than", _concrete(c.lower_bound, "lower bound"))
    if isinstance(c, constraints._Dependent):
        raise TypeError("a variable's support cannot be a dependent constraint")
    return (type(c).__name__,)


def canonical_support(support: constraints.Constraint) -> constraints.Constraint:
    """One constraint object per set, so the unconstrained transform depends only on the set.

    ``positive``, ``greater_than(0)`` and ``softplus_positive`` all become ``positive``
    (an exp transform); ``interval(0, 1)`` becomes ``unit_interval``. Spaces that compare
    equal therefore sample through the same bijection.
    """
    key = support_key(support)
    kind = key[0]
    if kind == "real":
        return constraints.real
    if kind == "greater_than":
        return constraints.positive if key[1] == 0 else constraints.greater_than(key[1])
    if kind == "less_than":
        return constraints.less_than(key[1])
    if kind == "interval":
        if (key[1], key[2]) == (0, 1):
            return constraints.unit_interval
        return constraints.interval(key[1], key[2])
    if kind == "integer_interval":
        return constraints.integer_interval(key[1], key[2])
    if kind == "integer_greater_than":
        return constraints.integer_greater_than(key[1])
    return support


def describe_support(support: constraints.Constraint) -> str:
    """Human-readable name of a support, for error messages."""
    key = support_key(support)
    if len(key) == 1:
        return key[0].lstrip("_").lower()
    return f"{key[0]}({', '.join(str(b) for b in key[1:])})"


class Var:
    """A named variable's shape and support.

        Args:
            shape: the variable's shape; ``None`` is a wildcard that merges with any shape.
            support: a ``numpyro.distributions.constraints`` object (default ``real``).

        Example:
            >>> import composable_ebm as ebm
            >>> from numpyro.distributions import constraints

    from ._validate import nonnegative_shape
            >>> ebm.Var((2,), constraints.positive)
            Var(shape=(2,), support=greater_than(0.0))
    """

    __slots__ = ("_key", "shape", "support")

    def __init__(
        self, shape: Shape | int | None = (), support: constraints.Constraint = constraints.real
    ):
        if shape is not None:
            shape = nonnegative_shape(shape, "Var shape")
        if not isinstance(support, constraints.Constraint):
            raise TypeError(
                f"Var support must be a numpyro.distributions.constraints object, got {support!r}"
            )
        event_dim = int(getattr(support, "event_dim", 0))
        base = support
        while isinstance(base, constraints._IndependentConstraint):
            event_dim, base = base.base_constraint.event_dim, base.base_constraint
        if shape is not None and event_dim > len(shape):
            raise ValueError(
                f"support {describe_support(support)} constrains the last {event_dim} axes but "
                f"the variable's shape {shape} has only {len(shape)}"
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "support", canonical_support(support))
        object.__setattr__(self, "_key", support_key(support))

    def __setattr__(self, name, value):
        raise AttributeError("Var is immutable")

    @property
    def is_discrete(self) -> bool:
        """Whether the support is a set of integers."""
        return bool(getattr(self.support, "is_discrete", False))

    @property
    def size(self) -> int:
        """Number of scalar entries (the shape must be known)."""
        if self.shape is None:
            raise ValueError("Var with unknown shape has no size")
        return int(np.prod(self.shape, dtype=int))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Var) and (self.shape, self._key) == (other.shape, other._key)

    def __hash__(self) -> int:
        return hash((self.shape, self._key))

    def __repr__(self) -> str:
        return f"Var(shape={self.shape}, support={describe_support(self.support)})"

    def __reduce__(self):
        return (Var, (self.shape, self.support))


def as_var(entry: Any, name: str = "?") -> Var:
    """Turn a space entry (a ``Var``, a shape tuple, an int, or ``None``) into a ``Var``."""
    if isinstance(entry, Var):
        return entry
    if entry is None or isinstance(entry, (int, np.integer, tuple, list)):
        return Var(entry)
    raise TypeError(f"space entry for {name!r} must be a shape tuple or ebm.Var, got {entry!r}")


def merge_var(
    name: str, a: Var, b: Var, left: str = "the left energy", right: str = "the right energy"
) -> Var:
    """Merge two declarations of the same variable, or raise naming both sides."""
    if a.shape is None:
        shape = b.shape
    elif b.shape is None or a.shape == b.shape:
        shape = a.shape
    else:
        raise ValueError(
            f"variable {name!r} has shape {a.shape} in {left} but shape {b.shape} in {right}"
        )
    if a._key == b._key or b._key == ("real",):
        support = a.support
    elif a._key == ("real",):
        support = b.support
    else:
        raise ValueError(
            f"variable {name!r} has support {describe_support(a.support)} in {left} "
            f"but {describe_support(b.support)} in {right}"
        )
    return Var(shape, support)


def merge_spaces(
    *spaces: Mapping[str, Var], labels: tuple[str, ...] | None = None
) -> dict[str, Var]:
    """Merge spaces variable by variable; a clash names the variable and both sides."""
    labels = labels or tuple(f"term {i}" for i in range(len(spaces)))
    out: dict[str, Var] = {}
    first: dict[str, str] = {}
    for label, space in zip(labels, spaces):
        for name, var in space.items():
            if name in out:
                out[name] = merge_var(name, out[name], var, left=first[name], right=label)
            else:
                out[name], first[name] = var, label
    return out


def by_name(space: Mapping[str, Var], values: Any, what: str, layout: str = "*shape") -> Mapping:
    """``values`` as a mapping name → value with exactly the variables of ``space``.

    A bare array stands for the only variable of a one-variable space. Errors say which
    names are unknown or missing and list the space's variables.
    """
    if not isinstance(values, Mapping):
        if len(space) != 1:
            raise TypeError(
                f"{what}: a bare array needs an energy over exactly one variable; this energy "
                f"is over {sorted(space)}: pass a mapping name → array ({layout})"
            )
        return {next(iter(space)): values}
    unknown = sorted(set(values) - set(space))
    missing = sorted(set(space) - set(values))
    if unknown or missing:
        parts = [f"unknown variable(s) {unknown}"] if unknown else []
        parts += [f"missing variable(s) {missing}"] if missing else []
        raise KeyError(f"{what}: {' and '.join(parts)}; the energy's variables are {sorted(space)}")
    return values
