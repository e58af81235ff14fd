"""Saving energies and training states: array leaves, bit-exact, written atomically."""

from __future__ import annotations

import io
import json
import os
import pathlib
import tempfile
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FORMAT_VERSION", "check_writable", "load", "load_tree", "save", "save_tree"]

FORMAT_VERSION = 1


def _pack(tree: Any) -> tuple[list[np.ndarray], list[dict]]:
    arrays, meta = [], []
    for leaf in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array)):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            meta.append({"key": str(jax.random.key_impl(leaf))})
            leaf = jax.random.key_data(leaf)
        else:
            meta.append({})
        arrays.append(np.asarray(leaf))
    return arrays, meta


def _open_temp(path: pathlib.Path) -> tuple[int, str, pathlib.Path]:
    """A new temporary file beside ``path``; errors name the path and the folder."""
    folder = path.parent if str(path.parent) else pathlib.Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise PermissionError(
            f"cannot save to {path}: folder {folder} is not writable ({e})"
        ) from e
    return fd, tmp, folder


def save_tree(path: str | os.PathLike, tree: Any, info: dict | None = None) -> pathlib.Path:
    """Write the array leaves of a pytree to ``path`` (``.npz``) atomically.

    The file is written to a temporary file in the same folder, flushed to disk, then
    renamed over ``path``: a crash never leaves a half-written file behind.
    """
    path = pathlib.Path(path)
    arrays, meta = _pack(tree)
    header = {
        "format": "composable_ebm",
        "version": FORMAT_VERSION,
        "leaves": [
            {"shape": list(a.shape), "dtype": str(a.dtype), **m} for a, m in zip(arrays, meta)
        ],
        "info": info or {},
    }
    buf = io.BytesIO()
    np.savez(
        buf,
        __header__=np.frombuffer(json.dumps(header).encode(), np.uint8),
        **{f"leaf_{i}": a for i, a in enumerate(arrays)},
    )
    fd, tmp, folder = _open_temp(path)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as a plain open() would (mkstemp makes it 0600)
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fsync_dir(folder: pathlib.Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike) -> None:
    """Raise now, before any work, if ``path`` cannot be written (folder missing or
    read-only)."""
    path = pathlib.Path(path)
    fd, tmp, _ = _open_temp(path)
    os.close(fd)
    pathlib.Path(tmp).unlink(missing_ok=True)


def load_tree(path: str | os.PathLike, like: Any) -> tuple[Any, dict]:
    """Read leaves written by :func:`save_tree` into the structure of ``like``.

    Raises an error naming the first leaf whose shape or dtype differs from ``like``.
    """
    path = pathlib.Path(path)
    with np.load(path) as f:
        header = json.loads(bytes(f["__header__"]).decode())
        if header.get("format") != "composable_ebm":
            raise ValueError(f"{path} is not a composable_ebm file")
        if header.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} has format version {header.get('version')}; this composable_ebm "
                f"reads version {FORMAT_VERSION}"
            )
        arrays = [f[f"leaf_{i}"] for i in range(len(header["leaves"]))]
    dynamic, static = eqx.partition(like, eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten(dynamic)
    if len(leaves) != len(arrays):
        raise ValueError(
            f"{path} holds {len(arrays)} arrays but the target structure has {len(leaves)}: "
            "it was saved from a different energy or training setup"
        )
    out = []
    for i, (leaf, arr, meta) in enumerate(zip(leaves, arrays, header["leaves"])):
        if "key" in meta:
            arr = jax.random.wrap_key_data(jnp.asarray(arr), impl=meta["key"])
            want = (tuple(jax.random.key_data(leaf).shape), str(jax.random.key_data(leaf).dtype))
            got = (tuple(np.asarray(jax.random.key_data(arr)).shape), str(meta["dtype"]))
        else:
            want, got = (tuple(leaf.shape), str(leaf.dtype)), (tuple(arr.shape), str(arr.dtype))
            arr = jnp.asarray(arr)
        if want != got:
            raise ValueError(
                f"{path}: array {i} has shape {got[0]} and dtype {got[1]} in the file but "
                f"shape {want[0]} and dtype {want[1]} in the target"
            )
        out.append(arr)
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, out), static), header["info"]


def save(path: str | os.PathLike, energy: Any) -> pathlib.Path:
    """Save an energy's array leaves to ``path``, bit-exact, written atomically.

    Example:
        >>> import tempfile, pathlib, jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.array([1.0, 2.0]), cov=1.0)
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "prior.npz"
        >>> _ = ebm.save(p, E)
        >>> ebm.load(p, ebm.Gaussian("x", jnp.zeros(2), cov=1.0)).mean.tolist()
        [1.0, 2.0]
    """
    return save_tree(path, energy, {"kind": "energy", "type": type(energy).__name__})


def load(path: str | os.PathLike, like: Any) -> Any:
    """Load an energy saved by :func:`save` into the structure of ``like``.

    ``like`` is an energy of the same structure (same classes, shapes and dtypes), e.g. a
    freshly built, untrained copy.

    Example:
        >>> import tempfile, pathlib, jax, composable_ebm as ebm
        >>> E = ebm.NeuralEnergy("x", (2,), hidden=(8,), key=jax.random.key(0))
        >>> p = ebm.save(pathlib.Path(tempfile.mkdtemp()) / "net.npz", E)
        >>> like = ebm.NeuralEnergy("x", (2,), hidden=(8,), key=jax.random.key(1))
        >>> bool((ebm.load(p, like).layers[0].weight == E.layers[0].weight).all())
        True
    """
    return load_tree(path, like)[0]
