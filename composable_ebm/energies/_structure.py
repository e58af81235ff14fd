"""Walking an energy's structure: its top-level terms, and which leaves are trainable."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._param import Param
from ._base import Energy
from ._combinators import describe
from ._stack import Stacked, evaluate_each
from ._wrappers import Named

__all__ = ["term_vector", "terms", "trainable_mask"]


def terms(energy: Energy) -> list[tuple[str, Energy]]:
    """The top-level terms of an energy as (label, energy) pairs whose sum is the energy.

    Wrappers (conditioning, scaling, renaming, freezing) are pushed onto each term of an
    inner sum, so per-term energies can be evaluated on the same values as the whole.

    Example:
        >>> import composable_ebm as ebm
        >>> E = ebm.Gaussian("x", 0.0, cov=1.0).named("prior") + ebm.Confinement("x")
        >>> [label for label, _ in ebm.terms(E)]
        ['prior', 'Confinement']
    """
    parts = energy.summands()
    if parts is not None:
        out, seen, used = [], {}, set()
        for t in parts:
            for label, e in terms(t):
                n = seen.get(label, 0)
                unique = label if n == 0 else f"{label}[{n}]"
                while unique in used:  # nested sums may already use "label[n]"
                    n += 1
                    unique = f"{label}[{n}]"
                seen[label] = n + 1
                used.add(unique)
                out.append((unique, e))
        return out
    if isinstance(energy, Named):
        return [(energy.label, energy.energy)]
    if energy.wraps and _has_sum(energy.energy):
        return [(label, energy.rewrap(t)) for label, t in terms(energy.energy)]
    return [(_label(energy), energy)]


def term_vector(energy: Energy, values: Any) -> jax.Array:
    """The energies of ``terms(energy)`` at ``values`` (all variables), as one vector.

    A stack's members are evaluated together (one ``vmap``), without unstacking it.
    """
    if isinstance(energy, Stacked):
        return energy.energies({k: values[k] for k in energy.space})
    parts = energy.summands()
    if parts is not None:
        return jnp.concatenate([term_vector(t, values) for t in parts])
    ts = [t for _, t in terms(energy)]
    return jnp.stack(evaluate_each(ts, values))


def _unwrapped(e: Energy) -> Energy:
    while e.wraps:
        e = e.energy
    return e


def _has_sum(e: Energy) -> bool:
    return _unwrapped(e).summands() is not None


def _label(e: Energy) -> str:
    e = _unwrapped(e)
    return e.label if isinstance(e, Named) else describe(e)


def _mask_node(node: Any, default: bool, frozen: bool) -> list[bool]:
    """Booleans for the array leaves of ``node`` in ``jax.tree`` flatten order."""
    if isinstance(node, Param):
        return [not frozen]
    if isinstance(node, Energy):
        return node.trainable_flags(_mask_node, frozen)
    children = jax.tree_util.tree_leaves(
        node, is_leaf=lambda x: x is not node and isinstance(x, (Energy, Param))
    )
    if len(children) == 1 and children[0] is node:
        return [default and _is_float_array(node)]
    out = []
    for c in children:
        out += _mask_node(c, default, frozen)
    return out


def _is_float_array(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact)


def trainable_mask(energy: Energy) -> Any:
    """A pytree of booleans shaped like ``energy``: True where ``fit`` trains a leaf.

    Use it with ``equinox.partition(energy, trainable_mask(energy))``.

    Example:
        >>> import composable_ebm as ebm
        >>> E = ebm.Gaussian("x", 0.0, cov=1.0) + 2.0 * ebm.Confinement("x")
        >>> import jax
        >>> jax.tree_util.tree_leaves(ebm.trainable_mask(E))
        [True, True, False, False, False]
    """
    leaves, treedef = jax.tree_util.tree_flatten(energy)
    mask = _mask_node(energy, False, False)
    if len(mask) != len(leaves):  # pragma: no cover - a structure this walker does not know
        raise RuntimeError(f"trainable_mask: {len(mask)} flags for {len(leaves)} leaves")
    return jax.tree_util.tree_unflatten(treedef, mask)
