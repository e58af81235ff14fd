"""Terms of the same structure evaluated together: one ``vmap`` over stacked leaves.

A sum of many identical terms (an expert per sensor, a constraint per pair of beads) would
otherwise be unrolled into the trace term by term, so tracing, compiling and
differentiating it grow with every term. Here each term is relabelled to positional names
(:meth:`Energy.relabel`); terms whose relabelled structure, static fields and leaf shapes
agree form a group, their array leaves are stacked along a new axis, the values of their
variables are stacked the same way (or shared, when every term of the group reads the same
variable), and the group is evaluated by one ``vmap`` of a single term: the equinox
"ensemble" idiom. :func:`stack` (and :func:`~composable_ebm.sum`, for groups of at least
:data:`MIN_STACK` terms) store the stacked leaves, so the compiled program sees a handful of
arrays however many terms there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._space import Var
from ._base import Energy, Values
from ._relabel import positional
from ._wrappers import Named

__all__ = ["MIN_STACK", "Stacked", "evaluate_each", "evaluate_terms", "groups", "stack"]

#: Groups smaller than this are unrolled (stacking two or three terms saves nothing).
MIN_STACK = 4


def _pos(j: int) -> str:
    return positional("v", j)


Canonical = tuple  # (relabelled term, its variable names in order, its relabelled space)


def _canonical(t: Energy, space: Mapping[str, Var], shapes: Mapping[str, Any]) -> Canonical | None:
    """The term relabelled to positional names (see :data:`Canonical`), or None when it
    cannot be stacked: its class cannot relabel, the relabelled term is not over exactly
    the positional names, or a variable's shape is not known."""
    names = tuple(space)
    if any(shapes.get(n) is None for n in names):
        return None  # a variable whose shape only its values will tell
    try:
        canon = t.relabel({n: _pos(j) for j, n in enumerate(names)})
        cspace = None if canon is None else canon.space
        if cspace is None or set(cspace) != {_pos(j) for j in range(len(names))}:
            return None
    except (TypeError, ValueError, KeyError):
        return None
    return canon, names, cspace


def _key(c: Canonical, value_shapes: tuple) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(c[0])
    shapes = tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)
    key = (treedef, shapes, value_shapes, tuple(sorted(c[2].items())))
    hash(key)  # a static field that does not hash raises TypeError: never stacked
    return key


def _shapes(spaces: Sequence[Mapping[str, Var]]) -> dict[str, Any]:
    """Each variable's shape as the terms declare it (a term may leave it open)."""
    out: dict[str, Any] = {}
    for space in spaces:
        for n, v in space.items():
            if v.shape is not None:
                out.setdefault(n, v.shape)
    return out


def _plan(
    terms: Sequence[Energy], shapes: Mapping[str, Any] | None = None
) -> list[list[tuple[int, Any]]]:
    """Groups of (index, canonical form or None), by relabelled structure and by the
    shapes of the values each term reads (``shapes``: name → shape; by default what the
    terms declare)."""
    bare = [t.energy if isinstance(t, Named) else t for t in terms]  # labels never split
    spaces = [t.space for t in bare]
    shapes = _shapes(spaces) if shapes is None else shapes
    out: dict[Any, list[tuple[int, Any]]] = {}
    for i, (t, space) in enumerate(zip(bare, spaces)):
        c = _canonical(t, space, shapes)
        try:
            if c is None:
                raise TypeError
            key = ("stack", _key(c, tuple(shapes[n] for n in c[1])))
        except TypeError:
            key = ("single", i)
        out.setdefault(key, []).append((i, c))
    return list(out.values())


def groups(terms: Sequence[Energy]) -> list[list[int]]:
    """Indices of the terms, grouped by relabelled structure (singletons included).

    A term's own label (``.named``) does not count: labels are kept per member.

    Example:
        >>> import composable_ebm as ebm
        >>> ts = [ebm.Gaussian(f"x{i}", float(i), cov=1.0) for i in range(3)]
        >>> groups([*ts, ebm.Confinement("x0")])
        [[0, 1, 2], [3]]
    """
    return [[i for i, _ in g] for g in _plan(terms)]


