"""NumPyro's NUTS and HMC, adapted once to the kernel interface.

NumPyro's functional ``hmc()`` pair takes the potential through ``potential_fn_gen`` and
``model_args``, so the energy is an argument of every step. Its ``init_kernel`` writes the
settings into closure variables that ``sample_kernel`` reads (``nonlocal``), so the pair is
created, and ``init_kernel`` called, inside every trace that steps (the potential and
gradient it computes there are unused and removed by XLA).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import HMCState, hmc

from ..._param import as_float
from ._base import EnergyFn, Kernel, register

__all__ = ["HMC", "NUTS", "HMCInfo", "HMCKernelState"]

# Changing one of these compiles a new sampler: they shape the program.
STATIC_DEFAULTS: dict[str, Any] = {
    "max_tree_depth": 10,
    "dense_mass": False,
    "adapt_step_size": True,
    "adapt_mass_matrix": True,
    "find_heuristic_step_size": False,
    "forward_mode_differentiation": False,
    "regularize_mass_matrix": True,
    "num_steps": None,
}
# These are values: new values reuse the compiled sampler.
TRACED_DEFAULTS: dict[str, Any] = {
    "step_size": 1.0,
    "trajectory_length": 2 * math.pi,
    "inverse_mass_matrix": None,
    "target_accept_prob": 0.8,
}


def _gen(energy_fn: EnergyFn) -> EnergyFn:
    """``potential_fn_gen``: the energy passed as NumPyro's ``model_args``."""
    return energy_fn


class HMCKernelState(NamedTuple):
    """NumPyro's ``HMCState``, seen through the kernel interface.

    Attributes:
        hmc: NumPyro's state (position ``z``, adapted step size and mass matrix in
            ``adapt_state``, step counter ``i``).
    """

    hmc: HMCState

    @property
    def position(self) -> dict:
        return self.hmc.z

    @property
    def energy(self) -> jax.Array:
        return self.hmc.potential_energy

    @property
    def gradient(self) -> dict:
        return self.hmc.z_grad


class HMCInfo(NamedTuple):
    """Per-transition statistics of NUTS/HMC."""

    diverging: jax.Array
    accept_prob: jax.Array
    num_steps: jax.Array
    step_size: jax.Array
    tree_depth: jax.Array
    hamiltonian: jax.Array


def _hashable(name: str, v: Any) -> Any:
    if name == "dense_mass" and isinstance(v, (list, tuple)):
        return tuple(tuple(block) for block in v)
    if name == "max_tree_depth" and isinstance(v, (list, tuple)):
        return tuple(int(d) for d in v)
    return v


def _tree_float(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: as_float(x) for k, x in v.items()}
    return as_float(v)


