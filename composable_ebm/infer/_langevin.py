"""Langevin kernels (ULA and MALA) in blackjax's three-layer shape, and ``ebm.langevin``.

Layer 1, :func:`init`: the state (position, energy, gradient) at a position.
Layer 2, :func:`build_kernel`: a pure ``kernel(key, state, energy_fn, step_size)`` with
every setting explicit. Layer 3, :func:`langevin`: many chains of an energy, vectorised
with ``vmap`` and iterated with ``lax.scan`` inside one compiled function.

Contrastive divergence (``ebm.ContrastiveDivergence``) reuses :func:`init`,
:func:`build_kernel` and :func:`run_chains`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._param import float_dtype
from .._space import describe_support, support_key
from .._values import leading_axis_values
from ..energies import Energy

__all__ = [
    "LangevinInfo",
    "LangevinState",
    "RunStats",
    "build_kernel",
    "check_real_space",
    "init",
    "langevin",
    "run_chains",
]

EnergyFn = Callable[[Mapping[str, jax.Array]], jax.Array]


class LangevinState(NamedTuple):
    """One chain's state.

    Attributes:
        position: mapping name → array, the current point.
        energy: E(position), a scalar.
        gradient: ∇E(position), a mapping with the position's structure.
    """

    position: dict[str, jax.Array]
    energy: jax.Array
    gradient: dict[str, jax.Array]


class LangevinInfo(NamedTuple):
    """What one step reports.

    Attributes:
        acceptance_rate: the Metropolis–Hastings acceptance probability min(1, r)
            (1 for the unadjusted kernel unless asked for, see :func:`build_kernel`).
        is_accepted: whether the chain moved.
        nonfinite: the proposal's energy or gradient was not finite (it was refused).
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    nonfinite: jax.Array


class RunStats(NamedTuple):
    """Per chain, over a run: mean acceptance probability, fraction of non-finite proposals."""

    acceptance_rate: jax.Array
    nonfinite: jax.Array


def init(position: Mapping[str, jax.Array], energy_fn: EnergyFn) -> LangevinState:
    """The kernel state at ``position``: its energy and gradient.

    Example:
        >>> import jax.numpy as jnp
        >>> from composable_ebm.infer._langevin import init
        >>> s = init({"x": jnp.array([1.0, 2.0])}, lambda v: 0.5 * jnp.sum(v["x"] ** 2))
        >>> float(s.energy), s.gradient["x"].tolist()
        (2.5, [1.0, 2.0])
    """
    position = dict(position)
    energy, gradient = jax.value_and_grad(energy_fn)(position)
    return LangevinState(position, energy, gradient)


def _sq_norm(tree: Any) -> jax.Array:
    return sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree))


def _log_proposal(
    to: LangevinState, frm: LangevinState, step_size: jax.Array, inverse_mass: Any
) -> jax.Array:
    """log q(to | frm) up to a constant: −Σ (to − frm + εD∇E(frm))² / (4εD)."""
    terms = jax.tree_util.tree_map(
        lambda a, b, g, d: jnp.sum(jnp.square(a - b + step_size * d * g) / d),
        to.position,
        frm.position,
        frm.gradient,
        inverse_mass,
    )
    return -sum(jax.tree_util.tree_leaves(terms)) / (4.0 * step_size)


def _all_finite(state: LangevinState) -> jax.Array:
    ok = jnp.isfinite(state.energy)
    for g in jax.tree_util.tree_leaves(state.gradient):
        ok = ok & jnp.all(jnp.isfinite(g))
    return ok


