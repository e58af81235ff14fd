"""Energies inside NumPyro: as a model, as a factor, as a distribution."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from .._space import Var, support_key
from ..energies import Energy

__all__ = ["EnergyDistribution", "factor", "model"]


def _site_distribution(name: str, var: Var) -> dist.Distribution:
    if var.shape is None:
        raise ValueError(f"variable {name!r} has no known shape; ebm.model needs one")
    if var.is_discrete:
        key = support_key(var.support)
        if key[0] != "integer_interval":
            raise ValueError(
                f"variable {name!r} has an infinite discrete support; ebm.model needs a "
                "finite one (integer_interval or boolean)"
            )
        d = dist.DiscreteUniform(key[1], key[2]).expand(var.shape)
        return d.to_event(len(var.shape)) if var.shape else d
    return dist.ImproperUniform(var.support, (), var.shape)


def model(energy: Energy, factor_name: str = "energy") -> Callable[[], None]:
    """A NumPyro model (no arguments) whose sample sites are the energy's variables.

    Each site is an ``ImproperUniform`` over its support (``DiscreteUniform`` for finite
    discrete supports), and a factor adds −E. NumPyro's potential of this model equals
    ``ebm.potential_fn(E)``; ``numpyro.handlers.condition`` works on it.

    Example:
        >>> import jax, numpyro, composable_ebm as ebm
        >>> from numpyro.infer import MCMC, NUTS
        >>> mcmc = MCMC(NUTS(ebm.model(ebm.Gaussian("x", 1.0, cov=1.0))),
        ...             num_warmup=200, num_samples=200, progress_bar=False)
        >>> mcmc.run(jax.random.key(0))
        >>> abs(float(mcmc.get_samples()["x"].mean()) - 1.0) < 0.3
        True
    """
    if not isinstance(energy, Energy):
        raise TypeError(f"ebm.model expects an Energy, got {type(energy).__name__}")
    sites = {name: _site_distribution(name, var) for name, var in energy.space.items()}

    def energy_model() -> None:
        values = {name: numpyro.sample(name, d) for name, d in sites.items()}
        numpyro.factor(factor_name, -energy(values))

    return energy_model


def factor(name: str, energy: Energy, **values: Any) -> None:
    """Inside a NumPyro model, add −E(values) to the log joint (over batch axes too).

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, composable_ebm as ebm
        >>> import numpyro.distributions as dist
        >>> ring = ebm.energy(lambda x: 10 * (jnp.linalg.norm(x) - 1) ** 2, x=(2,))
        >>> def m():
        ...     x = numpyro.sample("x", dist.Normal(0, 2).expand([2]).to_event(1))
        ...     ebm.factor("ring", ring, x=x)
        >>> tr = numpyro.handlers.trace(numpyro.handlers.seed(m, 0)).get_trace()
        >>> sorted(tr)
        ['ring', 'x']
    """
    if not isinstance(energy, Energy):
        raise TypeError(f"ebm.factor expects an Energy, got {type(energy).__name__}")
    numpyro.factor(name, -energy.batch(values))


class EnergyDistribution(dist.Distribution):
    """A NumPyro distribution for a one-variable energy: unnormalised ``log_prob = −E``.

    Use it as a prior or likelihood term in a model sampled by MCMC; it cannot be sampled
    directly (its normaliser is unknown).

    Example:
        >>> import jax.numpy as jnp, composable_ebm as ebm
        >>> d = ebm.EnergyDistribution(ebm.Gaussian("x", jnp.zeros(2), cov=1.0))
        >>> d.log_prob(jnp.ones((3, 2))).shape
        (3,)
    """

    arg_constraints: ClassVar[dict] = {}
    pytree_data_fields = ("energy",)
    pytree_aux_fields = ("var_name",)

    def __init__(self, energy: Energy, *, validate_args: bool | None = None):
        if not isinstance(energy, Energy):
            raise TypeError(f"EnergyDistribution expects an Energy, got {type(energy).__name__}")
        space = energy.space
        if len(space) != 1:
            raise ValueError(
                f"EnergyDistribution needs an energy over exactly one variable, got "
                f"{sorted(space)}; condition or marginalise the others first"
            )
        ((self.var_name, var),) = space.items()
        if var.shape is None:
            raise ValueError(f"variable {self.var_name!r} has no known shape")
        self.energy = energy
        super().__init__(batch_shape=(), event_shape=var.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False)
    def support(self) -> constraints.Constraint:
        var = self.energy.space[self.var_name]
        extra = len(var.shape) - var.support.event_dim
        return constraints.independent(var.support, extra) if extra > 0 else var.support

    def log_prob(self, value: jax.Array) -> jax.Array:
        return -self.energy.batch({self.var_name: value})

    def sample(self, key: jax.Array, sample_shape: tuple = ()) -> jax.Array:
        raise NotImplementedError(
            "EnergyDistribution has an unknown normaliser and cannot be sampled directly; "
            "use it inside a model run by MCMC (NUTS), or call ebm.sample(energy, key)"
        )