class _NumPyroHMC(Kernel):
    """Shared by :class:`NUTS` and :class:`HMC`: static options, the adapter itself."""

    num_warmup: int = eqx.field(static=True)
    static: tuple = eqx.field(static=True)

    stats: ClassVar[dict[str, tuple[str, int]]] = {
        "diverging": ("diverging", 1),
        "accept_prob": ("acceptance_rate", 1),
        "num_steps": ("n_steps", 1),
        "step_size": ("step_size", 1),
        "tree_depth": ("tree_depth", 1),
        "hamiltonian": ("energy", 1),
    }
    algo: ClassVar[str] = "NUTS"

    def _pair(self, position: dict, energy_fn: EnergyFn, params: dict, key: jax.Array):
        init_kernel, sample_kernel = hmc(potential_fn_gen=_gen, algo=self.algo)
        st = init_kernel(
            position,
            self.num_warmup,
            step_size=params["step_size"],
            inverse_mass_matrix=params["inverse_mass_matrix"],
            target_accept_prob=params["target_accept_prob"],
            trajectory_length=params["trajectory_length"],
            model_args=(energy_fn,),
            rng_key=key,
            **dict(self.static),
        )
        return st, sample_kernel

    def init(self, position: dict, energy_fn: EnergyFn, params: dict) -> HMCKernelState:
        st, _ = self._pair(dict(position), energy_fn, params, jax.random.key(0))
        return HMCKernelState(st)

    def step(
        self, key: jax.Array, state: HMCKernelState, energy_fn: EnergyFn, params: dict
    ) -> tuple[HMCKernelState, HMCInfo]:
        # configures sample_kernel (its own outputs are dead code)
        _, sample_kernel = self._pair(state.hmc.z, energy_fn, params, key)
        st = sample_kernel(state.hmc._replace(rng_key=key), model_args=(energy_fn,))
        if self.algo == "NUTS":
            depth = jnp.ceil(jnp.log2(st.num_steps + 1.0)).astype(jnp.int32)
        else:
            depth = jnp.zeros_like(st.num_steps, dtype=jnp.int32)
        info = HMCInfo(
            st.diverging, st.accept_prob, st.num_steps, st.adapt_state.step_size, depth, st.energy
        )
        return HMCKernelState(st), info

    def check_dimension(self, params: dict, dim: int) -> None:
        self._check_inverse_mass(
            params, ((dim, dim),) if dict(self.static).get("dense_mass") is True else ((dim,),)
        )

    def with_num_warmup(self, num_warmup: int) -> Kernel:
        return type(self)(num_warmup=num_warmup, static=self.static)

    def with_position(
        self, state: HMCKernelState, position: dict, energy: Any, gradient: dict
    ) -> HMCKernelState:
        return HMCKernelState(
            state.hmc._replace(z=position, potential_energy=energy, z_grad=gradient)
        )

    @property
    def max_tree_depth(self) -> int:
        """The tree depth allowed while drawing (a pair gives warmup, then draws)."""
        limit = dict(self.static).get("max_tree_depth", 10)
        return int(limit[-1]) if isinstance(limit, tuple) else int(limit)

    @classmethod
    def from_options(cls, num_warmup: int, options: dict[str, Any]) -> tuple[Kernel, dict]:
        unknown = sorted(set(options) - set(STATIC_DEFAULTS) - set(TRACED_DEFAULTS))
        if unknown:
            raise TypeError(
                f"unknown kernel option(s) {unknown} for kernel={cls.name!r}; known: "
                f"{sorted(STATIC_DEFAULTS) + sorted(TRACED_DEFAULTS)}"
            )
        if cls.algo == "NUTS":
            for opt in ("num_steps", "trajectory_length"):
                if options.get(opt) is not None:
                    raise ValueError(f"{opt} applies to kernel='hmc', not to NUTS")
        depth = options.get("max_tree_depth", 10)
        for d in depth if isinstance(depth, (list, tuple)) else (depth,):
            if not isinstance(d, int) or isinstance(d, bool) or d < 1:
                raise ValueError(f"max_tree_depth must be a positive integer, got {depth!r}")
        static = {k: _hashable(k, options.get(k, d)) for k, d in STATIC_DEFAULTS.items()}
        params = {}
        for k, d in TRACED_DEFAULTS.items():
            v = options.get(k, d)
            if cls.algo == "NUTS" and k == "trajectory_length":
                v = None
            params[k] = None if v is None else (as_float(v) if jnp.ndim(v) == 0 else _tree_float(v))
        for name, low, high in (("step_size", 0.0, None), ("target_accept_prob", 0.0, 1.0)):
            v = params[name]
            if v is not None and not isinstance(v, jax.core.Tracer):
                if not (float(v) > low and (high is None or float(v) < high)):
                    bounds = f"in ({low}, {high})" if high is not None else f"> {low}"
                    raise ValueError(f"{name} must be {bounds}, got {float(v)}")
        kernel = cls(num_warmup=num_warmup, static=tuple(sorted(static.items())))
        return kernel, params

    def warnings(self, stats: dict, num_warmup: int) -> list[str]:
        frac = float(np.mean(np.asarray(stats["diverging"])))
        acc = float(np.mean(np.asarray(stats["accept_prob"])))
        if frac > 0.5:
            return [
                f"{frac:.0%} of the transitions diverged: the draws are unreliable. A fixed "
                "step size may be too large (let it adapt), or the energy has regions where "
                "it or its gradient is not finite or changes abruptly"
            ]
        if acc < 0.05:
            return [
                f"the mean acceptance probability is {acc:.3f}: the chains barely move and "
                "the draws repeat a few points. A fixed step size is probably too large "
                "(let it adapt: adapt_step_size=True)"
            ]
        return []


@register("nuts")
class NUTS(_NumPyroHMC):
    """NumPyro's No-U-Turn sampler with its windowed adaptation."""

    algo: ClassVar[str] = "NUTS"
    name: ClassVar[str] = "nuts"


@register("hmc")
class HMC(_NumPyroHMC):
    """NumPyro's HMC with a fixed trajectory length (or ``num_steps``)."""

    algo: ClassVar[str] = "HMC"
    name: ClassVar[str] = "hmc"