class Stacked(Energy):
    """n terms of one structure as one energy: leaves stacked, evaluated by one ``vmap``.

    Build it with :func:`stack` (or let :func:`~composable_ebm.sum` do it). Each member may
    read its own variables or share them with the others; labels given with ``.named``
    are kept per member, so :func:`~composable_ebm.terms` and per-term energies of a
    sample list every member.

    Example:
        >>> import composable_ebm as ebm
        >>> S = ebm.stack(ebm.Gaussian(f"x{i}", float(i), cov=1.0) for i in range(5))
        >>> len(S), sorted(S.space)
        (5, ['x0', 'x1', 'x2', 'x3', 'x4'])
    """

    template: Any = eqx.field(static=True)  # treedef of one member, positionally named
    leaves: tuple[jax.Array, ...]  # each with a leading axis of size len(self)
    names: tuple[tuple[str, ...], ...] = eqx.field(static=True)  # per member, per position
    labels: tuple[str | None, ...] = eqx.field(static=True)
    merged: tuple[tuple[str, Var], ...] = eqx.field(static=True)

    variable_fields = None  # a stack is never stacked again (see relabel)

    def __init__(self, template, leaves, names, labels, merged):
        self.template, self.leaves, self.names = template, tuple(leaves), tuple(names)
        self.labels, self.merged = tuple(labels), tuple(merged)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def space(self) -> dict[str, Var]:
        return dict(self.merged)

    def _one(self, leaves: Sequence[jax.Array]) -> Energy:
        return jax.tree_util.tree_unflatten(self.template, list(leaves))

    def energies(self, values: Values) -> jax.Array:
        """The members' energies at ``values``, a vector of length ``len(self)``."""
        inputs, axes = {}, {}
        for j in range(len(self.names[0])):
            col = [n[j] for n in self.names]
            if all(n == col[0] for n in col):  # every member reads the same variable
                inputs[_pos(j)], axes[_pos(j)] = values[col[0]], None
            else:
                inputs[_pos(j)], axes[_pos(j)] = jnp.stack([values[n] for n in col]), 0

        def one(lv: tuple[jax.Array, ...], inp: Values) -> jax.Array:
            return self._one(lv).evaluate(inp)

        return jax.vmap(one, in_axes=(0, axes))(self.leaves, inputs)

    def evaluate(self, values: Values) -> jax.Array:
        return jnp.sum(self.energies(values))

    def member(self, i: int) -> Energy:
        """Member ``i`` as a term of its own (over its own variable names, labelled)."""
        t = self._one([x[i] for x in self.leaves])
        t = t.relabel({_pos(j): n for j, n in enumerate(self.names[i])})
        return Named(t, self.labels[i]) if self.labels[i] is not None else t

    def summands(self) -> tuple[Energy, ...]:
        return tuple(self.member(i) for i in range(len(self)))

    def trainable_flags(self, walk: Any, frozen: bool) -> list[bool]:
        return walk(self._one([x[0] for x in self.leaves]), False, frozen)

    def relabel(self, mapping: dict[str, str]) -> Energy | None:
        return None  # stacks of stacks would hide members from terms(): keep one level


def _stack_leaves(col: Sequence[Any]) -> jax.Array:
    if any(isinstance(x, jax.core.Tracer) for x in col):
        return jnp.stack(col)  # built inside a trace (grad, jit): stack in it
    # on the host: a device-side stack of n arrays compiles an n-operand concatenation
    return jnp.asarray(np.stack([np.asarray(x) for x in col]))


def _build(members: Sequence[Energy], canon: Sequence[Canonical]) -> Stacked:
    """Stack terms of one relabelled structure, given their canonical forms."""
    labels = [t.label if isinstance(t, Named) else None for t in members]
    template = jax.tree_util.tree_structure(canon[0][0])
    cols = zip(*(jax.tree_util.tree_leaves(c[0]) for c in canon))
    tspace = canon[0][2]
    merged = {n: tspace[_pos(j)] for _, names, _ in canon for j, n in enumerate(names)}
    leaves = [_stack_leaves(col) for col in cols]
    return Stacked(template, leaves, [c[1] for c in canon], labels, merged.items())


