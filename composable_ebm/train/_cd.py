"""Contrastive divergence: negatives by Langevin dynamics (or block Gibbs for RBMs) from a
persistent replay buffer."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._param import as_float
from ..energies import Energy
from ..infer._langevin import check_real_space, run_chains
from ._loss import Loss, batch_energies, normalize_data
from ._rbm_cd import check_gibbs_data, gibbs_negatives, marginal_energy

__all__ = ["ContrastiveDivergence"]


def _stop_gradient(energy: Energy) -> Energy:
    arrays, rest = eqx.partition(energy, eqx.is_array)
    return eqx.combine(jax.lax.stop_gradient(arrays), rest)


def _rows_where(mask: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


class ContrastiveDivergence(Loss):
    """Contrastive divergence with Langevin negatives and a persistent replay buffer.

    The loss is mean E(x⁺) − mean E(x⁻) (+ α·(mean E(x⁺)² + mean E(x⁻)²) with
    ``energy_l2=α``, IGEBM's penalty on energy magnitudes): its gradient is the maximum
    likelihood gradient when the negatives x⁻ are draws from the model. The negatives
    come from ``steps`` unadjusted Langevin steps (the kernel of ``ebm.langevin``) run
    with the energy's parameters held fixed: the gradient flows through E at the data
    and at the (stopped) negatives, never through the chains.

    Starts (IGEBM's recipe): with ``persistent=True`` each step takes as many chains as
    the batch has rows (at most ``buffer_size``) from distinct random slots of a replay
    buffer of ``buffer_size`` points, restarts a fraction ``reinit`` of them from fresh
    noise, and writes the negatives back into the slots they came from. The buffer lives
    in the loss state (``FitResult.loss_state["buffer"]``) with a fixed shape. With
    ``persistent=False`` every chain starts from fresh noise at every step (short-run CD,
    no state).

    Fresh noise is uniform over the data's bounding box enlarged by 10 % (5 % of its
    width on each side, per coordinate): it covers every mode of the data, as IGEBM's
    uniform image noise does, without imposing the single-bump shape of a fitted Gaussian.
    The buffer starts filled with that noise.

    Only real-valued variables are supported by Langevin. Gradient clipping (``fit(...,
    clip_norm=...)``) is advised for neural energies.

    **Block Gibbs (RBMs).** With ``sampler="gibbs"`` the data hold the visible variables
    only (for an RBM, an array (N, num_visible) of 0/1), the loss is on the free energy,
    mean F(v⁺) − mean F(v⁻) with F = ``energy.free_energy()`` (the energy itself when it
    has no other variables), and v⁻ comes from ``steps`` block-Gibbs sweeps of the joint
    energy (h | v, then v | h; the kernel of ``kernel="gibbs"``). With ``persistent=False``
    the chains start at the batch (CD-k); with ``persistent=True`` from the replay buffer
    (PCD), whose fresh starts are fair coin flips for binary variables. ``step_size`` is
    unused.

    Args:
        steps: Langevin steps per training step.
        step_size: ε of the Langevin update x − ε∇E(x) + sqrt(2ε)·ξ.
        persistent: keep a replay buffer (PCD) rather than start from noise each step.
        buffer_size: rows of the replay buffer (best several times the batch size).
        reinit: fraction of chains restarted from fresh noise at each step.
        energy_l2: α, the weight of the penalty on squared energies.
        sampler: ``"langevin"`` or ``"gibbs"`` (block Gibbs on the joint, for RBMs).
        low, high: the noise box, mapping name → array; ``setup`` sets them from the
            data (leave them unset).

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, optax, composable_ebm as ebm
        >>> x = np.random.default_rng(0).normal(1.0, 0.5, (1024, 1)).astype("float32")
        >>> loss = ebm.ContrastiveDivergence(steps=10, step_size=0.05, buffer_size=512)
        >>> r = ebm.fit(ebm.Gaussian("x", jnp.zeros(1), cov=1.0), x, loss, steps=200,
        ...             batch_size=128, optimizer=optax.adam(3e-2), key=jax.random.key(0),
        ...             progress=False)
        >>> bool(abs(float(r.energy.mean[0]) - 1.0) < 0.2), r.loss_state["buffer"]["x"].shape
        (True, (512, 1))

        CD-1 for a binary RBM on visible data:

        >>> rbm = ebm.BernoulliRBM("v", "h", 4, 2, key=jax.random.key(0))
        >>> v = np.random.default_rng(0).integers(0, 2, (64, 4))
        >>> cd1 = ebm.ContrastiveDivergence(sampler="gibbs", steps=1, persistent=False)
        >>> r = ebm.fit(rbm, v, cd1, steps=20, batch_size=16, key=jax.random.key(1),
        ...             progress=False)
        >>> r.energy.W.shape
        (4, 2)
    """

    steps: int = eqx.field(static=True)
    step_size: jax.Array
    persistent: bool = eqx.field(static=True)
    buffer_size: int = eqx.field(static=True)
    reinit: jax.Array
    energy_l2: jax.Array
    sampler: str = eqx.field(static=True)
    low: Any = None  # the noise box, set by setup: mapping name → array of the var's shape
    high: Any = None

    def __init__(
        self,
        *,
        steps: int = 20,
        step_size: float = 1e-2,
        persistent: bool = True,
        buffer_size: int = 10_000,
        reinit: float = 0.05,
        energy_l2: float = 0.0,
        sampler: str = "langevin",
        low: Any = None,
        high: Any = None,
    ):
        for name, v in (("steps", steps), ("buffer_size", buffer_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(
                    f"ContrastiveDivergence {name} must be a positive integer, got {v!r}"
                )
        if not step_size > 0:
            raise ValueError(f"ContrastiveDivergence step_size must be positive, got {step_size!r}")
        if not 0.0 <= reinit <= 1.0:
            raise ValueError(f"ContrastiveDivergence reinit must be in [0, 1], got {reinit!r}")
        if not energy_l2 >= 0:
            raise ValueError(f"ContrastiveDivergence energy_l2 must be ≥ 0, got {energy_l2!r}")
        self.steps, self.persistent, self.buffer_size = steps, bool(persistent), buffer_size
        self.step_size, self.reinit = as_float(step_size), as_float(reinit)
        if sampler not in ("langevin", "gibbs"):
            raise ValueError(
                f"ContrastiveDivergence sampler must be 'langevin' or 'gibbs', got {sampler!r}"
            )
        self.energy_l2, self.sampler = as_float(energy_l2), sampler
        self.low, self.high = low, high

    def normalize(self, energy: Energy, data: Any) -> Any:
        if self.sampler == "gibbs":  # the visible variables only
            return normalize_data(marginal_energy(energy), data)
        return normalize_data(energy, data)

    def setup(self, energy: Energy, data: Any, key: jax.Array) -> tuple[Loss, Any, Any]:
        data = self.normalize(energy, data)
        if self.sampler == "gibbs":
            check_gibbs_data(energy, data)
        else:
            check_real_space(energy, "ContrastiveDivergence")
        low, high = {}, {}
        for name, x in data.items():
            lo, hi = jnp.min(x, axis=0), jnp.max(x, axis=0)
            width = hi - lo
            width = jnp.where(width > 0, width, jnp.maximum(jnp.abs(lo), 1.0))
            low[name], high[name] = lo - 0.05 * width, hi + 0.05 * width
        loss = ContrastiveDivergence(
            steps=self.steps,
            step_size=self.step_size,
            persistent=self.persistent,
            buffer_size=self.buffer_size,
            reinit=self.reinit,
            energy_l2=self.energy_l2,
            sampler=self.sampler,
            low=low,
            high=high,
        )
        if not self.persistent:
            return loss, None, None
        return loss, None, {"buffer": loss._noise(key, self.buffer_size, energy)}

    def _noise(self, key: jax.Array, n: int, energy: Energy) -> dict[str, jax.Array]:
        """``n`` rows of fresh noise, uniform over the enlarged bounding box (fair coin
        flips for the discrete variables of Gibbs training)."""
        keys = jax.random.split(key, len(self.low))
        space = marginal_energy(energy).space if self.sampler == "gibbs" else {}
        out = {}
        for k, (name, lo), hi in zip(keys, self.low.items(), self.high.values()):
            u = jax.random.uniform(k, (n, *lo.shape), lo.dtype)
            binary = name in space and space[name].is_discrete
            out[name] = (u < 0.5).astype(lo.dtype) if binary else lo[None] + u * (hi - lo)[None]
        return out

    def value(self, energy: Energy, params: Any, state: Any, batch: Any, key: jax.Array):
        if self.low is None:
            raise RuntimeError("ContrastiveDivergence.value needs setup() first (fit does it)")
        n = next(iter(batch.values())).shape[0]
        k_noise, k_slots, k_reinit, k_chain = jax.random.split(key, 4)
        fresh = self._noise(k_noise, n, energy)
        if self.persistent:
            buffer = state["buffer"]
            size = next(iter(buffer.values())).shape[0]
            n = min(n, size)  # a batch larger than the buffer (validation) uses it all
            fresh = {k: v[:n] for k, v in fresh.items()}
            # n distinct slots, uniformly at random (top_k of uniforms: cheaper than a
            # permutation of the whole buffer)
            slots = jax.lax.top_k(jax.random.uniform(k_slots, (size,)), n)[1]
            restart = jax.random.uniform(k_reinit, (n,)) < self.reinit
            start = {k: _rows_where(restart, fresh[k], buffer[k][slots]) for k in buffer}
        elif self.sampler == "gibbs":  # CD-k: the chains start at the data
            start = {k: v.astype(fresh[k].dtype) for k, v in batch.items()}
        else:
            start = fresh
        frozen = _stop_gradient(energy)
        if self.sampler == "gibbs":
            chains = gibbs_negatives(k_chain, frozen, start, self.steps)
            negatives = jax.lax.stop_gradient(chains)
            energy = marginal_energy(energy)  # the loss is on the free energy
        else:
            chains, _ = run_chains(k_chain, start, frozen.evaluate, self.step_size, self.steps)
            negatives = jax.lax.stop_gradient(chains.position)
        if self.persistent:
            state = {"buffer": {k: buffer[k].at[slots].set(negatives[k]) for k in buffer}}
        e_pos = batch_energies(energy, batch)
        e_neg = batch_energies(energy, negatives)
        loss = jnp.mean(e_pos) - jnp.mean(e_neg)
        loss = loss + self.energy_l2 * (jnp.mean(jnp.square(e_pos)) + jnp.mean(jnp.square(e_neg)))
        metrics = {"loss": loss, "energy_data": jnp.mean(e_pos), "energy_negative": jnp.mean(e_neg)}
        return loss, metrics, state
