"""Compiled samplers kept across processes (jax.export): a new process does not trace again,
and nothing that changes the program ever reuses a stale entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import dataclasses, json, sys, types
import equinox as eqx, jax, jax.numpy as jnp, numpy as np
import composable_ebm as ebm
from composable_ebm.infer import _export
from composable_ebm.infer._driver import TRACE_COUNT

variant = sys.argv[1]
if variant == "other-jax":  # what a new JAX version does to the key
    _export._VERSIONS = ("0.0.0-other", *_export._VERSIONS[1:])
center = 2.0 if variant == "other-closure" else 1.5

helpers = types.ModuleType("helpers")  # a user's module, read through an attribute
helpers.tilt = 0.5 if variant == "other-module" else 0.0
KEY = jax.random.key(3)  # a typed key the function reads: fingerprinted by its data

def ring_code(x):
    _ = KEY
    return (jnp.linalg.norm(x) - center) ** 2 + helpers.tilt * x[0]

@dataclasses.dataclass
class Model:  # a bound method as the energy function: its instance counts
    scale: float

    def energy(self, x):
        return self.scale * (jnp.linalg.norm(x) - 1.5) ** 2

def ring_other_code(x):
    return (jnp.linalg.norm(x) - center) ** 4

class Opaque:  # a user's object without a __dict__: no fingerprint to trust
    __slots__ = ("scale",)

    def __init__(self):
        self.scale = 1.0

opaque = Opaque()

def ring_opaque(x):
    return opaque.scale * (jnp.linalg.norm(x) - 1.5) ** 2

class Bowl(ebm.Energy):  # a user's own energy class: its methods are traced too
    var: str = eqx.field(static=True)
    variable_fields = ("var",)
    power = 4.0 if variant == "other-class" else 2.0

    def __init__(self, var):
        self.var = var

    @property
    def space(self):
        return {self.var: ebm.Var((2,))}

    def evaluate(self, values):
        return 0.1 * jnp.sum(jnp.abs(values[self.var]) ** self.power)

fn = {"other-code": ring_other_code, "opaque": ring_opaque,
      "method": Model(1.0).energy, "other-self": Model(2.0).energy}.get(variant, ring_code)
prior = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.eye(2)).named("prior")
E = prior + 8.0 * ebm.energy(fn, x=(2,)).named("ring") + Bowl("x")
if variant == "other-shape":
    E = E + ebm.Gaussian("y", jnp.zeros(3), cov=1.0)
s = ebm.sample(E, jax.random.key(0), num_warmup=100, num_samples=200, num_chains=2)
files = sorted(p.name for p in _export._folder().glob("*.bin"))
print("RESULT", json.dumps({"traces": TRACE_COUNT["sample"], "files": files,
      "mean_r": float(np.linalg.norm(np.asarray(s.draws["x"]), axis=-1).mean())}))
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ebm_cache") / "xla"


def _run(cache, variant):
    env = {**os.environ, "EBM_CACHE_DIR": str(cache)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, variant],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def first(cache):
    return _run(cache, "same")


def test_a_second_process_does_not_trace_the_sampler_again(cache, first):
    assert first["traces"] >= 1 and len(first["files"]) == 1
    again = _run(cache, "same")
    assert again["traces"] == 0  # read back, not traced
    assert again["files"] == first["files"]
    assert again["mean_r"] == first["mean_r"]  # the same program: the same draws


@pytest.mark.parametrize(
    "variant",
    ["other-code", "other-closure", "other-module", "other-class", "other-shape", "other-jax"],
)
def test_a_changed_program_never_reuses_a_stale_entry(cache, first, variant):
    # a function with other code, a global it reads that changed, an attribute of a user's
    # module it reads, a user's energy class
    # with another class attribute, another space, another JAX version: each is traced
    # anew and written under its own key
    r = _run(cache, variant)
    assert r["traces"] >= 1
    assert len(r["files"]) > len(first["files"])
    if variant in ("other-code", "other-closure", "other-module", "other-class"):
        assert r["mean_r"] != first["mean_r"]


def test_an_energy_without_a_stable_fingerprint_is_compiled_as_usual(cache, first):
    r = _run(cache, "opaque")  # works, traced, nothing kept for it
    assert r["traces"] >= 1 and 1.2 < r["mean_r"] < 1.7
    assert _run(cache, "opaque")["traces"] >= 1  # and never read back


def test_a_bound_method_is_kept_and_keyed_by_its_instance(cache):
    first = _run(cache, "method")
    assert first["traces"] >= 1
    assert _run(cache, "method")["traces"] == 0
    other = _run(cache, "other-self")  # the same code on another instance
    assert other["traces"] >= 1 and other["mean_r"] != first["mean_r"]
