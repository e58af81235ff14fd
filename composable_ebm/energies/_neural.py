"""Neural energies: a small MLP over one variable."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._space import Var, as_var
from ._base import Energy, Values
from ._closed_form import _check_name

__all__ = ["NeuralEnergy"]


def _activation_name(fn: Callable | str) -> str | Callable:
    if isinstance(fn, str):
        if not callable(getattr(jax.nn, fn, None)):
            raise ValueError(f"unknown activation {fn!r}: not a function in jax.nn")
        return fn
    for name in dir(jax.nn):
        if getattr(jax.nn, name) is fn:
            return name
    return fn  # a user function, pickled by reference


class NeuralEnergy(Energy):
    """An MLP energy E(x) = MLP(flatten(x)) with one scalar output; trainable by ``fit``.

    The activation is stored by name (for ``jax.nn`` functions) so energies pickle.

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.NeuralEnergy("x", (2,), hidden=(16,), key=jax.random.key(0))
        >>> E(jnp.zeros(2)).shape
        ()
    """

    var: str = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    activation: Any = eqx.field(static=True)
    layers: tuple[eqx.nn.Linear, ...]

    def __init__(
        self,
        var: str,
        shape: Any,
        hidden: Sequence[int] = (128, 128),
        *,
        key: jax.Array,
        activation: Callable | str = jax.nn.silu,
    ):
        self.var = _check_name(var)
        self.shape = as_var(shape, var).shape
        if self.shape is None:
            raise ValueError(f"NeuralEnergy {var!r} needs a known shape")
        self.activation = _activation_name(activation)
        sizes = (math.prod(self.shape), *(int(h) for h in hidden), 1)
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(i, o, key=k) for i, o, k in zip(sizes[:-1], sizes[1:], keys)
        )

    @property
    def space(self) -> dict[str, Var]:
        return {self.var: Var(self.shape)}

    def _act(self, h: jax.Array) -> jax.Array:
        fn = (
            getattr(jax.nn, self.activation)
            if isinstance(self.activation, str)
            else self.activation
        )
        return fn(h)

    def _energy(self, values: Values) -> jax.Array:
        h = jnp.ravel(values[self.var])
        for layer in self.layers[:-1]:
            h = self._act(layer(h))
        return self.layers[-1](h)[0]
