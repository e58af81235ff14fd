"""Closed-form energies: Gaussian, Confinement, and energies from plain functions."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._param import as_float, float_dtype, leaf, value
from .._space import Var, as_var
from ._base import Energy, Values
from ._wrappers import Renamed

__all__ = ["Confinement", "FunctionEnergy", "Gaussian", "energy"]


def _check_name(var: Any) -> str:
    if not isinstance(var, str) or not var.isidentifier():
        raise TypeError(f"a variable name must be a valid identifier string, got {var!r}")
    return var


def _broadcast(m: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    if _validate.is_traced(m):
        return jnp.broadcast_to(m, shape)
    return as_float(np.broadcast_to(np.asarray(m), shape))


def _tril(g: np.ndarray, what: str, label: str) -> np.ndarray:
    """Cholesky factor of the precision with a log-diagonal, from a concrete matrix."""
    _validate.symmetric(g, f"{label}: {what}")
    chol = _validate.positive_definite(g, f"{label}: {what}")
    if what == "cov":  # P = Σ⁻¹ = L⁻ᵀ L⁻¹ with Σ = L Lᵀ
        inv = np.linalg.inv(chol)
        prec = inv.T @ inv
        try:
            chol = np.linalg.cholesky(0.5 * (prec + prec.T))
        except np.linalg.LinAlgError:
            chol = np.full_like(prec, np.nan)
        if not np.all(np.isfinite(chol)) or np.any(np.diag(chol) <= 0):
            raise ValueError(
                f"{label}: the cov is not positive definite to float precision (condition "
                f"number {np.linalg.cond(g):.3g})"
            )
    tril = np.tril(chol, -1) + np.diag(np.log(np.diag(chol)))
    _representable(tril, np.diag(tril), what, label)
    return tril.astype(float_dtype())


def _representable(tril: np.ndarray, log_diag: np.ndarray, what: str, label: str) -> None:
    """Refuse a precision whose Cholesky factor over- or underflows the float dtype: it
    would turn energies into inf or NaN (0·inf at the mean)."""
    dtype = float_dtype()
    with np.errstate(over="ignore", under="ignore"):
        ok = np.all(np.isfinite(tril.astype(dtype)))
        scale = np.exp(log_diag.astype(dtype))
        ok = ok and np.all(np.isfinite(scale)) and np.all(scale > 0)
    if not ok:
        raise ValueError(
            f"{label}: the {what} is too extreme for {dtype}: the Cholesky factor of its "
            f"precision has diagonal entries between {float(np.exp(log_diag.min())):.3g} and "
            f"{float(np.exp(log_diag.max())):.3g}"
        )


def _traced_tril(g: jax.Array, what: str) -> jax.Array:
    """As :func:`_tril` on a traced matrix (inside ``jit``): no checks are possible."""
    prec = jnp.linalg.inv(g) if what == "cov" else g
    chol = jnp.linalg.cholesky(0.5 * (prec + prec.T))
    return jnp.tril(chol, -1) + jnp.diag(jnp.log(jnp.diag(chol)))


class Gaussian(Energy):
    """½(x−m)ᵀP(x−m) over one variable, with no normalising constant.

    The precision is stored through its Cholesky factor with a log-diagonal, so training
    keeps it positive definite. ``cov`` and ``precision`` may be a scalar (isotropic), a
    vector (diagonal) or a matrix; give exactly one. A scalar or vector gives a diagonal
    Gaussian (cheaper, and it stays diagonal under training); a matrix a dense one. The
    variable's shape is the mean's shape (a scalar mean broadcasts to the size of a
    matrix ``cov``). Concrete parameters are checked: finite, a matrix symmetric up to
    round-off and positive definite, each error naming the variable and the argument.

    Example:
        >>> import jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.array([[2.0, 0.0], [0.0, 0.5]]))
        >>> round(float(E(jnp.array([2.0, 1.0]))), 4)
        2.0
    """

    trainable_fields = frozenset({"mean", "tril"})
    variable_fields = ("var",)

    var: str = eqx.field(static=True)
    mean: jax.Array
    tril: jax.Array  # Cholesky factor of the precision, log-diagonal

    def __init__(self, var: str, mean: Any, cov: Any = None, precision: Any = None):
        self.var = _check_name(var)
        if (cov is None) == (precision is None):
            raise ValueError("Gaussian needs exactly one of cov= or precision=")
        given = cov if precision is None else precision
        what = "cov" if precision is None else "precision"
        label = f"Gaussian {var!r}"
        m = as_float(mean, f"{label}: mean", finite=True)
        traced = _validate.is_traced(given)
        if traced:
            g = jnp.asarray(given)
        else:  # concrete: NumPy in float64, nothing to compile
            g = _validate.numeric(given, f"{label}: {what}").astype(np.float64)
            _validate.finite(g, f"{label}: {what}")
        d = m.size
        if g.ndim == 2:
            d_cov = g.shape[0]
            if g.shape != (d_cov, d_cov):
                raise ValueError(f"{label}: {what} must be square, got {g.shape}")
            if m.ndim == 0 and d_cov != 1:
                m, d = _broadcast(m, (d_cov,)), d_cov
            if d_cov != d:
                raise ValueError(
                    f"{label}: mean has {d} entries (shape {m.shape}) but the {what} is {g.shape}"
                )
            self.mean = m
            self.tril = as_float(_traced_tril(g, what) if traced else _tril(g, what, label))
            return
        if g.ndim > 2:
            raise ValueError(f"{label}: {what} must have at most 2 axes, got shape {g.shape}")
        # isotropic or diagonal: stored as a log-diagonal
        if g.ndim == 1 and g.size != d:
            raise ValueError(f"{label}: mean has {d} entries but the diagonal has {g.size}")
        xp = jnp if traced else np
        diag = xp.broadcast_to(g.ravel() if g.ndim else g, (d,))
        if not traced and not np.all(diag > 0):
            bad = diag[diag <= 0]
            raise ValueError(
                f"{label}: the {what} is not positive definite: its diagonal entries must be "
                f"> 0, got {float(bad[0])!r}"
            )
        # precision p = 1/cov; its Cholesky factor is sqrt(p): log sqrt(p) = ∓½ log g
        sign = -0.5 if precision is None else 0.5
        log_diag = sign * xp.log(diag)
        if not traced:
            _representable(log_diag, log_diag, what, label)
        self.mean, self.tril = m, as_float(log_diag)

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

    def evaluate(self, values: Values) -> jax.Array:
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

    variable_fields = ("var",)

    var: str = eqx.field(static=True)
    shape: tuple[int, ...] | None = eqx.field(static=True)
    scale: jax.Array
    eps: jax.Array

    def __init__(self, var: str, scale: Any = 1.0, eps: Any = 1e-3, shape: Any = None):
        self.var = _check_name(var)
        self.shape = as_var(shape, var).shape
        self.scale = leaf(scale, f"Confinement {var!r}: scale")
        self.eps = leaf(eps, f"Confinement {var!r}: eps")
        for what, x in (("scale", self.scale), ("eps", self.eps)):
            if jnp.ndim(value(x)) != 0:
                raise ValueError(
                    f"Confinement {var!r}: {what} must be a scalar, got shape {jnp.shape(value(x))}"
                )
        _validate.positive(self.scale, f"Confinement {var!r}: scale", allow_zero=True)
        _validate.finite(self.eps, f"Confinement {var!r}: eps")

    @property
    def space(self) -> dict[str, Var]:
        return {self.var: Var(self.shape)}

    def evaluate(self, values: Values) -> jax.Array:
        x = values[self.var]
        eps = value(self.eps)
        return value(self.scale) * jnp.sqrt(jnp.sum(x * x) + eps * eps)


class FunctionEnergy(Energy):
    """An energy from a function of keyword arrays. Build it with :func:`energy`.

    Its evaluation checks the function's result is a scalar, and turns JAX's errors for
    Python control flow or ``float()`` on traced values into a ``TypeError`` naming the
    function (so ``ebm.sample``, ``fit`` and ``E.batch`` all say which function to fix).
    """

    fn: Callable[..., jax.Array] = eqx.field(static=True)
    variables: tuple[tuple[str, Var], ...] = eqx.field(static=True)

    @property
    def space(self) -> dict[str, Var]:
        return dict(self.variables)

    def relabel(self, mapping: Mapping[str, str]) -> Energy:
        # the function's keywords are fixed by its code: relabel through a renaming
        m = {k: v for k, v in mapping.items() if k in self.space}
        return Renamed(self, m) if m else self

    def evaluate(self, values: Values) -> jax.Array:
        try:
            out = self.fn(**values)
        except _TRACER_ERRORS as e:
            raise TypeError(
                f"energy function {_fn_name(self.fn)} cannot run on traced values (under jit, "
                "grad, vmap, E.batch, ebm.sample or ebm.fit the inputs are abstract arrays): "
                "Python control flow and conversions such as `if x > 0:`, `float(x)` or "
                "`int(x)` need concrete numbers. Use jnp.where(cond, a, b) or "
                "jax.lax.cond(cond, f, g, x) instead of a Python `if`, and keep values as "
                f"arrays instead of float()/int()/np.asarray(). JAX said: "
                f"{str(e).splitlines()[0]}"
            ) from e
        if not isinstance(out, jax.Array):
            _validate.numeric(out, f"the result of energy function {_fn_name(self.fn)}")
            out = jnp.asarray(out)
        if out.shape != ():
            raise ValueError(
                f"energy function {_fn_name(self.fn)} must return a scalar, got shape {out.shape}"
            )
        return out

    @property
    def label(self) -> str:
        return getattr(self.fn, "__name__", "fn")


_TRACER_ERRORS = (
    jax.errors.ConcretizationTypeError,  # includes TracerBoolConversionError
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


def _fn_name(fn: Any) -> str:
    """The function's qualified name for messages, e.g. ``'ring'`` or ``'f.<locals>.g'``."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return repr(name) if name else repr(fn)


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
