"""NCE's default noise: a Gaussian fitted to the data in the unconstrained space."""

from __future__ import annotations

import math
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import IdentityTransform, Transform, biject_to

from .._param import as_float
from .._space import Var, describe_support

__all__ = ["DefaultNoise", "FittedGaussian"]


class FittedGaussian(eqx.Module):
    """N(mean, cov) over flattened rows, batched with matmuls.

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


def _transform(var: Var) -> Transform:
    return IdentityTransform() if var.is_discrete else biject_to(var.support)


def _row_sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


class DefaultNoise(eqx.Module):
    """A Gaussian over the data mapped to the unconstrained space, pushed back through each
    variable's ``biject_to(support)``.

    With u = T⁻¹(x) the noise density in the constrained space is
    log q(x) = log N(u; μ, Σ) + Σ log|det ∂T⁻¹/∂x|, so noise draws respect every support
    (positive, interval, simplex, ...) and the density stays finite on the data. Real
    (and discrete) variables are left as they are, so for them this is the Gaussian fitted
    to the data's mean and covariance.
    """

    gaussian: FittedGaussian
    space: tuple[tuple[str, Var], ...] = eqx.field(static=True)
    dtypes: tuple[str, ...] = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)  # unconstrained, per row

    def __init__(self, space: Mapping[str, Var], data: Mapping[str, jax.Array]):
        self.space = tuple((k, space[k]) for k in sorted(space))
        self.dtypes = tuple(str(jnp.asarray(data[k]).dtype) for k, _ in self.space)
        parts, shapes = [], []
        for name, var in self.space:
            x = jnp.asarray(data[name])
            t = _transform(var)
            if not isinstance(t, IdentityTransform):
                x = jax.jit(jax.vmap(t.inv))(x)
                bad = int(np.size(x) - np.isfinite(np.asarray(x)).sum())
                if bad:
                    raise ValueError(
                        f"NCE's default noise is a Gaussian fitted in the unconstrained space, "
                        f"but variable {name!r} (support {describe_support(var.support)}) has "
                        f"{bad} data value(s) on the support's boundary, where the map to "
                        "the unconstrained space is not finite; pass NCE(noise=...) a NumPyro "
                        "distribution with that support, or move the data off the boundary"
                    )
            parts.append(np.asarray(x, np.float64).reshape(x.shape[0], -1))
            shapes.append(tuple(x.shape[1:]))
        self.shapes = tuple(shapes)
        self.gaussian = FittedGaussian(np.concatenate(parts, axis=1))

    def log_prob(self, batch: Mapping[str, jax.Array]) -> jax.Array:
        """log q(x) for each row of a batch (mapping name → (n, *shape))."""
        parts, log_jac = [], 0.0
        for name, var in self.space:
            x = batch[name]
            t = _transform(var)
            if isinstance(t, IdentityTransform):
                u = x
            else:
                u = jax.vmap(t.inv)(x)
                # log|det ∂T⁻¹/∂x| = −log|det ∂T/∂u|
                log_jac = log_jac - _row_sum(jax.vmap(t.log_abs_det_jacobian)(u, x))
            parts.append(u.reshape(u.shape[0], -1).astype(self.gaussian.mean.dtype))
        return self.gaussian.log_prob(jnp.concatenate(parts, axis=1)) + log_jac

    def sample(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        """``n`` draws, as a mapping name → (n, *shape)."""
        rows = self.gaussian.sample(key, n)
        out, at = {}, 0
        for (name, var), shape, dtype in zip(self.space, self.shapes, self.dtypes):
            size = math.prod(shape)
            u = rows[:, at : at + size].reshape((n, *shape))
            at += size
            t = _transform(var)
            x = u if isinstance(t, IdentityTransform) else jax.vmap(t)(u)
            out[name] = x.astype(dtype)
        return out
