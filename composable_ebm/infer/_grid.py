"""log Z by tensor-product quadrature (Simpson or trapezoid) for energies of ≤ 3 dimensions.

The grid is never materialised: points are made from their flat index chunk by chunk
inside one compiled function (``lax.map`` over chunks, ``vmap`` within one), and each chunk
is reduced to a weighted ``logsumexp``. The same pass gives the estimate on the grid with
twice the spacing (every other node), whose difference is the reported error estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._param import float_dtype
from .._space import Var, describe_support, support_key
from ..energies import Energy
from ._partition import LogZ

__all__ = ["grid_log_partition"]

MAX_DIM = 3
DEFAULT_POINTS = {1: 2049, 2: 401, 3: 129}
RULES = ("simpson", "trapezoid")
OPTIONS = ("num_points", "rule", "chunk_size")


def _support_bounds(name: str, var: Var) -> tuple[np.ndarray, np.ndarray]:
    """Per-entry bounds implied by the support (±inf where it is unbounded)."""
    key = support_key(var.support)
    lo, hi = -np.inf, np.inf
    if key[0] == "interval":
        lo, hi = key[1], key[2]
    elif key[0] == "greater_than":
        lo = key[1]
    elif key[0] == "less_than":
        hi = key[1]
    elif key[0] != "real":
        raise ValueError(
            f"grid quadrature integrates over boxes, but variable {name!r} has support "
            f"{describe_support(var.support)}; use method='ais'"
        )
    shape = (var.size,)
    lo = np.broadcast_to(np.asarray(lo, np.float64).ravel(), shape)
    hi = np.broadcast_to(np.asarray(hi, np.float64).ravel(), shape)
    return lo, hi


def _given_bounds(name: str, var: Var, given: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        arr = np.asarray(given, np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bounds for variable {name!r} must be numbers, got {given!r}") from e
    if arr.shape == (2,):
        arr = np.broadcast_to(arr, (var.size, 2))
    if arr.shape != (var.size, 2):
        raise ValueError(
            f"bounds for variable {name!r} (shape {var.shape}, {var.size} entries) must be a "
            f"pair (low, high) or {var.size} pairs; got an array of shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"bounds for variable {name!r} must be finite, got {arr.tolist()}")
    return arr[:, 0], arr[:, 1]


def box(space: Mapping[str, Var], bounds: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of every scalar entry, variables in space order."""
    if bounds is None:
        bounds = {}
    elif not isinstance(bounds, Mapping):
        if len(space) != 1:
            raise ValueError(
                f"this energy has variables {sorted(space)}: give bounds as a mapping "
                "name → (low, high)"
            )
        bounds = {next(iter(space)): bounds}
    unknown = sorted(set(bounds) - set(space))
    if unknown:
        raise KeyError(f"bounds for unknown variable(s) {unknown}; the energy has {sorted(space)}")
    lows, highs = [], []
    for name, var in space.items():
        lo, hi = _support_bounds(name, var)
        if name in bounds:
            glo, ghi = _given_bounds(name, var, bounds[name])
            lo, hi = np.maximum(lo, glo), np.minimum(hi, ghi)
        elif not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(
                f"variable {name!r} has unbounded support {describe_support(var.support)}: "
                f"give bounds, e.g. bounds={{{name!r}: (-6.0, 6.0)}}"
            )
        if not np.all(lo < hi):
            raise ValueError(
                f"empty integration range for variable {name!r}: low {lo.tolist()} must be "
                f"below high {hi.tolist()} (after intersecting with its support)"
            )
        lows.append(lo)
        highs.append(hi)
    return np.concatenate(lows), np.concatenate(highs)


def _log_rule(n: int, rule: str) -> np.ndarray:
    """log of the quadrature weights for unit spacing on n nodes."""
    w = np.ones(n)
    if rule == "simpson":  # n odd: 1, 4, 2, 4, ..., 4, 1 over 3
        w[1:-1:2], w[2:-1:2] = 4.0, 2.0
        w /= 3.0
    else:
        w[0] = w[-1] = 0.5
    return np.log(w)


