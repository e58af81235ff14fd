"""Core benchmarks: composed potentials and ebm.sample against hand-written baselines.

Run: ``python benchmarks/bench_core.py [--quick]``. Prints a table of times and ratios,
every baseline measured in the same process. Targets (issue "core"):

* a composed, conditioned potential with its gradient within 1.05x of hand-written JAX;
* ``ebm.sample`` on a 10-D product of two Gaussian experts (4 chains, 500 warmup + 1000
  draws): first call within 1.2x of NumPyro's functional kernels hand-jitted in one
  function; a second call with new values at least 8x faster than ``MCMC.run``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from functools import partial

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # measure real compilation

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS
from numpyro.infer.hmc import hmc

import composable_ebm as ebm
from composable_ebm.infer._bridge import potential

D = 10
BATCH = 256  # points per potential evaluation in the potential benchmark


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return time.perf_counter() - t, out


def _min_ess(x) -> float:
    """The smallest ArviZ bulk ESS over the coordinates of draws (chain, draw, dim)."""
    import arviz as az
    import numpy as np

    ds = az.convert_to_dataset({"x": np.asarray(x, np.float64)})
    return float(az.ess(ds, method="bulk")["x"].values.min())


def _best(fn, *args, repeat=5):
    return min(_timed(fn, *args)[0] for _ in range(repeat))


# ---------------------------------------------------------------- composed potential
def ring(x):
    return (jnp.sqrt(jnp.sum(x * x) + 1e-12) - 2.0) ** 2


def likelihood(x, y):
    return 0.5 * jnp.sum((y - jnp.tanh(x)) ** 2) / 0.3**2


def composed_energy(mean, cov_diag, weight, y):
    prior = ebm.Gaussian("x", mean, cov=cov_diag)
    lik = ebm.energy(likelihood, x=(D,), y=(D,))
    return (
        prior + weight * ebm.energy(ring, x=(D,)) + ebm.Confinement("x", scale=0.1) + lik
    ).condition(y=y)


def hand_potential(x, mean, prec_sqrt, weight, y, scale, eps):
    r = x - mean
    prior = 0.5 * jnp.sum((r * prec_sqrt) ** 2)
    conf = scale * jnp.sqrt(jnp.sum(x * x) + eps * eps)
    return prior + weight * ring(x) + conf + likelihood(x, y)


def bench_potential(steps: int) -> dict:
    key = jax.random.key(0)
    mean, y = jax.random.normal(key, (2, D))
    cov_diag = jnp.linspace(0.5, 2.0, D)
    E = composed_energy(mean, cov_diag, 3.0, y)
    leaves, static = eqx.partition(E, eqx.is_array)

    def run_ebm(leaves, x0):
        e = eqx.combine(leaves, static)
        g = jax.vmap(jax.value_and_grad(lambda x: potential(e, {"x": x})))

        def body(x, _):
            v, dx = g(x)
            return x - 1e-4 * dx, v

        return jax.lax.scan(body, x0, None, length=steps)

    prec_sqrt = 1.0 / jnp.sqrt(cov_diag)

    def run_hand(params, x0):
        g = jax.vmap(jax.value_and_grad(partial(hand_potential, **params)))

        def body(x, _):
            v, dx = g(x)
            return x - 1e-4 * dx, v

        return jax.lax.scan(body, x0, None, length=steps)

    params = dict(
        mean=mean,
        prec_sqrt=prec_sqrt,
        weight=jnp.float32(3.0),
        y=y,
        scale=jnp.float32(0.1),
        eps=jnp.float32(1e-3),
    )
    f_ebm, f_hand = jax.jit(run_ebm), jax.jit(run_hand)
    x0 = jax.random.normal(jax.random.key(2), (BATCH, D))
    _, (_, va) = _timed(f_ebm, leaves, x0)
    _, (_, vb) = _timed(f_hand, params, x0)
    assert jnp.allclose(va, vb, rtol=1e-4, atol=1e-4), "the two potentials disagree"
    t_ebm, t_hand = [], []
    for _ in range(7):  # interleave to share the machine's state fairly
        t_ebm.append(_timed(f_ebm, leaves, x0)[0])
        t_hand.append(_timed(f_hand, params, x0)[0])
    return {"ebm": min(t_ebm), "hand": min(t_hand)}


# ---------------------------------------------------------------- sampling
def experts(m1, m2):
    return ebm.Gaussian("x", m1, cov=1.0) + ebm.Gaussian("x", m2, cov=2.0)


def hand_numpyro(key, m1, m2, num_warmup, num_samples, num_chains):
    """NumPyro's functional kernels, chains vmapped, warmup and draws in one scan."""

    def pe(z):
        x = z["x"]
        return 0.5 * jnp.sum((x - m1) ** 2) + 0.25 * jnp.sum((x - m2) ** 2)

    init_kernel, sample_kernel = hmc(pe, algo="NUTS")
    k_init, k_run = jax.random.split(key)
    z0 = {"x": jax.random.uniform(k_init, (num_chains, D), minval=-2, maxval=2)}
    keys = jax.random.split(k_run, num_chains)
    state = jax.vmap(lambda z, k: init_kernel(z, num_warmup, rng_key=k))(z0, keys)
    step = jax.vmap(sample_kernel)

    def body(st, _):
        st = step(st)
        return st, (st.z["x"], st.diverging)

    _, (xs, div) = jax.lax.scan(body, state, None, length=num_warmup + num_samples)
    return xs[num_warmup:], div[num_warmup:]


def numpyro_model(m1, m2):
    x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real, (), (D,)))
    numpyro.factor("e", -(0.5 * jnp.sum((x - m1) ** 2) + 0.25 * jnp.sum((x - m2) ** 2)))


