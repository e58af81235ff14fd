"""Parameter averaging: an exponential moving average whose window grows with the run."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["average", "effective_decay"]

# The average's window starts short and grows with the step count t: the decay used at
# step t is min(decay, (1 + t) / (WARMUP + t)), so the average covers about the last
# t / (WARMUP − 1) steps until the window reaches 1 / (1 − decay). A fixed decay drags in
# the untrained start for runs shorter than a few windows (REFERENCE.md's table: 0.999 over
# 2000 steps is worse than no averaging).
WARMUP = 10.0


def effective_decay(decay: float, step: jax.Array) -> jax.Array:
    """The decay applied at update ``step`` (1 for the first update)."""
    t = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + t) / (WARMUP + t))


def average(avg: Any, params: Any, decay: float, step: jax.Array) -> Any:
    """The average after update ``step``: d · avg + (1 − d) · params, d = effective decay."""
    d = effective_decay(decay, step)

    def mix(a, p):
        d_ = d.astype(p.dtype)
        return d_ * a + (1 - d_) * p

    return jax.tree_util.tree_map(mix, avg, params)
