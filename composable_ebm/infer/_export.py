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

import dataclasses
import hashlib
import importlib.metadata
import os
import pathlib
import pickle
import types
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .._cache import cache_dir

__all__ = ["call", "enabled"]

_MEMORY: dict[str, tuple[Callable, Any, tuple]] = {}
# functions of these packages are named, not fingerprinted: their versions (and, for this
# library, a hash of its own source) are in every key
_LIBRARIES = (
    "numpy",
    "jax",
    "jaxlib",
    "numpyro",
    "equinox",
    "optax",
    "builtins",
    "math",
    "composable_ebm",
)


# JAX settings that change what a trace produces
_FLAGS = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_numpy_dtype_promotion",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
    "jax_debug_nans",
    "jax_disable_jit",
)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _source_hash() -> str:
    """This library's source, so an edited checkout never reuses an older trace."""
    h = hashlib.sha256()
    root = pathlib.Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


_VERSIONS = (*(_version(p) for p in ("jax", "jaxlib", "numpyro", "equinox")), _source_hash())


class _Unstable(Exception):
    """Something in the static structure has no fingerprint that is stable across runs."""


def enabled() -> bool:
    """Whether traced samplers are kept on disk (the compilation cache on, not turned off)."""
    return cache_dir() is not None and os.environ.get("EBM_EXPORT_CACHE", "1") != "0"


def _fp(obj: Any, h: Any, depth: int = 0, seen: frozenset = frozenset()) -> None:
    """Feed a fingerprint of ``obj`` (a static value: compared by value) into ``h``."""
    if depth > 60:
        raise _Unstable("too deep")
    put = h.update
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        put(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, (jax.Array, np.ndarray, np.generic)):
        if isinstance(obj, jax.core.Tracer):
            raise _Unstable("a traced value")
        if isinstance(obj, jax.Array) and _is_key(obj):
            put(f"key:{jax.random.key_impl(obj)};".encode())
            obj = jax.random.key_data(obj)
        a = np.asarray(obj)
        put(f"arr{a.shape}{a.dtype};".encode() + a.tobytes())
    elif isinstance(obj, (tuple, list)):
        put(f"{type(obj).__name__}[{len(obj)}".encode())
        for x in obj:
            _fp(x, h, depth + 1, seen)
        put(b"]")
    elif isinstance(obj, (set, frozenset)):  # iteration order varies between processes
        parts = []
        for x in obj:
            hx = hashlib.sha256()
            _fp(x, hx, depth + 1, seen)
            parts.append(hx.digest())
        put(b"set" + b"".join(sorted(parts)))
    elif isinstance(obj, dict):
        put(b"{")
        for k, v in obj.items():
            _fp(k, h, depth + 1, seen)
            _fp(v, h, depth + 1, seen)
        put(b"}")
    elif isinstance(obj, type):
        _class(obj, h, depth, seen)
    elif isinstance(obj, types.FunctionType):
        _function(obj, h, depth, seen)
    elif isinstance(obj, types.MethodType):
        _fp(obj.__func__, h, depth + 1, seen)
        _fp(obj.__self__, h, depth + 1, seen)
    elif isinstance(obj, (types.BuiltinFunctionType, types.ModuleType)):
        put(f"lib:{getattr(obj, '__module__', '')}.{obj.__name__};".encode())
    elif isinstance(obj, eqx.Module) or dataclasses.is_dataclass(obj):
        _class(type(obj), h, depth, seen)  # its methods are traced too
        put(b"(")
        for f in dataclasses.fields(obj):
            put(f.name.encode())
            _fp(getattr(obj, f.name, None), h, depth + 1, seen)
        put(b")")
    elif isinstance(obj, jax.tree_util.PyTreeDef):  # its nodes' classes, by their code
        put(b"treedef")
        _fp(jax.tree_util.tree_unflatten(obj, [0] * obj.num_leaves), h, depth + 1, seen)
    elif not _library(type(obj)) and hasattr(obj, "__dict__"):  # a user's object
        _class(type(obj), h, depth, seen)
        _fp(vars(obj), h, depth + 1, seen)
    else:
        r = repr(obj)
        if " at 0x" in r or " object at " in r or not _library(type(obj)):
            raise _Unstable(r)
        put(f"{type(obj).__module__}.{type(obj).__qualname__}:{r};".encode())


