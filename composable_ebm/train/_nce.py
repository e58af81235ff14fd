"""Noise-contrastive estimation with a learned log-normaliser."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from .._param import as_float
from ..energies import Energy
from ._loss import Loss, batch_energies
from ._noise import DefaultNoise, FittedGaussian

__all__ = ["NCE"]


class NCE(Loss):
    """Noise-contrastive estimation: tell data from noise with G = −E − c − log p_noise.

    With ν noise samples per data point the loss is
    mean log(1 + ν e^{−G(x_data)}) + ν · mean log(1 + e^{G(x_noise)}/ν); the constant c
    is learned with the energy and tends to log Z (``FitResult.log_z``).

    Args:
        noise: a NumPyro distribution whose draws have the shape of the energy's single
            variable; by default a Gaussian fitted to the data's mean and covariance (any
            number of variables, flattened) in the unconstrained space: a variable with a
            positive, interval or other support is mapped through
            ``biject_to(support).inv`` first, and the noise density includes the
            log-Jacobian, so noise draws stay in the support.
        ratio: ν, noise samples per data point.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, composable_ebm as ebm
        >>> x = np.random.default_rng(0).normal(1.0, 2.0, (4096, 1)).astype("float32")
        >>> E = ebm.Gaussian("x", jnp.zeros(1), cov=1.0)
        >>> r = ebm.fit(E, x, ebm.NCE(), steps=1500, key=jax.random.key(0), progress=False,
        ...             optimizer=__import__("optax").adam(1e-2))
        >>> bool(abs(float(r.energy.mean[0]) - 1.0) < 0.15)
        True
    """

    noise: Any = None
    ratio: int = eqx.field(static=True, default=10)
    flat: bool = eqx.field(static=True, default=False)

    def __post_init__(self):
        if not isinstance(self.ratio, int) or self.ratio < 1:
            raise ValueError(f"NCE ratio must be a positive integer, got {self.ratio!r}")
        if self.noise is not None and not isinstance(
            self.noise, (dist.Distribution, FittedGaussian, DefaultNoise)
        ):
            raise TypeError(f"NCE noise must be a numpyro Distribution, got {self.noise!r}")

    def setup(self, energy: Energy, data: Any, key: jax.Array) -> tuple[Loss, Any, Any]:
        data = self.normalize(energy, data) if not _is_normalized(energy, data) else data
        noise, flat = self.noise, False
        if noise is None:
            noise, flat = DefaultNoise(energy.space, data), True
        else:
            if len(energy.space) != 1:
                raise ValueError(
                    f"a custom NCE noise needs an energy over one variable, got "
                    f"{sorted(energy.space)}; leave noise=None for the fitted Gaussian"
                )
            ((name, var),) = energy.space.items()
            got = tuple(noise.batch_shape) + tuple(noise.event_shape)
            if got != var.shape:
                raise ValueError(
                    f"NCE noise draws have shape {got} but variable {name!r} has shape {var.shape}"
                )
        loss = NCE(noise=noise, ratio=self.ratio, flat=flat)
        # start c where the classifier is balanced on the data: c = mean(−E − log p_noise)
        sub = {k: v[:1024] for k, v in data.items()}
        return loss, {"log_z": as_float(_balanced_log_z(loss, energy, sub))}, None

    def _noise_log_prob(self, energy: Energy, batch: Mapping[str, jax.Array]) -> jax.Array:
        if self.flat:
            return self.noise.log_prob(batch)
        (x,) = batch.values()
        with jax.numpy_rank_promotion("allow"):  # NumPyro broadcasts batches by rank
            lp = self.noise.log_prob(x)
        return jnp.sum(lp.reshape(lp.shape[0], -1), axis=1)

    def _noise_sample(self, energy: Energy, example: Mapping[str, jax.Array], key, n):
        if self.flat:
            return self.noise.sample(key, n)
        (name,) = example
        with jax.numpy_rank_promotion("allow"):  # one batched draw, not n keyed ones
            return {name: self.noise.sample(key, (n,))}

    def value(self, energy, params, state, batch, key):
        n = next(iter(batch.values())).shape[0]
        nu = self.ratio
        noise = self._noise_sample(energy, batch, key, nu * n)
        c = params["log_z"]
        g_data = -batch_energies(energy, batch) - c - self._noise_log_prob(energy, batch)
        g_noise = -batch_energies(energy, noise) - c - self._noise_log_prob(energy, noise)
        log_nu = math.log(nu)
        loss = jnp.mean(jax.nn.softplus(log_nu - g_data)) + nu * jnp.mean(
            jax.nn.softplus(g_noise - log_nu)
        )
        accuracy = 0.5 * (jnp.mean(g_data > log_nu) + jnp.mean(g_noise < log_nu))
        # the fraction of noise samples scored below every data point of the batch: about
        # 1/n when noise and data overlap, 1 when the noise is far from the data
        separation = jnp.mean(g_noise < jnp.min(g_data))
        metrics = {"loss": loss, "accuracy": accuracy, "separation": separation}
        return loss, {**metrics, "log_z": c}, state

    def log_z(self, params: Any) -> jax.Array | None:
        return params["log_z"]

    def check_start(self, metrics: Mapping[str, Any]) -> str | None:
        # c starts balanced on the data, so the accuracy alone stays near ½ to ¾ even for
        # noise far away: the telling sign is noise scored below all of the data
        first = [
            float(np.mean(np.asarray(metrics[k])[:20]))
            for k in ("accuracy", "separation")
            if k in metrics and len(metrics[k])
        ]
        if first and max(first) > 0.99:
            return (
                "NCE: the classifier separates data from noise almost perfectly from the "
                "first steps, so the loss is flat and little is learned: the noise is too far "
                "from the data. Use the default noise (a Gaussian fitted to the data) or a "
                "noise closer to it"
            )
        return None


@eqx.filter_jit
def _balanced_log_z(loss: NCE, energy: Energy, rows: Mapping[str, jax.Array]) -> jax.Array:
    """mean(−E − log p_noise) over data rows: one compiled call, not op-by-op dispatch."""
    return jnp.mean(-batch_energies(energy, rows) - loss._noise_log_prob(energy, rows))


def _is_normalized(energy: Energy, data: Any) -> bool:
    return (
        isinstance(data, Mapping)
        and set(data) == set(energy.space)
        and all(jnp.ndim(v) >= 1 for v in data.values())
    )
