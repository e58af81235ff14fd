"""Parallel tempering: replicas of one energy at several temperatures, any base kernel.

Each chain holds one replica per temperature T₀ = 1 < T₁ < … ; every step moves each
replica with the base kernel on E/Tᵣ (the tempered energy is only a different
``energy_fn`` argument, the replicas a ``vmap``), then neighbours (r, r+1) of alternating
parity propose to exchange positions, accepted with probability
min(1, exp((1/Tᵣ − 1/Tᵣ₊₁)(Eᵣ − Eᵣ₊₁))). Only the T = 1 replica is the chain's position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..._param import as_float
from ._base import EnergyFn, Kernel

__all__ = ["Tempering", "TemperingState", "tempered"]


class TemperingState(NamedTuple):
    """The replicas of one chain (base states with a leading replica axis) and a step count."""

    replicas: Any
    i: jax.Array

    @property
    def position(self) -> dict:
        return jax.tree_util.tree_map(lambda x: x[0], self.replicas.position)

    @property
    def energy(self) -> jax.Array:
        return self.replicas.energy[0]

    @property
    def gradient(self) -> Any:
        g = getattr(self.replicas, "gradient", None)
        return None if g is None else jax.tree_util.tree_map(lambda x: x[0], g)


def _scaled(energy_fn: EnergyFn, t: jax.Array) -> EnergyFn:
    return lambda x: energy_fn(x) / t


class Tempering(Kernel):
    """Replicas of ``base`` at ``num_temperatures`` temperatures with neighbour swaps."""

    base: Kernel
    num_temperatures: int = eqx.field(static=True)

    @property
    def stats(self) -> dict:  # type: ignore[override]
        return {**self.base.stats, "swap_accept_prob": ("swap_acceptance_rate", 1)}

    @property
    def unconstrained(self) -> bool:  # type: ignore[override]
        return self.base.unconstrained

    @property
    def discrete(self) -> bool:  # type: ignore[override]
        return self.base.discrete

    def init(self, position: dict, energy_fn: EnergyFn, params: dict) -> TemperingState:
        r = self.num_temperatures
        rep = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (r, *jnp.shape(x))), position)
        states = jax.vmap(lambda p, t: self.base.init(p, _scaled(energy_fn, t), params["base"]))(
            rep, params["temperatures"]
        )
        return TemperingState(states, jnp.zeros((), jnp.int32))

    def step(
        self, key: jax.Array, state: TemperingState, energy_fn: EnergyFn, params: dict
    ) -> tuple[TemperingState, dict]:
        temps = params["temperatures"]
        r = self.num_temperatures
        k_step, k_swap = jax.random.split(key)
        states, infos = jax.vmap(
            lambda k, s, t: self.base.step(k, s, _scaled(energy_fn, t), params["base"])
        )(jax.random.split(k_step, r), state.replicas, temps)
        energies = states.energy * temps  # untempered E of each replica
        beta = 1.0 / temps
        log_alpha = (beta[:-1] - beta[1:]) * (energies[:-1] - energies[1:])
        log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
        alpha = jnp.exp(jnp.minimum(log_alpha, 0.0))
        u = jax.random.uniform(k_swap, (r - 1,), alpha.dtype)
        pairs = jnp.arange(r - 1)
        swap = (u < alpha) & (pairs % 2 == state.i % 2)
        # replica j takes the position of partner[j]
        idx = jnp.arange(r)
        up = jnp.concatenate([swap, jnp.zeros((1,), bool)])  # j swaps with j+1
        down = jnp.concatenate([jnp.zeros((1,), bool), swap])  # j swaps with j-1
        partner = jnp.where(up, idx + 1, jnp.where(down, idx - 1, idx))
        take = lambda x: x[partner]  # noqa: E731
        pos = jax.tree_util.tree_map(take, states.position)
        ratio = temps[partner] / temps
        new_energy = energies[partner] / temps
        grad = getattr(states, "gradient", None)
        if grad is not None:
            grad = jax.tree_util.tree_map(
                lambda g: take(g) * ratio.reshape((r,) + (1,) * (g.ndim - 1)), grad
            )
        states = jax.vmap(self.base.with_position)(states, pos, new_energy, grad)
        info = infos._asdict() if hasattr(infos, "_asdict") else dict(infos)
        info = {k: v[0] for k, v in info.items()}
        info["swap_accept_prob"] = alpha
        return TemperingState(states, state.i + 1), info

    def check_dimension(self, params: dict, dim: int) -> None:
        self.base.check_dimension(params["base"], dim)

    def with_num_warmup(self, num_warmup: int) -> Kernel:
        return Tempering(self.base.with_num_warmup(num_warmup), self.num_temperatures)

    def is_valid(self, state: TemperingState) -> jax.Array:
        return jnp.all(jax.vmap(self.base.is_valid)(state.replicas))

    def warnings(self, stats: dict, num_warmup: int) -> list[str]:
        out = self.base.warnings(stats, num_warmup)
        acc = np.asarray(stats["swap_accept_prob"]).reshape(-1, self.num_temperatures - 1)
        low = [j for j, a in enumerate(acc.mean(0)) if a < 0.05]
        if low:
            out.append(
                "parallel tempering: swaps between temperature pairs "
                f"{[(j, j + 1) for j in low]} are accepted less than 5% of the time; "
                "put the temperatures closer together (e.g. geometric spacing)"
            )
        return out

    @classmethod
    def from_options(cls, num_warmup: int, options: dict[str, Any]) -> tuple[Kernel, Any]:
        raise TypeError("use ebm.sample(..., temperatures=[1, ...]) with a base kernel")


def tempered(base: Kernel, base_params: Any, temperatures: Sequence[float] | Any) -> tuple:
    """The tempering kernel over ``base`` and its params, after checking ``temperatures``."""
    if isinstance(temperatures, jax.core.Tracer):
        raise TypeError("temperatures must be concrete numbers")
    t = np.asarray(temperatures, dtype=np.float64)
    if t.ndim != 1 or t.size < 2:
        raise ValueError(
            f"temperatures must be a sequence of at least two numbers, got {temperatures!r}"
        )
    if not np.all(np.isfinite(t)) or t[0] != 1.0 or np.any(np.diff(t) <= 0):
        raise ValueError(
            "temperatures must be finite and strictly increasing, starting at 1 "
            f"(e.g. [1, 2, 4, 8]), got {t.tolist()}"
        )
    if type(base).with_position is Kernel.with_position:
        raise ValueError(
            f"kernel {type(base).__name__} does not support temperatures: it has no way to "
            "move a replica's state to another position (Kernel.with_position)"
        )
    return Tempering(base, int(t.size)), {"base": base_params, "temperatures": as_float(t)}
