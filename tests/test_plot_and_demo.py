"""The plot helper, the demo and the command line."""

import subprocess
import sys

import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import composable_ebm as ebm

matplotlib.use("Agg")


def test_landscape_vector_variable_with_draws():
    import matplotlib.pyplot as plt

    E = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.eye(2))
    draws = np.random.default_rng(0).normal(size=(2, 50, 2))
    ax = ebm.plot.landscape(E, {"x": draws}, resolution=40)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x[0]", "x[1]")
    offsets = ax.collections[-1].get_offsets()
    assert offsets.shape == (100, 2)
    np.testing.assert_allclose(np.asarray(offsets), draws.reshape(-1, 2))
    plt.close(ax.figure)


def test_landscape_density_is_normalised_on_the_grid():
    import matplotlib.pyplot as plt

    E = ebm.Gaussian("x", jnp.zeros(2), cov=0.25 * jnp.eye(2))
    ax = ebm.plot.landscape(E, resolution=101, bounds=((-3, 3), (-3, 3)))
    # the peak of a normalised N(0, 0.25 I) density is 1 / (2π · 0.25)
    top = max(float(level) for level in ax.collections[0].levels)
    assert abs(top - 1 / (2 * np.pi * 0.25)) < 0.1
    plt.close(ax.figure)


def test_landscape_two_scalar_variables_and_errors():
    import matplotlib.pyplot as plt

    E = ebm.energy(lambda a, b: a**2 + b**2, a=(), b=())
    ax = ebm.plot.landscape(E, resolution=20, density=False)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("a", "b")
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="condition the others"):
        ebm.plot.landscape(ebm.Gaussian("x", jnp.zeros(3), cov=1.0))


@pytest.mark.slow
def test_demo_learns_composes_and_writes_a_readable_figure(tmp_path):
    from composable_ebm import datasets
    from composable_ebm._demo import run

    result = run(tmp_path, quick=True, seed=0)
    assert result.figure.exists() and result.figure.stat().st_size > 20_000
    assert "r_hat" in result.summary_path.read_text()
    loss = result.fit.history["loss"]
    assert loss[-100:].mean() < loss[:100].mean() - 10  # sliced SM loss falls far below 0
    x = np.asarray(result.samples.draws["x"]).reshape(-1, 2)
    assert np.mean(x[:, 0] > 0) > 0.97  # the half-plane constraint holds
    assert int(result.samples.stats["diverging"].sum()) < 0.01 * len(x)
    # the draws lie on the learned moons: close to the training data
    data = datasets.two_moons(2000, seed=0)
    nearest = np.sqrt(((x[::10, None, :] - data[None]) ** 2).sum(-1)).min(1)
    assert np.median(nearest) < 0.1


def test_cli_help():
    out = subprocess.run(
        [sys.executable, "-m", "composable_ebm", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "demo" in out.stdout
