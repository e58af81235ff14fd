"""Scale benchmarks: compile time against the number of terms, and a script run again.

Run: ``python benchmarks/bench_scale.py [--quick]``, or as part of ``python -m benchmarks``.

1. Compile time against the number of terms: the first ``ebm.sample`` (NUTS, 2 chains,
   100 warmup + 100 draws) of a sum of n unit Gaussian experts over one 2-D variable, built
   with ``ebm.sum`` (identical terms are stacked: one ``vmap``), for n = 1, 10, 100, 1000,
   against the same experts added with ``+`` (grouped when traced) where that is quick, and
   a repeat call. Target: 1000 experts within 2x of one.
2. A script run again: the README's example (prior + ring + confinement, NUTS, 4 chains,
   500 + 1000) in a new process, timed from the ``ebm.sample`` call to the draws: with the
   cache off (``EBM_CACHE_DIR=""``), with an empty cache (first run: traces, compiles and
   writes) and with that cache (second run: reads the kept trace and the compiled code).
   Target: at most 1 s on the second run. Each process's peak memory (max RSS) is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("EBM_CACHE_DIR", "")  # in this process: measure real compilation
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)

import jax
import jax.numpy as jnp

import composable_ebm as ebm


def _sample(E, seed, num_warmup=100, num_samples=100):
    s = ebm.sample(
        E, jax.random.key(seed), num_warmup=num_warmup, num_samples=num_samples, num_chains=2
    )
    return jax.block_until_ready(s.draws)


def _experts(n: int, build: str, shift: float = 0.0) -> ebm.Energy:
    terms = [ebm.Gaussian("x", jnp.full(2, shift + i / max(n, 1)), cov=1.0) for i in range(n)]
    if build == "sum":
        return ebm.sum(terms)
    E = terms[0]
    for t in terms[1:]:
        E = E + t
    return E


def compile_time(sizes: list[int], plus_up_to: int = 100) -> list[dict]:
    """First-call and repeat times of ``ebm.sample`` for sums of n experts."""
    jnp.ones(3).sum().block_until_ready()
    rows = []
    for n in sizes:
        row = {"terms": n}
        for build in ("sum", "plus"):
            if build == "plus" and n > plus_up_to:
                continue
            jax.clear_caches()
            t = time.perf_counter()
            E = _experts(n, build)
            row[f"{build}_build_s"] = time.perf_counter() - t
            t = time.perf_counter()
            _sample(E, 0)
            row[f"{build}_first_s"] = time.perf_counter() - t
            E2 = _experts(n, build, shift=0.5)  # new values, same structure
            t = time.perf_counter()
            _sample(E2, 1)
            row[f"{build}_repeat_s"] = time.perf_counter() - t
        rows.append(row)
    one = rows[0]["sum_first_s"]
    for row in rows:
        row["first_vs_one_term"] = row["sum_first_s"] / one
    return rows


SCRIPT = r"""
import os, resource, time, json
t0 = time.perf_counter()
import jax, jax.numpy as jnp, numpy as np
import composable_ebm as ebm
t1 = time.perf_counter()
prior = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.eye(2)).named("prior")
ring = ebm.energy(lambda x: (jnp.linalg.norm(x) - 1.5) ** 2, x=(2,))
E = prior + 8.0 * ring.named("ring") + ebm.Confinement("x", scale=0.1)
t2 = time.perf_counter()
s = ebm.sample(E, jax.random.key(0), num_warmup=NW, num_samples=NS, num_chains=4)
x = np.asarray(s.draws["x"])
t3 = time.perf_counter()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
mb = (int(hwm[0].split()[1]) if hwm else rss) / 1024
print("RESULT", json.dumps({"import_s": t1 - t0, "sample_s": t3 - t2, "max_rss_mb": mb}))
"""


def rerun(num_warmup: int = 500, num_samples: int = 1000) -> dict:
    """The README example in new processes: cache off, empty cache, warm cache."""
    code = SCRIPT.replace("NW", str(num_warmup)).replace("NS", str(num_samples))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cache in (("no_cache", ""), ("first_run", tmp), ("second_run", tmp)):
            env = {**os.environ, "EBM_CACHE_DIR": cache}
            env.pop("JAX_COMPILATION_CACHE_DIR", None)
            proc = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
            out[name] = json.loads(line[len("RESULT ") :])
    return out


def peak_memory_mb() -> float:
    """This process's peak resident memory so far (VmHWM; ru_maxrss where there is none)."""
    try:
        with open("/proc/self/status") as f:
            hwm = [line for line in f if line.startswith("VmHWM")]
        return int(hwm[0].split()[1]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_scale(rows: list[dict], again: dict) -> None:
    print("\ncompile time against the number of terms (first ebm.sample, NUTS 2 chains 100+100)")
    print(
        f"{'terms':>6}  {'ebm.sum first':>13}  {'repeat':>7}  {'vs 1 term':>9}  "
        f"{'`+` first':>9}  {'build (sum)':>11}"
    )
    for r in rows:
        plus = f"{r['plus_first_s']:9.2f}" if "plus_first_s" in r else f"{'-':>9}"
        print(
            f"{r['terms']:>6}  {r['sum_first_s']:13.2f}  {r['sum_repeat_s']:7.3f}  "
            f"{r['first_vs_one_term']:9.2f}  {plus}  {r['sum_build_s']:11.3f}"
        )
    print("target: 1000 terms within 2x of one\n")
    print("the README example in a new process (s from the sample call to the draws)")
    for name, r in again.items():
        print(
            f"  {name:<11} sample {r['sample_s']:6.2f} s  import {r['import_s']:5.2f} s  "
            f"peak memory {r['max_rss_mb']:6.0f} MB"
        )
    print("target: second run at most 1 s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    args = p.parse_args()
    sizes = [1, 10, 100] if args.quick else [1, 10, 100, 1000]
    print_scale(compile_time(sizes), rerun(*((50, 50) if args.quick else (500, 1000))))


if __name__ == "__main__":
    main()
