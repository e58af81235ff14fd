"""log Z by annealed importance sampling (Neal 2001) on a geometric path.

E_β = (1 − β)·E_ref + β·E from a Gaussian reference E_ref (β = 0) to the target (β = 1).
Everything runs in one compiled function: particles are vectorised with ``vmap``, the
temperature schedule is one ``lax.scan`` whose transitions are the MALA kernel of
``_langevin.py`` with the annealed energy passed as its ``energy_fn`` argument, so one
trace serves every temperature.

Coordinates: the unconstrained variables (through ``potential``, which adds each
support's log-Jacobian, so log Z is unchanged) are flattened in space order to u ∈ R^D and
whitened by the reference, u = m + L·v with L Lᵀ the reference covariance. In v the
reference is N(0, I) and MALA's isotropic proposal is well scaled; log Z picks up
log|det L|.

Reference: given (``reference=``), or fitted to a short pilot: ``pilot_steps`` of MALA on
E itself, one chain per particle started uniformly in (−2, 2) (NumPyro's
``init_to_uniform``), with its step size adapted from the acceptance rate. The fitted mean
and covariance of the chains, with standard deviations widened by ``reference_scale``,
give a reference that covers every mode the chains found. The pilot runs inside the same
compiled function (no second sampler to compile), and costs ``pilot_steps`` gradients per
particle against 2·``num_temperatures`` for the annealing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._param import float_dtype
from .._space import Var
from ..energies import Energy, Gaussian
from ._bridge import _unconstrained_shape, potential, transforms
from ._langevin import build_kernel, init
from ._partition import LogZ

__all__ = ["ais_log_partition", "schedule"]

OPTIONS = (
    "num_particles",
    "num_temperatures",
    "num_mcmc_steps",
    "step_size",
    "target_accept",
    "schedule",
    "reference",
    "pilot_steps",
    "reference_scale",
)
SCHEDULES = ("sigmoid", "geometric", "linear")


def schedule(kind: str, num_temperatures: int) -> np.ndarray:
    """Increasing β₀ = 0 < β₁ < … < β_T = 1 (T = ``num_temperatures``).

    ``"sigmoid"`` (Grosse et al. 2013): σ(δ(2t/T − 1)) rescaled to [0, 1], δ = 4, dense
    at both ends; ``"geometric"``: 10^(−4 … 0), dense near β = 0; ``"linear"``.

    Example:
        >>> from composable_ebm.infer._ais import schedule
        >>> b = schedule("sigmoid", 4)
        >>> float(b[0]), float(b[-1]), bool((b[1:] > b[:-1]).all())
        (0.0, 1.0, True)
    """
    t = np.linspace(0.0, 1.0, num_temperatures + 1)
    if kind == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-4.0 * (2.0 * t - 1.0)))
        b = (s - s[0]) / (s[-1] - s[0])
    elif kind == "geometric":
        b = np.concatenate([[0.0], np.geomspace(1e-4, 1.0, num_temperatures)])
    elif kind == "linear":
        b = t
    else:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES} or give β values")
    b[0], b[-1] = 0.0, 1.0
    return b


def _unflatten(space: Mapping[str, Var], u: jax.Array) -> dict[str, jax.Array]:
    """Flat unconstrained vector → mapping name → unconstrained value."""
    out, off = {}, 0
    for name, t in transforms(space).items():
        shape = _unconstrained_shape(t, space[name].shape)
        size = math.prod(shape)
        out[name] = u[off : off + size].reshape(shape)
        off += size
    return out


def _adapt(log_eps: jax.Array, acc: jax.Array, target: jax.Array) -> jax.Array:
    """One step of step-size adaptation from a mean acceptance rate (a Robbins–Monro step)."""
    return jnp.clip(log_eps + (acc - target), -20.0, 5.0)


def _pilot(energy, key, dim, num, steps, log_eps, target):
    """MALA chains on the target, started uniformly in (−2, 2); their final positions."""
    kernel = build_kernel(adjusted=True)
    space = energy.space

    def fn(pos):
        return potential(energy, _unflatten(space, pos["u"]))

    k0, k1 = jax.random.split(key)
    u0 = jax.random.uniform(k0, (num, dim), log_eps.dtype, -2.0, 2.0)
    states = jax.vmap(init, in_axes=(0, None))({"u": u0}, fn)
    step = jax.vmap(kernel, in_axes=(0, 0, None, None))

    def body(carry, k):
        states, log_eps = carry
        states, info = step(jax.random.split(k, num), states, fn, jnp.exp(log_eps))
        return (states, _adapt(log_eps, jnp.mean(info.acceptance_rate), target)), None

    (states, _), _ = jax.lax.scan(body, (states, log_eps), jax.random.split(k1, steps))
    return states.position["u"]


def _fit_reference(u: jax.Array, scale: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and Cholesky factor of the (shrunk, widened) covariance of pilot positions."""
    ok = jnp.all(jnp.isfinite(u), axis=1)
    w = ok.astype(u.dtype) / jnp.maximum(jnp.sum(ok), 1)
    u = jnp.where(ok[:, None], u, 0.0)
    mean = jnp.sum(w[:, None] * u, axis=0)
    r = u - mean[None, :]
    cov = (w[:, None] * r).T @ r
    dim = u.shape[1]
    cov = cov + (1e-3 * jnp.trace(cov) / dim + 1e-6) * jnp.eye(dim, dtype=u.dtype)
    return mean, scale * jnp.linalg.cholesky(cov)


