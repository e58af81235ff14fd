"""Recompilation you can see: a warning when a sampler is compiled again only because an
energy's function is a new object with the same code (a lambda rebuilt in a loop)."""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import equinox as eqx
import jax

__all__ = ["note_trace", "pending"]

# settings and code of every traced sampler → the identities of its functions
_SEEN: dict[tuple, tuple[int, ...]] = {}
_WARNED: set[tuple] = set()
_PENDING: list[str] = []  # messages found while tracing, warned by ``sample`` afterwards
_MAX_SEEN = 512


def _functions(tree: Any, out: list, depth: int = 0) -> list:
    """The Python functions held anywhere in an energy (static fields included)."""
    if depth > 50:
        return out
    if isinstance(tree, types.FunctionType):
        out.append(tree)
    elif isinstance(tree, eqx.Module):
        for f in dataclasses.fields(tree):
            _functions(getattr(tree, f.name, None), out, depth + 1)
    elif isinstance(tree, (tuple, list)):
        for x in tree:
            _functions(x, out, depth + 1)
    elif isinstance(tree, dict):
        for x in tree.values():
            _functions(x, out, depth + 1)
    return out


def _code(fn: types.FunctionType) -> tuple:
    c = fn.__code__
    return (c.co_filename, c.co_firstlineno, c.co_code, repr(c.co_consts))


def _shapes(tree: Any) -> tuple:
    """Array leaves by path, shape and dtype (not the treedef: it shows the functions)."""
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(tree, eqx.is_array))[0]
    return tuple((jax.tree_util.keystr(p), tuple(x.shape), str(x.dtype)) for p, x in leaves)


def note_trace(energy: Any, settings: tuple) -> None:
    """Called when a sampler is traced: note a warning (once per function) when the same
    code and the same settings were traced before with other function objects."""
    fns = _functions(energy, [])
    if not fns:
        return
    key = (tuple(_code(f) for f in fns), _shapes(energy), type(energy).__name__, settings)
    ids = tuple(id(f) for f in fns)
    before = _SEEN.get(key)
    if len(_SEEN) >= _MAX_SEEN:
        _SEEN.clear()
    _SEEN[key] = ids
    if before is None or before == ids:
        return
    changed = [f for f, old in zip(fns, before) if id(f) != old]
    fn = changed[0] if changed else fns[0]
    where = (fn.__code__.co_filename, fn.__code__.co_firstlineno)
    if where in _WARNED:
        return
    _WARNED.add(where)
    _PENDING.append(
        f"ebm.sample compiled its sampler again for an energy whose function "
        f"{fn.__qualname__!r} ({where[0]}:{where[1]}) has the same code as before but is a "
        "new object: a function or lambda defined inside a loop or another function is a new "
        "object on every pass, and each new object costs a full compilation. Define the "
        "function once, outside the loop, and pass the numbers that change through "
        "E.condition(...) or a weight, which reuse the compiled sampler"
    )


def pending() -> list[str]:
    """The warnings noted since the last call (emitted by ``sample`` at the user's call)."""
    out = list(_PENDING)
    _PENDING.clear()
    return out
