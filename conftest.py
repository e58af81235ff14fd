"""Test configuration: persistent compilation cache and loud broadcasting bugs."""

import os
import pathlib

import jax

_CACHE = pathlib.Path(__file__).resolve().parents[1] / ".jax_cache"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))  # for subprocesses too
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_numpy_rank_promotion", "raise")
