"""The kernel interface every sampler implements (blackjax's ``init``/``step`` shape).

A kernel is an equinox Module holding only **static** settings (so it is hashable and
part of a compiled sampler's cache key). Its two methods are pure:

- ``init(position, energy_fn, params) -> State``
- ``step(key, state, energy_fn, params) -> (State, Info)``

``energy_fn`` maps a position (a mapping name → array) to a scalar energy and is an
argument of every call, never captured: a tempered or annealed target is only a
different argument, and a batch of temperatures is a ``vmap``. ``params`` is a pytree of
the kernel's **traced** settings (step size, mass matrix, ...): new values never compile
anew.

Every ``State`` exposes ``position`` (the mapping the energy is evaluated at) and
``energy`` (``energy_fn(position)``); ``Info`` is a NamedTuple whose fields are the
kernel's per-draw statistics. The class attribute :attr:`Kernel.stats` says, for each
field of ``Info``, its name in ArviZ's ``sample_stats`` and its sign there.

Adaptation (step size, mass matrix) is the kernel's business: its state counts steps and
``num_warmup`` is one of its static settings. The driver (``infer/_driver.py``) knows no
kernel by name; ``sample`` maps the user's ``kernel="..."`` string to a class through
:data:`KERNELS`, filled by each kernel's module.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["KERNELS", "EnergyFn", "Kernel", "register"]

EnergyFn = Callable[[Mapping[str, jax.Array]], jax.Array]

# kernel="..." name → Kernel subclass (filled by ``register`` in each kernel's module)
KERNELS: dict[str, type[Kernel]] = {}


def register(name: str) -> Callable[[type[Kernel]], type[Kernel]]:
    """Class decorator: make a kernel available as ``ebm.sample(..., kernel=name)``."""

    def deco(cls: type[Kernel]) -> type[Kernel]:
        KERNELS[name] = cls
        return cls

    return deco


class Kernel(eqx.Module):
    """A Markov kernel on positions given as mappings name → array.

    Subclasses hold static settings only, and implement :meth:`init`, :meth:`step` and
    :meth:`from_options` (which checks the user's options and splits them into the kernel
    and its traced ``params``).
    """

    # Info field → (ArviZ sample_stats name, sign); fields not listed keep their own name.
    stats: ClassVar[dict[str, tuple[str, int]]] = {}
    # True: positions live in the unconstrained space (the energy's potential with the
    # log-Jacobian of each support's transform); False: in the variables' own space.
    unconstrained: ClassVar[bool] = True
    # True when the kernel moves discrete variables.
    discrete: ClassVar[bool] = False

    @abc.abstractmethod
    def init(self, position: Mapping[str, jax.Array], energy_fn: EnergyFn, params: Any) -> Any:
        """The kernel's state at ``position``."""

    @abc.abstractmethod
    def step(self, key: jax.Array, state: Any, energy_fn: EnergyFn, params: Any) -> tuple[Any, Any]:
        """One transition: ``(new_state, info)``."""

    @classmethod
    @abc.abstractmethod
    def from_options(cls, num_warmup: int, options: dict[str, Any]) -> tuple[Kernel, Any]:
        """The kernel (static settings) and its traced params from ``sample``'s options.

        Unknown options raise a ``TypeError`` naming them and the known ones; invalid
        values raise a ``ValueError`` naming the option.
        """

    def with_num_warmup(self, num_warmup: int) -> Kernel:
        """The same kernel for a run of ``num_warmup`` adaptation steps (0: continue)."""
        return self

    def check_dimension(self, params: Any, dim: int) -> None:
        """Check the traced settings against the position's size ``dim`` (flattened);
        raise a ``ValueError`` naming the option (nothing to check by default)."""

    @staticmethod
    def _check_inverse_mass(params: Any, allowed: tuple[tuple[int, ...], ...]) -> None:
        """A concrete ``params["inverse_mass_matrix"]`` must have one of the ``allowed``
        shapes (a dict of blocks, a traced value or ``None`` is not checked here)."""
        imm = params.get("inverse_mass_matrix")
        if imm is None or isinstance(imm, dict) or isinstance(imm, jax.core.Tracer):
            return
        shape = tuple(jnp.shape(imm))
        if shape not in allowed:
            dim = max(max(s, default=1) for s in allowed)
            raise ValueError(
                f"inverse_mass_matrix has shape {shape}; this energy has {dim} unconstrained "
                f"dimension(s), so it must have shape {' or '.join(map(str, allowed))}"
            )

    def for_space(self, space: Mapping[str, Any]) -> Kernel:
        """The kernel specialised to the energy's space (e.g. which variables are binary);
        raises a ``ValueError`` naming a variable the kernel cannot move."""
        return self

    def check(self, position: Mapping[str, jax.Array], energy_fn: EnergyFn) -> None:
        """Host side, for one chain's invalid start: raise an error saying what is wrong
        when it is the kernel's own assumption that fails (nothing by default)."""

    def with_position(
        self, state: Any, position: Mapping[str, jax.Array], energy: Any, gradient: Any
    ) -> Any:
        """``state`` moved to ``position`` (its energy and gradient given), adaptation kept.

        Used by parallel tempering to swap replicas; kernels without it cannot be tempered.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be used with temperatures")

    def is_valid(self, state: Any) -> jax.Array:
        """Whether a (single-chain) state can start a run: finite energy and gradient."""
        ok = jnp.isfinite(state.energy)
        for g in jax.tree_util.tree_leaves(getattr(state, "gradient", None)):
            ok = ok & jnp.all(jnp.isfinite(g))
        return ok

    def warnings(self, stats: Mapping[str, Any], num_warmup: int) -> list[str]:
        """Messages about a finished run's statistics (host side); none by default."""
        return []
