"""``ebm.sample``: NumPyro's NUTS/HMC kernels in one compiled function, chains vmapped."""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import HMCState, hmc

from ..energies import Energy
from ._bridge import constrain_with_jacobian, continuous_space, potential, transforms
from ._init import (
    given_positions,
    raise_if_invalid,
    search,
    state_is_valid,
    uniform_positions,
)
from ._options import KERNELS, Settings, split_options
from ._samples import ChainState, Samples

__all__ = ["sample"]

# How many times the sampler has been traced, for tests that check reuse.
TRACE_COUNT: collections.Counter = collections.Counter()
PROGRESS_CHUNKS = 20


def _raw(st: HMCState) -> dict:
    """What each step keeps: plain copies, so the loop body stays small."""
    return {
        "z": st.z,
        "diverging": st.diverging,
        "accept_prob": st.accept_prob,
        "num_steps": st.num_steps,
        "step_size": st.adapt_state.step_size,
        "hamiltonian": st.energy,
        "potential_energy": st.potential_energy,
    }


def _finish(energy: Energy, raw: dict, algo: str) -> dict:
    """Draws (constrained) and statistics from the kept steps (chain, draw), vectorised."""
    ts = transforms(energy.space)
    # one point at a time (no rank promotion); E = potential + log-Jacobian, not re-evaluated
    x, log_jac = jax.vmap(jax.vmap(partial(constrain_with_jacobian, ts)))(raw["z"])
    stats = {k: v for k, v in raw.items() if k != "z"}
    if algo == "NUTS":
        stats["tree_depth"] = jnp.ceil(jnp.log2(raw["num_steps"] + 1.0)).astype(jnp.int32)
    else:
        stats["tree_depth"] = jnp.zeros_like(raw["num_steps"], dtype=jnp.int32)
    stats["model_energy"] = raw["potential_energy"] + log_jac
    return {"draws": x, "stats": stats}


_finish_jit = eqx.filter_jit(_finish)


@eqx.filter_jit
def _advance(
    energy: Energy,
    key: jax.Array,
    z0: dict,
    traced: dict,
    state: HMCState | None,
    start: jax.Array,
    settings: Settings,
    length: int,
    chunked: bool,
) -> tuple[HMCState, dict, jax.Array]:
    """Steps ``start .. start+length`` of warmup and sampling, with every step's record.

    Without ``state`` the chains start at ``z0`` (unconstrained) and run only if the
    energy and its gradient are finite there for every chain; the flags come back so the
    host can search for other points or raise an error naming the term at fault. The
    ``hmc()`` pair is created here, inside the trace, every time: ``init_kernel``
    configures ``sample_kernel`` through closure variables.
    """
    TRACE_COUNT["sample"] += 1
    init_kernel, sample_kernel = hmc(partial(potential, energy), algo=settings.algo)
    init = partial(
        init_kernel,
        num_warmup=settings.num_warmup,
        step_size=traced["step_size"],
        inverse_mass_matrix=traced["inverse_mass_matrix"],
        target_accept_prob=traced["target_accept_prob"],
        trajectory_length=traced["trajectory_length"],
        **dict(settings.static),
    )
    keys = jax.random.split(key, settings.num_chains)
    if state is None:
        st = jax.vmap(lambda z, k: init(z, rng_key=k))(z0, keys)
        ok = state_is_valid(st)
    else:
        jax.vmap(lambda z, k: init(z, rng_key=k))(state.z, keys)  # configures sample_kernel
        st, ok = state, jnp.ones(settings.num_chains, dtype=bool)
    nw, total = settings.num_warmup, settings.num_warmup + settings.num_samples
    step = jax.vmap(sample_kernel)

    def advance(st, i):
        st = step(st)
        return st, _raw(st)

    def body(st, i):
        if chunked:  # chunked runs may pass the end: those steps do nothing
            return jax.lax.cond(i < total, advance, lambda st, i: (st, _raw(st)), st, i)
        return advance(st, i)

    def run(st):
        st, raw = jax.lax.scan(body, st, start + jnp.arange(length))
        raw = jax.tree_util.tree_map(lambda r: jnp.swapaxes(r, 0, 1), raw)
        if chunked:  # a chunk: the host keeps the steps after warmup
            return st, raw
        raw = jax.tree_util.tree_map(lambda r: r[:, nw:], raw)
        return st, _finish(energy, raw, settings.algo)

    if state is None:  # never sample from an invalid start: the host handles it
        shapes = jax.eval_shape(run, st)[1]
        zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        st, recs = jax.lax.cond(jnp.all(ok), run, lambda st: (st, zeros), st)
    else:
        st, recs = run(st)
    return st, recs, ok


