"""NeuralEnergy with spectral normalisation: the Lipschitz bound, a hand computation,
training with ``fit``, pickling."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import composable_ebm as ebm
from composable_ebm.energies._neural import spectral_norm

TOL = 1e-5  # float32 relative precision of σ at these sizes


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol, atol)


def sn_energy(hidden=(32, 16), activation="silu", seed=0):
    return ebm.NeuralEnergy(
        "x",
        (2,),
        hidden=hidden,
        key=jax.random.key(seed),
        activation=activation,
        spectral_norm=True,
    )


@pytest.mark.parametrize("shape", [(128, 128), (128, 2), (2, 128), (16, 32), (1, 5), (3, 1)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectral_norm_matches_the_svd(shape, seed):
    w = jax.random.normal(jax.random.key(seed), shape) / np.sqrt(shape[1])
    want = np.linalg.norm(np.asarray(w, np.float64), 2)
    close(spectral_norm(w), want, rtol=TOL)


def test_spectral_norm_gradient_is_u_v_transposed():
    w = jax.random.normal(jax.random.key(3), (64, 48))
    u, _, vt = np.linalg.svd(np.asarray(w, np.float64))
    close(jax.grad(spectral_norm)(w), np.outer(u[:, 0], vt[0]), rtol=1e-4, atol=1e-5)


def test_spectral_norm_of_degenerate_matrices():
    assert float(spectral_norm(jnp.zeros((5, 4)))) == 0.0
    close(spectral_norm(jnp.eye(6)), 1.0)
    close(spectral_norm(jnp.diag(jnp.array([1.0, -5.0, 2.0]))), 5.0)


def test_spectral_norm_bounds_each_hidden_layer():
    E = sn_energy(hidden=(128, 128))
    eff = E.effective_layers()
    assert len(eff) == len(E.layers) == 3
    for layer in eff[:-1]:
        s = np.linalg.norm(np.asarray(layer.weight, np.float64), 2)
        assert s <= 1.0 + TOL
        close(s, 1.0, rtol=TOL)
    # the output layer is left free: its norm is the energy's learned Lipschitz scale
    close(eff[-1].weight, E.layers[-1].weight, rtol=0, atol=0)
    # the stored weights are not changed
    assert abs(np.linalg.norm(np.asarray(E.layers[1].weight), 2) - 1.0) > 0.1


def test_spectral_norm_off_uses_the_raw_weights():
    E = ebm.NeuralEnergy("x", (2,), hidden=(8,), key=jax.random.key(0))
    assert E.spectral_norm is False
    assert E.effective_layers() is E.layers


def test_spectral_norm_output_matches_a_hand_computation():
    E = sn_energy(hidden=(5, 4), activation=jax.nn.tanh, seed=1)
    x = np.array([0.3, -0.7])
    (w0, b0), (w1, b1), (w2, b2) = (
        (np.asarray(lin.weight, np.float64), np.asarray(lin.bias, np.float64)) for lin in E.layers
    )
    h = np.tanh(w0 / np.linalg.norm(w0, 2) @ x + b0)
    h = np.tanh(w1 / np.linalg.norm(w1, 2) @ h + b1)
    want = (w2 @ h + b2)[0]
    close(E(jnp.asarray(x, jnp.float32)), want, rtol=1e-5)
    close(E.batch(jnp.asarray(np.stack([x, -x]), jnp.float32))[0], want, rtol=1e-5)


def test_spectral_norm_bounds_the_gradient_of_the_energy():
    # tanh is 1-Lipschitz, so ‖∇E‖ ≤ ‖w_out‖ everywhere
    E = sn_energy(hidden=(64, 64), activation="tanh", seed=2)
    x = 3.0 * jax.random.normal(jax.random.key(0), (512, 2))
    grads = jax.vmap(jax.grad(lambda p: E(p)))(x)
    bound = float(jnp.linalg.norm(E.layers[-1].weight))
    assert float(jnp.max(jnp.linalg.norm(grads, axis=1))) <= bound * (1 + TOL)


def test_spectral_norm_energy_trains_with_fit():
    x = np.random.default_rng(0).normal([0.5, -0.5], 0.3, (1024, 2)).astype("float32")
    E = sn_energy(hidden=(16, 16))
    flags = jax.tree_util.tree_leaves(ebm.trainable_mask(E))
    assert flags and all(flags)  # no hidden state leaves: every array is a weight or bias
    with jax.numpy_rank_promotion("raise"):
        r = ebm.fit(
            E,
            x,
            ebm.ScoreMatching("sliced"),
            steps=300,
            batch_size=128,
            optimizer=optax.adam(1e-2),
            key=jax.random.key(1),
            progress=False,
        )
    loss = r.history["loss"]
    assert r.stopped is None and np.all(np.isfinite(loss))
    assert np.mean(loss[-50:]) < np.mean(loss[:20]) - 1.0
    for layer in r.energy.effective_layers()[:-1]:
        close(np.linalg.norm(np.asarray(layer.weight, np.float64), 2), 1.0, rtol=TOL)
    # the trained energy puts its minimum near the data mean
    grid = jnp.stack(jnp.meshgrid(jnp.linspace(-1, 2, 31), jnp.linspace(-2, 1, 31)), -1)
    e = r.energy.batch(grid.reshape(-1, 2))
    assert np.linalg.norm(np.asarray(grid.reshape(-1, 2)[jnp.argmin(e)]) - [0.5, -0.5]) < 0.3


def test_spectral_norm_energy_pickles():
    E = sn_energy(activation=jax.nn.softplus)
    F = pickle.loads(pickle.dumps(E))
    assert F.spectral_norm is True and F.activation == "softplus"
    x = jnp.array([0.2, -1.3])
    assert float(F(x)) == float(E(x))
    close(jax.grad(lambda p: F(p))(x), jax.grad(lambda p: E(p))(x), rtol=0, atol=0)