def _first_call(which: str, num_warmup: int, num_samples: int, num_chains: int) -> float:
    """Time of one first call (tracing + compilation + run) in this fresh process."""
    jnp.ones(3).sum().block_until_ready()  # start the runtime outside the timing
    m1, m2 = jnp.zeros(D), jnp.ones(D)
    key = jax.random.key(0)
    if which == "ebm":
        t = time.perf_counter()
        s = ebm.sample(
            experts(m1, m2),
            key,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
        )
        jax.block_until_ready(s.draws)
    else:
        hand = jax.jit(
            partial(
                hand_numpyro, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains
            )
        )
        t = time.perf_counter()
        jax.block_until_ready(hand(key, m1, m2))
    return time.perf_counter() - t


def first_calls(num_warmup: int, num_samples: int, repeat: int) -> dict:
    """First-call times, each in a fresh process (alternating), medians over ``repeat``."""
    times: dict[str, list[float]] = {"ebm": [], "hand": []}
    for _ in range(repeat):
        for which in ("ebm", "hand"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--first-call",
                    which,
                    "--sizes",
                    f"{num_warmup},{num_samples}",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            times[which].append(float(out.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_sampling(num_warmup: int, num_samples: int, num_chains: int) -> dict:
    """Second calls with new values, every sampler compiled beforehand in this process."""
    m1, m2 = jnp.zeros(D), jnp.ones(D)
    m1b, m2b = jnp.full(D, 0.5), jnp.full(D, -1.0)
    out = {}

    def run_ebm(m1, m2, seed):
        s = ebm.sample(
            experts(m1, m2),
            jax.random.key(seed),
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
        )
        return s.draws["x"]

    _, draws = _timed(run_ebm, m1, m2, 0)
    seconds = [_timed(run_ebm, m1b, m2b, s) for s in (1, 2, 3)]
    out["ebm_second"] = min(t for t, _ in seconds)
    out["ebm_ess"] = _min_ess(seconds[-1][1])

    hand = jax.jit(
        partial(hand_numpyro, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains)
    )
    _timed(hand, jax.random.key(0), m1, m2)
    out["hand_second"] = min(_timed(hand, jax.random.key(s), m1b, m2b)[0] for s in (1, 2, 3))

    def run_mcmc(key, m1, m2):
        # A fresh MCMC per run: re-running one vectorized MCMC object fails in numpyro
        # 0.22 (vmap rank error); MCMC.run retraces on every call either way.
        mcmc = MCMC(
            NUTS(numpyro_model),
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(key, m1, m2)
        return mcmc.get_samples(group_by_chain=True)["x"]

    out["mcmc_first"], _ = _timed(run_mcmc, jax.random.key(0), m1, m2)
    seconds = [_timed(run_mcmc, jax.random.key(s), m1b, m2b) for s in (1, 2)]
    out["mcmc_second"] = min(t for t, _ in seconds)
    out["mcmc_ess"] = _min_ess(seconds[-1][1])
    # sanity: the product of experts has mean (1·m1 + ½·m2)/(1 + ½)
    want = (m1 + 0.5 * m2) / 1.5
    out["mean_error"] = float(jnp.max(jnp.abs(draws.mean((0, 1)) - want)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    p.add_argument("--repeat", type=int, default=3, help="fresh processes per first call")
    p.add_argument("--first-call", choices=["ebm", "hand"], help=argparse.SUPPRESS)
    p.add_argument("--sizes", default="500,1000", help=argparse.SUPPRESS)
    args = p.parse_args()
    nw, ns = (100, 200) if args.quick else (500, 1000)
    if args.first_call:
        nw, ns = (int(v) for v in args.sizes.split(","))
        print(_first_call(args.first_call, nw, ns, 4))
        return
    steps = 200 if args.quick else 2_000
    print(f"jax {jax.__version__}, numpyro {numpyro.__version__}, device {jax.devices()[0]}")
    pot = bench_potential(steps)
    first = first_calls(nw, ns, 1 if args.quick else args.repeat)
    smp = bench_sampling(nw, ns, 4)
    rows = [
        (
            f"potential+grad, composed & conditioned ({BATCH} points x {steps} steps)",
            pot["ebm"],
            pot["hand"],
            pot["ebm"] / pot["hand"],
            "<= 1.05",
        ),
        (
            f"ebm.sample first call vs hand-jitted functional NUTS ({nw}+{ns}, 4 chains)",
            first["ebm"],
            first["hand"],
            first["ebm"] / first["hand"],
            "<= 1.2",
        ),
        (
            "ebm.sample second call (new values) vs hand-jitted functional NUTS",
            smp["ebm_second"],
            smp["hand_second"],
            smp["ebm_second"] / smp["hand_second"],
            "-",
        ),
        (
            "MCMC.run second call (new values) / ebm.sample second call",
            smp["mcmc_second"],
            smp["ebm_second"],
            smp["mcmc_second"] / smp["ebm_second"],
            ">= 8",
        ),
        (
            "MCMC.run first call vs ebm.sample first call",
            smp["mcmc_first"],
            first["ebm"],
            smp["mcmc_first"] / first["ebm"],
            "-",
        ),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'time A (s)':>10}  {'time B (s)':>10}  {'A/B':>7}  target")
    for name, a, b, ratio, target in rows:
        print(f"{name:<{w}}  {a:>10.4f}  {b:>10.4f}  {ratio:>7.3f}  {target}")
    print("first calls: medians over fresh processes, alternating; the rest: best of repeats")
    print(
        f"max |mean − closed form| of ebm draws: {smp['mean_error']:.3f} "
        f"(MC error ~ {3 * math.sqrt(2 / 3 / (4 * ns)):.3f})"
    )


if __name__ == "__main__":
    main()
