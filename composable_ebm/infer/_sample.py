"""``ebm.sample``: any kernel (NUTS, HMC, MALA, ULA, Gibbs, tempered) through one driver."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._devices import mesh_for
from ..energies import Energy
from . import _checks, _recompile
from ._bridge import constrain_with_jacobian, continuous_space, transforms
from ._driver import TRACE_COUNT, run
from ._init import given_positions, raw_positions, uniform_positions
from ._samples import ChainState, Samples
from .kernels import KERNELS, Kernel
from .kernels.tempering import tempered

__all__ = ["TRACE_COUNT", "sample"]


@eqx.filter_jit
def _finish(energy: Energy, kernel: Kernel, recs: dict) -> tuple[dict, dict]:
    """Draws in the variables' own space and statistics from the kept records."""
    stats = {k: v for k, v in recs.items() if k != "position"}
    pos = recs["position"]
    if kernel.unconstrained:
        ts = transforms(energy.space)
        # one point at a time (no rank promotion); E = potential + log-Jacobian
        x, log_jac = jax.vmap(jax.vmap(partial(constrain_with_jacobian, ts)))(pos)
        stats["model_energy"] = recs["potential_energy"] + log_jac
    else:
        space = energy.space
        x = {k: v.astype(jnp.int32) if space[k].is_discrete else v for k, v in pos.items()}
        stats["model_energy"] = recs["potential_energy"]
    return x, stats


def _check_key(key: Any) -> None:
    typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,)
    if not ((typed and key.shape == ()) or raw):
        raise TypeError(f"key must be one JAX random key such as jax.random.key(0), got {key!r}")


def _check_counts(num_warmup: int, num_samples: int, num_chains: int) -> None:
    for what, n, low in (
        ("num_warmup", num_warmup, 0),
        ("num_samples", num_samples, 1),
        ("num_chains", num_chains, 1),
    ):
        if not isinstance(n, int) or isinstance(n, bool) or n < low:
            raise ValueError(f"{what} must be an integer >= {low}, got {n!r}")


def _kernel_class(name: Any) -> type[Kernel]:
    if not isinstance(name, str) or name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; choose one of {sorted(KERNELS)}")
    return KERNELS[name]


def _space(energy: Energy, cls: type[Kernel]) -> dict:
    if not cls.discrete:
        return continuous_space(energy, "ebm.sample")
    if not isinstance(energy, Energy):
        raise TypeError(f"expected an ebm.Energy, got {type(energy).__name__}")
    space = energy.space
    if not space:
        raise ValueError("ebm.sample needs at least one free variable; this energy has none")
    for name, var in space.items():
        if var.shape is None:
            raise ValueError(f"variable {name!r} has no known shape: give it one")
    return space


def _continue(state: Any, num_warmup: int, num_chains: int, kernel, options, init, space):
    if not isinstance(state, ChainState):
        raise TypeError("state must be a previous run's Samples.state")
    if num_warmup != 0:
        raise ValueError("continuing from a state needs num_warmup=0 (it is already adapted)")
    if init is not None:
        raise ValueError("give either state= (continue a run) or init=, not both")
    if kernel not in (None, state.name) or options:
        raise ValueError(
            f"a continued run keeps the kernel and options of the state ({state.name!r}); "
            f"got kernel={kernel!r} and options {sorted(options)}"
        )
    pos = state.position
    n = jnp.shape(next(iter(pos.values())))[0]
    if n != num_chains:
        raise ValueError(f"state has {n} chains but num_chains={num_chains}")
    if state.kernel.unconstrained:
        ts = transforms(space)
        want = {k: (num_chains, *ts[k].inverse_shape(v.shape)) for k, v in space.items()}
    else:
        want = {k: (num_chains, *v.shape) for k, v in space.items()}
    have = {k: tuple(jnp.shape(v)) for k, v in pos.items()}
    if want != have:
        raise ValueError(f"the state's positions {have} do not fit this energy's space {want}")
    return state.kernel.with_num_warmup(0), state.params


