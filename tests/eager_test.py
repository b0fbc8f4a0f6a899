"""The eager API checks its arguments once per signature (bpjax.data.eager), and still names
every bad argument, on every call, before any work."""

import importlib
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from conftest import random_params, reference_loss

NET = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, "identity")])
PARAMS = random_params(NET, 0)
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))

SUPERVISED = {
    "loss": bp.loss,
    "backprop": bp.backprop,
    "value_and_backprop": bp.value_and_backprop,
    "deltas": bp.deltas,
    "per_example_backprop": bp.per_example_backprop,
}
EAGER = {
    "forward": lambda net, p, X, Y: bp.forward(net, p, X),
    "forward_trace": lambda net, p, X, Y: bp.forward_trace(net, p, X),
    **SUPERVISED,
}


def _close(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", EAGER)
def test_a_bad_call_after_a_good_one_is_still_refused(name):
    fn = EAGER[name]
    good = fn(NET, PARAMS, X, Y)
    with pytest.raises(ValueError, match=r"X must have shape \(N, D\) = \(N, 3\)") as e:
        fn(NET, PARAMS, np.zeros((5, 4)), Y)
    assert e.value.__context__ is None and e.value.__cause__ is None  # no tracer in the story
    with pytest.raises(ValueError, match=r"params\[0\] \(layer 1\) has shape \(3, 4\)"):
        fn(NET, (PARAMS[0][1:], PARAMS[1]), X, Y)
    _close(fn(NET, PARAMS, X, Y), good)  # and a good one after a bad one


@pytest.mark.parametrize("name", EAGER)
def test_errors_name_the_argument_as_given_not_a_tracer(name):
    fn = EAGER[name]
    with pytest.raises(TypeError, match=r"params must be a tuple of 2 arrays .*got ArrayImpl$"):
        fn(NET, jnp.zeros((4, 4)), X, Y)
    with pytest.raises(TypeError, match=r"params\[1\] \(layer 2\) must be floating, got dtype "
                                        r"int32"):
        fn(NET, (PARAMS[0], np.zeros((5, 2), np.int32)), X, Y)
    with pytest.raises(TypeError, match=r"X must be a numeric array, got str: 'abc'"):
        fn(NET, PARAMS, "abc", Y)


@pytest.mark.parametrize("name", SUPERVISED)
def test_targets_are_checked_on_every_call(name):
    fn = SUPERVISED[name]
    fn(NET, PARAMS, X, Y)
    with pytest.raises(ValueError, match=r"Y must have shape \(N, d\) = \(5, 2\), got shape "
                                         r"\(5,\)"):
        fn(NET, PARAMS, X, Y[:, 0])
    with pytest.raises(ValueError, match=r"X has N = 5 samples but Y has 4"):
        fn(NET, PARAMS, X, Y[:4])


@pytest.mark.parametrize("name", EAGER)
def test_numpy_lists_and_jax_arrays_give_the_same_result(name):
    fn = EAGER[name]
    want = fn(NET, PARAMS, jnp.asarray(X), jnp.asarray(Y))
    _close(fn(NET, PARAMS, X, Y), want)
    _close(fn(NET, [np.asarray(w) for w in PARAMS], X.tolist(), Y.tolist()), want)


@pytest.mark.parametrize("name", ["loss", "backprop", "value_and_backprop", "deltas"])
def test_weights_values_are_checked_on_every_call(name):
    fn = SUPERVISED[name]
    fn(NET, PARAMS, X, Y, np.ones(5))
    with pytest.raises(ValueError, match=r"weights must be finite, >= 0, and not all 0"):
        fn(NET, PARAMS, X, Y, -np.ones(5))
    with pytest.raises(ValueError, match=r"weights must be finite, >= 0, and not all 0"):
        fn(NET, PARAMS, X, Y, np.array([1.0, np.nan, 1.0, 1.0, 1.0]))


def test_one_sample_and_promotion_inside_the_jitted_core():
    x, y = X[0], Y[0]
    assert bp.forward(NET, PARAMS, x).shape == (2,)
    assert bp.forward_trace(NET, PARAMS, x).phi[1].shape == (4,)
    assert bp.deltas(NET, PARAMS, x, y)[2].shape == (1, 2)
    # float32 weights with float64 data compute in float64, as before
    p32 = tuple(w.astype(jnp.float32) for w in PARAMS)
    value = bp.loss(NET, p32, X, Y)
    assert value.dtype == jnp.float64
    np.testing.assert_allclose(value, reference_loss(NET, tuple(w.astype(jnp.float64)
                                                               for w in p32), X, Y), rtol=1e-12)


def test_the_checks_run_once_per_signature(monkeypatch):
    net = bp.Network(7, [bp.Layer(5, "relu"), bp.Layer(3, "identity")])  # a new signature
    params = random_params(net, 1)
    calls = []
    module = importlib.import_module("bpjax.forward")  # bp.forward is the function
    original = module.check_params
    monkeypatch.setattr(module, "check_params",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    Xs = rng.standard_normal((6, 7))
    for _ in range(3):
        bp.forward(net, params, Xs)
    assert len(calls) == 1  # when traced; the calls after it check nothing
    bp.forward(net, params, Xs[:4])  # a new shape: traced, so checked, again
    assert len(calls) == 2


def test_the_networks_hash_is_cached_and_not_pickled():
    net = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, "identity")])
    assert net == NET and hash(net) == hash(NET) == hash((3, NET.layers))
    back = pickle.loads(pickle.dumps(net))
    assert "_hash" not in back.__dict__  # recomputed in the process that unpickles it
    assert back == net and hash(back) == hash(net)
    assert {net: 1}[back] == 1
    assert hash(bp.Network(3, [bp.Layer(4, "relu"), bp.Layer(2, "identity")])) != hash(net)
