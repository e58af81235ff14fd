"""Contrastive divergence with block-Gibbs negatives (RBMs): the pieces ``_cd.py`` uses.

With ``ContrastiveDivergence(sampler="gibbs")`` the data hold the *visible* variables
only; the other variables of the energy are latent. The loss is on the free energy
F(v) = −log Σₕ exp(−E(v, h)) (``energy.free_energy()``, or the energy itself when nothing
is latent), and the negatives come from block-Gibbs sweeps on the joint energy, the
latent block first (so a sweep from v draws h | v, then v | h).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..energies import Energy
from ..infer.kernels.gibbs import Gibbs, run_sweeps

__all__ = ["check_gibbs_data", "gibbs_negatives", "marginal_energy"]


def marginal_energy(energy: Energy) -> Energy:
    """The energy of the visible variables: ``energy.free_energy()`` when it has one."""
    free = getattr(energy, "free_energy", None)
    return free() if callable(free) else energy


def gibbs_kernel(energy: Energy, visible: Any) -> Gibbs:
    """Block Gibbs on the joint: the latent variables first, then each visible one."""
    space = energy.space
    latent = tuple(n for n in space if n not in visible)
    blocks = ((latent,) if latent else ()) + tuple((n,) for n in space if n in visible)
    return Gibbs(blocks=blocks).for_space(space)


def check_gibbs_data(energy: Energy, data: dict[str, jax.Array]) -> None:
    """Host checks before training: 0/1 data for binary variables, and an energy of the
    form block Gibbs assumes (:meth:`Gibbs.check` at the first data row)."""
    space = energy.space
    kernel = gibbs_kernel(energy, data)
    for name, x in data.items():
        if name in kernel.binary:
            x = np.asarray(x)
            bad = int(np.sum((x != 0) & (x != 1)))
            if bad:
                raise ValueError(
                    f"data[{name!r}] has {bad} value(s) other than 0 and 1, but {name!r} is a "
                    "binary variable"
                )
    row = {n: x[0] for n, x in data.items()}
    row.update({n: jnp.zeros(space[n].shape) for n in space if n not in data})
    kernel.check(row, energy.evaluate)


def gibbs_negatives(
    key: jax.Array, energy: Energy, start: dict[str, jax.Array], steps: int
) -> dict[str, jax.Array]:
    """Visible negatives after ``steps`` Gibbs sweeps of the joint from each row of ``start``."""
    space = energy.space
    kernel = gibbs_kernel(energy, start)
    n = next(iter(start.values())).shape[0]
    pos = {k: jnp.zeros((n, *space[k].shape)) for k in space if k not in start}
    pos.update(start)

    def one(k: jax.Array, p: dict) -> dict:
        return run_sweeps(kernel, k, p, energy.evaluate, steps)

    out = jax.vmap(one)(jax.random.split(key, n), pos)
    return {k: out[k] for k in start}