@eqx.filter_jit
def _ais(energy, key, betas, ref_mean, ref_chol, log_eps, target, scale, settings):
    num, dim, steps, pilot_steps = settings
    space = energy.space
    k_pilot, k_init, k_anneal = jax.random.split(key, 3)
    if pilot_steps:  # the reference is fitted to a short MALA run on the target
        u = _pilot(energy, k_pilot, dim, num, pilot_steps, log_eps, target)
        ref_mean, ref_chol = _fit_reference(u, scale)

    def target_v(v):  # the target in whitened coordinates (log|det L| added at the end)
        return potential(energy, _unflatten(space, ref_mean + ref_chol @ v))

    def annealed(beta):
        def fn(pos):
            v = pos["v"]
            return (1.0 - beta) * 0.5 * jnp.sum(v * v) + beta * target_v(v)

        return fn

    kernel = build_kernel(adjusted=True)
    step = jax.vmap(kernel, in_axes=(0, 0, None, None))
    v0 = jax.random.normal(k_init, (num, dim), betas.dtype)
    states = jax.vmap(init, in_axes=(0, None))({"v": v0}, annealed(betas[0]))

    def temperature(carry, xs):
        states, log_w, log_eps = carry
        beta, k = xs
        fn = annealed(beta)
        new = jax.vmap(init, in_axes=(0, None))(states.position, fn)
        inc = states.energy - new.energy  # log f_β(x) − log f_β'(x) at the current particles
        log_w = log_w + jnp.where(jnp.isnan(inc), -jnp.inf, inc)

        def mcmc(inner, k):
            states, acc = inner
            states, info = step(jax.random.split(k, num), states, fn, jnp.exp(log_eps))
            return (states, acc + jnp.mean(info.acceptance_rate)), None

        (new, acc), _ = jax.lax.scan(
            mcmc, (new, jnp.zeros((), betas.dtype)), jax.random.split(k, steps)
        )
        return (new, log_w, _adapt(log_eps, acc / steps, target)), acc / steps

    keys = jax.random.split(k_anneal, betas.shape[0] - 1)
    log_w0 = jnp.zeros((num,), betas.dtype)
    (_, log_w, _), acc = jax.lax.scan(temperature, (states, log_w0, log_eps), (betas[1:], keys))
    log_z_ref = 0.5 * dim * math.log(2 * math.pi) + jnp.sum(jnp.log(jnp.diag(ref_chol)))
    top = jnp.max(log_w)
    w = jnp.exp(log_w - top)
    mean_w = jnp.mean(w)
    stderr = jnp.std(w, ddof=1) / (math.sqrt(num) * mean_w)
    return log_z_ref + top + jnp.log(mean_w), stderr, jnp.mean(acc)


