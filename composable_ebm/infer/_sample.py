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
from numpyro.infer.hmc import HMCState, hmc

from ..energies import Energy
from ._bridge import continuous_space, potential, transforms
from ._init import initial_positions
from ._options import Settings, split_options
from ._samples import Samples

__all__ = ["sample"]

# How many times the sampler has been traced, for tests that check reuse.
TRACE_COUNT: collections.Counter = collections.Counter()
PROGRESS_CHUNKS = 20


def _record(energy: Energy, st: HMCState, algo: str) -> dict:
    """Draws (constrained) and per-draw statistics for every chain."""
    ts = transforms(energy.space)
    x = {k: jax.vmap(t)(st.z[k]) for k, t in ts.items()}  # per chain: no rank promotion
    if algo == "NUTS":
        depth = jnp.ceil(jnp.log2(st.num_steps + 1.0)).astype(jnp.int32)
    else:
        depth = jnp.zeros_like(st.num_steps, dtype=jnp.int32)
    stats = {
        "diverging": st.diverging,
        "accept_prob": st.accept_prob,
        "num_steps": st.num_steps,
        "step_size": st.adapt_state.step_size,
        "tree_depth": depth,
        "hamiltonian": st.energy,
        "potential_energy": st.potential_energy,
        "model_energy": jax.vmap(energy._energy)(x),
    }
    return {"draws": x, "stats": stats}


@eqx.filter_jit
def _advance(
    energy: Energy,
    z0: dict,
    keys: jax.Array,
    traced: dict,
    state: HMCState | None,
    buffers: dict | None,
    start: jax.Array,
    settings: Settings,
    length: int,
) -> tuple[HMCState, dict]:
    """Run steps ``start .. start+length`` of warmup+sampling; draws go into ``buffers``.

    The ``hmc()`` pair is created here, inside the trace, every time: its ``init_kernel``
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
    st = jax.vmap(lambda z, k: init(z, rng_key=k))(z0, keys)
    if state is not None:
        st = state
    if buffers is None:
        shapes = jax.eval_shape(partial(_record, energy, algo=settings.algo), st)
        n = settings.num_samples
        buffers = jax.tree_util.tree_map(
            lambda s: jnp.zeros((s.shape[0], n, *s.shape[1:]), s.dtype), shapes
        )
    nw, total = settings.num_warmup, settings.num_warmup + settings.num_samples
    step = jax.vmap(sample_kernel)

    def write(buf, j, st):
        rec = _record(energy, st, settings.algo)
        return jax.tree_util.tree_map(lambda b, v: b.at[:, j].set(v), buf, rec)

    def advance(carry, i):
        st, buf = carry
        st = step(st)
        j = i - nw
        buf = jax.lax.cond(j >= 0, lambda b: write(b, j, st), lambda b: b, buf)
        return st, buf

    def body(carry, i):
        if length != total:  # chunked runs may pass the end: those steps do nothing
            carry = jax.lax.cond(i < total, partial(advance, i=i), lambda c: c, carry)
        else:
            carry = advance(carry, i)
        return carry, None

    (st, buffers), _ = jax.lax.scan(body, (st, buffers), start + jnp.arange(length))
    return st, buffers


def sample(
    energy: Energy,
    key: jax.Array,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    kernel: str = "nuts",
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
        kernel: ``"nuts"`` or ``"hmc"``.
        init: constrained starting values (name → value, optionally with a chain axis);
            by default each chain searches uniformly in (−2, 2) unconstrained.
        progress: show a tqdm bar (the run is split into chunks between host updates).
        state: a previous run's ``Samples.state`` to continue from (``num_warmup=0``).
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
    continuous_space(energy, "ebm.sample")
    settings, traced = split_options(kernel, num_warmup, num_samples, num_chains, kernel_options)
    k_init, k_chains = jax.random.split(key)
    if state is not None:
        if num_warmup != 0:
            raise ValueError("continuing from a state needs num_warmup=0 (it is already adapted)")
        got = jnp.shape(state.i)
        if got != (num_chains,):
            raise ValueError(f"state has {got[0] if got else 1} chains but num_chains={num_chains}")
        z0, keys = state.z, state.rng_key
    else:
        z0 = initial_positions(energy, k_init, num_chains, init)
        keys = jax.random.split(k_chains, num_chains)
    total = num_warmup + num_samples
    run = partial(_advance, energy, z0, keys, traced, settings=settings)
    if not progress:
        st, buffers = run(state, None, jnp.asarray(0), length=total)
    else:
        from tqdm.auto import tqdm

        length = max(1, math.ceil(total / PROGRESS_CHUNKS))
        st, buffers = state, None
        with tqdm(total=total, desc="warmup" if num_warmup else "sample") as bar:
            for start in range(0, total, length):
                st, buffers = run(st, buffers, jnp.asarray(start), length=length)
                jax.block_until_ready(st.z)
                done = min(start + length, total)
                if done > num_warmup:
                    bar.set_description("sample")
                    bar.set_postfix(divergences=int(buffers["stats"]["diverging"].sum()))
                bar.update(done - start)
    return Samples(
        draws=buffers["draws"], stats=buffers["stats"], state=st, energy=energy, kernel=kernel
    )


