"""sweep: M models at once equal M single fits; bad inputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bpjax as bp
from conftest import random_data

NET = bp.Network(2, [bp.Layer(5, "tanh"), bp.Layer(1, "identity")])
M = 8
KEYS = jax.random.split(jax.random.key(0), M)
PARAMS = jax.vmap(lambda k: bp.init(NET, k))(KEYS)
X, Y = random_data(NET, 9, 0)
ETAS = jnp.array([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 1e150])  # the last one diverges


def model(tree, m):
    return jax.tree.map(lambda v: v[m], tree)


def assert_matches_single_fits(result, epochs, **kw):
    for m in range(M):
        single = bp.fit(NET, model(PARAMS, m), X, Y, learning_rate=float(ETAS[m]), epochs=epochs,
                        **kw)
        mine = model(result, m)
        chex.assert_trees_all_close(mine.params, single.params, rtol=1e-12, atol=1e-14)
        chex.assert_trees_all_close(mine.opt_state, single.opt_state, rtol=1e-12, atol=1e-14)
        run = single.epochs_run
        np.testing.assert_allclose(mine.losses[:run], single.losses, rtol=1e-12)
        assert np.all(np.isnan(mine.losses[run:]))
        for field in ("epoch", "epochs_run", "best_epoch", "converged", "stopped_early",
                      "diverged", "diverged_epoch"):
            assert int(getattr(mine, field)) == int(getattr(single, field)), field


def test_sweep_equals_a_loop_of_single_fits():
    result = bp.sweep(NET, PARAMS, X, Y, learning_rate=ETAS, epochs=4)
    assert result.params[0].shape == (M, 3, 5) and result.losses.shape == (M, 4)
    assert result.epochs_run.shape == (M,)
    assert bool(result.diverged[-1]) and not np.any(np.asarray(result.diverged[:-1]))
    assert_matches_single_fits(result, 4)


def test_sweep_with_adam_shuffling_minibatches_and_patience():
    kw = dict(optimizer=optax.adam(1.0), shuffle=jax.random.key(1), batch_size=4, patience=2,
              validation=(X[:4], Y[:4]))
    result = bp.sweep(NET, PARAMS, X, Y, learning_rate=ETAS * 0.01, epochs=6, **kw)
    for m in range(M):
        single = bp.fit(NET, model(PARAMS, m), X, Y, learning_rate=float(ETAS[m] * 0.01),
                        epochs=6, **kw)
        mine = model(result, m)
        chex.assert_trees_all_close(mine.params, single.params, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(mine.val_losses[:single.epochs_run], single.val_losses,
                                   rtol=1e-12)
        assert int(mine.best_epoch) == single.best_epoch


def test_sweep_per_model_shuffle_keys_and_resuming():
    keys = jax.random.split(jax.random.key(2), M)
    whole = bp.sweep(NET, PARAMS, X, Y, learning_rate=0.3, epochs=4, shuffle=keys)
    half = bp.sweep(NET, PARAMS, X, Y, learning_rate=0.3, epochs=2, shuffle=keys)
    rest = bp.sweep(NET, half, X, Y, learning_rate=0.3, epochs=2, shuffle=keys)
    chex.assert_trees_all_close(rest.params, whole.params, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(rest.epoch, np.full(M, 4))
    one = bp.fit(NET, model(PARAMS, 3), X, Y, learning_rate=0.3, epochs=4, shuffle=keys[3])
    chex.assert_trees_all_close(model(whole, 3).params, one.params, rtol=1e-12, atol=1e-14)


BAD = [
    (dict(learning_rate=jnp.ones(3)), ValueError,
     r"learning_rate must be a number or have shape \(M,\) = \(8,\), got shape \(3,\)"),
    (dict(learning_rate=ETAS.at[2].set(-1.0)), ValueError,
     r"learning_rate must be finite and > 0 for every model"),
    (dict(params=model(PARAMS, 0)), ValueError,
     r"params\[0\] must have shape \(M, 1 \+ fan_in, N_1\) with a leading model axis"),
    (dict(params=(PARAMS[0], PARAMS[1][:4])), ValueError,
     r"params\[1\] \(layer 2\) has shape \(4, 6, 1\), expected \(M, 1 \+ fan_in, N_l\) = "
     r"\(8, 6, 1\)"),
    (dict(shuffle=jax.random.split(jax.random.key(0), 3)), ValueError,
     r"shuffle must be one key or an array of M = 8 keys, got shape \(3,\)"),
    (dict(epochs=-2), ValueError, r"epochs must be >= 0, got -2"),
    (dict(batch_size=10), ValueError, r"batch_size must be at most N = 9"),
    (dict(X=np.full((9, 2), np.nan)), ValueError, r"X holds 18 NaN/Inf"),
    (dict(learning_rate=jnp.ones((8, 1))), ValueError,
     r"learning_rate must be a number or have shape \(M,\) = \(8,\), got shape \(8, 1\)"),
    (dict(progress="yes"), TypeError, r"progress must be True, False or a dict"),
]


@pytest.mark.parametrize("bad, error, message", BAD)
def test_bad_input(bad, error, message):
    args = dict(params=PARAMS, X=X, Y=Y, learning_rate=0.1, epochs=2)
    args.update(bad)
    with pytest.raises(error, match=message):
        bp.sweep(NET, args.pop("params"), args.pop("X"), args.pop("Y"), **args)


def test_sweep_of_networks_with_large_layers():
    """Large layers defer their updates over blocks of samples; vmapped, too."""
    wide = bp.Network(16, [bp.Layer(64, "tanh"), bp.Layer(64, "tanh"), bp.Layer(1, "identity")])
    params = jax.vmap(lambda k: bp.init(wide, k))(jax.random.split(jax.random.key(1), 2))
    Xw, Yw = random_data(wide, 37, 1)
    result = bp.sweep(wide, params, Xw, Yw, learning_rate=jnp.array([0.5, 2.0]), epochs=1)
    for m, eta in enumerate([0.5, 2.0]):
        single = bp.fit(wide, model(params, m), Xw, Yw, learning_rate=eta, epochs=1)
        chex.assert_trees_all_close(model(result, m).params, single.params, rtol=1e-12,
                                    atol=1e-14)
