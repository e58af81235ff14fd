"""Energies taken from NumPyro distributions: E = −log_prob."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to

from .._param import as_float
from .._space import Var
from ._base import Energy, Values
from ._closed_form import _check_name

__all__ = ["FromDistribution"]


def _float_leaves(tree: Any) -> Any:
    def conv(x):
        if isinstance(x, (jax.Array, float)) or hasattr(x, "__array__"):
            arr = jnp.asarray(x)
            return as_float(arr) if jnp.issubdtype(arr.dtype, jnp.floating) else arr
        return x

    return jax.tree_util.tree_map(conv, tree)


class FromDistribution(Energy):
    """−log_prob of any NumPyro distribution, summed to a scalar; support taken from it.

    The variable's shape is the distribution's ``batch_shape + event_shape``. Parameters
    are stored as float array leaves; with ``trainable=True`` each one that has a known
    constraint is stored unconstrained (through ``biject_to``) so ``fit`` can learn it.

    Example:
        >>> import numpyro.distributions as dist, composable_ebm as ebm
        >>> E = ebm.FromDistribution("s", dist.Exponential(2.0))
        >>> round(float(E(1.0)), 4)  # 2·1 − log 2
        1.3069
        >>> E.space["s"].support
        Positive(lower_bound=0.0)
    """

    var: str = eqx.field(static=True)
    dist_type: type = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)
    aux: tuple = eqx.field(static=True)
    unconstrained: tuple[str, ...] = eqx.field(static=True)
    params: tuple
    shape: tuple[int, ...] = eqx.field(static=True)
    support: Any = eqx.field(static=True)

    def __init__(self, var: str, distribution: dist.Distribution, trainable: bool = False):
        self.var = _check_name(var)
        if not isinstance(distribution, dist.Distribution):
            raise TypeError(
                f"FromDistribution expects a numpyro Distribution, got {type(distribution).__name__}"
            )
        d = distribution
        self.dist_type = type(d)
        self.names = tuple(type(d).gather_pytree_data_fields())
        params, self.aux = d.tree_flatten()
        params = list(_float_leaves(tuple(params)))
        unconstrained = []
        if trainable:
            for i, name in enumerate(self.names):
                c = d.arg_constraints.get(name)
                p = params[i]
                if c is None or not isinstance(p, jax.Array) or not jnp.issubdtype(p.dtype, jnp.floating):
                    continue
                try:
                    params[i] = as_float(biject_to(c).inv(p))
                except NotImplementedError:
                    continue
                unconstrained.append(name)
        self.unconstrained = tuple(unconstrained)
        self.params = tuple(params)
        self.shape = tuple(d.batch_shape) + tuple(d.event_shape)
        self.support = d.support
        Var(self.shape, self.support)  # checks the support has concrete bounds

    @property
    def distribution(self) -> dist.Distribution:
        """The NumPyro distribution, rebuilt from the stored leaves."""
        params = list(self.params)
        for i, name in enumerate(self.names):
            if name in self.unconstrained:
                params[i] = biject_to(self.dist_type.arg_constraints[name])(params[i])
        return self.dist_type.tree_unflatten(self.aux, tuple(params))

    @property
    def space(self) -> dict[str, Var]:
        return {self.var: Var(self.shape, self.support)}

    def _energy(self, values: Values) -> jax.Array:
        return -jnp.sum(self.distribution.log_prob(values[self.var]))
