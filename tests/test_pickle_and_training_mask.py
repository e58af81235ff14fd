"""One contract over every energy class (pickle, evaluation, scores); trainable leaves;
per-term labels."""

import json
import os
import pickle
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import composable_ebm as ebm


def close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol, atol)


def ring(x):  # module level: function energies pickle by reference
    return 5.0 * (jnp.linalg.norm(x) - 1.0) ** 2


def coupling(x, y):
    return jnp.sum(x) * y + y**2


def leaves_and_flags(E):
    leaves = jax.tree_util.tree_leaves(E)
    return list(zip(leaves, jax.tree_util.tree_leaves(ebm.trainable_mask(E)), strict=True))


# ---------------------------------------------------------------- a catalogue of energies
def catalogue():
    G = ebm.Gaussian("x", jnp.array([0.5, -1.0]), cov=jnp.array([[2.0, 0.3], [0.3, 1.0]]))
    F = ebm.energy(ring, x=(2,))
    XY = ebm.energy(coupling, x=(2,), y=())
    N = ebm.NeuralEnergy("x", (2,), hidden=(4,), key=jax.random.key(0))
    return {
        "Gaussian": G,
        "Gaussian-precision": ebm.Gaussian("x", jnp.zeros(2), precision=3.0),
        "Confinement": ebm.Confinement("x", scale=2.0, eps=0.1, shape=(2,)),
        "FunctionEnergy": F,
        "FunctionEnergy-decorated": ebm.energy(x=(2,))(ring),
        "FromDistribution-mvn": ebm.FromDistribution(
            "x", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2))
        ),
        "FromDistribution-gamma": ebm.FromDistribution("x", dist.Gamma(jnp.array([2.0, 3.0]), 1.5)),
        "FromDistribution-beta-trainable": ebm.FromDistribution(
            "x", dist.Beta(jnp.array([2.0, 1.5]), 3.0), trainable=True
        ),
        "FromDistribution-lognormal": ebm.FromDistribution("x", dist.LogNormal(jnp.zeros(2), 0.5)),
        "NeuralEnergy": N,
        "NeuralEnergy-tanh": ebm.NeuralEnergy(
            "x", (2,), hidden=(3,), key=jax.random.key(1), activation=jax.nn.tanh
        ),
        "Sum": G + F + ebm.Confinement("x"),
        "Scaled": 0.5 * G,
        "Scaled-temperature": F / 2.0,
        "Scaled-param": ebm.Param(1.5) * F,
        "LogSumExp": ebm.logsumexp(G, F, weights=[0.3, 0.7]),
        "LogSumExp-or": G | F | N,
        "Conditioned": XY.condition(y=2.0),
        "Renamed": XY.rename(x="z", y="x").condition(x=1.5).rename(z="x"),
        "Frozen": ebm.freeze(G + N),
        "Named": F.named("ring"),
        "Difference": G - 0.1 * N,
    }


CATALOGUE = catalogue()
POINTS = [jnp.array([0.3, 0.8]), jnp.array([0.6, 0.4])]  # inside every support used here


@pytest.mark.parametrize("label", sorted(CATALOGUE))
def test_pickle_round_trip(label):
    E = CATALOGUE[label]
    back = pickle.loads(pickle.dumps(E))
    assert type(back) is type(E)
    assert back.space == E.space
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(E)
    for x in POINTS:
        assert float(back(x)) == float(E(x))


@pytest.mark.parametrize("label", sorted(CATALOGUE))
def test_energy_contract(label):
    """Scalar, finite, batch == loop, score == −grad, typed leaves, a mask for each leaf."""
    E = CATALOGUE[label]
    assert set(E.space) == {"x"} and E.space["x"].shape == (2,)
    for x in POINTS:
        out = E(x)
        assert out.shape == () and bool(jnp.isfinite(out))
        close(E.score(x)["x"], -jax.grad(lambda v: E(v))(x))
    xs = jnp.stack(POINTS)
    close(E.batch(xs), [float(E(x)) for x in POINTS])
    float_dtype = jnp.result_type(float)
    for leaf, flag in leaves_and_flags(E):
        assert isinstance(flag, bool)
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == float_dtype and not leaf.weak_type
    assert jax.tree_util.tree_structure(ebm.trainable_mask(E)) == jax.tree_util.tree_structure(
        jax.tree_util.tree_map(lambda _: True, E)
    )


