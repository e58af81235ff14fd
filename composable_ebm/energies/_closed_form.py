"""Closed-form energies: Gaussian, Confinement, and energies from plain functions."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._param import as_float, leaf, value
from .._space import Var, as_var
from ._base import Energy, Values

__all__ = ["Confinement", "FunctionEnergy", "Gaussian", "energy"]


def _check_name(var: Any) -> str:
    if not isinstance(var, str) or not var.isidentifier():
        raise TypeError(f"a variable name must be a valid identifier string, got {var!r}")
    return var


def _concrete(x: jax.Array) -> bool:
    return not isinstance(x, jax.core.Tracer)


class Gaussian(Energy):
    """½(x−m)ᵀP(x−m) over one variable, with no normalising constant.

    The precision is stored through its Cholesky factor with a log-diagonal, so training
    keeps it positive definite. ``cov`` and ``precision`` may be a scalar (isotropic), a
    vector (diagonal) or a matrix; give exactly one. A scalar or vector gives a diagonal
    Gaussian (cheaper, and it stays diagonal under training); a matrix a dense one. The
    variable's shape is the mean's shape (a scalar mean broadcasts to the size of a
    matrix ``cov``).

    Example:
        >>> import jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.array([[2.0, 0.0], [0.0, 0.5]]))
        >>> round(float(E(jnp.array([2.0, 1.0]))), 4)
        2.0
    """

    var: str = eqx.field(static=True)
    mean: jax.Array
    tril: jax.Array  # Cholesky factor of the precision, log-diagonal

    def __init__(self, var: str, mean: Any, cov: Any = None, precision: Any = None):
        self.var = _check_name(var)
        if (cov is None) == (precision is None):
            raise ValueError("Gaussian needs exactly one of cov= or precision=")
        given = cov if precision is None else precision
        what = "cov" if precision is None else "precision"
        traced = any(isinstance(a, jax.core.Tracer) for a in (mean, given))
        xp = jnp if traced else np  # concrete inputs: NumPy (float64), nothing to compile
        m = as_float(mean)
        g = xp.asarray(given if traced else np.asarray(given, dtype=np.float64))
        d = m.size
        if g.ndim == 2:
            d_cov = g.shape[0]
            if g.shape != (d_cov, d_cov):
                raise ValueError(f"Gaussian {var!r}: {what} must be square, got {g.shape}")
            if m.ndim == 0 and d_cov != 1:
                m, d = jnp.broadcast_to(m, (d_cov,)), d_cov
            if d_cov != d:
                raise ValueError(
                    f"Gaussian {var!r}: mean has {d} entries (shape {m.shape}) but the "
                    f"{what} is {g.shape}"
                )
            mat = g
        elif g.ndim <= 1:  # isotropic or diagonal: stored as a log-diagonal
            if g.ndim == 1 and g.size != d:
                raise ValueError(
                    f"Gaussian {var!r}: mean has {d} entries but the diagonal has {g.size}"
                )
            diag = xp.broadcast_to(g.ravel() if g.ndim else g, (d,))
            if not traced and not np.all(diag > 0):
                raise ValueError(f"Gaussian {var!r}: the {what} is not positive definite")
            # precision p = 1/cov; its Cholesky factor is sqrt(p): log sqrt(p) = ∓½ log g
            sign = -0.5 if precision is None else 0.5
            self.mean, self.tril = m, as_float(sign * xp.log(diag))
            return
        else:
            raise ValueError(f"Gaussian {var!r}: {what} must have at most 2 axes")
        prec = xp.linalg.inv(mat) if precision is None else mat
        try:
            chol = xp.linalg.cholesky(0.5 * (prec + prec.T))
        except np.linalg.LinAlgError:
            chol = np.full_like(prec, np.nan)
        if not traced and not np.all(np.isfinite(chol)):
            raise ValueError(f"Gaussian {var!r}: the {what} is not positive definite")
        self.mean = m
        self.tril = as_float(xp.tril(chol, -1) + xp.diag(xp.log(xp.diag(chol))))

    @property
    def space(self) -> dict[str, Var]:
        return {self.var: Var(tuple(self.mean.shape))}

    @property
    def diagonal(self) -> bool:
        """Whether the precision is diagonal (``cov``/``precision`` given as a scalar or
        vector); a diagonal Gaussian stays diagonal under training."""
        return self.tril.ndim == 1

    @property
    def cholesky(self) -> jax.Array:
        """Lower Cholesky factor L of the precision, P = L Lᵀ."""
        if self.diagonal:
            return jnp.diag(jnp.exp(self.tril))
        return jnp.tril(self.tril, -1) + jnp.diag(jnp.exp(jnp.diag(self.tril)))

    @property
    def precision(self) -> jax.Array:
        """The precision matrix P."""
        chol = self.cholesky
        return chol @ chol.T

    @property
    def cov(self) -> jax.Array:
        """The covariance matrix P⁻¹."""
        return jnp.linalg.inv(self.precision)

    @property
    def log_partition(self) -> jax.Array:
        """log ∫ exp(−E) = (d/2) log 2π + ½ log det Σ."""
        d = self.mean.size
        log_diag = self.tril if self.diagonal else jnp.diag(self.tril)
        return 0.5 * d * math.log(2 * math.pi) - jnp.sum(log_diag)

    def _energy(self, values: Values) -> jax.Array:
        r = jnp.ravel(values[self.var] - self.mean)
        y = r * jnp.exp(self.tril) if self.diagonal else r @ self.cholesky  # = Lᵀ r
        return 0.5 * jnp.sum(y * y)


class Confinement(Energy):
    """scale·sqrt(‖x‖² + eps²): a soft wall that keeps samplers from running away.

    ``shape`` may be left out when another term of the composition fixes the variable's
    shape.

    Example:
        >>> import jax.numpy as jnp, composable_ebm as ebm
        >>> float(ebm.Confinement("x", scale=2.0, eps=0.0, shape=(2,))(jnp.array([3.0, 4.0])))
        10.0
    """

    var: str = eqx.field(static=True)
    shape: tuple[int, ...] | None = eqx.field(static=True)
    scale: jax.Array
    eps: jax.Array

    def __init__(self, var: str, scale: Any = 1.0, eps: Any = 1e-3, shape: Any = None):
        self.var = _check_name(var)
        self.shape = as_var(shape, var).shape
        self.scale, self.eps = leaf(scale), leaf(eps)
        for what, x in (("scale", self.scale), ("eps", self.eps)):
            if jnp.ndim(value(x)) != 0:
                raise ValueError(f"Confinement {var!r}: {what} must be a scalar")

    @property
    def space(self) -> dict[str, Var]:
        return {self.var: Var(self.shape)}

    def _energy(self, values: Values) -> jax.Array:
        x = values[self.var]
        eps = value(self.eps)
        return value(self.scale) * jnp.sqrt(jnp.sum(x * x) + eps * eps)


class FunctionEnergy(Energy):
    """An energy from a function of keyword arrays. Build it with :func:`energy`."""

    fn: Callable[..., jax.Array] = eqx.field(static=True)
    variables: tuple[tuple[str, Var], ...] = eqx.field(static=True)

    @property
    def space(self) -> dict[str, Var]:
        return dict(self.variables)

    def _energy(self, values: Values) -> jax.Array:
        return jnp.asarray(self.fn(**values))

    @property
    def label(self) -> str:
        return getattr(self.fn, "__name__", "fn")


def energy(fn: Callable[..., Any] | None = None, /, **space: Any) -> Any:
    """An energy from a function of keyword arrays; also usable as a decorator.

    Args:
        fn: function taking the variables as keyword arguments and returning a scalar.
        **space: for each variable a shape (tuple or int; ``()`` for a scalar) or an
            ``ebm.Var(shape, support)``.

    Example:
        >>> import jax.numpy as jnp, composable_ebm as ebm
        >>> @ebm.energy(x=(2,))
        ... def ring(x):
        ...     return (jnp.linalg.norm(x) - 1.0) ** 2
        >>> float(ring(jnp.array([0.0, 3.0])))
        4.0
    """
    if not space:
        raise TypeError("energy() needs the space of its function, e.g. energy(fn, x=(2,))")
    variables = tuple((_check_name(k), as_var(v, k)) for k, v in space.items())
    if fn is None:
        return lambda f: FunctionEnergy(f, variables)
    if not callable(fn):
        raise TypeError(f"energy() expects a function, got {type(fn).__name__}")
    return FunctionEnergy(fn, variables)