@eqx.filter_jit
def _grid(energy: Energy, lows, highs, log_w, log_w2, n: int, chunk: int):
    """(log Z on the grid, log Z on the grid of every other node)."""
    space = energy.space
    dim = lows.shape[0]
    total = n**dim
    h = (highs - lows) / (n - 1)
    log_cell, log_cell2 = jnp.sum(jnp.log(h)), jnp.sum(jnp.log(2.0 * h))
    strides = jnp.asarray([n ** (dim - 1 - d) for d in range(dim)], jnp.int32)

    def point_energy(x):
        values, off = {}, 0
        for name, var in space.items():
            values[name] = x[off : off + var.size].reshape(var.shape)
            off += var.size
        return energy.evaluate(values)

    def one_chunk(c):
        idx = c * chunk + jnp.arange(chunk, dtype=jnp.int32)
        valid = idx < total
        digits = (jnp.minimum(idx, total - 1)[:, None] // strides[None, :]) % n  # (chunk, dim)
        x = lows[None, :] + digits.astype(lows.dtype) * h[None, :]
        f = -jax.vmap(point_energy)(x)
        f = jnp.where(jnp.isnan(f), -jnp.inf, f)  # undefined (e.g. 0·log 0 at a bound): 0
        lw = jnp.sum(log_w[digits], axis=1) + log_cell
        even = jnp.all(digits % 2 == 0, axis=1)
        lw2 = jnp.sum(log_w2[digits // 2], axis=1) + log_cell2
        a = jnp.where(valid, f + lw, -jnp.inf)
        b = jnp.where(valid & even, f + lw2, -jnp.inf)
        return jax.nn.logsumexp(a), jax.nn.logsumexp(b)

    num_chunks = -(-total // chunk)
    la, lb = jax.lax.map(one_chunk, jnp.arange(num_chunks, dtype=jnp.int32))
    return jax.nn.logsumexp(la), jax.nn.logsumexp(lb)


def grid_log_partition(
    energy: Energy, space: dict[str, Var], bounds: Any, options: dict[str, Any]
) -> LogZ:
    """``log_partition(method="grid")``: see :func:`composable_ebm.log_partition`."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for method='grid'; valid: {list(OPTIONS)}")
    sizes = {name: var.size for name, var in space.items()}
    dim = sum(sizes.values())
    if dim > MAX_DIM:
        raise ValueError(
            f"grid quadrature handles at most {MAX_DIM} scalar dimensions in total, but this "
            f"energy has {dim} (sizes {sizes}); use method='ais'"
        )
    lows, highs = box(space, bounds)
    rule = options.get("rule", "simpson")
    if rule not in RULES:
        raise ValueError(f"unknown quadrature rule {rule!r}; choose one of {RULES}")
    n = options.get("num_points", DEFAULT_POINTS[dim])
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 5:
        raise ValueError(f"num_points must be an integer of at least 5, got {n!r}")
    n = int(n) + (-(int(n) - 1)) % 4  # 4k + 1: the halved grid is a Simpson grid too
    if n**dim > 2**31 - 2**24:
        raise ValueError(f"num_points={n} in {dim} dimensions is too many points ({n**dim})")
    chunk = options.get("chunk_size", 16384)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk!r}")
    chunk = min(int(chunk), n**dim)
    dtype = float_dtype()
    la, lb = _grid(
        energy,
        jnp.asarray(lows, dtype),
        jnp.asarray(highs, dtype),
        jnp.asarray(_log_rule(n, rule), dtype),
        jnp.asarray(_log_rule((n + 1) // 2, rule), dtype),
        n,
        chunk,
    )
    value, coarse = float(la), float(lb)
    # never exactly 0: the sum itself is only as exact as the float type
    floor = 8.0 * float(np.finfo(float_dtype()).eps) * max(1.0, abs(value))
    err = max(abs(value - coarse), floor) if math.isfinite(value) else math.inf
    return LogZ(value, err)
