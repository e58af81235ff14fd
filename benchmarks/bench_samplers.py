"""Sampler benchmarks: ``ebm.langevin``, MALA vs NUTS, and parallel tempering.

Run: ``python benchmarks/bench_samplers.py [--quick]`` (about 2-3 minutes on 2 CPU cores;
``--quick`` shrinks every run for a smoke test). Everything is measured in one process,
one run at a time, with the persistent compilation cache off. Prints one table:

1. ``ebm.langevin`` (unadjusted, 4096 chains x 1000 steps) on the eight-Gaussian mixture
   (radius 2, sd 0.2, as ``ebm.datasets.eight_gaussians``; an ``ebm.logsumexp`` of eight
   unnormalised ``ebm.Gaussian``) against a hand-written ``jax.jit`` loop: ``lax.scan`` over
   steps, ``vmap`` over chains, the same update x - eps grad E + sqrt(2 eps) xi with the
   energy written in ``jnp``. First call (compilation included; the runtime is started
   beforehand) and the best of 3 repeats with new keys and starts (``block_until_ready``).
   Target: repeat within 1.1x.
2. ``ebm.sample(kernel="mala")`` against NUTS (the default) on a 10-D correlated Gaussian
   (AR(1) correlation 0.8, scales 0.5 to 2): 4 chains, 1000 warmup + 2000 draws. ArviZ
   bulk ESS (minimum over the 10 coordinates) per second of a second call with new values
   (new mean and key: the compiled sampler is reused).
3. Parallel tempering on the 1-D two-mode target
   ``ebm.logsumexp(ebm.Gaussian(x, -3, sd 0.5), ebm.Gaussian(x, 3, sd 0.5), weights=[0.3,
   0.7])`` (true mass of x < 0 is 0.3): plain NUTS against ``temperatures=[1, 2, 4, 8, 16,
   32]`` with NUTS and with MALA; 4 chains started at -3, -1, 1, 3, 1000 warmup + 2000
   draws. Reports the estimated left-mode mass (with its Monte Carlo standard error from
   the indicator's ESS), the bulk ESS of the indicator x < 0 per second of a second call,
   and the swap acceptance per neighbouring pair of temperatures.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from functools import partial

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # measure real compilation

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np

import composable_ebm as ebm
from composable_ebm.infer._driver import TRACE_COUNT

ANGLES = 2 * np.pi * np.arange(8) / 8
CENTRES = 2.0 * np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)
VAR8 = 0.2**2
EPS = 0.005  # Langevin step size (sd 0.2: eps well below the modes' variance 0.04)
D = 10
TEMPERATURES = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
STARTS = [-3.0, -1.0, 1.0, 3.0]


def timed(fn):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t, out


def bulk_ess(x) -> np.ndarray:
    """ArviZ bulk ESS of an array (chain, draw, ...), one value per coordinate."""
    x = np.asarray(x, dtype=np.float64)
    return np.atleast_1d(az.ess(az.convert_to_dataset({"v": x}), method="bulk")["v"].values)


# ---------------------------------------------------------------- 1. ebm.langevin
def eight_gaussians() -> ebm.Energy:
    return ebm.logsumexp(
        *[ebm.Gaussian("x", jnp.asarray(c, jnp.float32), cov=VAR8) for c in CENTRES]
    )


def hand_energy(x, centres):
    return -jax.nn.logsumexp(-0.5 * jnp.sum((x - centres) ** 2, axis=1) / VAR8)


@partial(jax.jit, static_argnames="num_steps")
def hand_langevin(key, x0, centres, eps, num_steps):
    grad = jax.vmap(jax.grad(hand_energy), in_axes=(0, None))

    def body(x, k):
        noise = jax.random.normal(k, x.shape, x.dtype)
        return x - eps * grad(x, centres) + jnp.sqrt(2 * eps) * noise, None

    x, _ = jax.lax.scan(body, x0, jax.random.split(key, num_steps))
    return x


def summary_8g(x) -> tuple[float, float]:
    """Mean radius and largest share of one mode (1/8 = 0.125 when balanced)."""
    x = np.asarray(x)
    r = float(np.mean(np.linalg.norm(x, axis=1)))
    mode = np.argmin(((x[:, None, :] - CENTRES[None]) ** 2).sum(-1), axis=1)
    return r, float(np.bincount(mode, minlength=8).max() / len(x))


def bench_langevin(num_chains: int, num_steps: int) -> dict:
    E = eight_gaussians()
    centres = jnp.asarray(CENTRES, jnp.float32)
    eps = jnp.float32(EPS)

    def start(seed):
        return 1.5 * jax.random.normal(jax.random.key(100 + seed), (num_chains, 2))

    def ours(seed):
        x0 = start(seed)
        return ebm.langevin(E, jax.random.key(seed), {"x": x0}, step_size=EPS, num_steps=num_steps)[
            "x"
        ]

    def theirs(seed):
        return hand_langevin(jax.random.key(seed), start(seed), centres, eps, num_steps)

    jax.block_until_ready(start(0) + start(1))  # runtime and the start's compilation
    first_hand, xh = timed(lambda: theirs(0))
    first_ebm, xe = timed(lambda: ours(0))
    rep_hand, rep_ebm = [], []
    for s in (1, 2, 3):  # interleaved
        rep_hand.append(timed(lambda s=s: theirs(s))[0])
        rep_ebm.append(timed(lambda s=s: ours(s))[0])
    return {
        "first": (first_ebm, first_hand),
        "repeat": (min(rep_ebm), min(rep_hand)),
        "check": (summary_8g(xe), summary_8g(xh)),
    }


# ---------------------------------------------------------------- 2. MALA vs NUTS
def correlated_cov() -> np.ndarray:
    idx = np.arange(D)
    scale = np.linspace(0.5, 2.0, D)
    return np.outer(scale, scale) * 0.8 ** np.abs(idx[:, None] - idx[None, :])


def bench_mala_nuts(num_warmup: int, num_samples: int) -> dict:
    cov = correlated_cov()
    sd = np.sqrt(np.diag(cov))
    out = {}
    for kernel in ("nuts", "mala"):

        def run(mean, seed, kernel=kernel):
            E = ebm.Gaussian("x", mean, cov=cov)
            return ebm.sample(
                E,
                jax.random.key(seed),
                kernel=kernel,
                num_warmup=num_warmup,
                num_samples=num_samples,
                num_chains=4,
            )

        first, _ = timed(lambda run=run: run(np.zeros(D, np.float32), 0).draws)
        traces = TRACE_COUNT["sample"]
        mean = np.linspace(-1.0, 1.0, D).astype(np.float32)
        second, s = timed(lambda run=run, mean=mean: run(mean, 1))
        x = np.asarray(s.draws["x"])
        ess = bulk_ess(x).min()
        err = float(np.max(np.abs(x.mean((0, 1)) - mean) / sd))
        out[kernel] = {
            "first": first,
            "second": second,
            "ess": ess,
            "ess_per_s": ess / second,
            "err": err,
            "retraced": TRACE_COUNT["sample"] - traces,
            "accept": float(np.mean(np.asarray(s.stats["accept_prob"]))),
        }
    return out


# ---------------------------------------------------------------- 3. parallel tempering
def two_modes() -> ebm.Energy:
    return ebm.logsumexp(
        ebm.Gaussian("x", -3.0, cov=0.25),
        ebm.Gaussian("x", 3.0, cov=0.25),
        weights=[0.3, 0.7],
    )


def bench_tempering(num_warmup: int, num_samples: int) -> dict:
    configs = {
        "plain NUTS": dict(kernel="nuts"),
        "PT x6 + NUTS": dict(kernel="nuts", temperatures=TEMPERATURES),
        "PT x6 + MALA": dict(kernel="mala", temperatures=TEMPERATURES),
    }
    init = {"x": jnp.asarray(STARTS, jnp.float32)}
    out = {}
    for name, opts in configs.items():

        def run(seed, opts=opts):
            return ebm.sample(
                two_modes(),  # a new energy object each call: reuse by structure
                jax.random.key(seed),
                init=init,
                num_warmup=num_warmup,
                num_samples=num_samples,
                num_chains=len(STARTS),
                **opts,
            )

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first, s0 = timed(lambda run=run: run(0))
            traces = TRACE_COUNT["sample"]
            second, s = timed(lambda run=run: run(1))
        ind = (np.asarray(s.draws["x"]) < 0).astype(np.float64)
        p = float(ind.mean())
        with np.errstate(all="ignore"):
            ess = float(bulk_ess(ind)[0])
        se = math.sqrt(p * (1 - p) / ess) if ess > 0 and math.isfinite(ess) else float("nan")
        swap = s.stats.get("swap_accept_prob")
        swap = None if swap is None else np.asarray(swap).reshape(-1, len(TEMPERATURES) - 1)
        out[name] = {
            "first": first,
            "second": second,
            "left": p,
            "left_first": float(np.mean(np.asarray(s0.draws["x"]) < 0)),
            "se": se,
            "per_chain": np.asarray(ind.mean(1)).round(2).tolist(),
            "ess": ess,
            "ess_per_s": ess / second,
            "swap": None if swap is None else swap.mean(0),
            "retraced": TRACE_COUNT["sample"] - traces,
            "warned": sorted({str(w.message).split(":")[0] for w in caught}),
        }
    return out


# ---------------------------------------------------------------- report
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    args = p.parse_args()
    chains, steps = (1024, 200) if args.quick else (4096, 1000)
    nw, ns = (300, 500) if args.quick else (1000, 2000)
    print(f"jax {jax.__version__}, arviz {az.__version__}, device {jax.devices()[0]}")

    lg = bench_langevin(chains, steps)
    mn = bench_mala_nuts(nw, ns)
    pt = bench_tempering(nw, ns)

    rows = []  # (measure, A, B, A/B or value, target)
    rows.append(("1. ebm.langevin vs hand-written JAX (A = ebm, B = hand; seconds)",))
    for what in ("first", "repeat"):
        a, b = lg[what]
        target = "<= 1.1" if what == "repeat" else "-"
        label = "first call (compile included)" if what == "first" else "repeat (best of 3)"
        rows.append((f"   {label}, {chains} chains x {steps} steps", a, b, a / b, target))
    rows.append(("2. 10-D correlated Gaussian, 4 chains, ESS per second (A = MALA, B = NUTS)",))
    a, b = mn["mala"], mn["nuts"]
    rows.append(("   first call time (s)", a["first"], b["first"], a["first"] / b["first"], "-"))
    rows.append(
        ("   second call time (s)", a["second"], b["second"], a["second"] / b["second"], "-")
    )
    rows.append(
        ("   bulk ESS, min over 10 coordinates", a["ess"], b["ess"], a["ess"] / b["ess"], "-")
    )
    rows.append(
        ("   bulk ESS / s", a["ess_per_s"], b["ess_per_s"], a["ess_per_s"] / b["ess_per_s"], "-")
    )
    w = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{w}}  {'A':>9}  {'B':>9}  {'A/B':>7}  target")
    for r in rows:
        if len(r) == 1:
            print(r[0])
            continue
        name, a, b, ratio, target = r
        print(f"{name:<{w}}  {a:>9.3f}  {b:>9.3f}  {ratio:>7.3f}  {target}")
    (r_e, m_e), (r_h, m_h) = lg["check"]
    print(
        f"   check: mean radius {r_e:.3f} (ebm) / {r_h:.3f} (hand), largest mode share "
        f"{m_e:.3f} / {m_h:.3f} (balanced 0.125)"
    )
    for k in ("mala", "nuts"):
        v = mn[k]
        print(
            f"   check {k}: max |mean error| {v['err']:.3f} sd, mean acceptance "
            f"{v['accept']:.2f}, retraces on the second call {v['retraced']}"
        )

    print(f"\n3. Parallel tempering, two modes at -3 / +3 (sd 0.5, weights 0.3 / 0.7), {nw}+{ns}")
    print(f"   4 chains started at {STARTS}; T = {TEMPERATURES}")
    hdr = (
        f"   {'sampler':<14} {'P(x<0) (true 0.3)':>18} {'per chain':>26} {'ESS(x<0)':>9} "
        f"{'2nd call s':>10} {'ESS/s':>8} {'1st call s':>10} {'1st: P(x<0)':>11}  "
        "swap acceptance per pair"
    )
    print(hdr)
    for name, v in pt.items():
        est = f"{v['left']:.3f} ± {v['se']:.3f}"
        swap = "-" if v["swap"] is None else " ".join(f"{a:.2f}" for a in v["swap"])
        print(
            f"   {name:<14} {est:>18} {v['per_chain']!s:>26} {v['ess']:>9.1f} "
            f"{v['second']:>10.3f} {v['ess_per_s']:>8.1f} {v['first']:>10.2f} "
            f"{v['left_first']:>11.3f}  {swap}"
        )
    print(
        "   (± is the Monte Carlo standard error sqrt(p(1-p)/ESS); plain NUTS cannot cross, "
        "so its ESS and error bar are meaningless;\n    where it lands depends on which chains "
        "jump during early warmup: compare the two calls' P(x<0))"
    )
    print(f"   retraces on the second call: { {k: v['retraced'] for k, v in pt.items()} }")
    print(f"   ebm.sample warnings: { {k: v['warned'] for k, v in pt.items()} }")


if __name__ == "__main__":
    main()
