"""Every example runs (small settings) and its result matches its closed form."""

import importlib.util
import math
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_example_is_tested():
    tested = {
        "product_of_experts",
        "positive_support",
        "numpyro_factor",
        "learn_then_constrain",
        "continue_a_run",
    }
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_every_example_is_in_the_docs():
    page = (EXAMPLES.parent / "docs" / "examples.md").read_text()
    missing = [p.name for p in EXAMPLES.glob("*.py") if f"../examples/{p.name}" not in page]
    assert not missing, f"docs/examples.md does not include {missing}"


def test_examples_are_short():
    for p in EXAMPLES.glob("*.py"):
        assert len(p.read_text().splitlines()) <= 80, p.name


@pytest.mark.slow
def test_product_of_experts():
    out = load("product_of_experts").main(quick=True)
    n_eff = float(out["samples"].summary()["ess_bulk"].min())
    assert n_eff > 300  # a Gaussian: 4 chains × 300 draws mix well
    tol = 5 * math.sqrt(out["want_var"] / n_eff)
    np.testing.assert_allclose(out["mean"], out["want_mean"], atol=tol)
    # relative MC error of a Gaussian variance estimate: sqrt(2 / n_eff)
    np.testing.assert_allclose(out["var"], out["want_var"], rtol=5 * math.sqrt(2 / n_eff))


@pytest.mark.slow
def test_positive_support():
    out = load("positive_support").main(quick=True)
    d = np.asarray(out["draws"])
    assert d.min() > 0
    n_eff = float(out["samples"].summary()["ess_bulk"].min())
    assert n_eff > 150  # 4 chains × 300 draws of a 1-D Gamma mix well
    assert abs(d.mean() - out["want_mean"]) < 5 * math.sqrt(out["want_var"] / n_eff)
    # the variance estimate's relative MC error is about sqrt((kurtosis + 2) / n_eff)
    assert abs(d.var() - out["want_var"]) < 5 * math.sqrt(4 / n_eff) * out["want_var"]


@pytest.mark.slow
def test_numpyro_factor():
    out = load("numpyro_factor").main(quick=True)
    r = np.asarray(out["radius"])
    # the ring (weight 20) keeps the radius within a few tenths of 1
    assert abs(r.mean() - 1.0) < 0.1
    assert r.std() < 0.3


@pytest.mark.slow
def test_learn_then_constrain():
    out = load("learn_then_constrain").main(quick=True)
    d, nearest = out["draws"], out["nearest"]
    # the rule holds: the wall (40 per unit below the floor) leaves almost nothing below it
    assert np.mean(d[:, 1] < out["floor"]) < 0.01
    # the learned term holds too: most draws sit on the three blobs above the floor (the
    # data's blobs have sd 0.2; a learned energy after a short run is somewhat broader) ...
    assert np.mean(nearest < 0.6) > 0.75
    # ... and all three are visited (8 chains from one start cross between them)
    angles = np.arctan2(d[:, 1], d[:, 0])
    share = np.histogram(angles, bins=[0, np.pi * 3 / 8, np.pi * 5 / 8, np.pi])[0] / len(d)
    assert share.min() > 0.1, share


@pytest.mark.slow
def test_continue_a_run():
    from composable_ebm.infer._sample import TRACE_COUNT

    before = TRACE_COUNT["sample"]
    out = load("continue_a_run").main(quick=True, target_ess=2000.0)
    runs, draws, cov = out["runs"], out["draws"], out["cov"]
    assert len(runs) >= 3 and out["ess"] >= 2000.0
    # one compilation for the adapted run, one for continuing: later pieces reuse it
    assert TRACE_COUNT["sample"] - before <= 2
    assert draws.shape == (4, 200 * len(runs), 2)
    flat = draws.reshape(-1, 2)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=5 * math.sqrt(1 / out["ess"]))
    # second moments mix more slowly than means under NUTS: their own ESS sets the error,
    # sd of a variance estimate sqrt(2/n), of a covariance sqrt((1+ρ²)/n)
    import arviz as az

    sq = [draws[..., 0] ** 2, draws[..., 1] ** 2, draws[..., 0] * draws[..., 1]]
    n_eff = min(float(az.ess(q, method="mean")) for q in sq)
    est = np.cov(flat.T)
    np.testing.assert_allclose(np.diag(est), 1.0, atol=5 * math.sqrt(2 / n_eff))
    assert abs(est[0, 1] - cov[0, 1]) < 5 * math.sqrt((1 + cov[0, 1] ** 2) / n_eff)
