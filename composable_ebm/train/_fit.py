"""``fit``: a host loop over compiled chunks of :func:`train_step`."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax

from .. import _validate as v
from .._devices import mesh_for
from ..energies import Energy
from ._fit_checkpoint import FitCheckpoint
from ._fit_loop import FitLoop
from ._loss import Loss
from ._options import DEFAULT_EMA, check_ema, optimizer_for
from ._result import FitError, FitResult
from ._state import TrainState, state_keys

__all__ = ["FitError", "FitResult", "fit"]


def _rows(data: Any) -> int:
    return int(jax.tree_util.tree_leaves(data)[0].shape[0])


def _chunk_length(chunk: int, steps: int, done: int, checkpoint_every: int | None) -> int:
    """A chunk that divides the remaining steps (and ends on every checkpoint) when one
    close to ``chunk`` exists: no partial last chunk, and a resumed run computes exactly
    what an uninterrupted one does."""
    whole = math.gcd(steps, done) if 0 < done < steps else steps
    if checkpoint_every:
        whole = math.gcd(whole, checkpoint_every)
    divisor = max(c for c in range(1, chunk + 1) if whole % c == 0)
    return divisor if divisor * 4 >= chunk else chunk


def fit(
    energy: Energy,
    data: Any,
    loss: Loss,
    *,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float | None = None,
    schedule: str | None = None,
    warmup_steps: int = 0,
    ema: float | None = DEFAULT_EMA,
    steps: int = 1000,
    batch_size: int = 256,
    key: jax.Array,
    progress: bool = True,
    callback: Callable[[int, dict, Energy], Any] | None = None,
    validation: Any = None,
    patience: int | None = None,
    clip_norm: float | None = None,
    chunk_size: int = 100,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    on_nonfinite: str = "warn",
    devices: str | Sequence[Any] | None = None,
) -> FitResult:
    """Train every trainable array of ``energy`` (and the loss's own parameters).

    ``fit`` builds a :class:`TrainState` and runs :func:`train_step` in compiled chunks
    of ``chunk_size`` steps (minibatches drawn inside), visiting the host once per chunk
    for the progress bar, validation, callback and checkpoint.

    Args:
        energy: the energy; frozen parts (``ebm.freeze``) and conditioned values stay fixed.
        data: an array (N, *shape) for a one-variable energy, or a mapping name → array;
            NaN or infinite values are rejected. ``MarginLoss`` takes a pair.
        loss: ``ebm.NCE``, ``ebm.ScoreMatching``, ``ebm.ContrastiveDivergence``,
            ``ebm.MarginLoss``, optionally plus regularisers (``+ ebm.L2(1e-4)``).
        optimizer: an optax optimizer. Default: Adam at ``learning_rate`` with ``schedule``.
        learning_rate: the default Adam's (peak) learning rate, 1e-3 when not given.
        schedule: the default Adam's learning-rate schedule after warmup: ``"constant"``
            (the default), ``"cosine"`` (cosine decay to 0 at ``steps``) or ``"linear"``.
        warmup_steps: linear warmup of the default Adam's learning rate from 0.
        ema: parameter averaging. The returned energy has an exponential moving average of
            the trained parameters, kept inside the compiled step, with decay
            min(ema, (1 + t) / (10 + t)) at step t: its window grows with the run (about
            the last tenth of the steps) up to 1 / (1 − ema) steps, so short runs are not
            dragged back to their start. It reduces the run-to-run spread of what training
            returns; ``FitResult.final_energy`` is the last iterate. ``None`` turns it off.
        steps: optimisation steps.
        batch_size: rows per step, drawn uniformly with replacement.
        key: a JAX random key. ``fit`` derives its own streams from it (``fold_in`` with a
            fixed tag), so passing the key that initialised a ``NeuralEnergy`` is safe.
        progress: show a tqdm bar with the loss.
        callback: ``callback(step, metrics, energy)`` after each chunk (``energy`` as it
            would be returned now); return ``False`` to stop.
        validation: held-out data; its loss is computed after each chunk (at the
            parameters that would be returned, ``history["val_loss"]``); with ``patience``
            the best parameters are returned (``FitResult.steps`` is then the step they
            come from) and training stops after ``patience`` chunks without improvement.
        patience: early stopping, in chunks without improvement of the validation loss.
        clip_norm: clip gradients to this global norm.
        chunk_size: steps per compiled chunk.
        checkpoint: a path; the training state is saved there (atomically) every
            ``checkpoint_every`` steps and at the end, and a later ``fit`` with the same
            path resumes from it, bit for bit (the file must come from the same energy,
            loss, optimizer and ``ema``: anything else is refused with a message naming
            both sides). A checkpoint already past ``steps`` trains nothing: its state is
            returned as it is (``FitResult.steps`` is the checkpoint's step) with a
            ``UserWarning``.
        checkpoint_every: steps between checkpoints (default: every chunk).
        on_nonfinite: ``"warn"`` (stop, warn, return the last good parameters) or
            ``"raise"`` (raise :class:`FitError` carrying that result).
        devices: data-parallel training. ``None``: every local device
            (``jax.local_devices()``) when ``batch_size`` divides evenly among them, else
            the default device; ``"all"``: every device of every host (an error when the
            batch does not divide evenly); or a list of devices. Each minibatch is split
            over the devices, the parameters are replicated and XLA reduces the
            gradients: the same steps as on one device, up to the order of floating-point
            sums.

    Returns:
        :class:`FitResult`.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, composable_ebm as ebm
        >>> x = np.random.default_rng(0).normal(2.0, 0.5, (2000, 1)).astype("float32")
        >>> r = ebm.fit(ebm.Gaussian("x", jnp.zeros(1), cov=1.0), x,
        ...             ebm.ScoreMatching("exact"), steps=500, learning_rate=2e-2,
        ...             key=jax.random.key(0), progress=False)
        >>> bool(abs(r.energy.mean[0] - 2.0) < 0.05 and abs(r.energy.cov[0, 0] - 0.25) < 0.03)
        True
    """
    if not isinstance(energy, Energy):
        raise TypeError(f"fit expects an ebm.Energy, got {type(energy).__name__}")
    if not isinstance(loss, Loss):
        raise TypeError(f"fit expects a loss such as ebm.NCE(), got {type(loss).__name__}")
    if on_nonfinite not in ("warn", "raise"):
        raise ValueError(f"on_nonfinite must be 'warn' or 'raise', got {on_nonfinite!r}")
    steps = v.positive_int(steps, "steps")
    batch_size = v.positive_int(batch_size, "batch_size")
    chunk_size = v.positive_int(chunk_size, "chunk_size")
    if checkpoint_every is not None:
        checkpoint_every = v.positive_int(checkpoint_every, "checkpoint_every")
    if patience is not None:
        patience = v.positive_int(patience, "patience")
    ema = check_ema(ema)
    opt = optimizer_for(optimizer, learning_rate, schedule, warmup_steps, steps, clip_norm)
    data = loss.normalize(energy, data)
    val_data = loss.normalize(energy, validation) if validation is not None else None

    k_setup, k_steps, k_val = state_keys(key)  # as TrainState.create(..., key=key)
    state = TrainState.initial(energy, data, loss, k_setup, k_steps, opt, ema)
    every = checkpoint_every if checkpoint is not None else None
    chunk = min(chunk_size, steps)
    if every:
        chunk = math.gcd(chunk, every)
    ckpt = FitCheckpoint(checkpoint, energy, state) if checkpoint is not None else None
    mesh = mesh_for(devices, batch_size, "batch_size")
    loop = FitLoop(state, data, batch_size, steps, mesh)
    resumed = ckpt.resume(state, steps) if ckpt is not None else None
    if resumed is not None:
        loop.resume(*resumed)
    loop.chunk = _chunk_length(chunk, steps, loop.done, every)
    if val_data is not None:
        rows = max(batch_size, 4096)
        loop.validate_on(jax.tree_util.tree_map(lambda a: a[:rows], val_data), k_val, patience)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=min(loop.done, steps), desc="fit")
    try:
        while loop.done < steps and loop.stopped is None:
            metrics, count = loop.run_chunk()
            if bar is not None and count:
                bar.update(count)
                bar.set_postfix(loss=f"{float(np.mean(metrics['loss'])):.4g}")
            if loop.stopped is not None:
                break
            loop.validate()
            if callback is not None:
                if callback(loop.done, metrics, loop.state.averaged_energy) is False:
                    loop.stopped = f"stopped by the callback at step {loop.done}"
            if ckpt is not None and (not every or loop.done % every == 0 or loop.done >= steps):
                ckpt.save(loop.state, loop.done, loop.history, loop.val_hist)
    finally:
        if bar is not None:
            bar.close()
    loop.finish(patience)
    return _result(loop, on_nonfinite)


def _result(loop: FitLoop, on_nonfinite: str) -> FitResult:
    state = loop.state
    averaged = state.params if state.averaged is None else state.averaged
    log_z = state.log_z()
    result = FitResult(
        energy=state.averaged_energy,
        history=loop.full_history(),
        log_z=None if log_z is None else float(log_z),
        stopped=loop.stopped,
        steps=loop.done,
        loss_params=averaged[1],
        loss_state=state.loss_state,
        final_energy=state.energy,
        state=state,
    )
    if loop.nonfinite:
        if on_nonfinite == "raise":
            raise FitError(loop.stopped, result)
        warnings.warn(loop.stopped, RuntimeWarning, stacklevel=3)
    return result
