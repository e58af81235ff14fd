"""Checks of a finished run (host side): basins, non-finite regions, the kernel's own."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..energies import Energy, terms

__all__ = ["basin_message", "nonfinite_message", "run_warnings", "runaway_message"]

BASIN_Z = 8.0  # chain-vs-rest difference in standard errors (batch means)
BASIN_SD = 2.0  # ... and in within-chain standard deviations
PROBE_POINTS = 2048


def _batch_se(x: np.ndarray, batches: int = 10) -> np.ndarray:
    """Standard error of each chain's mean by batch means; x is (chain, draw)."""
    n = x.shape[1] // batches * batches
    means = x[:, :n].reshape(x.shape[0], batches, -1).mean(axis=2)
    return means.std(axis=1, ddof=1) / np.sqrt(batches)


def _quantities(samples: Any) -> dict[str, np.ndarray]:
    out = {"energy": np.asarray(samples.stats["model_energy"], np.float64)}
    for name, v in samples.draws.items():
        flat = np.asarray(v, np.float64).reshape(v.shape[0], v.shape[1], -1)
        for j in range(min(flat.shape[2], 20)):
            label = name if flat.shape[2] == 1 and v.ndim == 2 else f"{name}[{j}]"
            out[label] = flat[:, :, j]
    return out


def basin_message(samples: Any) -> str | None:
    """A message when chains sit in different basins, with the groups of chains.

    For the energy at the draws and each coordinate (the first 20 of each variable), two
    chains disagree when their means differ by more than ``BASIN_Z`` standard errors
    (batch means, so autocorrelation counts) **and** more than ``BASIN_SD`` within-chain
    standard deviations. Chains that agree are grouped; more than one group is reported.
    This catches one stuck chain among many, which per-variable R-hat can average away.
    """
    c, n = samples.num_chains, samples.num_samples
    if c < 2 or n < 50:
        return None
    differ = np.zeros((c, c), bool)
    example = {}
    for label, x in _quantities(samples).items():
        if not np.all(np.isfinite(x)):
            continue
        sd = np.sqrt(np.mean(x.var(axis=1)))
        if sd == 0:
            continue
        se, m = _batch_se(x), x.mean(axis=1)
        diff = np.abs(m[:, None] - m[None, :])
        far = (diff > BASIN_Z * np.hypot(se[:, None], se[None, :])) & (diff > BASIN_SD * sd)
        for a, b in zip(*np.nonzero(np.triu(far))):
            example.setdefault((int(a), int(b)), (label, m[a], m[b]))
        differ |= far
    if not differ.any():
        return None
    groups: list[list[int]] = []
    for k in range(c):  # chains that agree with every member of a group join it
        for g in groups:
            if not differ[k, g].any():
                g.append(k)
                break
        else:
            groups.append([k])
    shown = "; ".join(
        f"chains {a} and {b}: mean {label} {ma:.3g} vs {mb:.3g}"
        for (a, b), (label, ma, mb) in list(example.items())[:3]
    )
    listed = " | ".join(str(g) for g in groups)
    return (
        f"chains sit in different basins: groups {listed} ({shown}). The chains do not "
        "mix between modes, so the draws misweight them even where per-variable R-hat "
        "looks fine. Try parallel tempering (temperatures=[1, 2, 4, 8]), more chains, or a "
        "longer warmup; compare the chains with samples.summary()"
    )


@eqx.filter_jit
def _term_finite(energy: Energy, points: dict) -> dict:
    out = {}
    for label, term in terms(energy):
        vals = {k: points[k] for k in term.space}
        if not vals:
            continue

        def ok(v, term=term):
            e, g = jax.value_and_grad(term.evaluate)(v)
            good = jnp.isfinite(e)
            for leaf in jax.tree_util.tree_leaves(g):
                good = good & jnp.all(jnp.isfinite(leaf))
            return good

        out[label] = jnp.mean(jax.vmap(ok)(vals).astype(jnp.float32))
    return out


