"""MALA and ULA for ``ebm.sample``: Langevin proposals with a diagonal preconditioner.

The proposal is x' = x − ε D ∇E(x) + sqrt(2ε D) ξ, ξ ~ N(0, I), with D the diagonal
inverse mass matrix; the step itself is ``_langevin.build_kernel``, the one Langevin step
of the library, with adaptation around it. MALA accepts the proposal with the
Metropolis–Hastings probability; ULA always moves (stationary law biased by O(ε)) except
into points where the energy or its gradient is not finite, which it refuses and counts.
During warmup MALA adapts ε by dual averaging towards an acceptance of
``target_accept_prob`` (0.574, optimal for MALA) and D by NumPyro's windowed Welford
estimate, the same schedule NUTS uses.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc_util import HMCAdaptState, IntegratorState, warmup_adapter

from ..._param import as_float
from .._langevin import LangevinState, build_kernel
from ._base import EnergyFn, Kernel, register

__all__ = ["MALA", "ULA", "MALAInfo", "MALAState"]


class MALAState(NamedTuple):
    """One chain of MALA/ULA.

    Attributes:
        i: steps taken (warmup included).
        position: mapping name → array.
        energy: ``energy_fn(position)``.
        gradient: ∇E at ``position`` (same structure).
        adapt: NumPyro's ``HMCAdaptState``: step size ε, inverse mass matrix D (a flat
            vector over the raveled position), and the adaptation's own state.
    """

    i: jax.Array
    position: dict
    energy: jax.Array
    gradient: dict
    adapt: HMCAdaptState


class MALAInfo(NamedTuple):
    """Per-step statistics.

    Attributes:
        accept_prob: the Metropolis–Hastings probability min(1, r) of the proposal
            (for ULA: what MALA's would have been when ``adapt_step_size=True``, else 1
            for every finite proposal; ULA moves regardless).
        is_accepted: whether the chain moved.
        step_size: ε used for this step.
        nonfinite: the proposal's energy or gradient was not finite (it was refused).
    """

    accept_prob: jax.Array
    is_accepted: jax.Array
    step_size: jax.Array
    nonfinite: jax.Array


_STATIC = ("adapt_step_size", "adapt_mass_matrix", "regularize_mass_matrix")


class _Langevin(Kernel):
    num_warmup: int = eqx.field(static=True)
    adapt_step_size: bool = eqx.field(static=True)
    adapt_mass_matrix: bool = eqx.field(static=True)
    regularize_mass_matrix: bool = eqx.field(static=True)

    adjusted: ClassVar[bool] = True
    name: ClassVar[str] = "mala"
    defaults: ClassVar[dict[str, Any]] = {}

    def _adapter(self, params: dict):
        return warmup_adapter(
            self.num_warmup,
            adapt_step_size=self.adapt_step_size,
            adapt_mass_matrix=self.adapt_mass_matrix,
            dense_mass=False,
            target_accept_prob=params["target_accept_prob"],
            regularize_mass_matrix=self.regularize_mass_matrix,
        )

    def init(self, position: dict, energy_fn: EnergyFn, params: dict) -> MALAState:
        position = dict(position)
        e, g = jax.value_and_grad(energy_fn)(position)
        flat, _ = ravel_pytree(position)
        wa_init, _ = self._adapter(params)
        imm = params["inverse_mass_matrix"]
        adapt = wa_init(
            IntegratorState(flat, None, e, None),
            jax.random.key(0),
            params["step_size"],
            inverse_mass_matrix=None if imm is None else jnp.broadcast_to(imm, flat.shape),
        )
        return MALAState(jnp.zeros((), jnp.int32), position, e, g, adapt)

    def step(
        self, key: jax.Array, state: MALAState, energy_fn: EnergyFn, params: dict
    ) -> tuple[MALAState, MALAInfo]:
        eps = state.adapt.step_size
        _, unravel = ravel_pytree(state.position)
        kernel = build_kernel(self.adjusted, mh_probability=self.adjusted or self.adapt_step_size)
        lv, info = kernel(
            key,
            LangevinState(state.position, state.energy, state.gradient),
            energy_fn,
            eps,
            unravel(state.adapt.inverse_mass_matrix),
        )
        if self.num_warmup:  # adaptation: NumPyro's windowed scheme, on the raveled position
            _, wa_update = self._adapter(params)
            z = IntegratorState(ravel_pytree(lv.position)[0], None, lv.energy, None)
            adapt = jax.lax.cond(
                state.i < self.num_warmup,
                lambda a: wa_update(state.i, info.acceptance_rate, z, a),
                lambda a: a,
                state.adapt,
            )
        else:
            adapt = state.adapt
        new = MALAState(state.i + 1, lv.position, lv.energy, lv.gradient, adapt)
        return new, MALAInfo(info.acceptance_rate, info.is_accepted, eps, info.nonfinite)

    def check_dimension(self, params: dict, dim: int) -> None:
        self._check_inverse_mass(params, ((), (dim,)))

    def with_position(self, state: MALAState, position: dict, energy: Any, gradient: dict):
        return state._replace(position=position, energy=energy, gradient=gradient)

    def with_num_warmup(self, num_warmup: int) -> Kernel:
        return type(self)(
            num_warmup, self.adapt_step_size, self.adapt_mass_matrix, self.regularize_mass_matrix
        )

    @classmethod
    def from_options(cls, num_warmup: int, options: dict[str, Any]) -> tuple[Kernel, dict]:
        known = {**cls.defaults}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(
                f"unknown kernel option(s) {unknown} for kernel={cls.name!r}; known: "
                f"{sorted(known)}"
            )
        opts = {**known, **options}
        for k in _STATIC:
            if not isinstance(opts[k], bool):
                raise TypeError(f"{k} must be True or False, got {opts[k]!r}")
        params = {}
        for k in ("step_size", "target_accept_prob"):
            v = opts[k]
            if jnp.ndim(v) != 0:
                raise ValueError(f"{k} must be a scalar, got shape {jnp.shape(v)}")
            params[k] = as_float(v)
        imm = opts["inverse_mass_matrix"]
        params["inverse_mass_matrix"] = None if imm is None else as_float(imm)
        if imm is not None and not bool(jnp.all(params["inverse_mass_matrix"] > 0)):
            raise ValueError("inverse_mass_matrix must be positive (a diagonal, as a vector)")
        for name, low, high in (("step_size", 0.0, None), ("target_accept_prob", 0.0, 1.0)):
            v = params[name]
            if not isinstance(v, jax.core.Tracer):
                if not (float(v) > low and (high is None or float(v) < high)):
                    bounds = f"in ({low}, {high})" if high is not None else f"> {low}"
                    raise ValueError(f"{name} must be {bounds}, got {float(v)}")
        kernel = cls(num_warmup, *(opts[k] for k in _STATIC))
        return kernel, params

    def warnings(self, stats: dict, num_warmup: int) -> list[str]:
        if not self.adjusted:
            return []
        acc = float(np.mean(np.asarray(stats["accept_prob"])))
        if acc < 0.1:
            return [
                f"MALA's mean acceptance is {acc:.2f}: the chains barely move. Let the step "
                "size adapt (num_warmup > 0, adapt_step_size=True) or pass a smaller step_size"
            ]
        return []


@register("mala")
class MALA(_Langevin):
    """Metropolis-adjusted Langevin with step-size and diagonal mass-matrix adaptation.

    Options: ``step_size`` (initial ε, 0.1), ``target_accept_prob`` (0.574),
    ``inverse_mass_matrix`` (initial diagonal D, a vector over the raveled position),
    ``adapt_step_size`` and ``adapt_mass_matrix`` (True), ``regularize_mass_matrix``.
    """

    stats: ClassVar[dict[str, tuple[str, int]]] = {
        "accept_prob": ("acceptance_rate", 1),
        "is_accepted": ("is_accepted", 1),
        "step_size": ("step_size", 1),
        "nonfinite": ("nonfinite", 1),
    }
    adjusted: ClassVar[bool] = True
    name: ClassVar[str] = "mala"
    defaults: ClassVar[dict[str, Any]] = {
        "step_size": 0.1,
        "target_accept_prob": 0.574,
        "inverse_mass_matrix": None,
        "adapt_step_size": True,
        "adapt_mass_matrix": True,
        "regularize_mass_matrix": True,
    }


@register("ula")
class ULA(_Langevin):
    """Unadjusted Langevin: a fixed ε (no adaptation by default), biased by O(ε).

    Options as for MALA; ``step_size`` defaults to 0.01 and both adaptations to False
    (``adapt_step_size=True`` tunes ε during warmup so that MALA's acceptance would be
    ``target_accept_prob``).
    """

    stats: ClassVar[dict[str, tuple[str, int]]] = {
        "accept_prob": ("mala_acceptance_rate", 1),
        "is_accepted": ("is_accepted", 1),
        "step_size": ("step_size", 1),
        "nonfinite": ("nonfinite", 1),
    }
    adjusted: ClassVar[bool] = False
    name: ClassVar[str] = "ula"
    defaults: ClassVar[dict[str, Any]] = {
        "step_size": 0.01,
        "target_accept_prob": 0.574,
        "inverse_mass_matrix": None,
        "adapt_step_size": False,
        "adapt_mass_matrix": False,
        "regularize_mass_matrix": True,
    }
