"""Values with a leading axis (data rows, chains), checked against an energy's space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from . import _validate
from ._param import float_dtype
from ._space import Var, by_name

__all__ = ["leading_axis_values"]


def leading_axis_values(
    space: Mapping[str, Var], values: Any, what: str, unit: str = "rows"
) -> tuple[dict[str, jax.Array], int]:
    """``values`` as a mapping name → array (N, *shape), and N.

    A bare array is accepted when the space has one variable. Continuous variables get
    the default float dtype when given integers or weakly typed numbers. Errors name the
    variable and both shapes.
    """
    values = by_name(space, values, what, f"N {unit}, *shape")
    out, n = {}, None
    for name, var in space.items():
        _validate.numeric_kind(values[name], f"{what}[{name!r}]")
        x = jnp.asarray(values[name])
        if not var.is_discrete and (not jnp.issubdtype(x.dtype, jnp.inexact) or x.weak_type):
            x = x.astype(float_dtype())
        shape = var.shape if var.shape is not None else x.shape[1:]
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(
                f"{what}[{name!r}] has shape {x.shape}; expected (N {unit}, *{shape}) for "
                f"variable {name!r} of shape {shape}"
            )
        if n is not None and x.shape[0] != n:
            raise ValueError(
                f"{what}: variables have different numbers of {unit} ({n}, {x.shape[0]})"
            )
        n = x.shape[0]
        out[name] = x
    if not n:
        raise ValueError(f"{what} has no {unit}")
    return out, n
