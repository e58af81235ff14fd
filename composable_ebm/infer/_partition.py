"""``ebm.log_partition``: log Z = log ∫ exp(−E) by grid quadrature or annealed importance
sampling, and the ``ebm.LogZ`` result.

The two methods live in ``_grid.py`` (quadrature, at most 3 dimensions) and ``_ais.py``
(annealed importance sampling from a Gaussian reference); this module checks what both
need and dispatches.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from .._space import Var, describe_support
from ..energies import Energy

__all__ = ["LogZ", "check_space", "log_partition"]

METHODS = ("grid", "ais")


class LogZ(NamedTuple):
    """An estimate of log Z = log ∫ exp(−E(x)) dx and its uncertainty.

    Attributes:
        value: the estimate of log Z.
        stderr: for ``"ais"`` the standard error of ``value`` (delta method on the
            importance weights); for ``"grid"`` an error estimate, the change in ``value``
            when the grid spacing is doubled (a conservative bound for smooth integrands).

    Example:
        >>> import composable_ebm as ebm
        >>> ebm.LogZ(1.2345678, 0.0012)
        LogZ(value=1.23457, stderr=0.0012)
        >>> value, stderr = ebm.LogZ(0.5, 0.01)  # unpacks like a tuple
    """

    value: float | jax.Array
    stderr: float | jax.Array

    def __repr__(self) -> str:
        return f"LogZ(value={float(self.value):.6g}, stderr={float(self.stderr):.2g})"


def check_space(energy: Any, method: str) -> dict[str, Var]:
    """The energy's space, checked: an energy with continuous variables of known shape."""
    if not isinstance(energy, Energy):
        raise TypeError(f"log_partition expects an ebm.Energy, got {type(energy).__name__}")
    space = energy.space
    if not space:
        raise ValueError("log_partition needs an energy with at least one free variable")
    for name, var in space.items():
        if var.is_discrete:
            raise ValueError(
                f"log_partition (method={method!r}) integrates continuous variables, but "
                f"variable {name!r} is discrete ({describe_support(var.support)}); sum it "
                f"out first with E.marginalize({name!r})"
            )
        if var.shape is None:
            raise ValueError(
                f"variable {name!r} has no known shape: give it one (e.g. "
                f"Confinement({name!r}, shape=...)) or add a term that fixes it"
            )
    return space


def log_partition(
    E: Energy,
    *,
    method: str = "grid",
    key: jax.Array | None = None,
    bounds: Any = None,
    **options: Any,
) -> LogZ:
    """log Z = log ∫ exp(−E(x)) dx over every free variable of ``E``.

    ``"grid"`` is tensor-product quadrature (Simpson's rule by default, evaluated in
    chunks inside one compiled function) for energies of at most 3 scalar dimensions in
    total; mass outside the bounds is ignored, and points where E is NaN (e.g. 0·log 0 on
    a support's edge) count as zero density. ``"ais"`` is annealed importance sampling
    along E_β = (1 − β)·E_ref + β·E from a Gaussian reference (fitted to a short MALA run
    unless given), with Metropolis-adjusted Langevin moves; it works in the unconstrained
    space, so constrained supports are handled through their bijections.

    Both methods compile once per energy structure and settings: calling again with new
    parameter values (or bounds, reference, step size, key) reuses the compiled code.

    Args:
        E: the energy; every free variable continuous with a known shape.
        method: ``"grid"`` or ``"ais"``.
        key: a JAX random key (required for ``"ais"``, unused by ``"grid"``).
        bounds: ``"grid"`` only: the integration box. A mapping name → ``(low, high)``
            (for every entry of the variable) or a list of pairs (one per entry, in
            row-major order); for a one-variable energy the pair or list may be given
            directly. Variables left out take their bounds from an interval support;
            bounds are intersected with the variable's support.
        **options: for ``"grid"``: ``num_points`` (per dimension; default 2049, 401, 129
            for 1, 2, 3 dimensions, rounded up to 4k + 1), ``rule`` (``"simpson"`` or
            ``"trapezoid"``), ``chunk_size`` (points per evaluation batch, 16384).
            For ``"ais"``: ``num_particles`` (1000), ``num_temperatures`` (200),
            ``num_mcmc_steps`` (1 per temperature), ``step_size`` (initial MALA step in
            the whitened space, adapted per temperature towards ``target_accept``, 0.574),
            ``schedule`` (``"sigmoid"``, ``"geometric"``, ``"linear"`` or an increasing
            array of β from 0 to 1), ``reference`` (an ``ebm.Gaussian`` or a pair
            ``(mean, cov)`` over the flattened unconstrained variables), ``pilot_steps``
            (100: length of the MALA run the reference is fitted to) and
            ``reference_scale`` (1.5: the fitted reference's standard deviations are
            widened by this factor).

    Returns:
        ``ebm.LogZ(value, stderr)`` with Python floats.

    Example:
        >>> import jax, jax.numpy as jnp, math, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.zeros(2), cov=0.5)
        >>> exact = math.log(2 * math.pi * 0.5)
        >>> grid = ebm.log_partition(E, bounds=(-6.0, 6.0))
        >>> abs(grid.value - exact) < 1e-4
        True
        >>> ais = ebm.log_partition(E, method="ais", key=jax.random.key(0),
        ...                         num_particles=200, num_temperatures=50)
        >>> abs(ais.value - exact) < 0.05
        True
    """
    if method not in METHODS:
        raise ValueError(f"log_partition: unknown method {method!r}; choose one of {METHODS}")
    space = check_space(E, method)
    if method == "grid":
        from ._grid import grid_log_partition

        return grid_log_partition(E, space, bounds, options)
    if key is None:
        raise ValueError(
            "log_partition(method='ais') needs a random key, e.g. key=jax.random.key(0)"
        )
    if bounds is not None:
        raise ValueError(
            "bounds= is for method='grid'; AIS integrates over each variable's whole support"
        )
    from ._ais import ais_log_partition

    return ais_log_partition(E, space, key, options)
