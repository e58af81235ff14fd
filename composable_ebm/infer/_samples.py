"""``Samples``: draws, per-draw statistics and the final sampler state of a run."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax

from ..energies import Energy

__all__ = ["ChainState", "Samples"]


class ChainState(NamedTuple):
    """The last sampler state of every chain, with the settings needed to continue it.

    Attributes:
        hmc: NumPyro's ``HMCState`` with a leading chain axis (position ``z`` in the
            unconstrained space, adapted step size and mass matrix in ``adapt_state``).
        kernel: ``"nuts"`` or ``"hmc"``.
        static: the static kernel options of the run.
        traced: the traced kernel options of the run.
    """

    hmc: Any
    kernel: str
    static: tuple
    traced: dict


@dataclasses.dataclass(frozen=True)
class Samples:
    """The result of :func:`~composable_ebm.sample`.

    Attributes:
        draws: name → array (chain, draw, *shape) in the constrained space.
        stats: name → array (chain, draw): ``diverging``, ``accept_prob``, ``num_steps``,
            ``step_size``, ``tree_depth``, ``hamiltonian`` (NumPyro's ``HMCState.energy``),
            ``potential_energy`` (unconstrained, Jacobian included) and ``model_energy``
            (E at each draw).
        state: a :class:`ChainState`: the last sampler state per chain; pass it to
            ``ebm.sample(..., state=...)`` with ``num_warmup=0`` to continue.
        energy: the energy that was sampled.
        kernel: ``"nuts"`` or ``"hmc"``.

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
        div = int(self.stats["diverging"].sum())
        return (
            f"Samples({self.kernel}, chains={self.num_chains}, draws={self.num_samples}, "
            f"variables={shapes}, divergences={div})"
        )