def sample(
    energy: Energy,
    key: jax.Array,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    kernel: str | None = None,
    init: Mapping[str, Any] | None = None,
    progress: bool = False,
    state: ChainState | None = None,
    temperatures: Sequence[float] | jax.Array | None = None,
    devices: str | Sequence[Any] | None = None,
    **kernel_options: Any,
) -> Samples:
    """Sample exp(−E) with any kernel, all chains in one compiled function.

    The compiled sampler is cached on the energy's structure, its array shapes and dtypes,
    and the static settings: sampling again with new condition values, weights, trained
    parameters or temperatures reuses it.

    Args:
        energy: the energy; its free variables must have known shapes (and be
            continuous, except for ``kernel="gibbs"``).
        key: a JAX random key.
        num_warmup: adaptation steps (step size, diagonal or dense mass matrix).
        num_samples: draws kept per chain.
        num_chains: chains, run together with ``vmap``.
        kernel: ``"nuts"`` (default), ``"hmc"``, ``"mala"`` (Metropolis-adjusted
            Langevin, step size adapted towards an acceptance of 0.574, diagonal mass
            matrix), ``"ula"`` (unadjusted Langevin, fixed ``step_size``) or
            ``"gibbs"`` (block Gibbs, e.g. for RBMs).
        init: constrained starting values (name → value, optionally with a chain axis);
            by default the chains start spread over (−2, 2) in the unconstrained space
            (stratified across chains), searching further where the energy is not finite.
        progress: show a tqdm bar (the run is split into chunks between host updates).
        state: a previous run's ``Samples.state`` to continue from (``num_warmup=0``;
            the kernel and its options come from the state).
        temperatures: parallel tempering: increasing temperatures starting at 1, e.g.
            ``[1, 2, 4, 8]``; each chain runs one replica of E/T per temperature with
            the chosen kernel, neighbours propose swaps after every step, and only the
            T = 1 replica's draws are returned (``stats["swap_accept_prob"]`` holds the
            swap acceptance per neighbouring pair).
        devices: where the chains run. ``None``: every local device
            (``jax.local_devices()``) when ``num_chains`` divides evenly among them, else
            the default device; ``"all"``: every device of every host (an error when the
            chains do not divide evenly); or a list of devices. The chain axis is sharded
            over a ``jax.sharding.Mesh`` and each device advances its own chains in one
            compiled program; the draws stay sharded arrays. On one CPU nothing changes.
        **kernel_options: the kernel's options. NUTS/HMC, static (new values compile
            anew): ``max_tree_depth``, ``dense_mass``, ``adapt_step_size``,
            ``adapt_mass_matrix``, ``find_heuristic_step_size``,
            ``forward_mode_differentiation``, ``regularize_mass_matrix``, ``num_steps``;
            traced: ``step_size``, ``trajectory_length``, ``inverse_mass_matrix``,
            ``target_accept_prob``. MALA/ULA: ``step_size``, ``target_accept_prob``,
            ``inverse_mass_matrix`` (traced), ``adapt_step_size``,
            ``adapt_mass_matrix``, ``regularize_mass_matrix`` (static).

    Returns:
        :class:`~composable_ebm.Samples` with draws (chain, draw, *shape), per-draw
        statistics, per-term energies and the final state.

    Warns:
        RuntimeWarning: when most transitions diverge or are rejected, when proposals
        hit points where a term is not finite (naming the term), or when chains sit in
        different basins.

    Example:
        >>> import jax, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", 1.0, cov=0.25)
        >>> s = ebm.sample(E, jax.random.key(0), num_warmup=200, num_samples=300,
        ...                num_chains=2)
        >>> s.draws["x"].shape
        (2, 300)
        >>> abs(float(s.draws["x"].mean()) - 1.0) < 0.1
        True
    """
    _check_key(key)
    _check_counts(num_warmup, num_samples, num_chains)
    mesh = mesh_for(devices, num_chains, "num_chains")
    if state is not None:
        cls = type(state.kernel) if isinstance(state, ChainState) else KERNELS["nuts"]
        space = _space(energy, cls)
        if temperatures is not None:
            raise ValueError("a continued run keeps the state's temperatures; omit temperatures")
        kern, params = _continue(state, num_warmup, num_chains, kernel, kernel_options, init, space)
        name, position0, kstate = state.name, None, state.kernel_state
    else:
        name = "nuts" if kernel is None else kernel
        cls = _kernel_class(name)
        space = _space(energy, cls)
        kern, params = cls.from_options(num_warmup, kernel_options)
        kern = kern.for_space(space)
        if kern.unconstrained:
            ts = transforms(space)
            dim = sum(math.prod(ts[k].inverse_shape(v.shape)) for k, v in space.items())
            kern.check_dimension(params, dim)
        if temperatures is not None:
            kern, params = tempered(kern, params, temperatures)
        if init is not None and kern.unconstrained:
            position0 = given_positions(energy, init, num_chains)
        elif init is not None:
            position0 = _raw_init(energy, init, num_chains)
        elif kern.unconstrained:
            position0 = uniform_positions(energy, key, num_chains)
        else:
            position0 = raw_positions(energy, key, num_chains)
        kstate = None
    st, recs = run(
        energy,
        kern,
        params,
        key,
        position0=position0,
        state=kstate,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        given_init=init is not None,
        progress=progress,
        mesh=mesh,
    )
    draws, stats = _finish(energy, kern, recs)
    samples = Samples(
        draws=draws,
        stats=stats,
        state=ChainState(st, kern, params, name),
        energy=energy,
        kernel=name,
    )
    for message in [*_recompile.pending(), *_checks.run_warnings(samples, kern, num_warmup)]:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return samples


def _raw_init(energy: Energy, init: Mapping[str, Any], num_chains: int) -> dict:
    from .._param import float_dtype
    from ._init import _chain_values

    space = energy.space
    vals = _chain_values(energy, init, num_chains)
    return {k: jnp.asarray(v, float_dtype()) for k, v in vals.items() if k in space}
