"""The ``Energy`` base class: evaluation with checks, and the algebra's operators."""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import _validate
from .._param import Param, float_dtype
from .._space import Var, by_name
from ._relabel import replace_fields

__all__ = ["Energy", "Values"]


Values = Mapping[str, jax.Array]


def _is_number(c: Any) -> bool:
    """A scalar multiplier; an array-like of another shape, a string, a list or a complex
    number is an error, not NotImplemented."""
    if isinstance(c, bool):
        return False
    if isinstance(c, (str, bytes, complex, list, tuple, dict, set)) or c is None:
        raise TypeError(
            "an energy can only be multiplied or divided by a real scalar (a weight or a "
            f"temperature), got {_validate.show(c)}"
        )
    if isinstance(c, (int, float)):
        return True
    if isinstance(c, Param) or isinstance(c, jax.Array) or hasattr(c, "__array__"):
        shape = jnp.shape(c.value if isinstance(c, Param) else c)
        if shape != ():
            raise TypeError(
                f"an energy can only be multiplied or divided by a scalar, got shape {shape}"
            )
        return True
    return False


class Energy(eqx.Module):
    """An energy over named variables: p(x) ∝ exp(−E(x)).

    Subclasses implement :attr:`space` and :meth:`evaluate` (evaluation on values whose
    shapes are already checked), and may declare ``trainable_fields`` (fields that ``fit``
    trains by default) and ``variable_fields`` (static fields holding variable names, so
    identical terms over different variables are evaluated together inside a sum).
    Everything else (checks, the algebra, conditioning, renaming, scores) is defined here
    once, so a new energy class is one new file.

    Example:
        >>> import composable_ebm as ebm
        >>> E = ebm.Gaussian("x", 0.0, cov=1.0) + ebm.Gaussian("x", 2.0, cov=1.0)
        >>> float(E(1.0))
        1.0
    """

    @property
    @abc.abstractmethod
    def space(self) -> dict[str, Var]:
        """Mapping name → :class:`~composable_ebm.Var` of the free variables."""

    #: Fields trained by ``fit`` by default (anything else trains only inside ``ebm.Param``).
    trainable_fields: ClassVar[frozenset[str]] = frozenset()
    #: Static fields holding variable names; ``None``: the class cannot be relabelled, so
    #: its terms are never stacked with others in a sum.
    variable_fields: ClassVar[tuple[str, ...] | None] = None
    #: A transparent wrapper (its ``energy`` field) that :meth:`rewrap` pushes onto terms.
    wraps: ClassVar[bool] = False

    @abc.abstractmethod
    def evaluate(self, values: Values) -> jax.Array:
        """Scalar energy at checked values: the method every energy class implements.

        ``values`` holds every free variable with its exact shape (no checks here: call
        the energy itself, ``E(values)``, to have them checked). Code that composes
        energies calls this method on its parts.

        Example:
            >>> import jax.numpy as jnp, composable_ebm as ebm
            >>> float(ebm.Gaussian("x", 0.0, cov=1.0).evaluate({"x": jnp.array(2.0)}))
            2.0
        """

    def relabel(self, mapping: Mapping[str, str]) -> Energy | None:
        """The same energy with the variable names in its own fields replaced.

        Unlike :meth:`rename` (a wrapper whose mapping is part of the structure), the
        result has the structure any term of this kind over other variables has once
        relabelled the same way: sums use it to find identical terms and evaluate them with
        one ``vmap``. Returns ``None`` when the class declares no ``variable_fields``.

        Example:
            >>> import composable_ebm as ebm
            >>> list(ebm.Gaussian("x", 0.0, cov=1.0).relabel({"x": "z"}).space)
            ['z']
        """
        if self.variable_fields is None:
            return None
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in self.variable_fields:
                changes[f.name] = mapping.get(v, v)
            elif isinstance(v, Energy):
                changes[f.name] = v.relabel(mapping)
                if changes[f.name] is None:
                    return None
        return replace_fields(self, changes)

    def summands(self) -> tuple[Energy, ...] | None:
        """The terms whose sum this energy is (a sum, a stack), or ``None`` for one term.

        :func:`~composable_ebm.terms` expands these; a class that is a sum overrides it.

        Example:
            >>> import composable_ebm as ebm
            >>> E = ebm.Gaussian("x", 0.0, cov=1.0) + ebm.Confinement("x")
            >>> len(E.summands())
            2
        """
        return None

    def trainable_flags(self, walk: Any, frozen: bool) -> list[bool]:
        """One flag per array leaf (flatten order): does ``fit`` train it by default?

        ``walk(node, default, frozen)`` gives the flags of a child; this default walks the
        fields, a field trainable when it is in ``trainable_fields``. Classes whose leaves
        are arranged otherwise (frozen wrappers, stacks) override it.
        """
        out: list[bool] = []
        for f in dataclasses.fields(self):
            if f.metadata.get("static", False):
                continue
            default = f.name in self.trainable_fields and not frozen
            out += walk(getattr(self, f.name), default, frozen)
        return out

    def rewrap(self, inner: Energy) -> Energy:
        """This wrapper around another energy (a term of the one it wraps).

        Wrappers (``wraps = True``) override it; :func:`~composable_ebm.terms` pushes them
        onto each term of an inner sum.
        """
        raise TypeError(f"{type(self).__name__} is not a wrapper")

    # ------------------------------------------------------------------ evaluation
    def _normalize(self, values: Any, kwargs: dict) -> dict[str, jax.Array]:
        space = self.space
        if values is None:
            values = kwargs
        elif kwargs:
            raise TypeError("pass values either as a mapping or as keywords, not both")
        values = by_name(space, values, "energy values")
        return {name: _as_value(values[name], space[name], name) for name in space}

    def __call__(self, values: Values | jax.Array | None = None, /, **kwargs: Any) -> jax.Array:
        """Scalar energy of one configuration.

        Args:
            values: mapping name → array, a bare array (one-variable energies), or
                ``None`` when the values are given as keywords.
            **kwargs: values by name.

        Returns:
            A scalar array.
        """
        vals = self._normalize(values, kwargs)
        for name, var in self.space.items():
            if var.shape is not None and jnp.shape(vals[name]) != var.shape:
                raise ValueError(
                    f"variable {name!r} has shape {var.shape} in the energy's space but the "
                    f"value has shape {jnp.shape(vals[name])}; use E.batch(values) to "
                    "evaluate over leading batch axes"
                )
        out = self.evaluate(vals)
        if jnp.shape(out) != ():
            raise ValueError(
                f"an energy must return a scalar, got shape {jnp.shape(out)} from "
                f"{type(self).__name__}"
            )
        return out

    def batch(self, values: Values | jax.Array | None = None, /, **kwargs: Any) -> jax.Array:
        """Energies over leading batch axes (vectorised with ``vmap``).

        Example:
            >>> import jax.numpy as jnp, composable_ebm as ebm
            >>> E = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.eye(2))
            >>> E.batch(jnp.ones((5, 3, 2))).shape
            (5, 3)
        """
        vals = self._normalize(values, kwargs)
        space = self.space
        batch_shape, first = None, None
        for name, var in space.items():
            if var.shape is None:
                raise ValueError(
                    f"variable {name!r} has no known shape, so its batch axes are ambiguous"
                )
            shape = jnp.shape(vals[name])
            nb = len(shape) - len(var.shape)
            if nb < 0 or shape[nb:] != var.shape:
                raise ValueError(
                    f"variable {name!r} has shape {var.shape} in the energy's space but the "
                    f"value has shape {shape}, which does not end with it"
                )
            if batch_shape is None:
                batch_shape, first = shape[:nb], name
            elif shape[:nb] != batch_shape:
                raise ValueError(
                    f"batch axes disagree: {name!r} has batch shape {shape[:nb]} but "
                    f"{first!r} has {batch_shape}"
                )
        batch_shape = batch_shape or ()
        n = math.prod(batch_shape)
        flat = {k: jnp.reshape(v, (n, *space[k].shape)) for k, v in vals.items()}
        out = jax.vmap(self.evaluate)(flat)
        if out.shape != (n,):
            raise ValueError(f"an energy must return a scalar, got shape {out.shape[1:]}")
        return out.reshape(batch_shape)

    def score(self, values: Values | jax.Array | None = None, /, **kwargs: Any) -> dict:
        """The score −∇E with respect to each continuous free variable, as a mapping.

        Example:
            >>> import composable_ebm as ebm
            >>> float(ebm.Gaussian("x", 1.0, cov=1.0).score(3.0)["x"])
            -2.0
        """
        vals = self._normalize(values, kwargs)
        cont = {k: v for k, v in vals.items() if not self.space[k].is_discrete}
        rest = {k: v for k, v in vals.items() if k not in cont}
        grads = jax.grad(lambda c: self({**c, **rest}))(cont)
        return {k: -g for k, g in grads.items()}

    # ------------------------------------------------------------------ algebra
    def __add__(self, other: Any) -> Energy:
        from ._combinators import Sum

        if not isinstance(other, Energy):
            return NotImplemented
        return Sum((self, other))

    def __radd__(self, other: Any) -> Energy:
        if isinstance(other, (int, float)) and other == 0:  # sum([...]) starts at 0
            return self
        return NotImplemented

    def __mul__(self, c: Any) -> Energy:
        from ._combinators import Scaled

        if not _is_number(c):
            return NotImplemented
        return Scaled(self, c)

    __rmul__ = __mul__

    def __truediv__(self, t: Any) -> Energy:
        from ._combinators import Scaled

        if not _is_number(t):
            return NotImplemented
        return Scaled(self, t, divide=True)

    def __neg__(self) -> Energy:
        return self * -1.0

    def __sub__(self, other: Any) -> Energy:
        if not isinstance(other, Energy):
            return NotImplemented
        return self + (-other)

    def __or__(self, other: Any) -> Energy:
        from ._combinators import logsumexp

        if not isinstance(other, Energy):
            return NotImplemented
        return logsumexp(self, other)

    def condition(self, **values: Any) -> Energy:
        """Fix variables to values; the result is an energy over the rest.

        Values are stored as array leaves, so conditioning again with new values reuses
        compiled samplers.

        Example:
            >>> import composable_ebm as ebm
            >>> E = ebm.energy(lambda x, y: (x - y) ** 2, x=(), y=())
            >>> sorted(E.condition(y=1.0).space)
            ['x']
        """
        from ._wrappers import Conditioned

        return Conditioned(self, values)

    def rename(self, **mapping: str) -> Energy:
        """The same energy over renamed variables: ``E.rename(old="new")``.

        Example:
            >>> import composable_ebm as ebm
            >>> list(ebm.Gaussian("x", 0.0, cov=1.0).rename(x="z").space)
            ['z']
        """
        from ._wrappers import Renamed

        return Renamed(self, mapping)

    def named(self, label: str) -> Energy:
        """The same energy carrying a label, used by per-term diagnostics.

        Example:
            >>> import composable_ebm as ebm
            >>> ebm.Gaussian("x", 0.0, cov=1.0).named("prior").label
            'prior'
        """
        from ._wrappers import Named

        return Named(self, label)


def _as_value(v: Any, var: Var, name: str) -> jax.Array:
    _validate.numeric_kind(v, f"the value of variable {name!r}")
    arr = jnp.asarray(v)
    if var.is_discrete:
        if not jnp.issubdtype(arr.dtype, jnp.integer) and arr.dtype != jnp.bool_:
            raise TypeError(f"variable {name!r} is discrete but got dtype {arr.dtype}")
        return arr
    if not jnp.issubdtype(arr.dtype, jnp.inexact):
        arr = arr.astype(float_dtype())
    return arr
