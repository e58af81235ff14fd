"""Valid initial points for the chains, and errors that name the term at fault."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._param import float_dtype
from .._space import describe_support
from .._validate import finite
from ..energies import Energy, terms
from ._bridge import constrain, potential, transforms, unconstrain

__all__ = [
    "given_positions",
    "raise_if_invalid",
    "raw_positions",
    "search",
    "uniform_positions",
]

MAX_TRIES = 100


def _unconstrained_shapes(energy: Energy) -> dict[str, tuple[int, ...]]:
    space = energy.space
    return {k: tuple(t.inverse_shape(space[k].shape)) for k, t in transforms(space).items()}


def _rng(key: jax.Array) -> np.random.Generator:
    bits = np.asarray(
        jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    )
    return np.random.default_rng(bits.astype(np.uint64).ravel().tolist())


def _stratified(rng: np.random.Generator, num_chains: int, shape: tuple) -> np.ndarray:
    """Uniform in (−2, 2), spread over the chains: per coordinate, the chains take
    different strata of (−2, 2) in a random order (a Latin hypercube over chains), so
    starts are overdispersed relative to each other whatever the number of chains."""
    u = rng.uniform(0.0, 1.0, (num_chains, *shape))
    strata = np.argsort(rng.uniform(size=(num_chains, *shape)), axis=0)
    return -2.0 + 4.0 * (strata + u) / num_chains


def uniform_positions(energy: Energy, key: jax.Array, num_chains: int) -> dict:
    """Overdispersed starts in (−2, 2) in the unconstrained space (NumPy, on the host).

    Drawn with NumPy from the key's bits: deterministic per key, and nothing to compile.
    Each coordinate is stratified across the chains (see :func:`_stratified`).
    """
    rng, dtype = _rng(key), float_dtype()
    return {
        n: jnp.asarray(_stratified(rng, num_chains, s), dtype=dtype)
        for n, s in _unconstrained_shapes(energy).items()
    }


def raw_positions(energy: Energy, key: jax.Array, num_chains: int) -> dict:
    """Starts in the variables' own space (for kernels that move discrete variables).

    Finite discrete variables take uniform values of their support; continuous ones are
    the constrained image of :func:`uniform_positions`. All are stored as floats.
    """
    rng, dtype = _rng(key), float_dtype()
    out = {}
    for name, var in energy.space.items():
        if var.shape is None:
            raise ValueError(f"variable {name!r} has no known shape: give it one")
        if var.is_discrete:
            low, high = _finite_bounds(name, var)
            x = rng.integers(low, high + 1, (num_chains, *var.shape))
        else:
            t = transforms({name: var})[name]
            u = _stratified(rng, num_chains, tuple(t.inverse_shape(var.shape)))
            x = np.asarray(jax.vmap(t)(jnp.asarray(u, dtype)))
        out[name] = jnp.asarray(x, dtype=dtype)
    return out


def _finite_bounds(name: str, var: Any) -> tuple[int, int]:
    sup = var.support
    low = getattr(sup, "lower_bound", 0)
    high = getattr(sup, "upper_bound", 1)
    try:
        low, high = int(np.asarray(low)), int(np.asarray(high))
    except (TypeError, ValueError):
        raise ValueError(
            f"variable {name!r}: its discrete support {sup} has no finite bounds to draw "
            "starting values from; pass init={...}"
        ) from None
    return low, high


def _valid(energy: Energy, z: Mapping[str, jax.Array]) -> jax.Array:
    pe, g = jax.value_and_grad(lambda z: potential(energy, z))(z)
    finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(g)]
    return jnp.isfinite(pe) & jnp.all(jnp.stack(finite))


@eqx.filter_jit
def search(energy: Energy, key: jax.Array, num_chains: int) -> tuple[dict, jax.Array]:
    """Per chain, up to ``MAX_TRIES`` uniform draws in (−2, 2) (unconstrained) until the
    energy and its gradient are finite, as NumPyro's ``MCMC`` does; the flags say which
    chains found one. Compiled only when a first draw was not valid."""
    shapes = _unconstrained_shapes(energy)

    def draw(key):
        ks = jax.random.split(key, len(shapes))
        return {
            n: jax.random.uniform(k, s, float_dtype(), -2.0, 2.0)
            for k, (n, s) in zip(ks, shapes.items())
        }

    def one(key):
        def body(c):
            i, _, _, key = c
            key, sub = jax.random.split(key)
            z = draw(sub)
            return i + 1, z, _valid(energy, z), key

        def cond(c):
            i, _, ok, _ = c
            return (~ok) & (i < MAX_TRIES)

        zeros = jax.tree_util.tree_map(jnp.zeros_like, jax.eval_shape(draw, key))
        _, z, ok, _ = jax.lax.while_loop(cond, body, (0, zeros, jnp.array(False), key))
        return z, ok

    return jax.vmap(one)(jax.random.split(key, num_chains))


def _explain(energy: Energy, x: Mapping[str, jax.Array], intro: str) -> str:
    lines = [intro]
    for label, term in terms(energy):
        vals = {k: x[k] for k in term.space}
        e = term(vals)
        g = jax.grad(term)(vals) if term.space else {}
        bad_grad = [k for k, gk in g.items() if not bool(jnp.all(jnp.isfinite(gk)))]
        status = "ok" if bool(jnp.isfinite(e)) and not bad_grad else "NOT FINITE"
        extra = f", gradient not finite in {bad_grad}" if bad_grad else ""
        lines.append(f"  term {label!r}: energy {float(e):.6g}{extra}  [{status}]")
    if all(line.endswith("[ok]") for line in lines[1:]):
        lines.append(
            "  every term is finite there: the log-Jacobian of a support's transform is not "
            "(the point is at the edge of a support)"
        )
    where = ", ".join(f"{k}={np.array2string(np.asarray(v), precision=3)}" for k, v in x.items())
    lines.append(f"  at {where}")
    return "\n".join(lines)


def _chain_values(energy: Energy, init: Mapping[str, Any], num_chains: int) -> dict:
    space = energy.space
    unknown, missing = sorted(set(init) - set(space)), sorted(set(space) - set(init))
    if unknown or missing:
        raise KeyError(
            f"init: unknown {unknown}, missing {missing}; the energy's free variables are "
            f"{sorted(space)}"
        )
    out = {}
    for name, var in space.items():
        raw = init[name]
        finite(raw, f"init[{name!r}]")  # numbers, none NaN or infinite
        v = jnp.asarray(raw, dtype=float_dtype())
        if v.shape == var.shape:
            v = jnp.broadcast_to(v, (num_chains, *var.shape))
        elif v.shape != (num_chains, *var.shape):
            raise ValueError(
                f"init[{name!r}] has shape {v.shape}; expected the variable's shape "
                f"{var.shape} or (num_chains, *shape) = {(num_chains, *var.shape)}"
            )
        inside = np.asarray(jax.vmap(var.support)(v)) if var.shape is not None else True
        if not np.all(inside):
            c = int(np.flatnonzero(~np.reshape(inside, (num_chains, -1)).all(axis=1))[0])
            raise ValueError(
                f"init[{name!r}] = {np.asarray(v[c]).tolist()} (chain {c}) is outside the "
                f"variable's support, {describe_support(var.support)}"
            )
        out[name] = v
    return out


def given_positions(energy: Energy, init: Mapping[str, Any], num_chains: int) -> dict:
    """Unconstrained values, one per chain, from constrained ``init`` values."""
    return unconstrain(energy, _chain_values(energy, init, num_chains))


def raise_if_invalid(
    energy: Energy, z: Mapping[str, Any], ok: Any, searched: bool, kernel: Any = None
) -> None:
    """Raise an error naming each term's energy at the first chain whose start is invalid.

    ``z`` is unconstrained unless ``kernel`` works in the variables' own space.
    """
    ok = np.asarray(ok)
    if ok.all():
        return
    c = int(np.flatnonzero(~ok)[0])
    if searched:
        intro = (
            f"no initial point with a finite energy and gradient found in {MAX_TRIES} tries "
            f"(uniform in (-2, 2) in the unconstrained space) for chain {c}; pass "
            "init={name: value} with a valid point. At the last try:"
        )
    else:
        intro = f"the energy or its gradient is not finite at init for chain {c}:"
    point = {k: v[c] for k, v in z.items()}
    if kernel is None or kernel.unconstrained:
        point = constrain(energy, point)
    raise ValueError(_explain(energy, point, intro))
