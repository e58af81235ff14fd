"""Plots: energy landscapes over two dimensions, with draws on top.

Matplotlib is imported only when this module is used (``ebm.plot`` loads it lazily).

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import jax.numpy as jnp, composable_ebm as ebm
    >>> ring = ebm.energy(lambda x: 4 * (jnp.linalg.norm(x) - 1) ** 2, x=(2,))
    >>> ax = ebm.plot.landscape(ring, resolution=40, title="a ring")
    >>> ax.get_title()
    'a ring'
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from .energies import Energy

__all__ = ["landscape", "plane", "term_energies"]


def plane(energy: Energy) -> tuple[list[str], Any]:
    """How a two-dimensional energy maps a point (a, b) to its variables.

    Returns the two axis labels and a function from a grid of points (..., 2) to the
    energy's values. The energy must have one free variable of shape (2,) or two scalar
    free variables (condition the others first).
    """
    space = energy.space
    shapes = {k: v.shape for k, v in space.items()}
    if len(space) == 1 and next(iter(shapes.values())) == (2,):
        (name,) = space
        return [f"{name}[0]", f"{name}[1]"], lambda p: {name: p}
    if len(space) == 2 and all(s == () for s in shapes.values()):
        a, b = space
        return [a, b], lambda p: {a: p[..., 0], b: p[..., 1]}
    raise ValueError(
        "a landscape needs one free variable of shape (2,) or two scalar free variables; "
        f"this energy's free variables have shapes {shapes}: condition the others first"
    )


def _points(samples: Any, names: list[str], energy: Energy) -> np.ndarray | None:
    if samples is None:
        return None
    draws = getattr(samples, "draws", samples)
    if isinstance(draws, dict):
        space = energy.space
        if len(space) == 1:
            arr = np.asarray(draws[next(iter(space))])
        else:
            arr = np.stack([np.asarray(draws[k]) for k in space], axis=-1)
    else:
        arr = np.asarray(draws)
    if arr.shape[-1] != 2:
        raise ValueError(f"draws must end with an axis of size 2, got shape {arr.shape}")
    return arr.reshape(-1, 2)


def landscape(
    energy: Energy,
    samples: Any = None,
    *,
    bounds: tuple[tuple[float, float], tuple[float, float]] = ((-3.0, 3.0), (-3.0, 3.0)),
    resolution: int = 200,
    density: bool = True,
    ax: Any = None,
    levels: int = 30,
    cmap: str = "viridis",
    max_points: int = 4000,
    title: str | None = None,
    **scatter_kwargs: Any,
) -> Any:
    """Draw an energy landscape over a 2-D grid, optionally with draws on top.

    Args:
        energy: an energy with one free variable of shape (2,) or two scalar ones.
        samples: ``ebm.Samples``, a mapping name → array, or an array (..., 2).
        bounds: ((xmin, xmax), (ymin, ymax)) of the grid.
        resolution: grid points per axis.
        density: shade the normalised density exp(−E)/Z on the grid (``True``) or the
            energy itself (``False``).
        ax: a matplotlib axes (a new figure is made when ``None``).
        levels: number of contour levels.
        cmap: colormap name.
        max_points: at most this many draws are plotted (evenly thinned).
        title: axes title.
        **scatter_kwargs: passed to ``ax.scatter`` for the draws.

    Returns:
        The matplotlib axes.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import jax.numpy as jnp, composable_ebm as ebm
        >>> E = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.eye(2))
        >>> ax = ebm.plot.landscape(E, resolution=50)
        >>> ax.get_xlabel()
        'x[0]'
    """
    import matplotlib.pyplot as plt

    labels, to_values = plane(energy)
    (x0, x1), (y0, y1) = bounds
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    grid = jnp.stack(jnp.meshgrid(jnp.asarray(xs), jnp.asarray(ys)), axis=-1)
    e = np.asarray(energy.batch(to_values(grid.astype(jnp.result_type(float)))))
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    if density:
        finite = np.isfinite(e)
        m = e[finite].min() if finite.any() else 0.0
        p = np.where(finite, np.exp(-(e - m)), 0.0)
        cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
        z, clabel = p / max(p.sum() * cell, 1e-300), "density exp(−E)/Z (on the grid)"
    else:
        hi = np.nanpercentile(e[np.isfinite(e)], 75) if np.isfinite(e).any() else 1.0
        z, clabel = np.clip(e, None, hi), "energy E"
    cs = ax.contourf(xs, ys, z, levels=levels, cmap=cmap)
    ax.figure.colorbar(cs, ax=ax, label=clabel)
    pts = _points(samples, labels, energy)
    if pts is not None:
        if len(pts) > max_points:
            pts = pts[:: int(np.ceil(len(pts) / max_points))]
        style = {"s": 3, "c": "white", "alpha": 0.5, "edgecolors": "none", "label": "draws"}
        style.update(scatter_kwargs)
        ax.scatter(pts[:, 0], pts[:, 1], **style)
        ax.legend(loc="upper right", markerscale=4, framealpha=0.8)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax


def term_energies(
    samples: Any,
    *,
    chain: int | None = None,
    ax: Any = None,
    title: str | None = "Energy of each term at every draw",
) -> Any:
    """Each top-level term's energy over the draws, to see which constraint dominates.

    One line per term (labels from ``E.named``), in draw order, for one chain or the mean
    over chains, with the total (``stats["model_energy"]``) in black. A term that rises
    while another falls is a conflict between the two; a term far above the others
    dominates the composition.

    Args:
        samples: the result of ``ebm.sample``.
        chain: the chain to show; ``None`` for the mean over chains at each draw.
        ax: a matplotlib axes to draw on (a new figure by default).
        title: the axes title (``None`` for none).

    Returns:
        The matplotlib axes.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import jax, composable_ebm as ebm
        >>> E = (ebm.Gaussian("x", 0.0, cov=1.0).named("prior")
        ...      + ebm.Gaussian("x", 2.0, cov=0.5).named("data"))
        >>> s = ebm.sample(E, jax.random.key(0), num_warmup=100, num_samples=100,
        ...                num_chains=2)
        >>> ax = ebm.plot.term_energies(s)
        >>> [t.get_text() for t in ax.get_legend().get_texts()]
        ['prior', 'data', 'total']
    """
    import matplotlib.pyplot as plt

    terms = samples.term_energies
    if chain is not None and not 0 <= int(chain) < samples.num_chains:
        raise ValueError(f"chain must be in [0, {samples.num_chains}), got {chain}")
    pick = (
        (lambda v: np.asarray(v)[chain])
        if chain is not None
        else (lambda v: np.asarray(v).mean(axis=0))
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for label, v in terms.items():
        ax.plot(pick(v), lw=1.0, label=label)
    ax.plot(pick(samples.stats["model_energy"]), color="black", lw=1.2, label="total")
    ax.set_xlabel("draw")
    ax.set_ylabel("energy" + (f" (chain {chain})" if chain is not None else " (mean over chains)"))
    ax.legend(loc="upper right", fontsize="small", ncol=2)
    if title:
        ax.set_title(title)
    return ax
