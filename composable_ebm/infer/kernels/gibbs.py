"""Block Gibbs sampling with exact conditionals read off the energy by autodiff.

**Assumption.** For each block (a tuple of variable names) and every value of the other
variables, the energy restricted to the block is separable, each unit entering through
E = Σⱼ (aⱼ uⱼ + ½ λⱼ uⱼ²) + const:

- a **binary** unit (values 0./1.) enters affinely (λⱼ = 0), so
  p(uⱼ = 1 | rest) = sigmoid(−∂E/∂uⱼ);
- a **real** unit enters as a quadratic with λⱼ > 0, so its conditional is
  N(uⱼ − (∂E/∂uⱼ)/λⱼ, 1/λⱼ), with λⱼ = ∂²E/∂uⱼ² (one forward-over-reverse product).

Every unit of a block is then independent given the other blocks and the whole block is
drawn at once. RBMs satisfy this for the blocks (visible,), (hidden,), in both the
Bernoulli and the Gaussian–Bernoulli forms; so does any energy that is bilinear between
blocks with unit-wise quadratic or linear terms.

**Which units are binary.** Given by the ``binary`` option, or by :meth:`Gibbs.for_space`
(the discrete variables of the energy's space), else decided at ``init`` from the values:
a variable whose starting values are all 0. or 1. is binary.

**Checks.** ``init`` tests the assumption at the start (the gradient of each block is
compared after flipping its binary units and shifting its real ones, and E(uⱼ = 1) −
E(uⱼ = 0) with ∂E/∂uⱼ on one unit of each variable) and stores the outcome in the state:
:meth:`is_valid` is False when it fails, so no run starts on a wrong conditional. The
host-side :meth:`Gibbs.check` runs the same test eagerly and raises a ``ValueError``
naming the variable and what failed (a traced ``init`` cannot raise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..._param import float_dtype
from ._base import EnergyFn, Kernel, register

__all__ = ["Gibbs", "GibbsInfo", "GibbsState"]

_RTOL = 1e-3  # relative tolerance of the structural checks (float32 round-off is ~1e-7)
_FAILURES = (
    "values are not all 0. or 1. although the variable is binary",
    "the energy is not affine in its binary units (E(u_j=1) − E(u_j=0) ≠ ∂E/∂u_j, or ∂E/∂u "
    "changes when other units of the block flip): the sigmoid conditional would be wrong",
    "the energy is not a separable quadratic in its real units (a coupling inside the block, "
    "or a non-quadratic term): the Gaussian conditional would be wrong",
    "the energy's curvature ∂²E/∂u_j² is not positive in a real unit: its conditional is not "
    "a proper Gaussian",
)


class GibbsState(NamedTuple):
    """State of one chain.

    Attributes:
        position: mapping name → array (binary units as float 0./1.).
        energy: ``energy_fn(position)``.
        binary: mapping name → bool scalar, whether each variable is binary.
        failures: mapping name → bool array (4,): which structural check failed at ``init``
            (values, affine, separable quadratic, positive curvature).
    """

    position: dict
    energy: jax.Array
    binary: dict
    failures: dict


class GibbsInfo(NamedTuple):
    """Per-sweep statistics: the energy change and the number of binary units flipped."""

    energy_change: jax.Array
    num_flips: jax.Array


def _as_float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(float_dtype())


def _close(a: jax.Array, b: jax.Array, scale: jax.Array) -> jax.Array:
    return jnp.all(jnp.abs(a - b) <= _RTOL * (1.0 + jnp.abs(a) + jnp.abs(b) + scale))


@register("gibbs")
class Gibbs(Kernel):
    """Block Gibbs sampling: each block drawn exactly from its conditional, in turn.

    See the module docstring for the assumption on the energy and how it is checked.

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> from composable_ebm.infer.kernels.gibbs import Gibbs
        >>> rbm = ebm.BernoulliRBM("v", "h", 4, 3, key=jax.random.key(0))
        >>> kernel, params = Gibbs.from_options(0, {"blocks": (("v",), ("h",))})
        >>> pos = {"v": jnp.zeros(4), "h": jnp.ones(3)}
        >>> state = kernel.init(pos, rbm.evaluate, params)
        >>> bool(kernel.is_valid(state))
        True
        >>> state, info = kernel.step(jax.random.key(1), state, rbm.evaluate, params)
        >>> sorted(state.position), state.position["v"].dtype == jnp.zeros(1).dtype
        (['h', 'v'], True)
    """

    blocks: tuple[tuple[str, ...], ...] | None = eqx.field(static=True, default=None)
    binary: tuple[str, ...] | None = eqx.field(static=True, default=None)

    stats: ClassVar[dict[str, tuple[str, int]]] = {
        "energy_change": ("energy_change", 1),
        "num_flips": ("num_flips", 1),
    }
    unconstrained: ClassVar[bool] = False
    discrete: ClassVar[bool] = True

    @classmethod
    def from_options(cls, num_warmup: int, options: dict[str, Any]) -> tuple[Gibbs, dict]:
        """Options: ``blocks`` (tuples of variable names) and ``binary`` (names); no
        traced parameters."""
        unknown = sorted(set(options) - {"blocks", "binary"})
        if unknown:
            raise TypeError(
                f"unknown kernel option(s) {unknown} for kernel='gibbs'; known: "
                "['binary', 'blocks']"
            )
        blocks, binary = options.get("blocks"), options.get("binary")
        if blocks is not None:
            if isinstance(blocks, str) or not all(
                not isinstance(b, str) and all(isinstance(n, str) for n in b) for b in blocks
            ):
                raise ValueError(
                    "blocks must be a sequence of tuples of variable names, e.g. "
                    f"(('visible',), ('hidden',)); got {blocks!r}"
                )
            blocks = tuple(tuple(b) for b in blocks)
            names = [n for b in blocks for n in b]
            if len(set(names)) != len(names) or not all(blocks):
                raise ValueError(f"blocks must be non-empty and disjoint, got {blocks!r}")
        if binary is not None:
            if isinstance(binary, str) or not all(isinstance(n, str) for n in binary):
                raise ValueError(f"binary must be a tuple of variable names, got {binary!r}")
            binary = tuple(binary)
        return cls(blocks=blocks, binary=binary), {}

    def for_space(self, space: Mapping[str, Any]) -> Gibbs:
        """This kernel with defaults from an energy's space: the discrete variables are the
        binary ones (each must have support ``boolean``) and the blocks follow the space's
        order, one variable each."""
        binary = self.binary
        if binary is None:
            binary = []
            for name, var in space.items():
                if var.is_discrete:
                    lo, hi = getattr(var.support, "lower_bound", None), var.support.upper_bound
                    if (np.asarray(lo), np.asarray(hi)) != (0, 1):
                        raise ValueError(
                            f"kernel='gibbs' moves binary (boolean) and real variables; "
                            f"variable {name!r} has support {var.support}"
                        )
                    binary.append(name)
            binary = tuple(binary)
        blocks = self.blocks if self.blocks is not None else tuple((n,) for n in space)
        return Gibbs(blocks=blocks, binary=binary)

    # ------------------------------------------------------------------ internals
    def _blocks(self, position: Mapping[str, jax.Array]) -> tuple[tuple[str, ...], ...]:
        if self.blocks is None:
            return tuple((n,) for n in position)
        names = [n for b in self.blocks for n in b]
        if sorted(names) != sorted(position):
            raise ValueError(
                f"kernel='gibbs': the blocks {self.blocks} must cover the variables "
                f"{sorted(position)} exactly once"
            )
        return self.blocks

    def _flags(self, position: Mapping[str, jax.Array]) -> dict[str, Any]:
        """Whether each variable is binary: static when known, else from the values."""
        if self.binary is not None:
            unknown = sorted(set(self.binary) - set(position))
            if unknown:
                raise ValueError(f"kernel='gibbs': binary names unknown variable(s) {unknown}")
            return {n: jnp.asarray(n in self.binary) for n in position}
        return {n: jnp.all((u == 0) | (u == 1)) for n, u in position.items()}

    def _is_binary(self, name: str, state_flag: jax.Array) -> Any:
        return (name in self.binary) if self.binary is not None else state_flag

    def _grad_curv(self, energy_fn: EnergyFn, position: dict, block: tuple, flags: dict):
        """∂E/∂u and the curvature λ = (∂²E/∂u²)·1 on the block's variables."""
        u = {n: position[n] for n in block}

        def f(u: dict) -> jax.Array:
            return energy_fn({**position, **u})

        if self.binary is not None and all(n in self.binary for n in block):
            g = jax.grad(f)(u)
            return g, {n: jnp.zeros_like(x) for n, x in g.items()}
        ones = {n: jnp.ones_like(x) for n, x in u.items()}
        return jax.jvp(jax.grad(f), (u,), (ones,))

    def _failures(self, position: dict, energy_fn: EnergyFn, flags: dict) -> dict:
        out = {}
        e0 = energy_fn(position)
        for block in self._blocks(position):
            g, lam = self._grad_curv(energy_fn, position, block, flags)
            moved = {}
            for n in block:
                u = position[n]
                alt = 1.0 + (jnp.arange(u.size).reshape(u.shape) % 2).astype(u.dtype)
                moved[n] = jnp.where(flags[n], 1.0 - u, u + alt)
            g2, _ = self._grad_curv(energy_fn, {**position, **moved}, block, flags)
            for n in block:
                u, b = position[n], flags[n]
                flat_lam = lam[n].ravel()
                values_bad = b & ~jnp.all((u == 0) | (u == 1))
                # gradient after the move = before + λ ⊙ (move), unit by unit
                grad_ok = _close(g2[n], g[n] + jnp.where(b, 0.0, lam[n]) * (moved[n] - u), 0.0)
                # one probe unit: finite difference of E against the gradient
                up = u.ravel().at[0].set(jnp.where(b, 1.0, u.ravel()[0] + 1.0)).reshape(u.shape)
                lo = u.ravel().at[0].set(jnp.where(b, 0.0, u.ravel()[0])).reshape(u.shape)
                e_up, e_lo = energy_fn({**position, n: up}), energy_fn({**position, n: lo})
                g_lo = jax.grad(lambda x, n=n: energy_fn({**position, n: x}))(lo).ravel()[0]
                want = g_lo + jnp.where(b, 0.0, 0.5 * flat_lam[0])
                diff_ok = _close(e_up - e_lo, want, jnp.abs(e0) + jnp.abs(e_up))
                bin_bad = b & ~(grad_ok & diff_ok & jnp.all(flat_lam == 0))
                real_bad = ~b & ~(grad_ok & diff_ok)
                curv_bad = ~b & ~jnp.all(flat_lam > 0)
                out[n] = jnp.stack([values_bad, bin_bad, real_bad, curv_bad])
        return out

    # ------------------------------------------------------------------ interface
    def init(self, position: Mapping[str, jax.Array], energy_fn: EnergyFn, params: Any):
        position = {n: _as_float(x) for n, x in position.items()}
        flags = self._flags(position)
        failures = self._failures(position, energy_fn, flags)
        return GibbsState(position, energy_fn(position), flags, failures)

    def step(
        self, key: jax.Array, state: GibbsState, energy_fn: EnergyFn, params: Any
    ) -> tuple[GibbsState, GibbsInfo]:
        position = dict(state.position)
        blocks = self._blocks(position)
        flips = jnp.zeros((), jnp.int32)
        for k_block, block in zip(jax.random.split(key, len(blocks)), blocks):
            flags = {n: self._is_binary(n, state.binary[n]) for n in block}
            g, lam = self._grad_curv(energy_fn, position, block, flags)
            for k, n in zip(jax.random.split(k_block, len(block)), block):
                u, b = position[n], flags[n]
                k_bin, k_real = jax.random.split(k)
                new_bin = jax.random.uniform(k_bin, u.shape, u.dtype) < jax.nn.sigmoid(-g[n])
                new_bin = new_bin.astype(u.dtype)
                safe = jnp.where(lam[n] > 0, lam[n], 1.0)
                noise = jax.random.normal(k_real, u.shape, u.dtype)
                new_real = u - g[n] / safe + noise / jnp.sqrt(safe)
                if b is True:
                    new = new_bin
                elif b is False:
                    new = new_real
                else:
                    new = jnp.where(b, new_bin, new_real)
                flips = flips + jnp.where(b, jnp.sum(new != u), 0).astype(jnp.int32)
                position[n] = new
        energy = energy_fn(position)
        info = GibbsInfo(energy - state.energy, flips)
        return state._replace(position=position, energy=energy), info

    def with_position(
        self, state: GibbsState, position: dict, energy: Any, gradient: Any
    ) -> GibbsState:
        """``state`` moved to ``position`` (parallel tempering's swaps)."""
        return state._replace(position=position, energy=energy)

    def is_valid(self, state: GibbsState) -> jax.Array:
        """Finite energy, and the energy of the form the conditionals assume."""
        ok = jnp.isfinite(state.energy)
        for f in state.failures.values():
            ok = ok & ~jnp.any(f)
        return ok

    def check(self, position: Mapping[str, jax.Array], energy_fn: EnergyFn) -> None:
        """Host-side check of the assumption at ``position`` (one chain); raises a
        ``ValueError`` naming the variable and the failed test."""
        state = self.init(position, energy_fn, {})
        for name, f in state.failures.items():
            for bad, what in zip(np.asarray(f), _FAILURES):
                if bad:
                    kind = "binary" if bool(state.binary[name]) else "real"
                    raise ValueError(
                        f"kernel='gibbs' cannot sample variable {name!r} ({kind}): {what}"
                    )
        if not bool(jnp.isfinite(state.energy)):
            raise ValueError("kernel='gibbs': the energy is not finite at the start")


def run_sweeps(
    kernel: Gibbs, key: jax.Array, position: dict, energy_fn: EnergyFn, num_steps: int
) -> dict:
    """``num_steps`` sweeps of one chain from ``position`` without the start checks (for
    trainers, which check once on the host); ``kernel.binary`` must be set."""
    if kernel.binary is None:
        raise ValueError("run_sweeps needs a kernel with binary= set (see Gibbs.for_space)")
    position = {n: _as_float(x) for n, x in position.items()}
    flags = {n: jnp.asarray(n in kernel.binary) for n in position}
    state = GibbsState(position, energy_fn(position), flags, {})

    def body(i: jax.Array, state: GibbsState) -> GibbsState:
        return kernel.step(jax.random.fold_in(key, i), state, energy_fn, {})[0]

    return jax.lax.fori_loop(0, num_steps, body, state).position
