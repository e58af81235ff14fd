"""The algebra's combinators: sums (product of experts), scaling, and logsumexp."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._param import Param, leaf, value
from .._space import Var, merge_spaces, merge_var
from ._base import Energy, Values
from ._stack import evaluate_terms, stack_groups

__all__ = ["LogSumExp", "Scaled", "Sum", "describe", "logsumexp", "sum"]


def describe(e: Energy) -> str:
    """Short name of an energy for messages: its label, or its class."""
    label = getattr(e, "label", None)
    return f"{type(e).__name__}({label!r})" if label else type(e).__name__


def _restrict(values: Values, space: dict[str, Var]) -> dict:
    return {k: values[k] for k in space}


class Sum(Energy):
    """E₁ + E₂ + …: the product of experts. Nested sums flatten.

    The merged space is computed once, when the sum is built, and stored: adding a term to
    a sum merges only the new term's variables, so a sum of n terms builds in linear time
    (see :func:`sum`). Terms of the same structure (same class, static fields and leaf
    shapes, over the same or different variables) are evaluated together by one ``vmap``
    over their stacked leaves, so tracing and compiling stay flat in the number of terms.

    Example:
        >>> import composable_ebm as ebm
        >>> E = ebm.Gaussian("x", 0.0, cov=1.0) + ebm.Confinement("x")
        >>> len(E.terms)
        2
    """

    terms: tuple[Energy, ...]
    merged: tuple[tuple[str, Var], ...] = eqx.field(static=True)

    def __init__(self, terms: tuple[Energy, ...]):
        flat: list[Energy] = []
        merged: dict[str, Var] = {}
        for t in terms:
            if not isinstance(t, Energy):
                raise TypeError(f"Sum terms must be energies, got {type(t).__name__}")
            is_sum = isinstance(t, Sum)
            space = dict(t.merged) if is_sum else t.space
            for name, var in space.items():
                old = merged.get(name)
                if old is None:
                    merged[name] = var
                elif old != var:
                    try:
                        merged[name] = merge_var(name, old, var)
                    except ValueError:
                        self._merge_named(flat, t)  # raises naming the terms on both sides
                        raise
            flat.extend(t.terms if is_sum else (t,))
        self.terms = tuple(flat)
        self.merged = tuple(merged.items())

    @staticmethod
    def _merge_named(flat: list[Energy], new: Energy) -> dict[str, Var]:
        """Merge term by term with labels: raises naming both sides on a clash."""
        every = [*flat, *(new.terms if isinstance(new, Sum) else (new,))]
        labels = tuple(f"term {i} ({describe(t)})" for i, t in enumerate(every))
        return merge_spaces(*(t.space for t in every), labels=labels)

    @property
    def space(self) -> dict[str, Var]:
        return dict(self.merged)

    def evaluate(self, values: Values) -> jax.Array:
        return evaluate_terms(self.terms, values)

    def summands(self) -> tuple[Energy, ...]:
        return self.terms


def sum(terms: Iterable[Energy]) -> Energy:  # ebm.sum, like np.sum: shadows the builtin here
    """The sum of many energies, built in linear time (``+`` in a loop is quadratic).

    Terms of one structure (see :func:`~composable_ebm.stack`), at least four of them, are
    stacked: their leaves become a few arrays and they are evaluated by one ``vmap``, so a
    sampler for a sum of a thousand experts compiles about as fast as for one.
    :func:`~composable_ebm.terms` still lists every term with its label.

    Args:
        terms: one or more energies (a list, tuple or any iterable).

    Returns:
        Their sum (the single term itself when there is one).

    Example:
        >>> import jax.numpy as jnp, composable_ebm as ebm
        >>> experts = [ebm.Gaussian("x", float(m), cov=1.0) for m in range(100)]
        >>> E = ebm.sum(experts)
        >>> len(ebm.terms(E)), round(float(E(49.5)), 2)  # Σ ½(49.5 − m)² over m = 0..99
        (100, 41662.5)
    """
    if isinstance(terms, Energy):
        raise TypeError("ebm.sum takes an iterable of energies, e.g. ebm.sum([E1, E2]), got one")
    items = tuple(terms)
    if not items:
        raise ValueError("ebm.sum needs at least one energy, got none")
    for i, t in enumerate(items):
        if not isinstance(t, Energy):
            raise TypeError(f"ebm.sum: term {i} is a {type(t).__name__}, not an ebm.Energy")
    flat = [u for t in items for u in (t.terms if isinstance(t, Sum) else (t,))]
    items = tuple(stack_groups(flat))  # groups of identical terms: one vmap each
    return items[0] if len(items) == 1 else Sum(items)


class Scaled(Energy):
    """c·E (a weight), or E / T (a temperature) when ``divide`` is set.

    The number is stored as a float array leaf (wrap it in ``ebm.Param`` to train it).

    Example:
        >>> import composable_ebm as ebm
        >>> float((ebm.Gaussian("x", 0.0, cov=1.0) / 2.0)(2.0))
        1.0
    """

    energy: Energy
    weight: Any
    divide: bool = eqx.field(static=True)

    wraps = True
    variable_fields = ()

    def __init__(self, energy: Energy, weight: Any, divide: bool = False):
        what = "a temperature" if divide else "a weight"
        w = leaf(weight, what, finite=True)
        wv = value(w)
        if jnp.ndim(wv) != 0:
            raise ValueError(f"{what} must be a scalar, got shape {jnp.shape(wv)}")
        if divide:
            _validate.positive(wv, what)
        self.energy, self.weight, self.divide = energy, w, divide

    @property
    def space(self) -> dict[str, Var]:
        return self.energy.space

    @property
    def factor(self) -> jax.Array:
        """The multiplier applied to the inner energy."""
        w = value(self.weight)
        return 1.0 / w if self.divide else w

    def rewrap(self, inner: Energy) -> Energy:
        return Scaled(inner, self.weight, self.divide)

    def evaluate(self, values: Values) -> jax.Array:
        e = self.energy.evaluate(values)
        w = value(self.weight)
        return e / w if self.divide else e * w


class LogSumExp(Energy):
    """Disjunction: −log Σᵢ wᵢ exp(−Eᵢ). Build it with :func:`logsumexp` or ``E1 | E2``."""

    terms: tuple[Energy, ...]
    weights: Any

    def __init__(self, terms: tuple[Energy, ...], weights: Any):
        self.terms = tuple(terms)
        self.weights = weights
        self._merged()

    def _merged(self) -> dict[str, Var]:
        labels = tuple(f"alternative {i} ({describe(t)})" for i, t in enumerate(self.terms))
        return merge_spaces(*(t.space for t in self.terms), labels=labels)

    @property
    def space(self) -> dict[str, Var]:
        return self._merged()

    def evaluate(self, values: Values) -> jax.Array:
        es = jnp.stack([t.evaluate(_restrict(values, t.space)) for t in self.terms])
        return -jax.nn.logsumexp(-es, b=value(self.weights))


def logsumexp(*energies: Energy, weights: Any = None) -> Energy:
    """Disjunction of energies: −log Σᵢ wᵢ exp(−Eᵢ).

    Args:
        *energies: at least two energies; their spaces merge as for sums.
        weights: positive weights wᵢ (default all ones); wrap in ``ebm.Param`` to train.

    Example:
        >>> import composable_ebm as ebm
        >>> a, b = ebm.Gaussian("x", -2.0, cov=1.0), ebm.Gaussian("x", 2.0, cov=1.0)
        >>> E = ebm.logsumexp(a, b, weights=[0.3, 0.7])
        >>> round(float(E(0.0)), 4)
        2.0
    """
    if len(energies) < 1 or not all(isinstance(e, Energy) for e in energies):
        raise TypeError("logsumexp needs one or more energies")
    n = len(energies)
    if weights is None:
        w = leaf(np.ones(n))
    else:
        w = leaf(weights, "logsumexp weights", finite=True)
        if jnp.shape(value(w)) != (n,):
            raise ValueError(
                f"logsumexp got {n} energies but weights of shape {jnp.shape(value(w))}"
            )
    # flatten unweighted-by-Param nested disjunctions: (A | B) | C == A | B | C
    wv = value(w)
    _validate.positive(wv, "logsumexp weights")
    terms, ws, flattened = [], [], False
    can_flatten = not isinstance(w, Param)
    for e, wi in zip(energies, wv):
        if can_flatten and isinstance(e, LogSumExp) and not isinstance(e.weights, Param):
            terms.extend(e.terms)
            ws.append(wi * e.weights)
            flattened = True
        else:
            terms.append(e)
            ws.append(wi[None])
    if flattened:
        return LogSumExp(tuple(terms), jnp.concatenate(ws))
    return LogSumExp(tuple(terms), w)
