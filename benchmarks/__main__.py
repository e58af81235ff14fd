"""One benchmark command: ``python -m benchmarks [--quick] [--out results.json]``.

Every ratio is measured in one process (fresh subprocesses only where a first call or a new
process is the measure) against hand-written JAX or NumPyro's ``MCMC.run``, and printed as
one table; the raw numbers are written as JSON too. Runs on CPU, and on a GPU when JAX sees
one. ``--quick`` shrinks every size (a smoke run, used by the tests so it never rots; its
ratios are noisy). The persistent compilation cache is off in this process, so first calls
compile for real; the "new process" rows turn it on in a temporary folder.

Sections: the composed potential (value and gradient), ``ebm.sample`` first and repeated
call, NUTS ESS per second against ``MCMC.run``, MALA against NUTS, ``fit`` steps per second
per loss against hand-written loops, Langevin chain-steps per second, compile time against
the number of terms (1, 10, 100, 1000), the first sample in a new process with and without
the cache, and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ["EBM_CACHE_DIR"] = ""  # set before composable_ebm is imported: real compiles
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)

import jax
import jax.numpy as jnp
import numpyro

from benchmarks import bench_core, bench_samplers, bench_scale, bench_train
from composable_ebm import datasets


def _row(rows: list, measure: str, a: float, b: float, unit: str, target: str = "-") -> None:
    rows.append(
        {
            "measure": measure,
            "ours": a,
            "baseline": b,
            "ratio": a / b,
            "unit": unit,
            "target": target,
        }
    )


def core(rows: list, raw: dict, quick: bool) -> None:
    nw, ns = (50, 100) if quick else (500, 1000)
    pot = raw["potential"] = bench_core.bench_potential(100 if quick else 2000)
    _row(rows, "composed potential + grad vs hand JAX", pot["ebm"], pot["hand"], "s", "<= 1.05")
    first = raw["first_call"] = bench_core.first_calls(nw, ns, 1 if quick else 3)
    _row(
        rows,
        f"sample first call vs hand-jitted NumPyro NUTS ({nw}+{ns})",
        first["ebm"],
        first["hand"],
        "s",
        "<= 1.2",
    )
    smp = raw["sampling"] = bench_core.bench_sampling(nw, ns, 4)
    _row(
        rows,
        "sample repeat call vs hand-jitted NumPyro NUTS",
        smp["ebm_second"],
        smp["hand_second"],
        "s",
    )
    _row(
        rows,
        "MCMC.run repeat / sample repeat (speed-up)",
        smp["mcmc_second"],
        smp["ebm_second"],
        "s",
        ">= 8",
    )
    _row(
        rows,
        "NUTS ESS/s: sample vs MCMC.run (repeat calls)",
        smp["ebm_ess"] / smp["ebm_second"],
        smp["mcmc_ess"] / smp["mcmc_second"],
        "ESS/s",
    )


def samplers(rows: list, raw: dict, quick: bool) -> None:
    chains, steps = (512, 100) if quick else (4096, 1000)
    lg = raw["langevin"] = bench_samplers.bench_langevin(chains, steps)
    (ours, hand) = lg["repeat"]
    _row(
        rows,
        f"Langevin chain-steps/s vs hand loop ({chains} x {steps})",
        chains * steps / ours,
        chains * steps / hand,
        "steps/s",
        ">= 0.9",
    )
    mn = raw["mala_nuts"] = bench_samplers.bench_mala_nuts(*((100, 200) if quick else (1000, 2000)))
    _row(
        rows,
        "MALA vs NUTS ESS/s (10-D correlated Gaussian)",
        mn["mala"]["ess_per_s"],
        mn["nuts"]["ess_per_s"],
        "ESS/s",
    )


def training(rows: list, raw: dict, quick: bool) -> None:
    steps = 100 if quick else 2000
    train = jnp.asarray(datasets.two_moons(8192, seed=0))
    test = jnp.asarray(datasets.two_moons(4096, seed=1))
    raw["fit"] = {}
    for name, (loss, hand) in bench_train.methods(train).items():
        if quick and "defaults" in name:
            continue
        t_ebm, _, nll, _ = bench_train.run_ebm(loss, train, test, steps, 0)
        t_hand, _, nll_hand, _ = bench_train.run_hand(hand, train, test, steps, 0)
        raw["fit"][name] = {"fit_s": t_ebm, "hand_s": t_hand, "nll": nll, "nll_hand": nll_hand}
        _row(
            rows,
            f"fit steps/s, {name} ({steps} steps, compile included)",
            steps / t_ebm,
            steps / t_hand,
            "steps/s",
            ">= 0.87",
        )


def scale(rows: list, raw: dict, quick: bool) -> None:
    sizes = [1, 10, 100] if quick else [1, 10, 100, 1000]
    ct = raw["compile_vs_terms"] = bench_scale.compile_time(sizes)
    for r in ct[1:]:
        _row(
            rows,
            f"first sample, {r['terms']} stacked experts vs 1",
            r["sum_first_s"],
            ct[0]["sum_first_s"],
            "s",
            "<= 2" if r["terms"] == 1000 else "-",
        )
    again = raw["new_process"] = bench_scale.rerun(*((50, 50) if quick else (500, 1000)))
    _row(
        rows,
        "README example in a new process: cached vs no cache",
        again["second_run"]["sample_s"],
        again["no_cache"]["sample_s"],
        "s",
        "cached <= 1 s",
    )
    raw["peak_memory_mb"] = {
        "this_process": bench_scale.peak_memory_mb(),
        **{k: v["max_rss_mb"] for k, v in again.items()},
    }


def print_table(rows: list, raw: dict) -> None:
    w = max(len(r["measure"]) for r in rows)
    print(f"\n{'measure':<{w}}  {'ours':>11}  {'baseline':>11}  {'ratio':>7}  unit      target")
    for r in rows:
        print(
            f"{r['measure']:<{w}}  {r['ours']:>11.4g}  {r['baseline']:>11.4g}  "
            f"{r['ratio']:>7.3f}  {r['unit']:<8}  {r['target']}"
        )
    mem = raw.get("peak_memory_mb", {})
    print("peak memory (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in mem.items()))
    if "compile_vs_terms" in raw:
        bench_scale.print_scale(raw["compile_vs_terms"], raw["new_process"])


SECTIONS = {"core": core, "samplers": samplers, "training": training, "scale": scale}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--out", default="benchmark_results.json", help="where the JSON goes")
    p.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    args = p.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        p.error(f"unknown sections {unknown}; choose from {sorted(SECTIONS)}")
    device = jax.devices()[0]
    print(
        f"jax {jax.__version__}, numpyro {numpyro.__version__}, device {device}, "
        f"{'quick' if args.quick else 'full'} run",
        flush=True,
    )
    rows: list = []
    raw: dict = {
        "device": str(device),
        "platform": device.platform,
        "quick": args.quick,
        "jax": jax.__version__,
        "python": sys.version.split()[0],
    }
    for name in chosen:
        t = time.perf_counter()
        SECTIONS[name](rows, raw, args.quick)
        print(f"[{name}: {time.perf_counter() - t:.0f} s]", flush=True)
    raw["table"] = rows
    print_table(rows, raw)
    with open(args.out, "w") as f:
        json.dump(raw, f, indent=1, default=float)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