def _probe(samples: Any, key: int = 0) -> dict[str, float]:
    """Fraction of points near the draws where each term (or its gradient) is not finite.

    Points are the draws moved by Gaussian noise at the scale of the draws' spread per
    coordinate: what a sampler's proposals look like.
    """
    rng = np.random.default_rng(key)
    space = samples.energy.space
    n_all = samples.num_chains * samples.num_samples
    idx = rng.choice(n_all, size=min(PROBE_POINTS, n_all), replace=False)
    points = {}
    for name, v in samples.draws.items():
        x = np.asarray(v, np.float64).reshape(n_all, *space[name].shape)[idx]
        sd = x.std(axis=0) + 1e-3 * (np.abs(x).mean(axis=0) + 1.0)
        points[name] = jnp.asarray(x + rng.normal(size=x.shape) * sd, v.dtype)
    bad = _term_finite(samples.energy, points)
    return {k: 1.0 - float(v) for k, v in bad.items() if float(v) < 1.0}


def nonfinite_message(samples: Any) -> str | None:
    """A message when proposals reached points where a term is not finite, naming it."""
    stats = samples.stats
    if "nonfinite" in stats:
        frac = float(np.mean(np.asarray(stats["nonfinite"])))
        what = f"{frac:.1%} of the proposals"
    elif "diverging" in stats:
        frac = float(np.mean(np.asarray(stats["diverging"])))
        what = f"{frac:.1%} of the transitions diverged; "
    else:
        return None
    if frac <= 0.0 or (what.endswith("; ") and frac < 0.01):
        return None
    if any(v.is_discrete for v in samples.energy.space.values()):
        return None
    bad = _probe(samples)
    if not bad:
        if "nonfinite" in stats:
            return f"{what} landed where the energy or its gradient is not finite"
        return None
    names = ", ".join(f"{k!r} ({v:.0%} of nearby points)" for k, v in bad.items())
    lead = what if what.endswith("; ") else f"{what} landed where the energy is not finite; "
    return (
        f"{lead}term(s) {names} are not finite near the draws. The sampler rejects every "
        "move there, so the draws stop at the edge of that region and averages are biased. "
        "Make the term finite everywhere (e.g. jnp.where), or declare the variable's "
        "support (ebm.Var(shape, constraints.positive), ...) so sampling stays inside it"
    )


def _quarters(x: np.ndarray) -> np.ndarray:
    q = x.shape[1] // 4
    return np.stack([x[:, i * q : (i + 1) * q].mean(axis=1) for i in range(4)], axis=1)


def runaway_message(samples: Any) -> str | None:
    """A message when the chains run away: positions grow without bound (or overflow)
    while the energy keeps falling, the signature of an energy with no finite ∫exp(−E)
    (``-E``, ``0 * E``, a term unbounded below)."""
    flat = [
        np.asarray(v, np.float64).reshape(v.shape[0], v.shape[1], -1)
        for k, v in samples.draws.items()
        if not samples.energy.space[k].is_discrete
    ]
    if not flat or samples.num_samples < 8:
        return None
    x = np.concatenate(flat, axis=2)
    with np.errstate(all="ignore"):
        biggest = float(np.max(np.abs(x)))
        huge = not np.isfinite(biggest) or biggest > 1e12
        rms = _quarters(np.sqrt(np.mean(x**2, axis=2)))
        e = _quarters(np.asarray(samples.stats["model_energy"], np.float64))
        growing = np.all(np.diff(rms, axis=1) > 0) and np.all(rms[:, 3] > 1.3 * rms[:, 0])
        falling = np.all(np.diff(e, axis=1) < 0) and np.all(e[:, 0] - e[:, 3] > 10.0)
    if not (huge or (growing and falling)):
        return None
    return (
        f"the chains run away: positions reach |x| ≈ {biggest:.3g} and keep growing while "
        "the energy keeps falling. The energy is probably not normalisable (∫exp(−E) is "
        "infinite: -E, 0 * E, or a term unbounded below), so there is no distribution to "
        "sample. Add ebm.Confinement(name, scale=...) or a prior that bounds every variable"
    )


def run_warnings(samples: Any, kernel: Any, num_warmup: int) -> list[str]:
    """Every warning about a finished run, as messages."""
    runaway = runaway_message(samples)
    if runaway:  # nothing else about such a run means anything
        return [runaway]
    out = list(kernel.warnings(samples.stats, num_warmup))
    for check in (nonfinite_message, basin_message):
        message = check(samples)
        if message:
            out.append(message)
    return out
