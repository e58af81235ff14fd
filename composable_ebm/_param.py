"""Numbers stored in energies: strongly typed arrays, optionally marked trainable."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _validate

__all__ = ["Param", "as_float", "leaf", "value"]


def float_dtype() -> jnp.dtype:
    """The default float dtype right now (float64 when x64 mode is on)."""
    return jnp.dtype(jnp.result_type(float))


def as_float(x: Any, what: str = "the value", *, finite: bool = False) -> jax.Array:
    """``x`` as a strongly typed array of the default float dtype.

    Concrete numbers go through NumPy, so building an energy compiles nothing. A string,
    ``None`` or anything else that is not made of real numbers raises a ``TypeError``
    naming ``what``. With ``finite``, a concrete NaN or infinite entry, or a number too
    large for the float dtype, raises a ``ValueError`` naming ``what``.

    Example:
        >>> from composable_ebm._param import as_float
        >>> as_float(2).dtype
        dtype('float32')
        >>> as_float("2", "weight")
        Traceback (most recent call last):
        ...
        TypeError: weight must be a number or an array of numbers, got str '2'
        >>> as_float(1e39, "weight", finite=True)
        Traceback (most recent call last):
        ...
        ValueError: weight must be finite in float32, got 1e+39
    """
    if isinstance(x, Param):
        raise TypeError(f"{what} cannot be an ebm.Param here: only settings can be trained")
    dtype = float_dtype()
    if isinstance(x, jax.Array):  # traced or concrete: no cast can overflow here
        _validate.numeric_kind(x, what)
        if finite:
            _validate.finite(x, what)  # skipped when traced
        return x if x.dtype == dtype and not x.weak_type else jnp.asarray(x, dtype=dtype)
    arr = _validate.numeric(x, what)
    if finite:
        _validate.finite(arr, what)
    with np.errstate(over="ignore"):
        cast = np.asarray(arr, dtype=dtype)
    if finite and not np.all(np.isfinite(cast)):
        big = arr[~np.isfinite(cast)].ravel()[0] if arr.ndim else arr
        raise ValueError(f"{what} must be finite in {dtype}, got {float(big):.3g}")
    return jnp.asarray(cast)


class Param(eqx.Module):
    """Marks a number as trainable by ``ebm.fit``.

    Weights, temperatures, condition values and other settings are fixed unless wrapped
    in ``Param``. The value must be finite (checked when it is concrete).

    Example:
        >>> import composable_ebm as ebm
        >>> E = ebm.Param(2.0) * ebm.Gaussian("x", 0.0, cov=1.0)
        >>> float(E(1.0))
        1.0
    """

    value: jax.Array

    def __init__(self, value: Any):
        if isinstance(value, Param):
            self.value = value.value
            return
        self.value = as_float(value, "ebm.Param value", finite=True)


def leaf(x: Any, what: str = "the value", *, finite: bool = False) -> Param | jax.Array:
    """Store a number: a ``Param`` stays a ``Param`` (with a float value, always finite),
    else a float array (finite when asked, see :func:`as_float`).

    Example:
        >>> from composable_ebm._param import leaf
        >>> leaf(2).dtype
        dtype('float32')
    """
    return Param(x) if isinstance(x, Param) else as_float(x, what, finite=finite)


def value(x: Param | jax.Array) -> jax.Array:
    """The array behind a stored number."""
    return x.value if isinstance(x, Param) else x
