"""``fit``: train an energy's trainable arrays with optax, in jitted chunks of steps."""

from __future__ import annotations

import collections
import math
import os
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..energies import Energy, trainable_mask
from ._fit_checkpoint import FitCheckpoint
from ._loss import Loss
from ._result import FitError, FitResult

__all__ = ["FitError", "FitResult", "fit"]

# How many times a training chunk has been traced, for tests that check reuse.
TRACE_COUNT: collections.Counter = collections.Counter()


def _finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _rows(data: Any) -> int:
    return int(jax.tree_util.tree_leaves(data)[0].shape[0])


def fit(
    energy: Energy,
    data: Any,
    loss: Loss,
    *,
    optimizer: optax.GradientTransformation | None = None,
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
) -> FitResult:
    """Train every trainable array of ``energy`` (and the loss's own parameters).

    Minibatches are drawn inside a jitted ``lax.scan`` of ``chunk_size`` steps, so the
    host is visited once per chunk (progress bar, validation, callback, checkpoint).

    Args:
        energy: the energy; frozen parts (``ebm.freeze``) and conditioned values stay fixed.
        data: an array (N, *shape) for a one-variable energy, or a mapping name → array;
            NaN or infinite values are rejected. ``MarginLoss`` takes a pair.
        loss: ``ebm.NCE``, ``ebm.ScoreMatching``, ``ebm.ContrastiveDivergence``,
            ``ebm.MarginLoss``, optionally plus regularisers (``+ ebm.L2(1e-4)``).
        optimizer: an optax optimizer (default Adam, learning rate 1e-3).
        steps: optimisation steps.
        batch_size: rows per step, drawn uniformly with replacement.
        key: a JAX random key.
        progress: show a tqdm bar with the loss.
        callback: ``callback(step, metrics, energy)`` after each chunk; return ``False``
            to stop.
        validation: held-out data; its loss is computed after each chunk
            (``history["val_loss"]``); with ``patience`` the best parameters are returned
            (``FitResult.steps`` is then the step they come from) and training stops after
            ``patience`` chunks without improvement.
        patience: early stopping, in chunks without improvement of the validation loss.
        clip_norm: clip gradients to this global norm.
        chunk_size: steps per compiled chunk.
        checkpoint: a path; the whole training state is saved there (atomically) every
            ``checkpoint_every`` steps and at the end, and a later ``fit`` with the same
            path resumes from it (the file must come from the same energy, loss and
            optimizer: anything else is refused with a message naming both sides). A
            checkpoint already past ``steps`` trains nothing: its state is returned as it
            is (``FitResult.steps`` is the checkpoint's step) with a ``UserWarning``.
        checkpoint_every: steps between checkpoints (default: every chunk).
        on_nonfinite: ``"warn"`` (stop, warn, return the last good parameters) or
            ``"raise"`` (raise :class:`FitError` carrying that result).

    Returns:
        :class:`FitResult`.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, optax, composable_ebm as ebm
        >>> x = np.random.default_rng(0).normal(2.0, 0.5, (2000, 1)).astype("float32")
        >>> r = ebm.fit(ebm.Gaussian("x", jnp.zeros(1), cov=1.0), x,
        ...             ebm.ScoreMatching("exact"), steps=500, optimizer=optax.adam(2e-2),
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
    for name, v in (("steps", steps), ("batch_size", batch_size), ("chunk_size", chunk_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    data = loss.normalize(energy, data)
    val_data = loss.normalize(energy, validation) if validation is not None else None
    n = _rows(data)
    chunk = min(chunk_size, steps)
    if checkpoint is not None and checkpoint_every:
        chunk = math.gcd(chunk, int(checkpoint_every))

    k_setup, k_train, k_val = jax.random.split(key, 3)
    loss_c, loss_params, loss_state = loss.setup(energy, data, k_setup)
    mask = trainable_mask(energy)
    params_e, static_e = eqx.partition(energy, mask)
    params = (params_e, loss_params)
    if not jax.tree_util.tree_leaves(params):
        raise ValueError(
            "nothing to train: the energy has no trainable arrays (frozen, or numbers not "
            "wrapped in ebm.Param) and the loss learns none"
        )
    opt = optimizer if optimizer is not None else optax.adam(1e-3)
    if clip_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
    opt_state = eqx.filter_jit(opt.init)(params)  # one compile, not op-by-op dispatch

    def objective(params, loss_c, state, batch, key):
        e = eqx.combine(params[0], static_e)
        value, metrics, new_state = loss_c.value(e, params[1], state, batch, key)
        return value, (metrics, new_state)

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(carry, i, limit, loss_c, data, guarded):
        params, opt_state, state, key, bad, loss_bad = carry
        key, k_batch, k_loss = jax.random.split(key, 3)
        idx = jax.random.randint(k_batch, (batch_size,), 0, n)
        batch = jax.tree_util.tree_map(lambda a: a[idx], data)
        (value, (metrics, new_state)), grads = grad_fn(params, loss_c, state, batch, k_loss)
        updates, new_opt = opt.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        # a non-finite gradient or update shows in the new parameters: one pass suffices
        finite = jnp.isfinite(value) & _finite(new_params)
        first_bad = (bad < 0) & ~finite & (i < limit)
        bad = jnp.where(first_bad, i, bad)
        loss_bad = loss_bad | (first_bad & ~jnp.isfinite(value))
        new = (new_params, new_opt, new_state)
        if guarded:  # replays and partial chunks: only steps before `limit` update
            ok = i < limit
            new = jax.tree_util.tree_map(
                lambda a, b: jnp.where(ok, a, b), new, (params, opt_state, state)
            )
        return (*new, key, bad, loss_bad), metrics

    @eqx.filter_jit
    def run_chunk(carry, start, limit, loss_c, data, guarded):
        """``chunk`` steps from ``start``. Unguarded (the usual case) every step updates and
        only the first non-finite step is recorded; the host then replays the chunk guarded
        up to the last good step, a variant compiled only when it is needed."""
        TRACE_COUNT["fit"] += 1
        return jax.lax.scan(
            lambda c, i: step(c, i, limit, loss_c, data, guarded),
            carry,
            start + jnp.arange(chunk, dtype=jnp.int32),
        )

    @eqx.filter_jit
    def val_loss(params, loss_c, state, data, key):
        return objective(params, loss_c, state, data, key)[0]

    # strongly typed flags: a weak type here would retrace the chunk after its first call
    carry = (params, opt_state, loss_state, k_train, jnp.asarray(-1, jnp.int32), jnp.asarray(False))
    history: dict[str, list] = {}
    val_hist: dict[str, list] = {"val_step": [], "val_loss": []}
    done, stopped, nonfinite = 0, None, False
    ckpt = FitCheckpoint(checkpoint, energy, carry) if checkpoint is not None else None
    resumed = ckpt.resume(carry, steps) if ckpt is not None else None
    if resumed is not None:
        carry, done, history, val_hist = resumed
    # a chunk that divides the remaining steps needs no guarded last chunk: one compiled
    # function, and a resumed run computes exactly what an uninterrupted one does
    whole = math.gcd(steps, done) if 0 < done < steps else steps
    if ckpt is not None and checkpoint_every:
        whole = math.gcd(whole, int(checkpoint_every))  # chunks end on every checkpoint
    divisor = max(c for c in range(1, chunk + 1) if whole % c == 0)
    if divisor * 4 >= chunk:
        chunk = divisor
    best, best_val, best_at, since_best = None, math.inf, 0, 0
    val_rows = None
    if val_data is not None:
        val_rows = jax.tree_util.tree_map(lambda a: a[: max(batch_size, 4096)], val_data)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=min(done, steps), desc="fit")
    warned_start = done > 0
    try:
        before_prev = None
        while done < steps and stopped is None:
            before, at = carry, done
            i32 = partial(jnp.asarray, dtype=jnp.int32)
            partial_chunk = done + chunk > steps
            carry, metrics = run_chunk(carry, i32(done), i32(steps), loss_c, data, partial_chunk)
            bad = int(carry[4])
            count = min(chunk, steps - done) if bad < 0 else bad - done
            metrics = {k: np.asarray(v)[:count] for k, v in metrics.items()}
            for k, v in metrics.items():
                history.setdefault(k, []).append(v)
            if not warned_start and count:
                warned_start = True
                msg = loss_c.check_start(metrics)
                if msg:
                    warnings.warn(msg, RuntimeWarning, stacklevel=2)
            if bad >= 0:
                nonfinite = True
                if bool(carry[5]):  # the loss itself: keep the parameters of the step before
                    done = max(bad - 1, 0)
                    last = (
                        f"the parameters of step {bad - 1}, the last with a finite loss, are "
                        "returned"
                        if bad
                        else "the initial parameters are returned"
                    )
                    what = "the loss"
                else:
                    done = bad
                    last = f"the parameters of step {bad} (finite loss) are returned"
                    what = "the gradient or the update"
                stopped = f"{what} became non-finite at step {bad}; training stopped and {last}"
                # replay up to the last good step (same keys, same batches: same values)
                if done < at and before_prev is None:  # resumed: no earlier step is kept
                    done = at
                    last = (
                        f"the parameters of the resumed step {at} are returned (the checkpoint "
                        "holds no earlier step; their loss is not finite)"
                    )
                    stopped = f"{what} became non-finite at step {bad}; training stopped and {last}"
                base, base_at = (before, at) if done >= at else before_prev
                replayed, _ = run_chunk(base, i32(base_at), i32(done), loss_c, data, True)
                carry = (*replayed[:4], carry[4], carry[5])
                break
            before_prev = (before, at)
            done += count
            if bar is not None:
                bar.update(count)
                if "loss" in metrics and len(metrics["loss"]):
                    bar.set_postfix(loss=f"{float(np.mean(metrics['loss'])):.4g}")
            if val_rows is not None:
                v = float(val_loss(carry[0], loss_c, carry[2], val_rows, k_val))
                val_hist["val_step"].append(done)
                val_hist["val_loss"].append(v)
                if v < best_val:
                    best_val, best, best_at, since_best = v, carry, done, 0
                else:
                    since_best += 1
                    if patience is not None and since_best >= patience:
                        stopped = (
                            f"early stopping at step {done}: no validation improvement in "
                            f"{patience} chunks; the best parameters (validation loss "
                            f"{best_val:.4g}) are returned"
                        )
            if callback is not None:
                e_now = eqx.combine(carry[0][0], static_e)
                if callback(done, metrics, e_now) is False:
                    stopped = f"stopped by the callback at step {done}"
            if ckpt is not None and (
                not checkpoint_every or done % checkpoint_every == 0 or done >= steps
            ):
                ckpt.save(carry, done, history, val_hist)
    finally:
        if bar is not None:
            bar.close()
    if best is not None and patience is not None and best_at != done:
        # with patience the best validated parameters are returned, from the step they had
        carry, done = best, best_at
        if stopped is not None and not stopped.startswith("early stopping"):
            stopped += f"; with patience, the best validated parameters (step {best_at}) instead"
    params, _, state = carry[:3]
    trained = eqx.combine(params[0], static_e)
    hist = {k: np.concatenate(v) if v else np.zeros(0) for k, v in history.items()}
    if val_rows is not None:
        hist.update({k: np.asarray(v) for k, v in val_hist.items()})
    log_z = loss_c.log_z(params[1])
    result = FitResult(
        energy=trained,
        history=hist,
        log_z=None if log_z is None else float(log_z),
        stopped=stopped,
        steps=done,
        loss_params=params[1],
        loss_state=state,
    )
    if nonfinite:
        if on_nonfinite == "raise":
            raise FitError(stopped, result)
        warnings.warn(stopped, RuntimeWarning, stacklevel=2)
    return result
