"""Valid initial points for the chains, and errors that name the term at fault."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._param import float_dtype
from ..energies import Energy, terms
from ._bridge import constrain, potential, transforms, unconstrain

__all__ = ["initial_positions"]

MAX_TRIES = 100


def _valid(energy: Energy, z: Mapping[str, jax.Array]) -> jax.Array:
    pe, g = jax.value_and_grad(lambda z: potential(energy, z))(z)
    finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(g)]
    return jnp.isfinite(pe) & jnp.all(jnp.stack(finite))


@eqx.filter_jit
def _search(energy: Energy, keys: jax.Array) -> tuple[dict, jax.Array]:
    space = energy.space
    ts = transforms(space)
    shapes = {k: tuple(ts[k].inverse_shape(v.shape)) for k, v in space.items()}

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

        _, z, ok, _ = jax.lax.while_loop(cond, body, body((0, draw(key), False, key)))
        return z, ok

    return jax.vmap(one)(keys)


@eqx.filter_jit
def _check(energy: Energy, z: Mapping[str, jax.Array]) -> jax.Array:
    return jax.vmap(lambda z: _valid(energy, z))(z)


def _explain(energy: Energy, z: Mapping[str, jax.Array], intro: str) -> str:
    x = constrain(energy, z)
    lines = [intro]
    for label, term in terms(energy):
        vals = {k: x[k] for k in term.space}
        e = term(vals)
        g = jax.grad(lambda v: term(v))(vals) if term.space else {}
        bad_grad = [k for k, gk in g.items() if not bool(jnp.all(jnp.isfinite(gk)))]
        status = "ok" if bool(jnp.isfinite(e)) and not bad_grad else "NOT FINITE"
        extra = f", gradient not finite in {bad_grad}" if bad_grad else ""
        lines.append(f"  term {label!r}: energy {float(e):.6g}{extra}  [{status}]")
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
        v = jnp.asarray(init[name], dtype=float_dtype())
        if v.shape == var.shape:
            v = jnp.broadcast_to(v, (num_chains, *var.shape))
        elif v.shape != (num_chains, *var.shape):
            raise ValueError(
                f"init[{name!r}] has shape {v.shape}; expected the variable's shape "
                f"{var.shape} or (num_chains, *shape) = {(num_chains, *var.shape)}"
            )
        out[name] = v
    return out


def initial_positions(
    energy: Energy, key: jax.Array, num_chains: int, init: Mapping[str, Any] | None
) -> dict:
    """Unconstrained starting points, one per chain, where E and its gradient are finite.

    With ``init=None`` each chain draws uniformly in (−2, 2) in the unconstrained space
    (up to 100 tries, as NumPyro's ``MCMC`` does); with ``init`` (constrained values) the
    given points are checked. A point that is not valid raises an error naming each
    term's energy there.
    """
    if init is None:
        z, ok = _search(energy, jax.random.split(key, num_chains))
        intro = (
            f"no initial point with a finite energy and gradient found in {MAX_TRIES} "
            "tries (uniform in (-2, 2) in the unconstrained space) for chain {c}; pass "
            "init={{name: value}} with a valid point. At the last try:"
        )
    else:
        x = _chain_values(energy, init, num_chains)
        z = unconstrain(energy, x)
        ok = _check(energy, z)
        intro = "the energy or its gradient is not finite at init for chain {c}:"
    ok = np.asarray(ok)
    if not ok.all():
        c = int(np.flatnonzero(~ok)[0])
        zc = {k: v[c] for k, v in z.items()}
        raise ValueError(_explain(energy, zc, intro.format(c=c)))
    return z
