"""The one driver: any kernel's warmup and draws in one ``lax.scan`` of ``vmap(step)``.

It knows no kernel by name: it calls ``kernel.init``/``kernel.step`` with the energy as an
argument (in the unconstrained space, or the variables' own space for kernels that ask for
it), keeps each step's position, energy and ``Info``, runs in chunks between host updates
for a progress bar (the same draws as one call: step ``i`` draws its keys from
``fold_in(key, i)``), searches other starts when a chain's start is not finite, and
raises an error naming the term at fault.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from .._devices import AXIS, replicate, shard_leading
from ..energies import Energy
from . import _export
from ._init import raise_if_invalid, search
from ._recompile import note_trace
from ._target import target
from .kernels import Kernel

__all__ = ["TRACE_COUNT", "energy_fn", "run"]

# How many times a sampler has been traced, for tests that check reuse.
TRACE_COUNT: collections.Counter = collections.Counter()
PROGRESS_CHUNKS = 20


def energy_fn(energy: Energy, kernel: Kernel) -> Callable:
    """The target a kernel moves on: the potential (unconstrained) or E itself, checked
    at trace time (a non-scalar or a Python-level use of a traced value names the term)."""
    return target(energy, kernel.unconstrained)


def _record(state: Any, info: Any) -> dict:
    info = info._asdict() if hasattr(info, "_asdict") else dict(info)
    return {"position": state.position, "potential_energy": state.energy, **info}


def _advance_impl(
    energy: Energy,
    key: jax.Array,
    position0: dict,
    params: Any,
    state: Any,
    start: jax.Array,
    kernel: Kernel,
    num_chains: int,
    num_warmup: int,
    total: int,
    length: int,
    chunked: bool,
    mesh: Any = None,
) -> tuple[Any, dict, jax.Array]:
    """Steps ``start .. start+length``, with every step's record (chain, step).

    Without ``state`` the chains start at ``position0`` and run only if every chain's
    start is valid (finite energy and gradient); the flags come back so the host can
    search other points or raise an error naming the term at fault. With a ``mesh`` the
    steps run under ``shard_map``: each device advances its own slice of the chains.
    """
    TRACE_COUNT["sample"] += 1
    settings = (kernel, num_chains, num_warmup, total, length, chunked, state is None, mesh)
    note_trace(energy, settings)
    fn = energy_fn(energy, kernel)
    if state is None:
        state = jax.vmap(lambda p: kernel.init(p, fn, params))(position0)
        ok = jax.vmap(kernel.is_valid)(state)
    else:
        position0, ok = None, jnp.ones(num_chains, dtype=bool)

    # the energy, the kernel's parameters, the key and the start enter the steps as
    # arguments (under shard_map: replicated inputs, never values closed over)
    shared_dyn, shared_static = eqx.partition((energy, params, key, start), eqx.is_array)

    bodies: dict = {}  # one body per set of inputs: lax.scan reuses its trace

    def steps(st, dyn):
        ids = tuple(id(x) for x in jax.tree_util.tree_leaves(dyn))
        if ids not in bodies:
            bodies[ids] = make_body(*eqx.combine(dyn, shared_static)[:3])
        start_ = eqx.combine(dyn, shared_static)[3]
        st, recs = jax.lax.scan(bodies[ids], st, start_ + jnp.arange(length))
        # (chain, step); a single call keeps only the draws after warmup
        keep = slice(0, None) if chunked else slice(num_warmup, None)
        return st, jax.tree_util.tree_map(lambda r: jnp.swapaxes(r, 0, 1)[:, keep], recs)

    def make_body(energy_, params_, key_):
        fn_ = energy_fn(energy_, kernel)

        def advance(st, i):
            keys = jax.random.split(jax.random.fold_in(key_, i), num_chains)
            if mesh is not None:  # this device's chains: the same keys as on one device
                n = num_chains // mesh.size
                keys = jax.lax.dynamic_slice_in_dim(keys, jax.lax.axis_index(AXIS) * n, n)

            def one(k, s):  # per chain: states' properties see one chain
                s, info = kernel.step(k, s, fn_, params_)
                return s, _record(s, info)

            return jax.vmap(one)(keys, st)

        def body(st, i):
            if chunked:  # the last chunk may pass the end: those steps do nothing
                shapes = jax.eval_shape(advance, st, i)[1]
                idle = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
                return jax.lax.cond(i < total, advance, lambda st, i: (st, idle), st, i)
            return advance(st, i)

        return body

    if mesh is not None:
        specs = (P(AXIS), P())
        steps = jax.shard_map(steps, mesh=mesh, in_specs=specs, out_specs=P(AXIS), check_vma=False)

    def scan(st):
        return steps(st, shared_dyn)

    if position0 is None:  # continuing a run: its state is valid
        state, recs = scan(state)
        return state, recs, ok
    shapes = jax.eval_shape(scan, state)[1]
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    state, recs = jax.lax.cond(jnp.all(ok), scan, lambda st: (st, zeros), state)
    return state, recs, ok


_advance = eqx.filter_jit(_advance_impl)


def _advance_kept(*args: Any, **kwargs: Any) -> Any:
    """``_advance``, its trace kept on disk for the next process (see ``_export``)."""
    return _export.call(_advance_impl, _advance, "sampler", *args, **kwargs)


def run(
    energy: Energy,
    kernel: Kernel,
    params: Any,
    key: jax.Array,
    *,
    position0: Mapping[str, jax.Array] | None,
    state: Any,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    given_init: bool,
    progress: bool,
    mesh: Any = None,
) -> tuple[Any, dict]:
    """Run ``num_warmup + num_samples`` steps; the kept records (chain, draw) after warmup.

    ``position0`` (a chain axis first) starts a new run; ``state`` continues one.
    """
    total = num_warmup + num_samples
    length = total if not progress else max(1, math.ceil(total / PROGRESS_CHUNKS))
    # on this run's devices: arrays from a run or a fit on other devices are moved
    energy, params, key = replicate((energy, params, key), mesh)
    if state is not None:
        state = shard_leading(state, mesh)
    kept = mesh is None and _export.enabled()
    go = partial(
        _advance_kept if kept else _advance,
        energy,
        key,
        params=params,
        kernel=kernel,
        num_chains=num_chains,
        num_warmup=num_warmup,
        total=total,
        length=length,
        chunked=progress,
        mesh=mesh,
    )

    def first_call(position0):
        position0 = shard_leading(position0, mesh)
        st, recs, ok = go(position0=position0, state=state, start=jnp.asarray(0))
        if state is None and not np.asarray(ok).all():
            if not kernel.unconstrained:  # the kernel's own assumptions first
                c = int(np.flatnonzero(~np.asarray(ok))[0])
                kernel.check({k: v[c] for k, v in position0.items()}, energy_fn(energy, kernel))
            if given_init or not kernel.unconstrained:
                raise_if_invalid(energy, position0, ok, searched=False, kernel=kernel)
            position0, found = search(energy, jax.random.fold_in(key, 1), num_chains)
            raise_if_invalid(energy, position0, found, searched=True, kernel=kernel)
            # same structure: no recompilation
            position0 = shard_leading(position0, mesh)
            st, recs, ok = go(position0=position0, state=None, start=jnp.asarray(0))
            raise_if_invalid(energy, position0, ok, searched=True, kernel=kernel)
        return st, recs

    if not progress:
        return _gathered(*first_call(position0), mesh)
    from tqdm.auto import tqdm

    chunks = []
    with tqdm(total=total, desc="warmup" if num_warmup else "sample") as bar:
        for start in range(0, total, length):
            if start == 0:
                st, recs = first_call(position0)
            else:
                st, recs, _ = go(position0=None, state=st, start=jnp.asarray(start))
            chunks.append(recs)
            done = min(start + length, total)
            if done > num_warmup:
                bar.set_description("sample")
            bar.update(done - start)
    recs = jax.tree_util.tree_map(
        lambda *c: jnp.concatenate(c, axis=1)[:, num_warmup:total], *chunks
    )
    return _gathered(st, recs, mesh)


def _gathered(state: Any, recs: dict, mesh: Any) -> tuple[Any, dict]:
    """Across hosts, every host gets every chain's records (the state stays sharded)."""
    if mesh is None or jax.process_count() == 1:
        return state, recs
    from jax.experimental import multihost_utils

    return state, multihost_utils.process_allgather(recs, tiled=True)
