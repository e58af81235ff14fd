"""Compiled samplers kept across processes with ``jax.export``: a new process skips tracing.

JAX's persistent compilation cache (``_cache.py``) skips XLA's compilation in a new
process, but the sampler is still traced first (seconds for NUTS). Here the traced program
is serialised with ``jax.export`` next to that cache, keyed by a fingerprint of everything
that is baked into it: the energy's structure and static settings (the code, constants,
closure values and referenced globals of its Python functions included), the shapes and
dtypes of every array argument, the kernel and the driver's settings, and the versions of
JAX, jaxlib, NumPyro and composable_ebm. Anything that cannot be fingerprinted for sure (an
object whose ``repr`` shows a memory address) turns the export cache off for that call,
so a stale entry is never used. ``EBM_CACHE_DIR=""`` turns it off with the compilation
cache; ``EBM_EXPORT_CACHE=0`` turns off only this part.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax

from .._cache import cache_dir
from ._fingerprint import FLAGS, VERSIONS, fingerprint, is_key

__all__ = ["call", "enabled"]

_MEMORY: dict[str, tuple[Callable, Any, tuple]] = {}
_VERSIONS = VERSIONS  # (a test stands in another JAX version here)


def enabled() -> bool:
    """Whether traced samplers are kept on disk (the compilation cache on, not turned off)."""
    return cache_dir() is not None and os.environ.get("EBM_EXPORT_CACHE", "1") != "0"


def _to_raw(leaves: list) -> tuple[list, tuple]:
    """Typed PRNG keys as their raw data (what ``jax.export`` takes), and where they were."""
    impls = tuple(str(jax.random.key_impl(x)) if is_key(x) else None for x in leaves)
    return [jax.random.key_data(x) if is_key(x) else x for x in leaves], impls


def _from_raw(leaves: list, impls: tuple) -> list:
    return [x if i is None else jax.random.wrap_key_data(x, impl=i) for x, i in zip(leaves, impls)]


def _key(static: Any, in_tree: Any, raw: list, impls: tuple, name: str) -> str:
    h = hashlib.sha256()
    flags = [getattr(jax.config, f, None) for f in FLAGS]
    fingerprint((name, _VERSIONS, jax.default_backend(), flags), h)
    fingerprint(static, h)  # the structure, with every static field, by value
    # the inputs by path (the treedef's own text shows functions by their address)
    paths = jax.tree_util.tree_flatten_with_path(jax.tree_util.tree_unflatten(in_tree, raw))[0]
    h.update(repr([jax.tree_util.keystr(p) for p, _ in paths]).encode())
    fingerprint([(tuple(x.shape), str(x.dtype)) for x in raw], h)
    fingerprint(impls, h)
    return h.hexdigest()[:40]


def _folder() -> pathlib.Path:
    """Beside the compilation cache: ``.../composable_ebm/export`` for the default one."""
    xla = pathlib.Path(cache_dir())
    return xla.parent / ("export" if xla.name == "xla" else f"{xla.name}-export")


def _export(fn: Callable, static: Any, in_tree: Any, raw: list, impls: tuple) -> tuple:
    out_info: dict[str, Any] = {}

    def flat(*leaves):
        args, kwargs = eqx.combine(
            jax.tree_util.tree_unflatten(in_tree, _from_raw(leaves, impls)), static
        )
        out_leaves, out_tree = jax.tree_util.tree_flatten(fn(*args, **kwargs))
        out_raw, out_impls = _to_raw(out_leaves)
        out_info["tree"], out_info["impls"] = out_tree, out_impls
        return out_raw

    specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in raw]
    exported = jax.export.export(jax.jit(flat))(*specs)
    skeleton = jax.tree_util.tree_unflatten(
        out_info["tree"], list(range(out_info["tree"].num_leaves))
    )
    return exported, skeleton, out_info["impls"]


def _write(path: pathlib.Path, exported: Any, skeleton: Any, impls: tuple) -> None:
    try:
        blob = pickle.dumps((bytes(exported.serialize()), skeleton, impls))
    except Exception:  # no flatbuffers, or an output that does not pickle: memory only
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: run without writing


def _read(path: pathlib.Path) -> tuple | None:
    try:
        data, skeleton, impls = pickle.loads(path.read_bytes())
        return jax.export.deserialize(bytearray(data)), skeleton, impls
    except Exception:  # missing, truncated or from another version: trace again
        return None


def call(fn: Callable, jitted: Callable, name: str, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` compiled once per structure, its trace kept on disk.

    Array leaves are the program's inputs; everything else is static and part of the key.
    ``jitted`` (``eqx.filter_jit(fn)``) runs it when the static part has no stable
    fingerprint.
    """
    dyn, static = eqx.partition((args, kwargs), eqx.is_array)
    leaves, in_tree = jax.tree_util.tree_flatten(dyn)
    raw, impls = _to_raw(leaves)
    try:
        key = _key(static, in_tree, raw, impls, name)
    except Exception:  # no stable fingerprint (or one that fails): compile as usual
        return jitted(*args, **kwargs)
    entry = _MEMORY.get(key)
    if entry is None:
        path = _folder() / f"{name}-{key}.bin"
        found = _read(path)
        if found is None:
            try:
                found = _export(fn, static, in_tree, raw, impls)
            except Exception:  # the user's error, or one jax.export cannot take:
                return jitted(*args, **kwargs)  # the usual path raises or runs it
            _write(path, *found)
        exported, skeleton, out_impls = found
        entry = (jax.jit(exported.call), jax.tree_util.tree_structure(skeleton), out_impls)
        _MEMORY[key] = entry
    run, out_tree, out_impls = entry
    return jax.tree_util.tree_unflatten(out_tree, _from_raw(list(run(*raw)), out_impls))
