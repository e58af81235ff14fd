"""A NumPyro distribution on a positive support times a closed-form energy.

Gamma(a, b) times exp(−c·s) is Gamma(a, b + c). NUTS runs in the unconstrained space
(s = exp(u)) with the log-Jacobian added, so the draws follow the product exactly.
Run: ``python examples/positive_support.py``.
"""

import jax
import numpyro.distributions as dist

import composable_ebm as ebm


def tilt(s):
    return 2.0 * s


def main(quick: bool = False) -> dict:
    a, b, c = 3.0, 1.0, 2.0
    prior = ebm.FromDistribution("s", dist.Gamma(a, b)).named("gamma prior")
    E = prior + ebm.energy(tilt, s=()).named("tilt")
    n = 300 if quick else 1000
    s = ebm.sample(E, jax.random.key(0), num_warmup=n, num_samples=n)
    draws = s.draws["s"]
    want_mean, want_var = a / (b + c), a / (b + c) ** 2
    print(f"min draw {float(draws.min()):.4f} (> 0: the support is respected)")
    print(
        f"mean {float(draws.mean()):.3f} (Gamma(a, b + c): {want_mean:.3f}), "
        f"var {float(draws.var()):.3f} ({want_var:.3f})"
    )
    return {"draws": draws, "want_mean": want_mean, "want_var": want_var, "samples": s}


if __name__ == "__main__":
    main()
