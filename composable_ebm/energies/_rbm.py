"""Restricted Boltzmann machines: joint energies, free energies, exact log-partition."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from .. import _validate
from .._param import as_float, float_dtype
from .._space import Var
from ._base import Energy, Values
from ._closed_form import _check_name

__all__ = ["BernoulliRBM", "FreeEnergy", "GaussianBernoulliRBM"]

MAX_ENUMERATED_UNITS = 20  # log_partition enumerates 2^n states, n ≤ this
_CHUNK = 4096  # states per enumeration chunk (bounds memory)


def _checked(visible: Any, hidden: Any, num_visible: Any, num_hidden: Any) -> tuple:
    visible, hidden = _check_name(visible), _check_name(hidden)
    if visible == hidden:
        raise ValueError(f"an RBM's visible and hidden variables need two names, got {visible!r}")
    nv = _validate.positive_int(num_visible, "RBM num_visible")
    nh = _validate.positive_int(num_hidden, "RBM num_hidden")
    return visible, hidden, nv, nh


def _floats(x: jax.Array) -> jax.Array:
    """Boolean units arrive as int/bool (``E(values)``) or float 0./1. (samplers)."""
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(float_dtype())


def _enumerate_logsumexp(fn: Any, n: int) -> jax.Array:
    """log Σ over all u ∈ {0,1}^n of exp(fn(u)), ``fn`` vectorised over rows, in chunks."""
    total = 2**n
    chunk = min(total, _CHUNK)
    bits = jnp.arange(n, dtype=jnp.int32)

    def part(start: jax.Array) -> jax.Array:
        idx = start + jnp.arange(chunk, dtype=jnp.int32)
        states = ((idx[:, None] >> bits[None, :]) & 1).astype(float_dtype())
        return jax.nn.logsumexp(fn(states))

    starts = jnp.arange(0, total, chunk, dtype=jnp.int32)
    return jax.nn.logsumexp(jax.lax.map(part, starts))


def _check_enumerable(rbm: Any, n: int, what: str) -> None:
    if n > MAX_ENUMERATED_UNITS:
        raise ValueError(
            f"{type(rbm).__name__}.log_partition enumerates 2^{n} states of the {what} "
            f"(num_visible={rbm.W.shape[0]}, num_hidden={rbm.W.shape[1]}); exact enumeration "
            f"is limited to {MAX_ENUMERATED_UNITS} units: use ebm.log_partition(..., "
            "method='ais') for larger models"
        )


class BernoulliRBM(Energy):
    """A binary RBM: E(v, h) = −vᵀWh − bᵀv − cᵀh with v ∈ {0,1}ⁿᵛ, h ∈ {0,1}ⁿʰ.

    Both variables have support ``constraints.boolean``; values may be given as integers,
    booleans or floats 0./1. (samplers). ``W`` starts as N(0, 0.01²) entries drawn from
    ``key``, the biases ``b`` (visible) and ``c`` (hidden) at zero; all three are trained
    by ``fit`` (use ``ebm.ContrastiveDivergence(sampler="gibbs")`` on visible data).

    Args:
        visible: name of the visible variable.
        hidden: name of the hidden variable.
        num_visible: number of visible units.
        num_hidden: number of hidden units.
        key: a JAX random key for the weights.

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> rbm = ebm.BernoulliRBM("v", "h", 3, 2, key=jax.random.key(0))
        >>> v, h = jnp.array([1, 0, 1]), jnp.array([1, 1])
        >>> bool(jnp.isclose(rbm({"v": v, "h": h}), -(v @ rbm.W @ h)))  # zero biases
        True
        >>> sorted(rbm.free_energy().space)
        ['v']
    """

    trainable_fields = frozenset({"W", "b", "c"})
    variable_fields = ("visible", "hidden")

    visible: str = eqx.field(static=True)
    hidden: str = eqx.field(static=True)
    W: jax.Array
    b: jax.Array
    c: jax.Array

    def __init__(self, visible: str, hidden: str, num_visible: int, num_hidden: int, *, key):
        self.visible, self.hidden, nv, nh = _checked(visible, hidden, num_visible, num_hidden)
        self.W = as_float(0.01 * jax.random.normal(key, (nv, nh), float_dtype()))
        self.b, self.c = as_float(np.zeros(nv)), as_float(np.zeros(nh))

    @property
    def space(self) -> dict[str, Var]:
        nv, nh = self.W.shape
        return {
            self.visible: Var((nv,), constraints.boolean),
            self.hidden: Var((nh,), constraints.boolean),
        }

    def evaluate(self, values: Values) -> jax.Array:
        v, h = _floats(values[self.visible]), _floats(values[self.hidden])
        return -(v @ self.W @ h) - self.b @ v - self.c @ h

    def _free(self, v: jax.Array) -> jax.Array:
        v = _floats(v)
        return -(self.b @ v) - jnp.sum(jax.nn.softplus(self.c + v @ self.W))

    def free_energy(self) -> FreeEnergy:
        """F(v) = −bᵀv − Σⱼ softplus(cⱼ + (Wᵀv)ⱼ) = −log Σₕ exp(−E(v, h)), over ``visible``.

        Example:
            >>> import jax, jax.numpy as jnp, composable_ebm as ebm
            >>> F = ebm.BernoulliRBM("v", "h", 2, 3, key=jax.random.key(0)).free_energy()
            >>> round(float(F(jnp.array([0, 0]))), 4)  # −3·log 2 with zero weights at v = 0
            -2.0794
        """
        return FreeEnergy(self)

    def log_partition(self) -> jax.Array:
        """log Z = log Σ_{v,h} exp(−E(v, h)), exact: the smaller layer is enumerated
        (2^min(nv, nh) states) and the other summed analytically.

        Example:
            >>> import jax, composable_ebm as ebm
            >>> rbm = ebm.BernoulliRBM("v", "h", 3, 2, key=jax.random.key(0))
            >>> round(float(rbm.log_partition()), 2)  # ≈ 5·log 2 for tiny weights
            3.47
        """
        nv, nh = self.W.shape
        if nh <= nv:
            _check_enumerable(self, nh, "hidden layer")
            return _enumerate_logsumexp(
                lambda h: h @ self.c + jnp.sum(jax.nn.softplus(self.b[None] + h @ self.W.T), -1), nh
            )
        _check_enumerable(self, nv, "visible layer")
        return _enumerate_logsumexp(lambda v: -jax.vmap(self._free)(v), nv)


class GaussianBernoulliRBM(Energy):
    """An RBM with real visible units: E(v, h) = Σᵢ (vᵢ − bᵢ)²/(2σᵢ²) − Σᵢⱼ (vᵢ/σᵢ²) Wᵢⱼ hⱼ − cᵀh.

    Given h, the visibles are independent N(bᵢ + (Wh)ᵢ, σᵢ²); given v, the hiddens are
    independent Bernoulli(sigmoid(cⱼ + Σᵢ Wᵢⱼ vᵢ/σᵢ²)). ``W`` starts as N(0, 0.01²)
    entries drawn from ``key``, ``b`` and ``c`` at zero, all trained by ``fit``; the
    standard deviations σ (a scalar or one per visible unit, stored per unit) are fixed.

    Args:
        visible: name of the visible (real) variable.
        hidden: name of the hidden (boolean) variable.
        num_visible: number of visible units.
        num_hidden: number of hidden units.
        key: a JAX random key for the weights.
        sigma: σ, a positive scalar or an array of shape (num_visible,).

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> rbm = ebm.GaussianBernoulliRBM("v", "h", 2, 3, key=jax.random.key(0), sigma=2.0)
        >>> float(rbm({"v": jnp.array([2.0, 0.0]), "h": jnp.array([0, 0, 0])}))
        0.5
    """

    trainable_fields = frozenset({"W", "b", "c"})
    variable_fields = ("visible", "hidden")

    visible: str = eqx.field(static=True)
    hidden: str = eqx.field(static=True)
    W: jax.Array
    b: jax.Array
    c: jax.Array
    sigma: jax.Array

    def __init__(
        self,
        visible: str,
        hidden: str,
        num_visible: int,
        num_hidden: int,
        *,
        key: jax.Array,
        sigma: Any = 1.0,
    ):
        self.visible, self.hidden, nv, nh = _checked(visible, hidden, num_visible, num_hidden)
        traced = _validate.is_traced(sigma)
        what = "GaussianBernoulliRBM sigma"
        s = jnp.asarray(sigma) if traced else _validate.numeric(sigma, what).astype(np.float64)
        _validate.finite(s, what)
        if s.ndim not in (0, 1) or (s.ndim == 1 and s.shape != (nv,)):
            raise ValueError(
                f"GaussianBernoulliRBM sigma must be a scalar or have shape ({nv},), got shape "
                f"{s.shape}"
            )
        if not traced and not np.all(s > 0):
            raise ValueError(f"GaussianBernoulliRBM sigma must be positive, got {sigma!r}")
        self.sigma = as_float((jnp if traced else np).broadcast_to(s, (nv,)))
        self.W = as_float(0.01 * jax.random.normal(key, (nv, nh), float_dtype()))
        self.b, self.c = as_float(np.zeros(nv)), as_float(np.zeros(nh))

    @property
    def space(self) -> dict[str, Var]:
        nv, nh = self.W.shape
        return {self.visible: Var((nv,)), self.hidden: Var((nh,), constraints.boolean)}

    def evaluate(self, values: Values) -> jax.Array:
        v, h = values[self.visible], _floats(values[self.hidden])
        var = self.sigma**2
        return jnp.sum((v - self.b) ** 2 / (2 * var)) - (v / var) @ self.W @ h - self.c @ h

    def _free(self, v: jax.Array) -> jax.Array:
        var = self.sigma**2
        quad = jnp.sum((v - self.b) ** 2 / (2 * var))
        return quad - jnp.sum(jax.nn.softplus(self.c + (v / var) @ self.W))

    def free_energy(self) -> FreeEnergy:
        """F(v) = Σᵢ (vᵢ − bᵢ)²/(2σᵢ²) − Σⱼ softplus(cⱼ + Σᵢ Wᵢⱼ vᵢ/σᵢ²), over ``visible``.

        Usable with ``ebm.sample`` (NUTS), ``ebm.langevin`` and in sums with other energies.

        Example:
            >>> import jax, jax.numpy as jnp, composable_ebm as ebm
            >>> rbm = ebm.GaussianBernoulliRBM("v", "h", 2, 1, key=jax.random.key(0))
            >>> round(float(rbm.free_energy()(jnp.array([1.0, 1.0]))), 1)  # ≈ 1 − log 2
            0.3
        """
        return FreeEnergy(self)

    def log_partition(self) -> jax.Array:
        """log Z, exact: the hiddens are enumerated (2^nh states), the visibles integrated.

        For each h, ∫ exp(−E(v, h)) dv = exp(cᵀh) Πᵢ √(2π)σᵢ exp(((bᵢ + aᵢ)² − bᵢ²)/(2σᵢ²))
        with a = Wh.

        Example:
            >>> import jax, composable_ebm as ebm
            >>> rbm = ebm.GaussianBernoulliRBM("v", "h", 1, 1, key=jax.random.key(0))
            >>> round(float(rbm.log_partition()), 3)  # log(2·√(2π)) for tiny weights
            1.612
        """
        nh = self.W.shape[1]
        _check_enumerable(self, nh, "hidden layer")
        var = self.sigma**2

        def log_weight(h: jax.Array) -> jax.Array:
            m = self.b[None] + h @ self.W.T
            return h @ self.c + jnp.sum((m**2 - self.b[None] ** 2) / (2 * var[None]), -1)

        const = jnp.sum(jnp.log(self.sigma)) + 0.5 * self.W.shape[0] * math.log(2 * math.pi)
        return _enumerate_logsumexp(log_weight, nh) + const


class FreeEnergy(Energy):
    """An RBM's free energy F(v) = −log Σₕ exp(−E(v, h)), over the visible variable only.

    Built by ``rbm.free_energy()``; it holds the RBM itself, so ``fit`` trains the RBM's
    parameters through it and :attr:`rbm` gives back the joint energy.

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> rbm = ebm.BernoulliRBM("v", "h", 2, 1, key=jax.random.key(0))
        >>> F = rbm.free_energy()
        >>> F.rbm is rbm, F.batch(jnp.zeros((4, 2), jnp.int32)).shape
        (True, (4,))
    """

    variable_fields = ()

    rbm: BernoulliRBM | GaussianBernoulliRBM

    @property
    def space(self) -> dict[str, Var]:
        return {self.rbm.visible: self.rbm.space[self.rbm.visible]}

    def evaluate(self, values: Values) -> jax.Array:
        return self.rbm._free(values[self.rbm.visible])

    def log_partition(self) -> jax.Array:
        """log ∫ exp(−F(v)) dv = the RBM's log Z (exact, by enumeration)."""
        return self.rbm.log_partition()
