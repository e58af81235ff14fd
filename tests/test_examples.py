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
    tested = {"product_of_experts", "positive_support", "numpyro_factor"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


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
