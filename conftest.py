"""Test configuration: loud broadcasting bugs, optional float64 mode and compilation cache.

- ``jax_numpy_rank_promotion="raise"``: silent broadcasting bugs fail loudly.
- ``EBM_X64=1`` runs the suite in float64 mode (``tests/test_float64.py`` runs the tests
  marked ``x64`` this way in a subprocess, so CI covers the statistical core in float64).
- The persistent compilation cache is used only when ``JAX_COMPILATION_CACHE_DIR`` is set
  (e.g. ``JAX_COMPILATION_CACHE_DIR=.jax_cache python -m pytest``, faster re-runs); it is
  off by default, so a run never depends on what an earlier run left behind.
"""

import os

import jax

if os.environ.get("EBM_X64") == "1":
    jax.config.update("jax_enable_x64", True)
if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_numpy_rank_promotion", "raise")
