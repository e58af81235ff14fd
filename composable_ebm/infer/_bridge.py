"""The NumPyro bridge: potentials in the unconstrained space, initial values, constraining."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from numpyro.distributions.transforms import IdentityTransform, Transform, biject_to

from .._param import float_dtype
from .._space import Var, describe_support
from ..energies import Energy

__all__ = [
    "constrain",
    "constrain_with_jacobian",
    "continuous_space",
    "init_params",
    "postprocess_fn",
    "potential",
    "potential_fn",
    "transforms",
    "unconstrain",
]


def continuous_space(energy: Energy, what: str = "sampling") -> dict[str, Var]:
    """The energy's space, checked for use in the unconstrained space (NUTS/HMC)."""
    if not isinstance(energy, Energy):
        raise TypeError(f"expected an ebm.Energy, got {type(energy).__name__}")
    space = energy.space
    if not space:
        raise ValueError(f"{what} needs at least one free variable; this energy has none")
    for name, var in space.items():
        if var.shape is None:
            raise ValueError(
                f"variable {name!r} has no known shape: give it one (e.g. "
                f"Confinement({name!r}, shape=...)) or add a term that fixes it"
            )
        if var.is_discrete:
            raise ValueError(
                f"variable {name!r} is discrete (support {describe_support(var.support)}); "
                f"NUTS/HMC/MALA need continuous variables. Sum it out with "
                f"E.marginalize({name!r}), use kernel='gibbs' for binary variables of an "
                "energy such as an RBM, or run NumPyro's DiscreteHMCGibbs on ebm.model(E)"
            )
    return space


def transforms(space: Mapping[str, Var]) -> dict[str, Transform]:
    """``biject_to`` of each variable's support."""
    return {name: biject_to(var.support) for name, var in space.items()}


