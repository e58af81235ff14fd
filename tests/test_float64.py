"""float64 mode: energies store float64 leaves and the sampler runs in float64."""

import subprocess
import sys

import pytest

SCRIPT = """
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np, numpyro.distributions as dist
import composable_ebm as ebm
E = ebm.Gaussian("x", jnp.zeros(2), cov=1.0) + ebm.FromDistribution("s", dist.Gamma(3.0, 2.0))
leaves = jax.tree_util.tree_leaves(E)
assert all(leaf.dtype == jnp.float64 for leaf in leaves), [leaf.dtype for leaf in leaves]
s = ebm.sample(E, jax.random.key(0), num_warmup=300, num_samples=500, num_chains=2)
assert s.draws["x"].dtype == jnp.float64 and s.draws["s"].dtype == jnp.float64
assert s.stats["model_energy"].dtype == jnp.float64
ess = float(s.summary()["ess_bulk"].min())
assert ess > 200, ess
m = float(s.draws["s"].mean())
assert abs(m - 1.5) < 5 * np.sqrt(3 / 4 / ess), m  # Gamma(3, 2): mean 1.5, var 0.75
G = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
t = ebm.sample(G, jax.random.key(1), kernel="mala", temperatures=[1, 2], num_warmup=100,
               num_samples=100, num_chains=2)
assert t.draws["x"].dtype == jnp.float64 and t.term_energies["Gaussian"].dtype == jnp.float64
z = ebm.log_partition(G, bounds={"x": [(-9, 9), (-9, 9)]})
assert abs(z.value - np.log(2 * np.pi)) < 1e-9, z  # float64 quadrature
print("ok")
"""


@pytest.mark.slow
def test_sampling_in_float64_mode():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


@pytest.mark.x64
def test_float64_mode_is_on_when_asked():
    """Collected with the x64 subset, so the subprocess below proves it ran in float64."""
    import os

    import jax.numpy as jnp

    want = jnp.float64 if os.environ.get("EBM_X64") == "1" else jnp.float32
    assert jnp.zeros(()).dtype == want


X64_FILES = [
    "tests/test_float64.py",
    "tests/test_statistics.py",
    "tests/test_kernels.py",
    "tests/test_mixing.py",
]


@pytest.mark.slow
def test_statistical_core_in_float64_mode():
    """The tests marked ``x64`` (closed-form moments under NUTS and MALA, constrained
    supports, term energies) run again with ``jax_enable_x64`` on."""
    import os
    import pathlib

    if os.environ.get("EBM_X64") == "1":
        pytest.skip("already running in float64 mode")
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "EBM_X64": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "x64", "-p", "no:cacheprovider"]
    out = subprocess.run([*cmd, *X64_FILES], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout, out.stdout[-2000:]
