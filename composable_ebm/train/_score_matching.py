"""Score matching: exact (Hessian trace), sliced (Hessian-vector products), denoising."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .._param import as_float
from ..energies import Energy
from ._loss import Loss

__all__ = ["ScoreMatching"]

KINDS = ("exact", "sliced", "denoising")


class ScoreMatching(Loss):
    """Score matching in energy form; the score is s = −∇E.

    * ``"exact"``: E_data[½‖∇E‖² − tr ∇²E] (the Hessian, so for small dimensions).
    * ``"sliced"``: E_v E_data[½‖∇E‖² − vᵀ∇²E v], the variance-reduced form with
      ``num_projections`` Rademacher projections, one Hessian-vector product each.
    * ``"denoising"``: E[½‖σ s(x + σε) + ε‖²]; it learns the score of the data convolved
      with N(0, σ²I). ``sigma`` a number, or a sequence of scales (one drawn per example:
      the multi-scale, σ²-weighted form).

    Example:
        >>> import jax, jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
        >>> x = jnp.zeros((8, 2))  # at the mean of N(0, I): ½‖∇E‖² − tr ∇²E = 0 − 2
        >>> float(ebm.ScoreMatching("exact")(E, x, jax.random.key(0)))
        -2.0
    """

    kind: str = eqx.field(static=True, default="sliced")
    sigma: Any = None
    num_projections: int = eqx.field(static=True, default=1)

    def __init__(self, kind: str = "sliced", *, sigma: Any = None, num_projections: int = 1):
        if kind not in KINDS:
            raise ValueError(f"unknown score matching kind {kind!r}; choose one of {KINDS}")
        if kind == "denoising":
            if sigma is None:
                raise ValueError("denoising score matching needs sigma= (a number or a list)")
            sig = as_float(list(sigma) if isinstance(sigma, Sequence) else sigma)
            if sig.ndim > 1 or not bool(jnp.all(sig > 0)):
                raise ValueError(f"sigma must be positive numbers, got {sigma!r}")
            self.sigma = sig
        elif sigma is not None:
            raise ValueError(f"sigma applies to kind='denoising', not {kind!r}")
        else:
            self.sigma = None
        if not isinstance(num_projections, int) or num_projections < 1:
            raise ValueError(f"num_projections must be a positive integer, got {num_projections}")
        self.kind, self.num_projections = kind, num_projections

    def value(self, energy: Energy, params, state, batch, key):
        example = {k: v[0] for k, v in batch.items()}
        _, unravel = ravel_pytree(example)
        rows = jax.vmap(lambda p: ravel_pytree(p)[0])(dict(batch))

        def f(x):
            return energy.evaluate(unravel(x))

        grad = jax.grad(f)
        n, d = rows.shape
        if self.kind == "exact":

            def per_row(x):
                g = grad(x)
                return 0.5 * jnp.sum(g * g) - jnp.trace(jax.jacfwd(grad)(x))

            losses = jax.vmap(per_row)(rows)
        elif self.kind == "sliced":
            m = self.num_projections
            v = jax.random.rademacher(key, (n, m, d), dtype=rows.dtype)

            def per_row(x, vs):
                if m == 1:  # one Hessian-vector product, no projection axis
                    g, hv = jax.jvp(grad, (x,), (vs[0],))
                    quad = jnp.sum(vs[0] * hv)
                else:
                    g, hv = jax.vmap(lambda v: jax.jvp(grad, (x,), (v,)))(vs)
                    g, quad = g[0], jnp.mean(jnp.sum(vs * hv, axis=1))
                return 0.5 * jnp.sum(g * g) - quad

            losses = jax.vmap(per_row)(rows, v)
        else:
            k_eps, k_sig = jax.random.split(key)
            eps = jax.random.normal(k_eps, rows.shape, rows.dtype)
            if self.sigma.ndim == 0:
                sig = jnp.broadcast_to(self.sigma, (n,))
            else:
                sig = jax.random.choice(k_sig, self.sigma, (n,))
            noisy = rows + sig[:, None] * eps
            scores = -jax.vmap(grad)(noisy)
            losses = 0.5 * jnp.sum(jnp.square(sig[:, None] * scores + eps), axis=1)
        loss = jnp.mean(losses)
        return loss, {"loss": loss}, state
