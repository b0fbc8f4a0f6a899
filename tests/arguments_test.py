"""The arguments of fit and sweep: errors that name the right thing, and the forms accepted
(legacy PRNG keys as shuffle keys, a list of per-model params for a sweep)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from conftest import random_data

NET = bp.Network(2, [bp.Layer(3, "tanh"), bp.Layer(1, "identity")])
PARAMS = bp.init(NET, jax.random.key(0))
X, Y = random_data(NET, 8, 0)
M = 3
MODELS = [bp.init(NET, k) for k in jax.random.split(jax.random.key(1), M)]
STACKED = jax.tree.map(lambda *w: jnp.stack(w), *MODELS)

VALIDATION = [
    ((X, Y[:5]), ValueError, r"X_val has N = 8 samples but Y_val has 5 \(shape \(5, 1\)\)"),
    ((X[:, :1], Y), ValueError, r"X_val must have shape \(N, D\) = \(N, 2\) or \(D,\) = \(2,\), "
                                r"got shape \(8, 1\)"),
    ((X, np.zeros((8, 2))), ValueError, r"Y_val must have shape \(N, d\) = \(8, 1\), got shape"),
    ((X[0], Y[:2]), ValueError, r"Y_val must have shape \(d,\) = \(1,\) for a single x"),
    ((np.zeros((0, 2)), np.zeros((0, 1))), ValueError, r"X_val has N = 0 samples"),
    (("x", Y), TypeError, r"X_val must be a numeric array, got str"),
    ((X, None), TypeError, r"Y_val must be a numeric array, got NoneType"),
    ((X.astype(jnp.complex64), Y), TypeError, r"X_val must be real, got dtype complex64"),
    ((X, Y, X), ValueError, r"weights_val must have shape \(N,\) = \(8,\), got shape \(8, 2\)"),
    ((X, Y, None, X), TypeError, r"validation must be a pair \(X_val, Y_val\) or a triple "
                                 r"\(X_val, Y_val, weights_val\), got tuple of 4"),
]


@pytest.mark.parametrize("validation, error, message", VALIDATION)
def test_the_validation_set_is_named_in_its_errors(validation, error, message):
    with pytest.raises(error, match=message):
        bp.fit(NET, PARAMS, X, Y, learning_rate=0.1, epochs=1, validation=validation)
    with pytest.raises(error, match=message):
        bp.sweep(NET, STACKED, X, Y, learning_rate=0.1, epochs=1, validation=validation)


def test_the_training_set_keeps_its_own_names():
    with pytest.raises(ValueError, match=r"^X has N = 8 samples but Y has 5"):
        bp.fit(NET, PARAMS, X, Y[:5], learning_rate=0.1, epochs=1)


def test_legacy_prng_keys_shuffle_like_new_ones():
    kw = dict(learning_rate=0.1, epochs=2)
    new = bp.fit(NET, PARAMS, X, Y, shuffle=jax.random.key(5), **kw)
    old = bp.fit(NET, PARAMS, X, Y, shuffle=jax.random.PRNGKey(5), **kw)
    chex.assert_trees_all_equal(new.params, old.params)
    keys_new = jax.random.split(jax.random.key(6), M)
    keys_old = jax.random.split(jax.random.PRNGKey(6), M)
    assert keys_old.shape == (M, 2)
    a = bp.sweep(NET, STACKED, X, Y, shuffle=keys_new, **kw)
    b = bp.sweep(NET, STACKED, X, Y, shuffle=keys_old, **kw)
    chex.assert_trees_all_equal(a.params, b.params)
    c = bp.sweep(NET, STACKED, X, Y, shuffle=jax.random.PRNGKey(5), **kw)  # one key for all
    chex.assert_trees_all_close(jax.tree.map(lambda v: v[0], c.params),
                                bp.fit(NET, MODELS[0], X, Y, shuffle=jax.random.key(5),
                                       **kw).params, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shuffle, message", [
    (42, r"shuffle must be a key from jax.random.key\(seed\) \(or a legacy "
         r"jax.random.PRNGKey\(seed\)\), got int: 42; e.g. jax.random.key\(42\)"),
    (np.zeros(3, np.uint32), r"shuffle must be a key .* got uint32 array of shape \(3,\)"),
    (True, r"shuffle must be a key .* got bool"),
])
def test_bad_shuffle_keys(shuffle, message):
    with pytest.raises(TypeError, match=message):
        bp.fit(NET, PARAMS, X, Y, learning_rate=0.1, epochs=1, shuffle=shuffle)


def test_fit_takes_one_shuffle_key():
    with pytest.raises(ValueError, match=r"shuffle must be one key for fit, got shape \(3,\)"):
        bp.fit(NET, PARAMS, X, Y, learning_rate=0.1, epochs=1,
               shuffle=jax.random.split(jax.random.key(0), 3))


def test_sweep_accepts_a_list_of_per_model_params():
    kw = dict(learning_rate=jnp.array([0.05, 0.1, 0.2]), epochs=2)
    from_list = bp.sweep(NET, MODELS, X, Y, **kw)
    from_tuple = bp.sweep(NET, tuple(MODELS), X, Y, **kw)
    stacked = bp.sweep(NET, STACKED, X, Y, **kw)
    chex.assert_trees_all_equal(from_list.params, stacked.params)
    chex.assert_trees_all_equal(from_tuple.params, stacked.params)


@pytest.mark.parametrize("params, error, message", [
    ([], ValueError, r"sweep needs at least one model \(M >= 1\): params is an empty list"),
    ((), ValueError, r"sweep needs at least one model"),
    (jax.tree.map(lambda w: w[:0], STACKED), ValueError,
     r"sweep needs at least one model \(M >= 1\), got M = 0"),
    ([MODELS[0], MODELS[1][:1]], ValueError, r"model 1 of the list: params has 1 layers"),
    ([MODELS[0], (MODELS[1][0], MODELS[1][1].T)], ValueError,
     r"model 1 of the list: params\[1\] \(layer 2\) has shape \(1, 4\)"),
    ([MODELS[0], "x"], TypeError, r"model 1 of the list: params must be a tuple of 2 arrays"),
    (None, TypeError, r"params must be a tuple of arrays with a leading model axis \(or a list "
                      r"of per-model params\), got NoneType"),
    (PARAMS, ValueError, r"params\[0\] must have shape \(M, 1 \+ fan_in, N_1\) with a leading "
                         r"model axis, got shape \(3, 3\); stack models"),
])
def test_sweep_model_errors(params, error, message):
    with pytest.raises(error, match=message):
        bp.sweep(NET, params, X, Y, learning_rate=0.1, epochs=1)


@pytest.mark.parametrize("etas, error, message", [
    (jnp.array([0.1 + 1j, 0.2, 0.3]), TypeError, r"learning_rate must hold real numbers, got "
                                                 r"dtype complex"),
    (np.array(["a", "b", "c"]), TypeError, r"learning_rate must hold real numbers, got dtype <U1"),
    (np.array([True, True, True]), TypeError, r"learning_rate must hold real numbers, got dtype "
                                              r"bool"),
    (jnp.array([0.1, 0.0, 0.3]), ValueError, r"learning_rate must be finite and > 0 for every "
                                             r"model"),
])
def test_bad_per_model_learning_rates(etas, error, message):
    with pytest.raises(error, match=message):
        bp.sweep(NET, STACKED, X, Y, learning_rate=etas, epochs=1)


def test_fit_from_a_sweep_result_says_how_to_take_one_model():
    swept = bp.sweep(NET, STACKED, X, Y, learning_rate=0.1, epochs=1)
    with pytest.raises(ValueError, match=r"params come from a sweep of M = 3 models .*: resume it "
                                         r"with bp.sweep, or take model m with "
                                         r"jax.tree.map\(lambda v: v\[m\], result\)"):
        bp.fit(NET, swept, X, Y, learning_rate=0.1, epochs=1)
    one = bp.fit(NET, jax.tree.map(lambda v: v[1], swept), X, Y, learning_rate=0.1, epochs=1)
    assert one.epoch == 2
