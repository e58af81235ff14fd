"""The demo: learn an energy from data, compose it with a constraint, sample with NUTS."""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass

import jax
import numpy as np

from . import datasets
from . import energies as E_
from .infer import Samples, sample
from .train import FitResult, ScoreMatching, fit


def right_half(x: jax.Array) -> jax.Array:
    """A soft wall: about 0 for x[0] > 0, rising by 40 per unit to the left of it."""
    return 5.0 * jax.nn.softplus(-8.0 * x[0])


@dataclass
class DemoResult:
    """What the demo made: the training result, the samples, the summary and the files."""

    fit: FitResult
    energy: E_.Energy
    samples: Samples
    summary: object
    figure: pathlib.Path
    summary_path: pathlib.Path


def build_energy(learned: E_.Energy) -> E_.Energy:
    """The learned two-moons energy, a half-plane constraint and a confinement term."""
    return (
        E_.freeze(learned).named("moons (learned)")
        + E_.energy(right_half, x=(2,)).named("x[0] > 0")
        + E_.Confinement("x", scale=0.5).named("confinement")
    )


def run(
    out: str | pathlib.Path = "demo_output",
    *,
    quick: bool = False,
    seed: int = 0,
    steps: int | None = None,
) -> DemoResult:
    """Run the demo and write ``demo.png`` and ``summary.txt`` under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plot

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key_net, key_fit, key_sample = jax.random.split(jax.random.key(seed), 3)
    data = datasets.two_moons(8192, seed=seed)
    steps = steps if steps is not None else (800 if quick else 2000)
    print(
        f"1/3 learning an energy from {len(data)} two-moons points: MLP 2-128-128-1, "
        f"sliced score matching, {steps} Adam steps"
    )
    t0 = time.perf_counter()
    net = E_.NeuralEnergy("x", (2,), hidden=(128, 128), key=key_net)
    result = fit(net, data, ScoreMatching("sliced"), steps=steps, key=key_fit, progress=True)
    print(
        f"    trained in {time.perf_counter() - t0:.1f} s; final loss "
        f"{float(np.mean(result.history['loss'][-100:])):.3f}"
    )

    energy = build_energy(result.energy)
    nw, n = (400, 500) if quick else (1000, 1000)
    print(f"2/3 composing it with the constraint x[0] > 0 and sampling: NUTS, 4 chains × {n}")
    t0 = time.perf_counter()
    samples = sample(energy, key_sample, num_warmup=nw, num_samples=n, num_chains=4)
    jax.block_until_ready(samples.draws)
    print(f"    sampled in {time.perf_counter() - t0:.1f} s (compilation included)")
    summary = samples.summary()
    print(summary.to_string())
    x = np.asarray(samples.draws["x"]).reshape(-1, 2)
    div = int(samples.stats["diverging"].sum())
    allowed = float(np.mean(x[:, 0] > 0))
    print(
        f"    divergences: {div}; max R-hat: {float(summary['r_hat'].max()):.3f}; "
        f"min ESS (bulk): {float(summary['ess_bulk'].min()):.0f}; "
        f"draws with x[0] > 0: {100 * allowed:.1f} %"
    )
    summary_path = out / "summary.txt"
    summary_path.write_text(
        summary.to_string() + f"\ndivergences: {div}\nfraction with x[0] > 0: {allowed:.4f}\n"
    )

    print("3/3 plotting")
    bounds = ((-2.5, 2.5), (-2.0, 2.0))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    plot.landscape(
        result.energy,
        data[:2000],
        bounds=bounds,
        ax=axes[0],
        title="learned exp(−E) and training data",
        c="white",
        s=2,
        label="training data",
    )
    plot.landscape(
        energy,
        samples,
        bounds=bounds,
        ax=axes[1],
        title="learned + (x[0] > 0) + confinement: NUTS draws",
        c="tab:red",
        s=2,
        label="NUTS draws",
    )
    axes[1].axvline(0.0, color="white", lw=1, ls="--", label="wall: x[0] > 0")
    axes[1].legend(loc="upper right", framealpha=0.8, markerscale=5)
    fig.tight_layout()
    figure = out / "demo.png"
    fig.savefig(figure, dpi=120)
    plt.close(fig)
    print(f"wrote {figure} and {summary_path}")
    return DemoResult(result, energy, samples, summary, figure, summary_path)
