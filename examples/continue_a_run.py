"""Continue a NUTS run from where it stopped, without adapting again.

A strongly correlated Gaussian is sampled briefly; while its effective sample size is below
a target, the run continues from ``samples.state`` (adapted step size and mass matrix, the
chains' last positions) with ``num_warmup=0``. After the first continuation the compiled
sampler is reused. Run: ``python examples/continue_a_run.py``.
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np

import composable_ebm as ebm

COV = np.array([[1.0, 0.95], [0.95, 1.0]])


def main(quick: bool = False, target_ess: float = 2000.0) -> dict:
    E = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.asarray(COV))
    n = 200 if quick else 500
    runs = [ebm.sample(E, jax.random.key(0), num_warmup=n, num_samples=n, dense_mass=True)]
    ess = float(runs[0].summary()["ess_bulk"].min())
    print(f"run 0: {n} warmup + {n} draws per chain, ESS {ess:.0f}")
    draws = np.asarray(runs[0].draws["x"])  # (chain, draw, 2)
    for i in range(1, 10):
        if ess >= target_ess:
            break
        more = ebm.sample(E, jax.random.key(i), num_warmup=0, num_samples=n, state=runs[-1].state)
        runs.append(more)
        draws = np.concatenate([draws, np.asarray(more.draws["x"])], axis=1)
        ess = min(float(az.ess(draws[..., j])) for j in range(2))  # of all draws so far
        print(f"run {i}: {n} more draws per chain, ESS {ess:.0f}")
    flat = draws.reshape(-1, 2)
    print(f"sample covariance:\n{np.cov(flat.T).round(3)}\nexact:\n{COV}")
    return {"runs": runs, "draws": draws, "ess": ess, "cov": COV}


if __name__ == "__main__":
    main()