def _library(cls: type) -> bool:
    return _library_name(cls.__module__)


def _library_name(module: str | None) -> bool:
    return (module or "").split(".")[0] in _LIBRARIES


def _class(cls: type, h: Any, depth: int, seen: frozenset) -> None:
    """A class by name; a class of the user's by its methods and class attributes too."""
    h.update(f"cls:{cls.__module__}.{cls.__qualname__};".encode())
    if id(cls) in seen:
        return
    seen = seen | {id(cls)}
    for klass in cls.__mro__:
        if (klass.__module__ or "").split(".")[0] in _LIBRARIES:
            continue
        for name, attr in sorted(vars(klass).items()):
            if name == "_abc_impl" or (name.startswith("__") and name != "__call__"):
                continue  # Python's bookkeeping, not behaviour
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            elif isinstance(attr, property):
                attr = (attr.fget, attr.fset)
            elif isinstance(attr, dataclasses.Field):
                continue
            h.update(f"{klass.__qualname__}.{name}".encode())
            _fp(attr, h, depth + 1, seen)


def _function(fn: types.FunctionType, h: Any, depth: int, seen: frozenset) -> None:
    module = fn.__module__ or ""
    h.update(f"fn:{module}.{fn.__qualname__};".encode())
    if module.split(".")[0] in _LIBRARIES or id(fn) in seen:
        return  # a library's function: its version is in the key; or a recursion
    seen = seen | {id(fn)}
    _code(fn.__code__, h)
    _fp(fn.__defaults__, h, depth + 1, seen)
    _fp(fn.__kwdefaults__, h, depth + 1, seen)
    for cell in fn.__closure__ or ():
        _fp(cell.cell_contents, h, depth + 1, seen)
    names = sorted(_names(fn.__code__))
    for name in names:  # globals it reads: their values count
        if name in fn.__globals__:
            h.update(name.encode())
            value = fn.__globals__[name]
            _fp(value, h, depth + 1, seen)
            if isinstance(value, types.ModuleType) and not _library_name(value.__name__):
                for attr in names:  # a user's module: the attributes this code reads
                    if hasattr(value, attr):
                        h.update(f"{name}.{attr}".encode())
                        _fp(getattr(value, attr), h, depth + 1, seen)


def _code(code: types.CodeType, h: Any) -> None:
    h.update(code.co_code)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code(c, h)
        else:
            h.update(repr(c).encode())
    h.update(repr(code.co_names).encode())


def _names(code: types.CodeType) -> set[str]:
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out |= _names(c)
    return out


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_raw(leaves: list) -> tuple[list, tuple]:
    """Typed PRNG keys as their raw data (what ``jax.export`` takes), and where they were."""
    impls = tuple(str(jax.random.key_impl(x)) if _is_key(x) else None for x in leaves)
    return [jax.random.key_data(x) if _is_key(x) else x for x in leaves], impls


def _from_raw(leaves: list, impls: tuple) -> list:
    return [x if i is None else jax.random.wrap_key_data(x, impl=i) for x, i in zip(leaves, impls)]


def _key(static: Any, in_tree: Any, raw: list, impls: tuple, name: str) -> str:
    h = hashlib.sha256()
    flags = [getattr(jax.config, f, None) for f in _FLAGS]
    _fp((name, _VERSIONS, jax.default_backend(), flags), h)
    _fp(static, h)  # the structure, with every static field, by value
    # the inputs by path (the treedef's own text shows functions by their address)
    paths = jax.tree_util.tree_flatten_with_path(jax.tree_util.tree_unflatten(in_tree, raw))[0]
    h.update(repr([jax.tree_util.keystr(p) for p, _ in paths]).encode())
    _fp([(tuple(x.shape), str(x.dtype)) for x in raw], h)
    _fp(impls, h)
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
