"""Numbers stored in energies: strongly typed arrays, optionally marked trainable."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["Param", "as_float", "leaf", "value"]


def float_dtype() -> jnp.dtype:
    """The default float dtype right now (float64 when x64 mode is on)."""
    return jnp.dtype(jnp.result_type(float))


def as_float(x: Any) -> jax.Array:
    """``x`` as a strongly typed array of the default float dtype."""
    if isinstance(x, Param):
        raise TypeError("as_float got a Param; use leaf() to keep it trainable")
    arr = jnp.asarray(x)
    if jnp.issubdtype(arr.dtype, jnp.floating) and not arr.weak_type and arr.dtype == float_dtype():
        return arr
    return jnp.asarray(arr, dtype=float_dtype())


class Param(eqx.Module):
    """Marks a number as trainable by ``ebm.fit``.

    Weights, temperatures, condition values and other settings are fixed unless wrapped
    in ``Param``.

    Example:
        >>> import composable_ebm as ebm
        >>> E = ebm.Param(2.0) * ebm.Gaussian("x", 0.0, cov=1.0)
        >>> float(E(1.0))
        1.0
    """

    value: jax.Array

    def __init__(self, value: Any):
        self.value = value.value if isinstance(value, Param) else as_float(value)


def leaf(x: Any) -> Param | jax.Array:
    """Store a number: a ``Param`` stays a ``Param`` (with a float value), else a float array."""
    return Param(x) if isinstance(x, Param) else as_float(x)


def value(x: Param | jax.Array) -> jax.Array:
    """The array behind a stored number."""
    return x.value if isinstance(x, Param) else x