def _check_key(key: Any) -> None:
    typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,)
    if not ((typed and key.shape == ()) or raw):
        raise TypeError(f"key must be one JAX random key such as jax.random.key(0), got {key!r}")


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
    state: HMCState | None = None,
    **kernel_options: Any,
) -> Samples:
    """Sample exp(−E) with NumPyro's NUTS (or HMC), all chains in one compiled function.

    The compiled sampler is cached on the energy's structure, its array shapes and dtypes,
    and the static settings: sampling again with new condition values, weights or trained
    parameters reuses it.

    Args:
        energy: the energy; its free variables must be continuous with known shapes.
        key: a JAX random key.
        num_warmup: adaptation steps (step size, diagonal or dense mass matrix).
        num_samples: draws kept per chain.
        num_chains: chains, run together with ``vmap``.
        kernel: ``"nuts"`` (default) or ``"hmc"``.
        init: constrained starting values (name → value, optionally with a chain axis);
            by default each chain searches uniformly in (−2, 2) unconstrained.
        progress: show a tqdm bar (the run is split into chunks between host updates).
        state: a previous run's ``Samples.state`` to continue from (``num_warmup=0``;
            the kernel and its options come from the state).
        **kernel_options: NumPyro kernel options. Static (new values compile anew):
            ``max_tree_depth``, ``dense_mass``, ``adapt_step_size``,
            ``adapt_mass_matrix``, ``find_heuristic_step_size``,
            ``forward_mode_differentiation``, ``regularize_mass_matrix``, ``num_steps``.
            Traced: ``step_size``, ``trajectory_length``, ``inverse_mass_matrix``,
            ``target_accept_prob``.

    Returns:
        :class:`~composable_ebm.Samples` with draws (chain, draw, *shape) in the
        constrained space, per-draw statistics and the final state.

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
    space = continuous_space(energy, "ebm.sample")
    _check_key(key)
    if state is not None:
        if not isinstance(state, ChainState):
            raise TypeError("state must be a previous run's Samples.state")
        if num_warmup != 0:
            raise ValueError("continuing from a state needs num_warmup=0 (it is already adapted)")
        if init is not None:
            raise ValueError("give either state= (continue a run) or init=, not both")
        if kernel not in (None, state.kernel) or kernel_options:
            raise ValueError(
                f"a continued run keeps the kernel and options of the state ({state.kernel!r}); "
                f"got kernel={kernel!r} and options {sorted(kernel_options)}"
            )
        kernel, traced = state.kernel, state.traced
        settings = Settings(KERNELS[kernel], 0, num_samples, num_chains, state.static)
        split_options(kernel, 0, num_samples, num_chains, dict(state.static))  # checks counts
        got = jnp.shape(state.hmc.i)
        if got != (num_chains,):
            raise ValueError(f"state has {got[0] if got else 1} chains but num_chains={num_chains}")
        ts = transforms(space)
        want = {k: (num_chains, *ts[k].inverse_shape(v.shape)) for k, v in space.items()}
        have = {k: tuple(jnp.shape(v)) for k, v in state.hmc.z.items()}
        if want != have:
            raise ValueError(
                f"the state's positions {have} do not fit this energy's unconstrained space {want}"
            )
        z0 = state.hmc.z
    else:
        kernel = "nuts" if kernel is None else kernel
        settings, traced = split_options(
            kernel, num_warmup, num_samples, num_chains, kernel_options
        )
        z0 = (
            given_positions(energy, init, num_chains)
            if init is not None
            else uniform_positions(energy, key, num_chains)
        )
    # a continued run draws its randomness from the new key
    hmc_state = (
        None if state is None else state.hmc._replace(rng_key=jax.random.split(key, num_chains))
    )
    total = num_warmup + num_samples
    length = total if not progress else max(1, math.ceil(total / PROGRESS_CHUNKS))
    run = partial(
        _advance, energy, key, traced=traced, settings=settings, length=length, chunked=progress
    )

    def first_call(z0):
        """The first (or only) call, from ``z0``; invalid starts are searched or reported."""
        st, recs, ok = run(z0=z0, state=hmc_state, start=jnp.asarray(0))
        if hmc_state is None and not np.asarray(ok).all():
            if init is not None:
                raise_if_invalid(energy, z0, ok, searched=False)
            z0, found = search(energy, jax.random.fold_in(key, 1), num_chains)
            raise_if_invalid(energy, z0, found, searched=True)
            st, recs, ok = run(
                z0=z0, state=None, start=jnp.asarray(0)
            )  # same structure: no recompilation
            raise_if_invalid(energy, z0, ok, searched=True)
        return st, recs

    if not progress:
        st, recs = first_call(z0)
    else:
        from tqdm.auto import tqdm

        chunks = []
        with tqdm(total=total, desc="warmup" if num_warmup else "sample") as bar:
            for start in range(0, total, length):
                if start == 0:
                    st, recs = first_call(z0)
                else:
                    st, recs, _ = run(z0=z0, state=st, start=jnp.asarray(start))
                chunks.append(recs)
                done = min(start + length, total)
                if done > num_warmup:
                    bar.set_description("sample")
                bar.update(done - start)
        raw = jax.tree_util.tree_map(
            lambda *c: jnp.concatenate(c, axis=1)[:, num_warmup:total], *chunks
        )
        recs = _finish_jit(energy, raw, settings.algo)
    return Samples(
        draws=recs["draws"],
        stats=recs["stats"],
        state=ChainState(st, kernel, settings.static, traced),
        energy=energy,
        kernel=kernel,
    )