def build_kernel(adjusted: bool = False, mh_probability: bool | None = None) -> Callable:
    """A Langevin kernel: unadjusted (ULA) or Metropolis-adjusted (MALA).

    The proposal is x' = x − εD∇E(x) + sqrt(2εD)·ξ with ξ ~ N(0, I) and D a diagonal
    preconditioner (the inverse mass matrix; the identity by default). ULA moves to it
    (its stationary law is biased by O(ε)); MALA accepts it with probability
    min(1, exp(E(x) − E(x') + log q(x | x') − log q(x' | x))), which leaves
    p ∝ exp(−E) exactly invariant. Both refuse (and report) a proposal whose energy or
    gradient is not finite, so no chain ever holds a non-finite position.

    This is the one Langevin step of the library: ``ebm.sample(kernel="mala" | "ula")``
    (with adaptation around it), ``ebm.langevin``, contrastive divergence and AIS all
    call it.

    Args:
        adjusted: add the Metropolis–Hastings correction (MALA).
        mh_probability: compute the MH acceptance probability even when unadjusted
            (default: only when adjusted), e.g. to tune ULA's step size.

    Returns:
        ``kernel(key, state, energy_fn, step_size, inverse_mass=None) -> (state, info)``,
        pure and jittable; ``inverse_mass`` is D with the position's structure.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from composable_ebm.infer._langevin import build_kernel, init
        >>> energy_fn = lambda v: 0.5 * jnp.sum(v["x"] ** 2)
        >>> kernel = build_kernel(adjusted=True)
        >>> state, info = kernel(jax.random.key(0), init({"x": jnp.zeros(2)}, energy_fn),
        ...                      energy_fn, 0.1)
        >>> state.position["x"].shape, bool(0.0 < info.acceptance_rate <= 1.0)
        ((2,), True)
    """
    with_mh = adjusted if mh_probability is None else bool(mh_probability)

    def kernel(
        key: jax.Array,
        state: LangevinState,
        energy_fn: EnergyFn,
        step_size: Any,
        inverse_mass: Any = None,
    ) -> tuple[LangevinState, LangevinInfo]:
        step_size = jnp.asarray(step_size, jnp.result_type(state.energy))
        if inverse_mass is None:
            inverse_mass = jax.tree_util.tree_map(lambda x: jnp.ones((), x.dtype), state.position)
        k_noise, k_accept = jax.random.split(key)
        leaves, treedef = jax.tree_util.tree_flatten(state.position)
        keys = jax.random.split(k_noise, len(leaves))
        noise = [
            jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)
        ]
        noise = jax.tree_util.tree_unflatten(treedef, noise)
        position = jax.tree_util.tree_map(
            lambda x, g, z, d: x - step_size * d * g + jnp.sqrt(2.0 * step_size * d) * z,
            state.position,
            state.gradient,
            noise,
            inverse_mass,
        )
        proposal = init(position, energy_fn)
        finite = _all_finite(proposal)
        if with_mh:
            log_ratio = (
                state.energy
                - proposal.energy
                + _log_proposal(state, proposal, step_size, inverse_mass)
                - _log_proposal(proposal, state, step_size, inverse_mass)
            )
            log_ratio = jnp.where(finite & ~jnp.isnan(log_ratio), log_ratio, -jnp.inf)
            accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        else:
            accept_prob = finite.astype(step_size.dtype)
        if adjusted:
            accepted = jax.random.uniform(k_accept, (), accept_prob.dtype) < accept_prob
        else:
            accepted = finite
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(accepted, a, b), proposal, state)
        return new, LangevinInfo(accept_prob, accepted, ~finite)

    return kernel


def run_chains(
    key: jax.Array,
    position: Mapping[str, jax.Array],
    energy_fn: EnergyFn,
    step_size: jax.Array,
    num_steps: int,
    adjusted: bool = False,
) -> tuple[LangevinState, jax.Array]:
    """``num_steps`` kernel steps of many chains (leading axis of every position array).

    Pure and traceable (call it inside ``jit``). Returns the final per-chain states and
    a :class:`RunStats` (per chain: mean acceptance probability, fraction of proposals
    refused because their energy or gradient was not finite).
    """
    kernel = build_kernel(adjusted)
    position = dict(position)
    num_chains = jnp.shape(next(iter(position.values())))[0]
    states = jax.vmap(init, in_axes=(0, None))(position, energy_fn)
    step = jax.vmap(kernel, in_axes=(0, 0, None, None))

    def body(carry, key):
        states, acc, bad = carry
        states, info = step(jax.random.split(key, num_chains), states, energy_fn, step_size)
        acc = acc + info.acceptance_rate.astype(acc.dtype)
        return (states, acc, bad + info.nonfinite.astype(acc.dtype)), None

    zeros = jnp.zeros((num_chains,), states.energy.dtype)
    (states, acc, bad), _ = jax.lax.scan(
        body, (states, zeros, zeros), jax.random.split(key, num_steps)
    )
    n = max(num_steps, 1)
    return states, RunStats(acc / n, bad / n)


