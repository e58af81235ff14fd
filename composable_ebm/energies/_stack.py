"""Terms of the same structure evaluated together: one ``vmap`` over stacked leaves.

A sum of many identical terms (an expert per sensor, a constraint per pair of beads) would
otherwise be unrolled into the trace term by term, so tracing, compiling and
differentiating it grow with every term. Here each term is relabelled to positional names
(:meth:`Energy.relabel`); terms whose relabelled structure, static fields and leaf shapes
agree form a group, their array leaves are stacked along a new axis, the values of their
variables are stacked the same way (or shared, when every term of the group reads the same
variable), and the group is evaluated by one ``vmap`` of a single term: the equinox
"ensemble" idiom, found automatically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ._base import Energy, Values

__all__ = ["MIN_STACK", "evaluate_terms", "groups"]

#: Groups smaller than this are unrolled (stacking two or three terms saves nothing).
MIN_STACK = 4


def _canonical(t: Energy) -> tuple[Any, tuple[str, ...]] | None:
    """(relabelled term, its variable names in position order), or None."""
    names = tuple(t.space)
    canon = t.relabel({n: f"_v{j}" for j, n in enumerate(names)})
    return None if canon is None else (canon, names)


def _key(canon: Energy) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(canon)
    shapes = tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)
    return treedef, shapes


def groups(terms: Sequence[Energy]) -> list[list[int]]:
    """Indices of the terms, grouped by relabelled structure (singletons included).

    Example:
        >>> import composable_ebm as ebm
        >>> ts = [ebm.Gaussian(f"x{i}", float(i), cov=1.0) for i in range(3)]
        >>> groups([*ts, ebm.Confinement("x0")])
        [[0, 1, 2], [3]]
    """
    out: dict[Any, list[int]] = {}
    for i, t in enumerate(terms):
        c = _canonical(t)
        try:
            key = ("stack", _key(c[0])) if c is not None else ("single", i)
            hash(key)
        except TypeError:  # a static field that does not hash: never stacked
            key = ("single", i)
        out.setdefault(key, []).append(i)
    return list(out.values())


def _evaluate_group(members: list[Energy], values: Values) -> jax.Array:
    canon = [_canonical(t) for t in members]
    template = canon[0][0]
    leaves = [jax.tree_util.tree_leaves(c) for c, _ in canon]
    treedef = jax.tree_util.tree_structure(template)
    stacked = [jnp.stack(col) for col in zip(*leaves)]
    inputs, axes = {}, {}
    for j in range(len(canon[0][1])):
        names = [n[j] for _, n in canon]
        if all(n == names[0] for n in names):  # every term reads the same variable
            inputs[f"_v{j}"], axes[f"_v{j}"] = values[names[0]], None
        else:
            inputs[f"_v{j}"], axes[f"_v{j}"] = jnp.stack([values[n] for n in names]), 0

    def one(lv: list[jax.Array], inp: Values) -> jax.Array:
        return jax.tree_util.tree_unflatten(treedef, lv).evaluate(inp)

    return jnp.sum(jax.vmap(one, in_axes=(0, axes))(stacked, inputs))


def evaluate_terms(terms: Sequence[Energy], values: Values) -> jax.Array:
    """Σ terms at ``values``: groups of at least :data:`MIN_STACK` identical terms stacked."""
    total = None
    for idx in groups(terms):
        if len(idx) >= MIN_STACK:
            e = _evaluate_group([terms[i] for i in idx], values)
        else:
            e = None
            for i in idx:
                t = terms[i]
                ei = t.evaluate({k: values[k] for k in t.space})
                e = ei if e is None else e + ei
        total = e if total is None else total + e
    return total
