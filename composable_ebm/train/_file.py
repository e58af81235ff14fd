"""The composable_ebm file format: a ``.npz`` archive of array leaves and a JSON header
(format version, each leaf's path, shape and dtype, the energy's terms), and reading it
back with one clear error for anything that is not such a file or is damaged."""

from __future__ import annotations

import io
import json
import pathlib
import zipfile
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FORMAT_VERSION", "FileFormatError", "encode", "pack", "read_file", "structure"]

FORMAT_VERSION = 2
_READABLE = (1, 2)  # version 1 recorded no structure: matched by order, shape and dtype


class FileFormatError(ValueError):
    """A file that is not a composable_ebm file, is corrupt, or has an unreadable version."""


def pack(tree: Any) -> tuple[list[np.ndarray], list[dict]]:
    """The array leaves of ``tree`` as NumPy arrays (PRNG keys as their key data)."""
    arrays, meta = [], []
    for leaf in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array)):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            meta.append({"key": str(jax.random.key_impl(leaf))})
            leaf = jax.random.key_data(leaf)
        else:
            meta.append({})
        arrays.append(np.asarray(leaf))
    return arrays, meta


def structure(tree: Any) -> list[str]:
    """The path of each array leaf of ``tree``, e.g. ``.terms[0].mean``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(eqx.filter(tree, eqx.is_array))
    return [jax.tree_util.keystr(p) for p, _ in flat]


def encode(
    arrays: list[np.ndarray],
    meta: list[dict],
    paths: list[str],
    terms: list[str] | None,
    info: dict | None,
) -> bytes:
    """The bytes of a file holding ``arrays`` and its header."""
    header = {
        "format": "composable_ebm",
        "version": FORMAT_VERSION,
        "leaves": [
            {"path": p, "shape": list(a.shape), "dtype": str(a.dtype), **m}
            for p, a, m in zip(paths, arrays, meta)
        ],
        "terms": terms,
        "info": info or {},
    }
    buf = io.BytesIO()
    np.savez(
        buf,
        __header__=np.frombuffer(json.dumps(header).encode(), np.uint8),
        **{f"leaf_{i}": a for i, a in enumerate(arrays)},
    )
    return buf.getvalue()


def _not_ours(path: pathlib.Path, why: str) -> FileFormatError:
    return FileFormatError(f"{path} is not a composable_ebm file ({why})")


def _corrupt(path: pathlib.Path, why: str) -> FileFormatError:
    return FileFormatError(f"{path} is corrupt ({why}); it cannot be loaded")


def _check_header(path: pathlib.Path, header: Any) -> dict:
    if not isinstance(header, dict) or header.get("format") != "composable_ebm":
        raise _not_ours(path, "its header does not name the composable_ebm format")
    version = header.get("version")
    if version not in _READABLE:
        raise FileFormatError(
            f"{path} has format version {version}; this composable_ebm reads versions "
            f"{', '.join(map(str, _READABLE))}"
        )
    leaves = header.get("leaves")
    if not isinstance(leaves, list) or not all(
        isinstance(m, dict) and "shape" in m and "dtype" in m for m in leaves
    ):
        raise _corrupt(path, "its header has no valid list of leaves")
    header.setdefault("info", {})
    return header


def read_file(path: pathlib.Path) -> tuple[dict, list[np.ndarray]]:
    """The header and the arrays of a composable_ebm file.

    Raises:
        ValueError: ``path`` is not a composable_ebm file, or it is corrupt (truncated,
            damaged bytes, arrays that disagree with the header).
        FileNotFoundError, IsADirectoryError, PermissionError: as opening ``path`` does.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path} is a folder, not a composable_ebm file") from None
    if not raw:
        raise _corrupt(path, "the file is empty")
    if not raw.startswith(b"PK"):
        raise _not_ours(path, f"it is not a .npz archive: it starts with {raw[:8]!r}")
    try:
        try:
            names = zipfile.ZipFile(io.BytesIO(raw)).namelist()
        except zipfile.BadZipFile as e:
            raise _corrupt(path, f"truncated or damaged archive: {e}") from None
        if "__header__.npy" not in names:
            shown = ", ".join(n.removesuffix(".npy") for n in names[:5])
            raise _not_ours(path, f"a .npz archive without a composable_ebm header: {shown}")
        with np.load(io.BytesIO(raw), allow_pickle=False) as f:
            try:
                header = json.loads(bytes(f["__header__"]).decode())
            except (ValueError, UnicodeDecodeError) as e:
                raise _corrupt(path, f"its header is unreadable: {e}") from None
            header = _check_header(path, header)
            arrays = []
            for i, m in enumerate(header["leaves"]):
                if f"leaf_{i}.npy" not in names:
                    raise _corrupt(path, f"array {i} of {len(header['leaves'])} is missing")
                a = f[f"leaf_{i}"]
                if list(a.shape) != list(m["shape"]) or str(a.dtype) != m["dtype"]:
                    raise _corrupt(
                        path,
                        f"array {i} has shape {a.shape} and dtype {a.dtype} but the header "
                        f"says shape {tuple(m['shape'])} and dtype {m['dtype']}",
                    )
                arrays.append(a)
    except FileFormatError:
        raise
    except Exception as e:  # any parse error of damaged bytes: CRC, zip, npy header, ...
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    return header, arrays
