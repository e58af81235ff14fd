"""Partition-function benchmark: ``ebm.log_partition(method="ais")`` against hand-written JAX.

Run: ``python benchmarks/bench_partition.py``. The target is the eight-Gaussian mixture
(radius 2, sd 0.2, as ``ebm.datasets.eight_gaussians``) built as ``ebm.logsumexp`` of
unnormalised Gaussians, so log Z = log(8 · 2π · 0.2²) exactly. Both runs use the same
algorithm and settings: 1000 particles, a 100-step MALA pilot fitting the Gaussian
reference, 200 temperatures on the sigmoid schedule, one MALA step per temperature with
the step size adapted from the acceptance rate. Prints the first call (compilation
included, persistent cache off), the best of later calls with new keys, the estimates,
their errors against the truth and the reported standard errors.
"""

from __future__ import annotations

import math
import os
import time

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # measure real compilation

import jax
import jax.numpy as jnp
import numpy as np

import composable_ebm as ebm
from composable_ebm.infer._ais import schedule

PARTICLES, TEMPERATURES, PILOT, TARGET = 1000, 200, 100, 0.574
ANGLES = 2 * np.pi * np.arange(8) / 8
CENTRES = 2.0 * np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)
VAR = 0.2**2
TRUTH = math.log(8 * 2 * math.pi * VAR)


# ---------------------------------------------------------------- hand-written baseline
def target(x):
    sq = jnp.sum((x[None, :] - jnp.asarray(CENTRES, jnp.float32)) ** 2, axis=1)
    return -jax.nn.logsumexp(-0.5 * sq / VAR)


def mala_step(key, x, e, g, fn, eps):
    """One MALA step for all particles; fn maps (N, D) to (energies, gradients)."""
    k1, k2 = jax.random.split(key)
    y = x - eps * g + jnp.sqrt(2 * eps) * jax.random.normal(k1, x.shape)
    ey, gy = fn(y)
    fwd = jnp.sum((y - x + eps * g) ** 2, axis=1)
    bwd = jnp.sum((x - y + eps * gy) ** 2, axis=1)
    log_r = e - ey + (fwd - bwd) / (4 * eps)
    acc = jnp.exp(jnp.minimum(jnp.where(jnp.isnan(log_r), -jnp.inf, log_r), 0.0))
    take = jax.random.uniform(k2, acc.shape) < acc
    pick = lambda a, b: jnp.where(take.reshape(take.shape + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
    return pick(y, x), pick(ey, e), pick(gy, g), jnp.mean(acc)


@jax.jit
def baseline(key, betas):
    n, d = PARTICLES, 2
    k_pilot, k_init, k_anneal = jax.random.split(key, 3)
    vg = jax.vmap(jax.value_and_grad(target))
    x = jax.random.uniform(k_pilot, (n, d), minval=-2.0, maxval=2.0)
    e, g = vg(x)

    def pilot(c, k):
        x, e, g, le = c
        x, e, g, acc = mala_step(k, x, e, g, vg, jnp.exp(le))
        return (x, e, g, jnp.clip(le + acc - TARGET, -20.0, 5.0)), None

    (x, _, _, _), _ = jax.lax.scan(
        pilot, (x, e, g, jnp.log(0.5)), jax.random.split(jax.random.fold_in(k_pilot, 1), PILOT)
    )
    mean = jnp.mean(x, axis=0)
    cov = jnp.cov(x.T, bias=True)
    cov = cov + (1e-3 * jnp.trace(cov) / d + 1e-6) * jnp.eye(d)
    chol = 1.5 * jnp.linalg.cholesky(cov)

    def annealed(beta):
        def one(v):
            return (1 - beta) * 0.5 * jnp.sum(v * v) + beta * target(mean + chol @ v)

        return jax.vmap(jax.value_and_grad(one))

    v = jax.random.normal(k_init, (n, d))
    e, g = annealed(0.0)(v)

    def temperature(c, xs):
        v, e, log_w, le = c
        beta, k = xs
        fn = annealed(beta)
        e_new, g = fn(v)
        log_w = log_w + e - e_new
        v, e, g, acc = mala_step(k, v, e_new, g, fn, jnp.exp(le))
        return (v, e, log_w, jnp.clip(le + acc - TARGET, -20.0, 5.0)), None

    keys = jax.random.split(k_anneal, betas.shape[0] - 1)
    (_, _, log_w, _), _ = jax.lax.scan(
        temperature, (v, e, jnp.zeros(n), jnp.log(0.5)), (betas[1:], keys)
    )
    log_z_ref = 0.5 * d * math.log(2 * math.pi) + jnp.sum(jnp.log(jnp.diag(chol)))
    top = jnp.max(log_w)
    w = jnp.exp(log_w - top)
    return log_z_ref + top + jnp.log(jnp.mean(w)), jnp.std(w, ddof=1) / (math.sqrt(n) * jnp.mean(w))


# ---------------------------------------------------------------- measurement
def timed(fn):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t, out


def main() -> None:
    E = ebm.logsumexp(*[ebm.Gaussian("x", jnp.asarray(c, jnp.float32), cov=VAR) for c in CENTRES])
    opts = dict(num_particles=PARTICLES, num_temperatures=TEMPERATURES, pilot_steps=PILOT)
    betas = jnp.asarray(schedule("sigmoid", TEMPERATURES), jnp.float32)

    def ours(seed):
        return ebm.log_partition(E, method="ais", key=jax.random.key(seed), **opts)

    def theirs(seed):
        value, stderr = baseline(jax.random.key(seed), betas)
        return ebm.LogZ(float(value), float(stderr))

    rows = []
    for name, fn in (("ebm.log_partition(ais)", ours), ("hand-written JAX", theirs)):
        first, r0 = timed(lambda fn=fn: fn(0))
        repeats = [timed(lambda fn=fn, s=s: fn(s)) for s in range(1, 6)]
        best = min(t for t, _ in repeats)
        results = [r0] + [r for _, r in repeats]
        rows.append((name, first, best, results))
    print(f"eight Gaussians, {PARTICLES} particles x {TEMPERATURES} temperatures, ", end="")
    print(f"pilot {PILOT} MALA steps; true log Z = {TRUTH:.4f}")
    print(f"{'':24s} {'first call':>10s} {'repeat':>9s}  estimates (seeds 0-5): error, stderr")
    for name, first, best, results in rows:
        errs = ", ".join(f"{r.value - TRUTH:+.3f}±{r.stderr:.3f}" for r in results)
        print(f"{name:24s} {first:9.2f}s {best * 1e3:7.1f}ms  {errs}")
    (_, f0, b0, _), (_, f1, b1, _) = rows
    print(f"ratio ebm / hand-written: first call {f0 / f1:.2f}x, repeat {b0 / b1:.2f}x")


if __name__ == "__main__":
    main()
