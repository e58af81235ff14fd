"""Numbers stored in energies: strongly typed arrays, optionally marked trainable."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Param", "as_float", "leaf", "value"]


def float_dtype() -> jnp.dtype:
    """The default float dtype right now (float64 when x64 mode is on)."""
    return jnp.dtype(jnp.result_type(float))


def as_float(x: Any) -> jax.Array:
    """``x`` as a strongly typed array of the default float dtype.

    Concrete numbers go through NumPy, so building an energy compiles nothing.
    """
    if isinstance(x, Param):
        raise TypeError("as_float got a Param; use leaf() to keep it trainable")
    dtype = float_dtype()
    if not isinstance(x, jax.Array):
        return jnp.asarray(np.asarray(x, dtype=dtype))
    if x.dtype == dtype and not x.weak_type:
        return x
    return jnp.asarray(x, dtype=dtype)


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
