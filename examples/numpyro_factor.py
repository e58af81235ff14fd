"""An energy as a factor inside a plain NumPyro model.

A ring-shaped constraint energy is added to a NumPyro model with ``ebm.factor``; NumPyro's
own ``MCMC`` samples it, and ``ebm.to_inference_data`` hands the run to ArviZ.
Run: ``python examples/numpyro_factor.py``.
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

import composable_ebm as ebm


def ring(x):
    return 20.0 * (jnp.sqrt(jnp.sum(x * x) + 1e-12) - 1.0) ** 2


RING = ebm.energy(ring, x=(2,))


def model():
    x = numpyro.sample("x", dist.Normal(0.0, 2.0).expand([2]).to_event(1))
    ebm.factor("ring", RING, x=x)


def main(quick: bool = False) -> dict:
    n = 300 if quick else 1000
    mcmc = MCMC(
        NUTS(model),
        num_warmup=n,
        num_samples=n,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0))
    idata = ebm.to_inference_data(mcmc)
    radius = jnp.linalg.norm(mcmc.get_samples()["x"], axis=-1)
    print(f"mean radius {float(radius.mean()):.3f} (the ring has radius 1)")
    print(f"divergences: {int(idata.sample_stats['diverging'].sum())}")
    return {"radius": radius, "idata": idata}


if __name__ == "__main__":
    main()
