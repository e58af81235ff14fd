"""Saving energies and training states: array leaves, bit-exact, written atomically, with the
energy's structure so a file is never loaded into the wrong terms."""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..energies import Energy, terms, trainable_mask
from ._atomic import check_writable, write_atomic
from ._file import FORMAT_VERSION, encode, pack, read_file, structure

__all__ = ["FORMAT_VERSION", "check_writable", "load", "load_tree", "save", "save_tree"]


def _nonfinite(where: str, arr: np.ndarray, strict: bool) -> str | None:
    """Why ``arr`` may not be saved or loaded: NaN anywhere, ±inf in a trained leaf."""
    if not np.issubdtype(arr.dtype, np.inexact):
        return None
    nan = int(np.isnan(arr).sum())
    inf = int(np.isinf(arr).sum()) if strict else 0
    if not nan and not inf:
        return None
    what = " and ".join(
        s for s in (f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else "") if s
    )
    return f"leaf {where} (shape {arr.shape}) holds {what} value(s)"


def term_lines(energy: Any) -> list[str] | None:
    """One line per top-level term: its label, class and variables with their shapes."""
    if not isinstance(energy, Energy):
        return None
    try:
        out = []
        for label, t in terms(energy):
            names = ", ".join(f"{k} {v.shape}" for k, v in t.space.items())
            out.append(f"{label}: {type(t).__name__} over {names}")
        return out
    except Exception:  # an energy this walker does not know: its leaf paths still count
        return None


def strict_mask(energy: Any) -> list[bool]:
    """Per array leaf of ``energy``: True where it is trained (±inf refused there)."""
    leaves = jax.tree_util.tree_leaves(energy)
    mask = jax.tree_util.tree_leaves(trainable_mask(energy)) if isinstance(energy, Energy) else []
    if len(mask) != len(leaves):
        mask = [True] * len(leaves)
    return [bool(m) for x, m in zip(leaves, mask) if eqx.is_array(x)]


def save_tree(
    path: str | os.PathLike,
    tree: Any,
    info: dict | None = None,
    *,
    energy: Any = None,
    strict: Sequence[bool] | None = None,
) -> pathlib.Path:
    """Write the array leaves of a pytree to ``path`` (``.npz``) atomically.

    The header records the format version, each leaf's path, shape and dtype, and the
    terms of ``energy`` (default: ``tree`` itself when it is an energy). NaN leaves (and
    infinite values where ``strict``) are refused before anything is written, so the
    previous file stays.
    """
    path = pathlib.Path(path)
    arrays, meta = pack(tree)
    strict = [True] * len(arrays) if strict is None else list(strict)
    paths = structure(tree)
    for where, a, s in zip(paths, arrays, strict):
        problem = _nonfinite(where, a, s)
        if problem:
            raise ValueError(f"refusing to save to {path}: {problem}; the file is left as it was")
    header_terms = term_lines(tree if energy is None else energy)
    data = encode(arrays, meta, paths, header_terms, info)
    return write_atomic(path, data)


def _listing(lines: Sequence[str] | None) -> str:
    if lines is None:
        return " (not recorded)"
    return "".join(f"\n    {s}" for s in lines) if lines else " (none)"


def _check_structure(path, header, arrays, leaves, like_paths, like_terms) -> None:
    file_paths = [m.get("path") for m in header["leaves"]]
    file_terms = header.get("terms")
    problem = None
    if len(leaves) != len(arrays):
        problem = (
            f"{path} holds {len(arrays)} arrays but the target structure has {len(leaves)}: "
            "it was saved from a different energy or training setup"
        )
    elif file_terms is not None and like_terms is not None and file_terms != like_terms:
        problem = f"{path} was saved from an energy with different terms than `like`"
    elif header["version"] >= 2 and file_paths != like_paths:
        i = next(i for i, (a, b) in enumerate(zip(file_paths, like_paths)) if a != b)
        problem = (
            f"{path} was saved from a different structure: array {i} is {file_paths[i]} in "
            f"the file but {like_paths[i]} in `like`"
        )
    if problem is None:
        return
    if file_terms != like_terms:
        problem += f"\n  the file has terms:{_listing(file_terms)}"
        problem += f"\n  `like` has terms:{_listing(like_terms)}"
    raise ValueError(problem)