def _unconstrained_shape(t: Transform, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(t.inverse_shape(shape))


def _batched(fn: Callable, x: jax.Array, event_shape: tuple[int, ...], name: str) -> jax.Array:
    """``fn`` on one event, mapped over any leading batch axes of ``x``.

    NumPyro's transforms broadcast a batch against per-event constants by rank promotion
    (e.g. the stick-breaking shift), which fails under ``jax_numpy_rank_promotion="raise"``;
    mapping over the batch axes keeps every operation at the event's rank.
    """
    x = jnp.asarray(x)
    nb = x.ndim - len(event_shape)
    if nb < 0 or tuple(x.shape[nb:]) != tuple(event_shape):
        raise ValueError(
            f"variable {name!r}: a value of shape {x.shape} does not end with the expected "
            f"shape {event_shape}"
        )
    if nb == 0:
        return fn(x)
    batch = x.shape[:nb]
    y = jax.vmap(fn)(x.reshape((-1, *event_shape)))
    return y.reshape(batch + y.shape[1:])


def constrain_with_jacobian(
    ts: Mapping[str, Transform], params: Mapping[str, jax.Array]
) -> tuple[dict, jax.Array]:
    """Constrained values of one point and Σ log|det ∂T/∂u| (identity transforms skipped)."""
    values, log_jac = {}, jnp.zeros((), float_dtype())
    for name, t in ts.items():
        u = params[name]
        x = t(u)
        values[name] = x
        if not isinstance(t, IdentityTransform):
            log_jac = log_jac + jnp.sum(t.log_abs_det_jacobian(u, x))
    return values, log_jac


def potential(energy: Energy, params: Mapping[str, jax.Array]) -> jax.Array:
    """E(T(u)) − Σ log|det ∂T/∂u| at unconstrained values ``u`` (no checks)."""
    values, log_jac = constrain_with_jacobian(transforms(energy.space), params)
    return energy.evaluate(values) - log_jac


def potential_fn(energy: Energy) -> Callable[[Mapping[str, jax.Array]], jax.Array]:
    """A potential for ``NUTS(potential_fn=...)``, on **unconstrained** values.

    It includes the log-Jacobian of each support's transform, exactly as NumPyro does for
    the sites of a model, so it equals NumPyro's potential of ``ebm.model(E)``.

    Example:
        >>> import jax, numpyro.distributions as dist, composable_ebm as ebm
        >>> E = ebm.FromDistribution("s", dist.Exponential(1.0))
        >>> pe = ebm.potential_fn(E)  # s = exp(u): E(exp(u)) − u
        >>> round(float(pe({"s": 0.0})), 4)
        1.0
    """
    space = continuous_space(energy, "potential_fn")

    def fn(params: Mapping[str, jax.Array]) -> jax.Array:
        missing = sorted(set(space) - set(params))
        if missing:
            raise KeyError(f"potential_fn: missing variable(s) {missing}")
        return potential(energy, params)

    return fn


def init_params(energy: Energy, key: jax.Array, num_chains: int | None = None) -> dict:
    """Unconstrained initial values, uniform in (−2, 2) as NumPyro's ``init_to_uniform``.

    Args:
        energy: the energy to sample.
        key: a JAX random key.
        num_chains: if given, values get a leading chain axis of this size.

    Example:
        >>> import jax, composable_ebm as ebm
        >>> z = ebm.init_params(ebm.Gaussian("x", 0.0, cov=1.0), jax.random.key(0), 4)
        >>> z["x"].shape
        (4,)
    """
    space = continuous_space(energy, "init_params")
    ts = transforms(space)
    lead = () if num_chains is None else (int(num_chains),)
    keys = jax.random.split(key, len(space))
    return {
        name: jax.random.uniform(
            k, lead + _unconstrained_shape(ts[name], space[name].shape), float_dtype(), -2.0, 2.0
        )
        for k, name in zip(keys, space)
    }


def constrain(energy: Energy, params: Mapping[str, jax.Array]) -> dict:
    """Map unconstrained values (any leading batch axes) to the energy's supports.

    Example:
        >>> import jax.numpy as jnp, numpyro.distributions as dist, composable_ebm as ebm
        >>> E = ebm.FromDistribution("s", dist.Exponential(1.0))
        >>> ebm.constrain(E, {"s": jnp.zeros(3)})["s"].tolist()
        [1.0, 1.0, 1.0]
    """
    space = continuous_space(energy, "constrain")
    ts = transforms(space)
    return {
        name: _batched(t, params[name], _unconstrained_shape(t, space[name].shape), name)
        for name, t in ts.items()
    }


def unconstrain(energy: Energy, values: Mapping[str, jax.Array]) -> dict:
    """Map constrained values (any leading batch axes) to the unconstrained space.

    The inverse of :func:`constrain`.

    Example:
        >>> import jax.numpy as jnp, numpyro.distributions as dist, composable_ebm as ebm
        >>> E = ebm.FromDistribution("s", dist.Exponential(1.0))
        >>> ebm.unconstrain(E, {"s": jnp.ones(2)})["s"].tolist()
        [0.0, 0.0]
    """
    space = continuous_space(energy, "unconstrain")
    ts = transforms(space)
    return {name: _batched(t.inv, values[name], space[name].shape, name) for name, t in ts.items()}


def postprocess_fn(energy: Energy) -> Callable[[Mapping[str, jax.Array]], dict]:
    """For ``MCMC(NUTS(potential_fn=ebm.potential_fn(E)), postprocess_fn=...)``.

    Maps the sampler's unconstrained draws to the energy's supports.

    Example:
        >>> import numpyro.distributions as dist, composable_ebm as ebm
        >>> E = ebm.FromDistribution("s", dist.Exponential(1.0))
        >>> float(ebm.postprocess_fn(E)({"s": 0.0})["s"])
        1.0
    """
    continuous_space(energy, "postprocess_fn")

    def fn(params: Mapping[str, jax.Array]) -> dict:
        return constrain(energy, params)

    return fn
