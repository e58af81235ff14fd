"""``Samples``: draws, per-draw statistics and the final sampler state of a run."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..energies import Energy, terms
from ..energies._structure import term_vector

__all__ = ["ChainState", "Samples"]


class ChainState(NamedTuple):
    """The last sampler state of every chain, with what is needed to continue it.

    Attributes:
        kernel_state: the kernel's state with a leading chain axis (for NUTS/HMC,
            ``kernel_state.hmc`` is NumPyro's ``HMCState``: position ``z`` in the unconstrained
            space, adapted step size and mass matrix in ``adapt_state``; for MALA/ULA,
            ``kernel_state.adapt``; for parallel tempering, ``kernel_state.replicas``).
        kernel: the kernel (its static settings).
        params: the kernel's traced settings.
        name: the kernel's name (``"nuts"``, ``"mala"``, ...).
    """

    kernel_state: Any
    kernel: Any
    params: Any
    name: str

    @property
    def position(self) -> dict:
        """The chains' last positions (unconstrained for NUTS/HMC/MALA/ULA)."""
        return jax.vmap(lambda st: st.position)(self.kernel_state)  # per chain


@eqx.filter_jit
def _term_energies(energy: Energy, draws: dict) -> jax.Array:
    """(chain, draw, term): every term's energy at every draw, stacks evaluated stacked."""
    lead = next(iter(draws.values())).shape[:2]
    each = jax.vmap(jax.vmap(lambda v: term_vector(energy, v)))(draws)
    return jnp.broadcast_to(each, (*lead, each.shape[-1]))


@dataclasses.dataclass(frozen=True)
class Samples:
    """The result of :func:`~composable_ebm.sample`.

    Attributes:
        draws: name → array (chain, draw, *shape) in the constrained space.
        stats: name → array (chain, draw): the kernel's own statistics (for NUTS/HMC
            ``diverging``, ``accept_prob``, ``num_steps``, ``step_size``, ``tree_depth``,
            ``hamiltonian``; for MALA/ULA ``accept_prob``, ``is_accepted``,
            ``step_size``, ``nonfinite``), and for every kernel ``potential_energy`` (the
            kernel's target at each draw: unconstrained, Jacobian included) and
            ``model_energy`` (E at each draw).
        state: a :class:`ChainState`: the last sampler state per chain; pass it to
            ``ebm.sample(..., state=...)`` with ``num_warmup=0`` to continue.
        energy: the energy that was sampled.
        kernel: the kernel's name (``"nuts"``, ``"hmc"``, ``"mala"``, ``"ula"``, ...).

    Example:
        >>> import jax, composable_ebm as ebm
        >>> s = ebm.sample(ebm.Gaussian("x", 0.0, cov=1.0), jax.random.key(1),
        ...                num_warmup=100, num_samples=100, num_chains=2)
        >>> s.num_chains, s.num_samples, int(s.stats["diverging"].sum())
        (2, 100, 0)
    """

    draws: dict[str, jax.Array]
    stats: dict[str, jax.Array]
    state: ChainState
    energy: Energy
    kernel: str = "nuts"

    @property
    def num_chains(self) -> int:
        """Number of chains."""
        return int(next(iter(self.stats.values())).shape[0])

    @property
    def num_samples(self) -> int:
        """Draws per chain."""
        return int(next(iter(self.stats.values())).shape[1])

    @functools.cached_property
    def term_energies(self) -> dict[str, jax.Array]:
        """Label → (chain, draw): each top-level term's energy at every draw.

        Labels come from ``E.named(...)``, else the term's class (see ``ebm.terms``);
        the terms sum to ``stats["model_energy"]``. Computed on first access.

        Example:
            >>> import jax, jax.numpy as jnp, composable_ebm as ebm
            >>> E = (ebm.Gaussian("x", 0.0, cov=1.0).named("prior")
            ...      + ebm.Gaussian("x", 1.0, cov=0.5).named("data"))
            >>> s = ebm.sample(E, jax.random.key(0), num_warmup=100, num_samples=100,
            ...                num_chains=2)
            >>> sorted(s.term_energies)
            ['data', 'prior']
            >>> total = s.term_energies["prior"] + s.term_energies["data"]
            >>> bool(jnp.allclose(total, s.stats["model_energy"], atol=1e-4))
            True
        """
        labels = [label for label, _ in terms(self.energy)]
        each = np.asarray(_term_energies(self.energy, self.draws))
        return {label: each[..., i] for i, label in enumerate(labels)}

    def to_inference_data(self) -> Any:
        """ArviZ's data object: ``posterior`` with the variable names, ``sample_stats``."""
        from ._arviz import to_inference_data

        return to_inference_data(self)

    def summary(self, **kwargs: Any) -> Any:
        """ArviZ summary table (mean, sd, HDI, ESS bulk/tail, R-hat) of the draws.

        Keyword arguments go to ``arviz.summary``.
        """
        from ._arviz import import_arviz

        return import_arviz().summary(self.to_inference_data(), **kwargs)

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape[2:]) for k, v in self.draws.items()}
        extra = ""
        if "diverging" in self.stats:
            extra = f", divergences={int(self.stats['diverging'].sum())}"
        elif "accept_prob" in self.stats:
            extra = f", mean acceptance={float(self.stats['accept_prob'].mean()):.2f}"
        return (
            f"Samples({self.kernel}, chains={self.num_chains}, draws={self.num_samples}, "
            f"variables={shapes}{extra})"
        )
