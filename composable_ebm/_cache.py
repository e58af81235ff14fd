"""The persistent compilation cache: compiled samplers and training steps kept on disk, so a
script that runs again skips XLA's compilation.

On by default in a user cache folder (``$XDG_CACHE_HOME/composable_ebm/xla``, else
``~/.cache/composable_ebm/xla``). The ``EBM_CACHE_DIR`` environment variable, read when
``composable_ebm`` is imported, moves it; ``EBM_CACHE_DIR=""`` turns it off. A cache that
JAX was already given (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is.
JAX keys every entry by the program, the JAX and XLA versions and the device, so a changed
energy or a new JAX never reuses a stale entry.
"""

from __future__ import annotations

import os
import pathlib

import jax

__all__ = ["ENV", "cache_dir", "configure"]

ENV = "EBM_CACHE_DIR"


def _default() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "composable_ebm" / "xla"


def cache_dir() -> str | None:
    """The folder JAX's persistent compilation cache uses now, or None when it is off."""
    return jax.config.jax_compilation_cache_dir or None


def configure() -> str | None:
    """Turn the persistent cache on as ``EBM_CACHE_DIR`` says; returns the folder used."""
    wanted = os.environ.get(ENV)
    if wanted == "":
        return cache_dir()
    if cache_dir() is not None:  # the user configured JAX's cache: theirs wins
        return cache_dir()
    path = pathlib.Path(wanted).expanduser() if wanted else _default()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail to import
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    return str(path)
