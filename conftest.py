"""Test configuration: loud broadcasting bugs, optional float64 mode and compilation cache.

- ``jax_numpy_rank_promotion="raise"``: silent broadcasting bugs fail loudly.
- ``EBM_X64=1`` runs the suite in float64 mode (``tests/test_float64.py`` runs the tests
  marked ``x64`` this way in a subprocess, so CI covers the statistical core in float64).
- The persistent compilation cache is used only when ``JAX_COMPILATION_CACHE_DIR`` is set
  (e.g. ``JAX_COMPILATION_CACHE_DIR=.jax_cache python -m pytest``, faster re-runs); it is
  off by default, so a run never depends on what an earlier run left behind, and the
  library's own default cache in the user's home is turned off (``EBM_CACHE_DIR=""``, set
  before the library is imported and inherited by the tests' subprocesses): tests read no
  files outside the repository.
"""

import os

os.environ.setdefault("EBM_CACHE_DIR", "")

import jax
import pytest

if os.environ.get("EBM_X64") == "1":
    jax.config.update("jax_enable_x64", True)
if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_numpy_rank_promotion", "raise")


def _memory_maps() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux
        return 0


# Every compiled XLA program keeps memory mappings alive for as long as JAX caches it; a
# whole test session compiles thousands, and past the kernel's limit (vm.max_map_count,
# 65530 by default) the next compilation crashes the process. Free the compiled code
# between test modules once the count gets high (modules share compiled samplers while
# it stays low).
MAX_MAPS = 25_000


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    yield
    if _memory_maps() > MAX_MAPS:
        jax.clear_caches()