def _int_option(options: Mapping[str, Any], name: str, default: int, low: int) -> int:
    n = options.get(name, default)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < low:
        raise ValueError(f"{name} must be an integer of at least {low}, got {n!r}")
    return int(n)


def _reference(ref: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, Cholesky factor of the covariance) of a given reference."""
    if isinstance(ref, Gaussian):
        mean, cov = ref.mean, ref.cov
    elif isinstance(ref, (tuple, list)) and len(ref) == 2:
        mean, cov = ref
    else:
        raise TypeError(
            f"reference must be an ebm.Gaussian or a pair (mean, cov), got {type(ref).__name__}"
        )
    mean = np.asarray(mean, np.float64).ravel()
    if mean.shape != (dim,):
        raise ValueError(
            f"the reference has {mean.size} dimensions but the energy has {dim} (flattened "
            "unconstrained variables)"
        )
    cov = np.asarray(cov, np.float64)
    if cov.ndim < 2:
        cov = np.diag(np.broadcast_to(cov, (dim,)))
    if cov.shape != (dim, dim):
        raise ValueError(f"the reference covariance must be ({dim}, {dim}), got {cov.shape}")
    _validate.symmetric(cov, "the reference covariance")
    return mean, _validate.positive_definite(cov, "the reference covariance")


def ais_log_partition(
    energy: Energy, space: dict[str, Var], key: jax.Array, options: dict[str, Any]
) -> LogZ:
    """``log_partition(method="ais")``: see :func:`composable_ebm.log_partition`."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for method='ais'; valid: {list(OPTIONS)}")
    typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not (typed or (isinstance(key, jax.Array) and key.shape == (2,))):
        raise TypeError(f"key must be a JAX random key (jax.random.key(0)), got {key!r}")
    dim = sum(
        math.prod(_unconstrained_shape(t, space[n].shape)) for n, t in transforms(space).items()
    )
    num = _int_option(options, "num_particles", 1000, 2)
    temps = _int_option(options, "num_temperatures", 200, 1)
    steps = _int_option(options, "num_mcmc_steps", 1, 1)
    dtype = float_dtype()
    betas = options.get("schedule", "sigmoid")
    if isinstance(betas, str):
        betas = schedule(betas, temps)
    else:
        betas = np.asarray(betas, np.float64)
        if (
            betas.ndim != 1
            or betas.size < 2
            or betas[0] != 0.0
            or betas[-1] != 1.0
            or not np.all(np.diff(betas) > 0)
        ):
            raise ValueError("a schedule array must increase strictly from 0 to 1")
    numbers = {}
    for name, default, ok in (
        ("step_size", 0.5, lambda x: x > 0),
        ("target_accept", 0.574, lambda x: 0 < x < 1),
        ("reference_scale", 1.5, lambda x: x > 0),
    ):
        x = options.get(name, default)
        if isinstance(x, bool) or not isinstance(x, (int, float, np.number)) or not ok(x):
            raise ValueError(f"{name} out of range: {x!r}")
        numbers[name] = jnp.asarray(x, dtype)
    ref = options.get("reference")
    if ref is None:
        pilot = _int_option(options, "pilot_steps", 100, 1)
        mean, chol = np.zeros(dim), np.eye(dim)
    else:
        if "pilot_steps" in options or "reference_scale" in options:
            raise ValueError("pilot_steps and reference_scale only apply without reference=")
        pilot = 0
        mean, chol = _reference(ref, dim)
    value, stderr, _ = _ais(
        energy,
        key,
        jnp.asarray(betas, dtype),
        jnp.asarray(mean, dtype),
        jnp.asarray(chol, dtype),
        jnp.log(numbers["step_size"]),
        numbers["target_accept"],
        numbers["reference_scale"],
        (num, dim, steps, pilot),
    )
    return LogZ(float(value), float(stderr))
