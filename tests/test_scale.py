"""Scale: recompilation that users can see (a rebuilt lambda), compiled samplers reused."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

import composable_ebm as ebm
from composable_ebm.infer._sample import TRACE_COUNT

RUN = dict(num_warmup=20, num_samples=20, num_chains=2, kernel="mala", progress=False)


def _rebuilt(a):
    # a new lambda object on every call, with the same code each time
    return ebm.energy(lambda x: 0.5 * a * jnp.sum(x**2), x=(3,))


def _recompile_warnings(record):
    return [w for w in record if "compiled its sampler again" in str(w.message)]


def test_a_lambda_rebuilt_in_a_loop_warns_once_naming_it():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for i in range(3):
            ebm.sample(_rebuilt(1.0 + i), jax.random.key(i), **RUN)
    found = _recompile_warnings(record)
    assert len(found) == 1, [str(w.message) for w in found]  # once, not on every pass
    msg = str(found[0].message)
    assert "_rebuilt.<locals>.<lambda>" in msg and "test_scale.py" in msg
    assert "E.condition" in msg
    assert found[0].filename == __file__  # points at the user's ebm.sample call


def _quadratic(x, a):
    return 0.5 * a * jnp.sum(x**2)


def test_a_function_defined_once_with_changing_numbers_reuses_the_sampler():
    base = ebm.energy(_quadratic, x=(3,), a=())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        n = None
        for i in range(3):
            s = ebm.sample(base.condition(a=1.0 + i), jax.random.key(i), **RUN)
            n = TRACE_COUNT["sample"] if n is None else n
        assert TRACE_COUNT["sample"] == n  # compiled once, then reused
    assert not _recompile_warnings(record)
    assert np.all(np.isfinite(np.asarray(s.draws["x"])))


CACHE_SCRIPT = """
import jax, jax.numpy as jnp
hits = []
jax.monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name == "/jax/compilation_cache/cache_hits" else None
)
import composable_ebm as ebm
from composable_ebm._cache import cache_dir
E = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
s = ebm.sample(E, jax.random.key(0), num_warmup=20, num_samples=20, num_chains=2,
               kernel="mala", progress=False)
print("DIR", cache_dir())
print("HITS", len(hits))
"""


def _run_cached(tmp_path, cache):
    import os
    import subprocess
    import sys

    env = {**os.environ, "EBM_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", CACHE_SCRIPT], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    return lines["DIR"], int(lines["HITS"])


def test_a_second_process_reuses_the_compiled_sampler_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first_dir, first_hits = _run_cached(tmp_path, str(cache))
    assert first_dir == str(cache)
    written = len(list(cache.iterdir()))
    assert written >= 3  # the sampler's programs were written
    second_dir, second_hits = _run_cached(tmp_path, str(cache))
    print(f"{written} entries; cache hits: first process {first_hits}, second {second_hits}")
    # the second process read every program back instead of compiling it
    assert second_dir == str(cache) and second_hits >= written > first_hits
    assert len(list(cache.iterdir())) == written
    # EBM_CACHE_DIR="" turns the cache off
    off_dir, off_hits = _run_cached(tmp_path, "")
    assert off_dir == "None" and off_hits == 0