def stack(terms: Iterable[Energy]) -> Stacked:
    """Terms of one structure as one energy, evaluated by one ``vmap`` over stacked leaves.

    Terms have one structure when they are of the same class, with the same static
    settings and leaf shapes, whatever variables they read (``Gaussian("x1", …)`` and
    ``Gaussian("x2", …)`` stack, and so do terms conditioned or renamed the same way).
    Compiling a sampler for a stack costs about as much as for one term; evaluating it
    grows linearly with the number of terms. :func:`~composable_ebm.sum` stacks groups of
    identical terms by itself; call ``stack`` to insist (an error says which term differs).

    Args:
        terms: two or more energies of one structure (labels from ``.named`` are kept).

    Returns:
        A :class:`Stacked` energy, the sum of the terms.

    Raises:
        ValueError: a term's structure differs from the first term's (both named).

    Example:
        >>> import jax.numpy as jnp, composable_ebm as ebm
        >>> S = ebm.stack(ebm.Gaussian("x", float(m), cov=1.0) for m in range(4))
        >>> float(S(1.0))  # ½(1² + 0² + 1² + 2²)
        3.0
    """
    if isinstance(terms, Energy):
        raise TypeError("ebm.stack takes an iterable of energies, e.g. ebm.stack([E1, E2])")
    items = tuple(terms)
    if len(items) < 1:
        raise ValueError("ebm.stack needs at least one energy, got none")
    for i, t in enumerate(items):
        if not isinstance(t, Energy):
            raise TypeError(f"ebm.stack: term {i} is a {type(t).__name__}, not an ebm.Energy")
    plan = _plan(items)
    bad = next((i for g in plan for i, c in g if c is None), None)
    if bad is not None:
        raise ValueError(
            f"ebm.stack: term {bad} ({type(items[bad]).__name__} over "
            f"{sorted(items[bad].space)}) cannot be stacked: its class declares no "
            "variable_fields, or a variable's shape is not known; use ebm.sum to add it"
        )
    if len(plan) > 1:
        first, other = plan[0][0][0], plan[1][0][0]
        raise ValueError(
            f"ebm.stack needs terms of one structure (class, static settings, leaf shapes): "
            f"term {other} ({type(items[other]).__name__} over {sorted(items[other].space)}) "
            f"differs from term {first} ({type(items[first]).__name__} over "
            f"{sorted(items[first].space)}); use ebm.sum to add terms of several structures"
        )
    return _build(items, [c for _, c in plan[0]])


def stack_groups(terms: Sequence[Energy], shapes: Mapping[str, Any] | None = None) -> list[Energy]:
    """The terms with every group of at least :data:`MIN_STACK` identical ones stacked.

    A stack stands where its first member stood; every other term keeps its place.
    """
    first: dict[int, Stacked] = {}
    inside: set[int] = set()
    for group in _plan(terms, shapes):
        if len(group) >= MIN_STACK:
            first[group[0][0]] = _build([terms[i] for i, _ in group], [c for _, c in group])
            inside.update(i for i, _ in group)
    return [first.get(i, t) for i, t in enumerate(terms) if i in first or i not in inside]


def evaluate_each(terms: Sequence[Energy], values: Values) -> list[jax.Array]:
    """Each term's energy at ``values``, groups of identical terms evaluated stacked."""
    out: list[Any] = [None] * len(terms)
    for group in _plan(terms, {k: jnp.shape(v) for k, v in values.items()}):
        if len(group) >= MIN_STACK:
            stacked = _build([terms[i] for i, _ in group], [c for _, c in group])
            es = stacked.energies({k: values[k] for k in stacked.space})
            for j, (i, _) in enumerate(group):
                out[i] = es[j]
        else:
            for i, _ in group:
                out[i] = terms[i].evaluate({k: values[k] for k in terms[i].space})
    return out


def evaluate_terms(terms: Sequence[Energy], values: Values) -> jax.Array:
    """Σ terms at ``values``: groups of at least :data:`MIN_STACK` identical terms stacked."""
    total = None
    for t in stack_groups(terms, {k: jnp.shape(v) for k, v in values.items()}):
        e = t.evaluate({k: values[k] for k in t.space})
        total = e if total is None else total + e
    return total