def check_real_space(energy: Energy, what: str = "Langevin") -> dict:
    """The energy's space, after checking every variable is real-valued with a known shape."""
    space = energy.space
    for name, var in space.items():
        if var.is_discrete:
            raise TypeError(
                f"{what} moves continuous variables only, but variable {name!r} is discrete "
                f"({describe_support(var.support)}); condition it or marginalise it out"
            )
        if support_key(var.support) != ("real",):
            raise ValueError(
                f"{what} supports real-valued variables only for now, but variable {name!r} "
                f"has support {describe_support(var.support)}; use ebm.sample (NUTS) instead"
            )
        if var.shape is None:
            raise ValueError(
                f"variable {name!r} has no known shape (a Confinement without shape= and "
                "nothing else fixing it); give it a shape"
            )
    return space


@eqx.filter_jit
def _run(energy, key, position, step_size, num_steps, adjusted):
    start = jax.vmap(lambda p: _all_finite(init(p, energy.evaluate)))(position)
    states, stats = run_chains(key, position, energy.evaluate, step_size, num_steps, adjusted)
    return states.position, start, jnp.mean(stats.nonfinite)


def langevin(
    E: Energy,
    key: jax.Array,
    init: Mapping[str, Any] | Any,
    *,
    step_size: float | jax.Array,
    num_steps: int,
    adjusted: bool = False,
) -> dict[str, jax.Array]:
    """Many chains of (Metropolis-adjusted) Langevin dynamics on ``E``.

    All chains run in one compiled function (chains vectorised with ``vmap``, steps with
    ``lax.scan``). Calling again with new values (energy parameters, condition values,
    ``init``, ``step_size``, ``key``) reuses the compiled code; a new ``num_steps``,
    ``adjusted``, number of chains or energy structure compiles again.

    Args:
        E: an energy whose free variables are all real-valued.
        key: a JAX random key.
        init: mapping name → array (num_chains, *shape), one start per chain; a bare
            array for a one-variable energy.
        step_size: ε > 0; the update is x − ε∇E(x) + sqrt(2ε)·ξ.
        num_steps: number of Langevin steps.
        adjusted: ``False`` for the unadjusted algorithm (ULA: fast, biased by O(ε)),
            ``True`` for MALA (exact, with a Metropolis–Hastings correction).

    Returns:
        Mapping name → final positions (num_chains, *shape).

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.array([1.0, -1.0]), cov=1.0)
        >>> out = ebm.langevin(E, jax.random.key(0), {"x": jnp.zeros((2000, 2))},
        ...                    step_size=0.1, num_steps=200, adjusted=True)
        >>> out["x"].shape, bool(jnp.allclose(out["x"].mean(0), E.mean, atol=0.15))
        ((2000, 2), True)
    """
    if not isinstance(E, Energy):
        raise TypeError(f"langevin expects an ebm.Energy, got {type(E).__name__}")
    space = check_real_space(E, "langevin")
    if not isinstance(num_steps, (int, np.integer)) or isinstance(num_steps, bool):
        raise TypeError(f"num_steps must be an integer, got {num_steps!r}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    if isinstance(step_size, jax.core.Tracer):
        raise TypeError("step_size must be concrete when calling ebm.langevin")
    eps = jnp.asarray(np.asarray(step_size, dtype=float_dtype()))
    if eps.ndim != 0 or not (math.isfinite(float(eps)) and float(eps) > 0):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")
    position, _ = leading_axis_values(space, init, "init", "chains")
    out, start_ok, nonfinite = _run(E, key, position, eps, int(num_steps), bool(adjusted))
    start_ok = np.asarray(start_ok)
    if not start_ok.all():
        c = int(np.flatnonzero(~start_ok)[0])
        raise ValueError(
            f"langevin: the energy or its gradient is not finite at init for chain {c} "
            f"({int((~start_ok).sum())} of {start_ok.size} chains); start every chain where "
            "the energy is finite"
        )
    frac = float(nonfinite)
    if frac > 0:
        warnings.warn(
            f"langevin: {frac:.1%} of the proposals had a non-finite energy or gradient and "
            "were refused (the chains stayed put). The step size may be too large, or the "
            "energy is not finite in part of the space",
            RuntimeWarning,
            stacklevel=2,
        )
    return out
