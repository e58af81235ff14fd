"""The target a kernel moves on, checked while it is traced: errors name the term at fault.

An energy function that returns a non-scalar, or that uses Python control flow or
``float()`` on traced values, fails inside a sampler with JAX's own error and no term
named. The target wraps the energy so that, at trace time only (no cost at run time),
such failures become a ``ValueError``/``TypeError`` naming the term and saying what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from .._param import float_dtype
from ..energies import Energy, terms
from ._bridge import potential

__all__ = ["TRACER_ERRORS", "target"]

TRACER_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


def _culprit(energy: Energy) -> tuple[str, Any]:
    """The first term whose evaluation fails under a trace or is not scalar: (label, why)."""
    space = energy.space
    for label, term in terms(energy):
        args = {
            k: jax.ShapeDtypeStruct(
                space[k].shape, jnp.int32 if space[k].is_discrete else float_dtype()
            )
            for k in term.space
        }
        try:
            out = jax.eval_shape(term.evaluate, args)
        except TRACER_ERRORS as err:
            return label, err
        if out.shape != ():
            return label, out.shape
    return "the energy", None


def target(energy: Energy, unconstrained: bool) -> Callable[[Mapping[str, jax.Array]], jax.Array]:
    """The energy a kernel moves on (its potential when ``unconstrained``), checked."""
    fn = partial(potential, energy) if unconstrained else energy.evaluate

    def checked(position: Mapping[str, jax.Array]) -> jax.Array:
        try:
            out = fn(position)
        except TRACER_ERRORS as err:
            label, _ = _culprit(energy)
            raise TypeError(
                f"term {label!r} uses a traced value as a Python number (an `if`, `float()`, "
                "`int()` or `bool()` on an array inside the energy function). Energies run "
                "inside compiled samplers: use jnp.where(cond, a, b) or jax.lax.cond instead. "
                f"JAX said: {str(err).splitlines()[0]}"
            ) from err
        if jnp.shape(out) != ():
            label, shape = _culprit(energy)
            raise ValueError(
                f"an energy must return a scalar, but term {label!r} returns shape "
                f"{shape if shape is not None else jnp.shape(out)}; sum or reduce it "
                "(e.g. jnp.sum(...))"
            )
        return out

    return checked
