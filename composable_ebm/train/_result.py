"""What ``fit`` returns, and the error it raises on a non-finite loss."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..energies import Energy

__all__ = ["FitError", "FitResult"]


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        energy: the trained energy (frozen parts and conditioned values unchanged): at the
            averaged parameters when ``fit(..., ema=...)`` is on (the default), else the
            last iterate.
        history: per-step metrics, name → array (``loss`` always); validation metrics
            as ``val_step`` and ``val_loss`` when validation data was given.
        log_z: the log-normaliser learned by NCE; ``None`` for other losses.
        stopped: ``None`` when all steps ran, else why training stopped early.
        steps: the number of steps whose updates were applied.
        loss_params: the loss's own trained parameters (NCE's log Z), averaged like
            ``energy``.
        loss_state: the loss's final state (contrastive divergence's replay buffer).
        final_energy: the energy at the last iterate, without averaging.
        state: the :class:`TrainState` training ended in; continue it with
            :func:`train_step`.

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> r = ebm.fit(ebm.Gaussian("x", jnp.zeros(1), cov=1.0), jnp.ones((64, 1)),
        ...             ebm.ScoreMatching("exact"), steps=10, key=jax.random.key(0),
        ...             progress=False)
        >>> r.steps, r.history["loss"].shape, r.stopped, r.log_z
        (10, (10,), None, None)
    """

    energy: Energy
    history: dict[str, np.ndarray]
    log_z: float | None
    stopped: str | None
    steps: int
    loss_params: Any = None
    loss_state: Any = None
    final_energy: Energy | None = None
    state: Any = None


class FitError(RuntimeError):
    """Training stopped on a non-finite loss with ``on_nonfinite="raise"``.

    ``result`` holds the :class:`FitResult` with the last good parameters.

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> blows_up = ebm.energy(lambda x: jnp.sum(jnp.sqrt(x)), x=(1,))  # NaN for x < 0
        >>> try:
        ...     ebm.fit(blows_up + ebm.Gaussian("x", jnp.zeros(1), cov=1.0), -jnp.ones((8, 1)),
        ...             ebm.ScoreMatching("exact"), steps=5, key=jax.random.key(0),
        ...             progress=False, on_nonfinite="raise")
        ... except ebm.FitError as e:
        ...     print(e.result.steps)
        0
    """

    def __init__(self, message: str, result: FitResult):
        super().__init__(message)
        self.result = result