def test_from_distribution_pickles_across_processes(tmp_path):
    """NumPyro orders a distribution's fields by a set of strings, which differs between
    processes (hash randomisation): a pickled energy must not depend on that order."""
    energies = {
        "gamma": ebm.FromDistribution("s", dist.Gamma(2.0, 3.0)),
        "gamma-trainable": ebm.FromDistribution("s", dist.Gamma(2.0, 3.0), trainable=True),
        "beta": ebm.FromDistribution("s", dist.Beta(2.0, 5.0)),
        "studentt": ebm.FromDistribution("s", dist.StudentT(3.0, 0.5, 2.0)),
        "uniform": ebm.FromDistribution("s", dist.Uniform(0.0, 2.0)),
        "halfnormal": ebm.FromDistribution("s", dist.HalfNormal(0.5)),
    }
    want = {k: float(E(0.3)) for k, E in energies.items()}
    blob = tmp_path / "energies.pkl"
    blob.write_bytes(pickle.dumps(energies))
    code = (
        "import json, pickle, sys; import composable_ebm; "
        "E = pickle.load(open(sys.argv[1], 'rb')); "
        "print(json.dumps({k: float(e(0.3)) for k, e in E.items()}))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(blob)],
            env={**os.environ, "PYTHONHASHSEED": str(seed), "JAX_PLATFORMS": "cpu"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)  # these two order Gamma's fields differently
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        got = json.loads(out.strip().splitlines()[-1])
        for k in want:
            close(got[k], want[k])


# ---------------------------------------------------------------- trainable_mask
def test_gaussian_mean_and_precision_trainable_by_default():
    G = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
    mask = ebm.trainable_mask(G)
    assert mask.mean is True and mask.tril is True


def test_weights_and_temperatures_not_trainable_unless_param():
    G = ebm.Gaussian("x", 0.0, cov=1.0)
    assert ebm.trainable_mask(2.0 * G).weight is False
    assert ebm.trainable_mask(G / 3.0).weight is False
    assert ebm.trainable_mask(-G).weight is False
    assert ebm.trainable_mask(2.0 * G).energy.mean is True
    assert ebm.trainable_mask(ebm.Param(2.0) * G).weight.value is True
    assert ebm.trainable_mask(G / ebm.Param(3.0)).weight.value is True


def test_logsumexp_weights_not_trainable_unless_param():
    a, b = ebm.Gaussian("x", -1.0, cov=1.0), ebm.Gaussian("x", 1.0, cov=1.0)
    assert ebm.trainable_mask(a | b).weights is False
    assert ebm.trainable_mask(ebm.logsumexp(a, b, weights=[0.2, 0.8])).weights is False
    m = ebm.trainable_mask(ebm.logsumexp(a, b, weights=ebm.Param(jnp.array([0.2, 0.8]))))
    assert m.weights.value is True
    assert m.terms[0].mean is True


def test_condition_values_not_trainable_unless_param():
    XY = ebm.energy(coupling, x=(2,), y=())
    assert ebm.trainable_mask(XY.condition(y=1.0)).values["y"] is False
    E = XY.condition(y=ebm.Param(1.0))
    assert ebm.trainable_mask(E).values["y"].value is True
    close(E(jnp.array([1.0, 2.0])), 3.0 + 1.0)


def test_confinement_settings_not_trainable_unless_param():
    assert [f for _, f in leaves_and_flags(ebm.Confinement("x", scale=2.0))] == [False, False]
    m = ebm.trainable_mask(ebm.Confinement("x", scale=ebm.Param(2.0), eps=0.1))
    assert m.scale.value is True and m.eps is False


def test_neural_energy_weights_trainable():
    N = ebm.NeuralEnergy("x", (2,), hidden=(4,), key=jax.random.key(0))
    flags = leaves_and_flags(N)
    assert len(flags) == 4  # two layers × (weight, bias)
    assert all(f for _, f in flags)


def test_from_distribution_trainable_only_on_request():
    d = dist.Gamma(2.0, 3.0)
    assert not any(f for _, f in leaves_and_flags(ebm.FromDistribution("s", d)))
    E = ebm.FromDistribution("s", d, trainable=True)
    m = ebm.trainable_mask(E)
    assert m.params == {"concentration": True, "rate": True}
    # a parameter without a bijection (Uniform's bounds) stays fixed even so
    U = ebm.FromDistribution("u", dist.Uniform(0.0, 2.0), trainable=True)
    assert not any(f for _, f in leaves_and_flags(U))


def test_freeze_makes_everything_untrainable():
    G = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
    N = ebm.NeuralEnergy("x", (2,), hidden=(4,), key=jax.random.key(0))
    E = ebm.Param(2.0) * G + N + ebm.FromDistribution("x", dist.Normal(jnp.zeros(2), 1.0), True)
    assert sum(f for _, f in leaves_and_flags(E)) == len(jax.tree_util.tree_leaves(E))
    frozen = ebm.freeze(E)
    assert not any(f for _, f in leaves_and_flags(frozen))
    assert ebm.freeze(frozen) is frozen
    x = jnp.array([0.5, -0.5])
    close(frozen(x), E(x))
    # frozen parts of a larger energy stay frozen, the rest still trains
    mixed = ebm.freeze(G) + N
    assert [f for _, f in leaves_and_flags(mixed)] == [False, False, True, True, True, True]


def test_mask_partitions_the_energy():
    G = ebm.Gaussian("x", jnp.zeros(2), cov=1.0)
    E = 2.0 * G + ebm.Confinement("x")
    trainable, fixed = eqx.partition(E, ebm.trainable_mask(E))
    assert len(jax.tree_util.tree_leaves(trainable)) == 2
    assert len(jax.tree_util.tree_leaves(fixed)) == 3
    close(eqx.combine(trainable, fixed)(jnp.ones(2)), E(jnp.ones(2)))


# ---------------------------------------------------------------- terms and labels
def test_terms_labels_and_values():
    prior = ebm.Gaussian("x", jnp.zeros(2), cov=1.0).named("prior")
    wall = ebm.Confinement("x").named("wall")
    lik = ebm.energy(ring, x=(2,))
    E = prior + wall + 2.0 * lik.named("lik") + lik + ebm.Gaussian("x", jnp.ones(2), cov=1.0)
    ts = ebm.terms(E)
    assert [label for label, _ in ts] == [
        "prior",
        "wall",
        "lik",
        "FunctionEnergy('ring')",
        "Gaussian",
    ]
    x = jnp.array([0.3, -1.2])
    close(sum(float(t(x)) for _, t in ts), E(x))
    close(dict(ts)["lik"](x), 2.0 * ring(x))


def test_named_carries_a_label_and_keeps_the_value():
    G = ebm.Gaussian("x", 1.0, cov=1.0)
    N = G.named("prior")
    assert N.label == "prior"
    assert N.space == G.space
    close(N(3.0), G(3.0))
    assert ebm.terms(N) == [("prior", G)]


def test_terms_repeated_labels_are_numbered():
    a = ebm.Gaussian("x", 0.0, cov=1.0).named("g")
    assert [label for label, _ in ebm.terms(a + a + a)] == ["g", "g[1]", "g[2]"]


def test_terms_push_wrappers_onto_each_term():
    XY = ebm.energy(coupling, x=(2,), y=()).named("coupling")
    Gy = ebm.Gaussian("y", 1.0, cov=1.0).named("prior_y")
    Gx = ebm.Gaussian("x", jnp.zeros(2), cov=1.0).named("prior_x")
    S = XY + Gy + Gx
    x = jnp.array([0.5, 1.5])
    for E, vals in [
        (S.condition(y=2.0), {"x": x}),
        (3.0 * S, {"x": x, "y": 2.0}),
        (S.rename(x="z"), {"z": x, "y": 2.0}),
        (ebm.freeze(S), {"x": x, "y": 2.0}),
    ]:
        ts = ebm.terms(E)
        assert [label for label, _ in ts] == ["coupling", "prior_y", "prior_x"]
        parts = [float(t({k: v for k, v in vals.items() if k in t.space})) for _, t in ts]
        close(sum(parts), E(vals))
    # a conditioned term that lost all its variables still evaluates (to a constant)
    (_, prior_y) = ebm.terms(S.condition(y=2.0))[1]
    assert prior_y.space == {}
    close(prior_y({}), 0.5)
