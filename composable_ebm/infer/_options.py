"""Kernel options, each classified once: static (part of the compiled structure) or traced."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._param import as_float

__all__ = ["Settings", "split_options"]

# Changing one of these compiles a new sampler: they shape the program.
STATIC_DEFAULTS: dict[str, Any] = {
    "max_tree_depth": 10,
    "dense_mass": False,
    "adapt_step_size": True,
    "adapt_mass_matrix": True,
    "find_heuristic_step_size": False,
    "forward_mode_differentiation": False,
    "regularize_mass_matrix": True,
    "num_steps": None,
}
# These are values: new values reuse the compiled sampler.
TRACED_DEFAULTS: dict[str, Any] = {
    "step_size": 1.0,
    "trajectory_length": 2 * math.pi,
    "inverse_mass_matrix": None,
    "target_accept_prob": 0.8,
}
KERNELS = {"nuts": "NUTS", "hmc": "HMC"}


class Settings(NamedTuple):
    """Everything static about a sampler run (hashable: the compiled function's key)."""

    algo: str
    num_warmup: int
    num_samples: int
    num_chains: int
    static: tuple[tuple[str, Any], ...]


def _hashable(name: str, v: Any) -> Any:
    if name == "dense_mass" and isinstance(v, (list, tuple)):
        return tuple(tuple(block) for block in v)
    if name == "max_tree_depth" and isinstance(v, (list, tuple)):
        return tuple(int(d) for d in v)
    return v


def split_options(
    kernel: str, num_warmup: int, num_samples: int, num_chains: int, options: dict
) -> tuple[Settings, dict]:
    """Check the kernel options and split them into static settings and traced values."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
    for what, n, low in (
        ("num_warmup", num_warmup, 0),
        ("num_samples", num_samples, 1),
        ("num_chains", num_chains, 1),
    ):
        if not isinstance(n, int) or isinstance(n, bool) or n < low:
            raise ValueError(f"{what} must be an integer >= {low}, got {n!r}")
    unknown = sorted(set(options) - set(STATIC_DEFAULTS) - set(TRACED_DEFAULTS))
    if unknown:
        raise TypeError(
            f"unknown kernel option(s) {unknown}; known: "
            f"{sorted(STATIC_DEFAULTS) + sorted(TRACED_DEFAULTS)}"
        )
    algo = KERNELS[kernel]
    if algo == "NUTS":
        for opt in ("num_steps", "trajectory_length"):
            if options.get(opt) is not None:
                raise ValueError(f"{opt} applies to kernel='hmc', not to NUTS")
    static = {k: _hashable(k, options.get(k, d)) for k, d in STATIC_DEFAULTS.items()}
    traced = {}
    for k, d in TRACED_DEFAULTS.items():
        v = options.get(k, d)
        if algo == "NUTS" and k == "trajectory_length":
            v = None
        traced[k] = None if v is None else (as_float(v) if jnp.ndim(v) == 0 else _tree_float(v))
    for name, low, high in (("step_size", 0.0, None), ("target_accept_prob", 0.0, 1.0)):
        v = traced[name]
        if v is not None and not isinstance(v, jax.core.Tracer):
            if not (float(v) > low and (high is None or float(v) < high)):
                bounds = f"in ({low}, {high})" if high is not None else f"> {low}"
                raise ValueError(f"{name} must be {bounds}, got {float(v)}")
    settings = Settings(algo, num_warmup, num_samples, num_chains, tuple(sorted(static.items())))
    return settings, traced


def _tree_float(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: as_float(x) for k, x in v.items()}
    return as_float(v)