def load_tree(
    path: str | os.PathLike,
    like: Any,
    *,
    energy: Any = None,
    strict: Sequence[bool] | None = None,
) -> tuple[Any, dict]:
    """Read leaves written by :func:`save_tree` into the structure of ``like``.

    Refuses, with a :class:`ValueError` naming both sides, a file whose terms (of
    ``energy``, default ``like``), leaf paths, shapes or dtypes differ from ``like``; a
    file that is not a composable_ebm file or is corrupt; and NaN leaves (±inf where
    ``strict``, default everywhere).
    """
    path = pathlib.Path(path)
    header, arrays = read_file(path)
    dynamic, static = eqx.partition(like, eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten(dynamic)
    like_paths = structure(like)
    like_terms = term_lines(like if energy is None else energy)
    _check_structure(path, header, arrays, leaves, like_paths, like_terms)
    if header["version"] < 2:
        warnings.warn(
            f"{path} was written by an older composable_ebm (format version "
            f"{header['version']}) that did not record the energy's structure: its arrays "
            "are matched by order, shape and dtype only. Save it again to record it",
            UserWarning,
            stacklevel=3,
        )
    strict = [True] * len(leaves) if strict is None else list(strict)
    out = []
    for i, (leaf, arr, meta, s) in enumerate(zip(leaves, arrays, header["leaves"], strict)):
        where = like_paths[i]
        if "key" in meta:
            want = (tuple(jax.random.key_data(leaf).shape), str(jax.random.key_data(leaf).dtype))
        else:
            want = (tuple(leaf.shape), str(leaf.dtype))
        got = (tuple(arr.shape), str(arr.dtype))
        if want != got:
            raise ValueError(
                f"{path}: array {i} ({where}) has shape {got[0]} and dtype {got[1]} in the "
                f"file but shape {want[0]} and dtype {want[1]} in the target"
            )
        problem = _nonfinite(where, arr, s)
        if problem:
            raise ValueError(
                f"{path}: {problem}; refusing to load non-finite parameters (the file is "
                "corrupt or was saved from a diverged run)"
            )
        if "key" in meta:
            out.append(jax.random.wrap_key_data(jnp.asarray(arr), impl=meta["key"]))
        else:
            out.append(jnp.asarray(arr))
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, out), static), header["info"]


def save(path: str | os.PathLike, energy: Any) -> pathlib.Path:
    """Save an energy's array leaves to ``path``, bit-exact, written atomically.

    The file records the format version, the energy's terms (class and variables of
    each) and every leaf's path, shape and dtype, so :func:`load` can refuse a file saved
    from a different energy. An energy holding NaN (or an infinite trainable value) is
    refused and the file at ``path`` is left as it was. Temporary files left by an
    earlier save of ``path`` that was killed are removed.

    Args:
        path: the file to write (conventionally ``.npz``).
        energy: the energy to save.

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        ValueError: the energy holds non-finite values.
        FileNotFoundError, PermissionError: the folder is missing or not writable.

    Example:
        >>> import tempfile, pathlib, jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.array([1.0, 2.0]), cov=1.0)
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "prior.npz"
        >>> _ = ebm.save(p, E)
        >>> ebm.load(p, ebm.Gaussian("x", jnp.zeros(2), cov=1.0)).mean.tolist()
        [1.0, 2.0]
    """
    info = {"kind": "energy", "type": type(energy).__name__}
    return save_tree(path, energy, info, strict=strict_mask(energy))


def load(path: str | os.PathLike, like: Any) -> Any:
    """Load an energy saved by :func:`save` into the structure of ``like``.

    ``like`` is an energy of the same structure (same terms in the same order, same
    variables, shapes and dtypes), e.g. a freshly built, untrained copy.

    Args:
        path: a file written by :func:`save`.
        like: the energy whose structure the file must match.

    Returns:
        ``like`` with the file's arrays.

    Raises:
        ValueError: ``path`` is not a composable_ebm file or is corrupt; it was saved
            from a different energy (the message lists the terms of both); or a leaf
            holds NaN (or an infinite trainable value).
        FileNotFoundError: ``path`` does not exist.

    Example:
        >>> import tempfile, pathlib, jax, composable_ebm as ebm
        >>> E = ebm.NeuralEnergy("x", (2,), hidden=(8,), key=jax.random.key(0))
        >>> p = ebm.save(pathlib.Path(tempfile.mkdtemp()) / "net.npz", E)
        >>> like = ebm.NeuralEnergy("x", (2,), hidden=(8,), key=jax.random.key(1))
        >>> bool((ebm.load(p, like).layers[0].weight == E.layers[0].weight).all())
        True
    """
    return load_tree(path, like, strict=strict_mask(like))[0]
