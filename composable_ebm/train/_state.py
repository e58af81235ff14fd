"""The training state and the pure training step that ``fit`` loops over."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ..energies import Energy, trainable_mask
from ._average import average
from ._loss import Loss
from ._options import DEFAULT_EMA, check_ema, default_optimizer

__all__ = ["TrainState", "finite_tree", "state_keys", "stream", "train_step"]


def stream(key: jax.Array, purpose: str) -> jax.Array:
    """An independent key stream for ``purpose``, derived from a user's key.

    Constructors split the key they are given (``NeuralEnergy(..., key=k)`` initialises its
    layers from ``split(k)``); trainers fold a fixed tag into it first, so the same key given
    to both never feeds the same random numbers to initialisation and training.
    """
    return jax.random.fold_in(key, zlib.crc32(purpose.encode()) & 0x7FFFFFFF)


def state_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(loss setup, step stream, validation) keys of a training run started with ``key``."""
    k_setup, k_steps, k_val = jax.random.split(stream(key, "train"), 3)
    return k_setup, k_steps, k_val


def finite_tree(tree: Any) -> jax.Array:
    """Whether every array leaf of ``tree`` is finite (one scalar)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


class TrainState(eqx.Module):
    """Everything one training run carries from step to step, as one pytree.

    Build it with :meth:`TrainState.create`, advance it with :func:`train_step`; ``fit``
    does exactly that in compiled chunks, and its checkpoints store this state.

    Attributes:
        params: the trained arrays: (the energy's trainable leaves, the loss's own
            parameters such as NCE's log Z).
        opt_state: the optax optimizer's state.
        loss_state: the loss's state (contrastive divergence's replay buffer), or None.
        averaged: the exponential moving average of ``params`` (None when ``ema`` is off).
        step: the number of updates applied (int32).
        key: the stream ``train_step`` draws from when it is not given a key.
        rest: the energy's fixed parts (frozen terms, conditioned values, structure).
        loss: the loss, configured for the data by ``Loss.setup``.
        optimizer: the optax optimizer (static).
        ema: the averaging decay (static), or None.

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> x = jax.random.normal(jax.random.key(0), (512, 1)) + 2.0
        >>> state = ebm.TrainState.create(ebm.Gaussian("x", jnp.zeros(1), cov=1.0), x,
        ...                               ebm.ScoreMatching("exact"), key=jax.random.key(1),
        ...                               learning_rate=0.05)
        >>> step = jax.jit(ebm.train_step)  # pure: jit it, scan it, write your own loop
        >>> for i in range(300):
        ...     state, metrics = step(state, {"x": x[(32 * i) % 512:][:32]})
        >>> int(state.step), round(float(state.averaged_energy.mean[0]), 1)
        (300, 2.0)
    """

    params: Any
    opt_state: Any
    loss_state: Any
    averaged: Any
    step: jax.Array
    key: jax.Array
    rest: Any
    loss: Loss
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    ema: float | None = eqx.field(static=True)

    @classmethod
    def create(
        cls,
        energy: Energy,
        data: Any,
        loss: Loss,
        *,
        key: jax.Array,
        optimizer: optax.GradientTransformation | None = None,
        learning_rate: float = 1e-3,
        ema: float | None = DEFAULT_EMA,
    ) -> TrainState:
        """The state before the first step.

        Args:
            energy: the energy; its trainable arrays are what is trained.
            data: training data in any form ``fit`` takes; losses set themselves up from it
                (NCE fits its noise, contrastive divergence fills its buffer).
            loss: the training objective.
            key: a JAX random key (the loss's setup and the step stream derive from it).
            optimizer: an optax optimizer (default Adam at ``learning_rate``).
            learning_rate: Adam's learning rate when ``optimizer`` is None.
            ema: averaging decay (see ``fit``; default 0.99); None keeps no average.
        """

        if not isinstance(energy, Energy):
            raise TypeError(f"TrainState.create expects an ebm.Energy, got {type(energy).__name__}")
        if not isinstance(loss, Loss):
            raise TypeError(f"expected a loss such as ebm.NCE(), got {type(loss).__name__}")
        ema = check_ema(ema)
        if optimizer is None:
            optimizer = default_optimizer(learning_rate)
        k_setup, k_steps, _ = state_keys(key)
        data = loss.normalize(energy, data)
        return cls.initial(energy, data, loss, k_setup, k_steps, optimizer, ema)

    @classmethod
    def initial(cls, energy, data, loss, k_setup, k_steps, optimizer, ema) -> TrainState:
        """``create`` after its checks (``data`` already normalised); used by ``fit``."""
        loss_c, loss_params, loss_state = loss.setup(energy, data, k_setup)
        params_e, rest = eqx.partition(energy, trainable_mask(energy))
        params = (params_e, loss_params)
        if not jax.tree_util.tree_leaves(params):
            raise ValueError(
                "nothing to train: the energy has no trainable arrays (frozen, or numbers not "
                "wrapped in ebm.Param) and the loss learns none"
            )
        opt_state = optimizer.init(params)  # a few zeros: faster eager than compiled
        return cls(
            params=params,
            opt_state=opt_state,
            loss_state=loss_state,
            averaged=params if ema is not None else None,
            step=jnp.asarray(0, jnp.int32),
            key=k_steps,
            rest=rest,
            loss=loss_c,
            optimizer=optimizer,
            ema=ema,
        )

    @property
    def energy(self) -> Energy:
        """The energy at the current (last) iterate."""
        return eqx.combine(self.params[0], self.rest)

    @property
    def averaged_energy(self) -> Energy:
        """The energy at the averaged parameters (the current one when ``ema`` is off)."""
        p = self.params if self.averaged is None else self.averaged
        return eqx.combine(p[0], self.rest)

    def log_z(self, averaged: bool = True) -> jax.Array | None:
        """The loss's learned log-normaliser (NCE), at the averaged or the last parameters."""
        p = self.averaged if averaged and self.averaged is not None else self.params
        return self.loss.log_z(p[1])

    def objective(self, params: Any, batch: Any, key: jax.Array) -> tuple[jax.Array, Any]:
        """(loss, (metrics, new loss state)) at ``params`` on one batch."""
        e = eqx.combine(params[0], self.rest)
        value, metrics, new_state = self.loss.value(e, params[1], self.loss_state, batch, key)
        return value, (metrics, new_state)


def advance(state: TrainState, batch: Any, key: jax.Array) -> tuple[TrainState, dict, jax.Array]:
    """One unguarded update: (new state, metrics, whether the loss and the new parameters
    are finite). ``train_step`` and ``fit`` decide what to keep."""
    (value, (metrics, loss_state)), grads = jax.value_and_grad(state.objective, has_aux=True)(
        state.params, batch, key
    )
    updates, opt_state = state.optimizer.update(grads, state.opt_state, state.params)
    params = eqx.apply_updates(state.params, updates)
    step = state.step + 1
    averaged = None if state.ema is None else average(state.averaged, params, state.ema, step)
    # a non-finite gradient or update shows in the new parameters: one check suffices
    finite = jnp.isfinite(value) & finite_tree(params)
    metrics = {**metrics, "loss": value}
    new = dataclasses.replace(
        state,
        params=params,
        opt_state=opt_state,
        loss_state=loss_state,
        averaged=averaged,
        step=step,
    )
    return new, metrics, finite


def keep_if(ok: jax.Array, new: TrainState, old: TrainState) -> TrainState:
    """``new`` where ``ok``, else ``old`` (the static parts are the same)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)


def train_step(
    state: TrainState, batch: Any, key: jax.Array | None = None
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimisation step: a pure function of (state, batch, key).

    Args:
        state: from :meth:`TrainState.create` or a previous step.
        batch: a mapping name → array (batch, *shape) over the energy's variables (for
            ``MarginLoss``, the pair of such mappings it trains on).
        key: randomness of the loss (noise, projections); by default drawn from
            ``state.key``, which then advances.

    Returns:
        (new state, metrics). ``metrics["loss"]`` is the loss before the update and
        ``metrics["finite"]`` whether the step was finite: a step whose loss, gradient or
        update is not finite is not applied (parameters, optimizer state and average stay
        as they were), so NaN never reaches the parameters.

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> x = 3.0 + jax.random.normal(jax.random.key(0), (256, 1))
        >>> E = ebm.Gaussian("x", jnp.zeros(1), cov=1.0)
        >>> state = ebm.TrainState.create(E, x, ebm.ScoreMatching("exact"),
        ...                               key=jax.random.key(1), learning_rate=0.1)
        >>> def epoch(state, _):  # one pass over the data in batches of 32, all compiled
        ...     return jax.lax.scan(lambda s, b: ebm.train_step(s, b), state,
        ...                         x.reshape(8, 32, 1))
        >>> state, metrics = jax.jit(lambda s: jax.lax.scan(epoch, s, None, length=50))(state)
        >>> int(state.step), metrics["loss"].shape, bool(metrics["finite"].all())
        (400, (50, 8), True)
        >>> round(float(state.averaged_energy.mean[0]), 1)
        3.0
    """
    if key is None:
        next_key, key = jax.random.split(state.key)
        state = dataclasses.replace(state, key=next_key)
    if not isinstance(batch, (Mapping, tuple, list)):  # a bare array: the one variable
        space = state.energy.space
        if len(space) != 1:
            raise TypeError(
                f"train_step: an energy over {sorted(space)} takes a batch as a mapping "
                "name → array"
            )
        (name,) = space
        batch = {name: batch}
    new, metrics, finite = advance(state, batch, key)
    return keep_if(finite, new, state), {**metrics, "finite": finite}
