"""Fingerprints of what a trace bakes in: values, classes and the code of functions.

A traced sampler is kept across processes (``_export``) under a key made here. Values are
taken by value (arrays by their bytes); classes and functions of the user's by their code,
constants, closures, the globals and module attributes they read, and their class
attributes; those of libraries by name (their versions are in the key, and this library's
own source by a hash). Anything without a fingerprint that can be trusted raises
:class:`Unstable`, and the caller compiles as usual.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import pathlib
import types
from typing import Any

import equinox as eqx
import jax
import numpy as np

__all__ = ["FLAGS", "VERSIONS", "Unstable", "fingerprint", "is_key"]

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
FLAGS = (
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


VERSIONS = (*(_version(p) for p in ("jax", "jaxlib", "numpyro", "equinox")), _source_hash())


class Unstable(Exception):
    """Something in the static structure has no fingerprint that is stable across runs."""


def fingerprint(obj: Any, h: Any, depth: int = 0, seen: frozenset = frozenset()) -> None:
    """Feed a fingerprint of ``obj`` (a static value: compared by value) into ``h``."""
    if depth > 60:
        raise Unstable("too deep")
    put = h.update
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        put(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, (jax.Array, np.ndarray, np.generic)):
        if isinstance(obj, jax.core.Tracer):
            raise Unstable("a traced value")
        if isinstance(obj, jax.Array) and is_key(obj):
            put(f"key:{jax.random.key_impl(obj)};".encode())
            obj = jax.random.key_data(obj)
        a = np.asarray(obj)
        put(f"arr{a.shape}{a.dtype};".encode() + a.tobytes())
    elif isinstance(obj, (tuple, list)):
        put(f"{type(obj).__name__}[{len(obj)}".encode())
        for x in obj:
            fingerprint(x, h, depth + 1, seen)
        put(b"]")
    elif isinstance(obj, (set, frozenset)):  # iteration order varies between processes
        parts = []
        for x in obj:
            hx = hashlib.sha256()
            fingerprint(x, hx, depth + 1, seen)
            parts.append(hx.digest())
        put(b"set" + b"".join(sorted(parts)))
    elif isinstance(obj, dict):
        put(b"{")
        for k, v in obj.items():
            fingerprint(k, h, depth + 1, seen)
            fingerprint(v, h, depth + 1, seen)
        put(b"}")
    elif isinstance(obj, type):
        _class(obj, h, depth, seen)
    elif isinstance(obj, types.FunctionType):
        _function(obj, h, depth, seen)
    elif isinstance(obj, types.MethodType):
        fingerprint(obj.__func__, h, depth + 1, seen)
        fingerprint(obj.__self__, h, depth + 1, seen)
    elif isinstance(obj, (types.BuiltinFunctionType, types.ModuleType)):
        put(f"lib:{getattr(obj, '__module__', '')}.{obj.__name__};".encode())
    elif isinstance(obj, eqx.Module) or dataclasses.is_dataclass(obj):
        _class(type(obj), h, depth, seen)  # its methods are traced too
        put(b"(")
        for f in dataclasses.fields(obj):
            put(f.name.encode())
            fingerprint(getattr(obj, f.name, None), h, depth + 1, seen)
        put(b")")
    elif isinstance(obj, jax.tree_util.PyTreeDef):  # its nodes' classes, by their code
        put(b"treedef")
        fingerprint(jax.tree_util.tree_unflatten(obj, [0] * obj.num_leaves), h, depth + 1, seen)
    elif not _library(type(obj)) and hasattr(obj, "__dict__"):  # a user's object
        _class(type(obj), h, depth, seen)
        fingerprint(vars(obj), h, depth + 1, seen)
    else:
        r = repr(obj)
        if " at 0x" in r or " object at " in r or not _library(type(obj)):
            raise Unstable(r)
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
            fingerprint(attr, h, depth + 1, seen)


def _function(fn: types.FunctionType, h: Any, depth: int, seen: frozenset) -> None:
    module = fn.__module__ or ""
    h.update(f"fn:{module}.{fn.__qualname__};".encode())
    if module.split(".")[0] in _LIBRARIES or id(fn) in seen:
        return  # a library's function: its version is in the key; or a recursion
    seen = seen | {id(fn)}
    _code(fn.__code__, h)
    fingerprint(fn.__defaults__, h, depth + 1, seen)
    fingerprint(fn.__kwdefaults__, h, depth + 1, seen)
    for cell in fn.__closure__ or ():
        fingerprint(cell.cell_contents, h, depth + 1, seen)
    names = sorted(_names(fn.__code__))
    for name in names:  # globals it reads: their values count
        if name in fn.__globals__:
            h.update(name.encode())
            value = fn.__globals__[name]
            fingerprint(value, h, depth + 1, seen)
            if isinstance(value, types.ModuleType) and not _library_name(value.__name__):
                for attr in names:  # a user's module: the attributes this code reads
                    if hasattr(value, attr):
                        h.update(f"{name}.{attr}".encode())
                        fingerprint(getattr(value, attr), h, depth + 1, seen)


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


def is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
