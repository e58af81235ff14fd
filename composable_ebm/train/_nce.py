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
from jax.flatten_util import ravel_pytree

from .._param import as_float
from ..energies import Energy
from ._loss import Loss, batch_energies

__all__ = ["NCE"]


class FittedGaussian(eqx.Module):
    """The default NCE noise: N(mean, cov) over flattened rows, batched with matmuls.

    Stores the Cholesky factor L of the covariance and its inverse, so ``log_prob`` of a
    batch is one matrix product (NumPyro's ``MultivariateNormal`` solves a triangular
    system per row, which dominates NCE's step on a CPU).
    """

    mean: jax.Array
    chol: jax.Array
    inv_chol: jax.Array

    def __init__(self, rows: jax.Array):
        r = np.asarray(rows, dtype=np.float64)  # fitted once, on the host
        mean = r.mean(axis=0)
        cov = np.atleast_2d(np.cov(r, rowvar=False))
        d = cov.shape[0]
        cov = cov + 1e-6 * np.trace(cov) / d * np.eye(d)
        chol = np.linalg.cholesky(cov)
        self.mean, self.chol = as_float(mean), as_float(chol)
        self.inv_chol = as_float(np.linalg.inv(chol))

    def log_prob(self, rows: jax.Array) -> jax.Array:
        """log N(x; mean, cov) for each row of ``rows`` (n, d)."""
        z = (rows - self.mean[None, :]) @ self.inv_chol.T
        d = self.mean.shape[0]
        return (
            -0.5 * jnp.sum(z * z, axis=1)
            - jnp.sum(jnp.log(jnp.diag(self.chol)))
            - 0.5 * d * math.log(2 * math.pi)
        )

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` rows drawn from N(mean, cov)."""
        eps = jax.random.normal(key, (n, self.mean.shape[0]), self.mean.dtype)
        return self.mean[None, :] + eps @ self.chol.T


class NCE(Loss):
    """Noise-contrastive estimation: tell data from noise with G = −E − c − log p_noise.

    With ν noise samples per data point the loss is
    mean log(1 + ν e^{−G(x_data)}) + ν · mean log(1 + e^{G(x_noise)}/ν); the constant c
    is learned with the energy and tends to log Z (``FitResult.log_z``).

    Args:
        noise: a NumPyro distribution whose draws have the shape of the energy's single
            variable; by default a Gaussian fitted to the data's mean and covariance (any
            number of variables, flattened).
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
            self.noise, (dist.Distribution, FittedGaussian)
        ):
            raise TypeError(f"NCE noise must be a numpyro Distribution, got {self.noise!r}")

    def setup(self, energy: Energy, data: Any, key: jax.Array) -> tuple[Loss, Any, Any]:
        data = self.normalize(energy, data) if not _is_normalized(energy, data) else data
        rows = jax.vmap(lambda p: ravel_pytree(p)[0])(dict(data))
        noise, flat = self.noise, False
        if noise is None:
            noise, flat = FittedGaussian(rows), True
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
            rows = jax.vmap(lambda p: ravel_pytree(p)[0])(dict(batch))
            return self.noise.log_prob(rows)
        (x,) = batch.values()
        with jax.numpy_rank_promotion("allow"):  # NumPyro broadcasts batches by rank
            lp = self.noise.log_prob(x)
        return jnp.sum(lp.reshape(lp.shape[0], -1), axis=1)

    def _noise_sample(self, energy: Energy, example: Mapping[str, jax.Array], key, n):
        if self.flat:
            _, unravel = ravel_pytree({k: v[0] for k, v in example.items()})
            return jax.vmap(unravel)(self.noise.sample(key, n))
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
