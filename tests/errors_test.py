"""Bad input gets a clear error that names what was expected and what was received."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from conftest import random_params

NET = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, "identity")])
PARAMS = random_params(NET, 0)
X = np.zeros((5, 3))
Y = np.zeros((5, 2))

BAD_DATA = [
    (np.zeros((5, 4)), Y, ValueError, r"X must have shape \(N, D\) = \(N, 3\) or \(D,\) = \(3,\), got shape \(5, 4\)"),
    (np.zeros((5, 3, 1)), Y, ValueError, r"X must have shape .* got shape \(5, 3, 1\)"),
    (np.zeros(4), np.zeros(2), ValueError, r"X must have shape .* got shape \(4,\)"),
    (np.zeros((0, 3)), np.zeros((0, 2)), ValueError, r"X has N = 0 samples"),
    (X, np.zeros((5, 3)), ValueError, r"Y must have shape \(N, d\) = \(5, 2\), got shape \(5, 3\)"),
    (X, np.zeros((4, 2)), ValueError, r"X has N = 5 samples but Y has 4"),
    (X, np.zeros(5), ValueError, r"Y must have shape \(N, d\) = \(5, 2\), got shape \(5,\)"),
    (np.zeros(3), np.zeros(3), ValueError, r"Y must have shape \(d,\) = \(2,\) for a single x"),
    (np.array([["a", "b", "c"]]), Y, TypeError, r"X must be a numeric array"),
]


@pytest.mark.parametrize("X_bad, Y_bad, error, message", BAD_DATA)
@pytest.mark.parametrize("fn", [bp.backprop, bp.loss, bp.value_and_backprop, bp.deltas])
def test_bad_data(fn, X_bad, Y_bad, error, message):
    with pytest.raises(error, match=message):
        fn(NET, PARAMS, X_bad, Y_bad)


def test_bad_inputs_for_forward():
    with pytest.raises(ValueError, match=r"X must have shape \(N, D\) = \(N, 3\)"):
        bp.forward(NET, PARAMS, jnp.zeros((2, 2)))


def test_wrong_params_for_backprop():
    with pytest.raises(ValueError, match=r"params has 1 layers, expected L = 2"):
        bp.backprop(NET, PARAMS[:1], X, Y)
    with pytest.raises(ValueError, match=r"params\[0\] \(layer 1\) has shape \(3, 4\), expected"):
        bp.backprop(NET, (PARAMS[0][1:], PARAMS[1]), X, Y)


def test_bad_weights():
    with pytest.raises(ValueError, match=r"weights must have shape \(N,\) = \(5,\), got shape \(4,\)"):
        bp.loss(NET, PARAMS, X, Y, weights=np.ones(4))
    with pytest.raises(ValueError, match=r"weights must be finite, >= 0, and not all 0"):
        bp.loss(NET, PARAMS, X, Y, weights=-np.ones(5))


# --- every public function names what it expected when the network is not a Network -------------

XS = np.zeros((5, 3))
NET_FIRST = {
    "forward": lambda n: bp.forward(n, PARAMS, XS),
    "forward_trace": lambda n: bp.forward_trace(n, PARAMS, XS),
    "loss": lambda n: bp.loss(n, PARAMS, XS, Y),
    "backprop": lambda n: bp.backprop(n, PARAMS, XS, Y),
    "value_and_backprop": lambda n: bp.value_and_backprop(n, PARAMS, XS, Y),
    "per_example_backprop": lambda n: bp.per_example_backprop(n, PARAMS, XS, Y),
    "deltas": lambda n: bp.deltas(n, PARAMS, XS, Y),
    "recursive_grad": lambda n: bp.recursive_grad(n, PARAMS, XS, Y),
    "recursive_dphi_dw": lambda n: bp.recursive_dphi_dw(n, PARAMS, XS[0], 1, 1, 1, 0, 1),
    "chain_rule_paths": lambda n: bp.chain_rule_paths(n, PARAMS, XS[0], (1, 0, 1), 1),
    "weight_paths": lambda n: bp.weight_paths(n, (1, 0, 1)),
    "check_params": lambda n: bp.check_params(n, PARAMS),
    "check_gradients": lambda n: bp.check_gradients(n, PARAMS, XS, Y),
    "init": lambda n: bp.init(n, jax.random.key(0)),
    "frozen_mask": lambda n: bp.frozen_mask(n, []),
    "clamp": lambda n: bp.clamp(n, PARAMS, {}),
    "draw_network": lambda n: bp.draw_network(n),
    "save": lambda n: bp.save("never-written.npz", n, PARAMS),
    "apply": lambda n: bp.apply(n, PARAMS, XS),
    "jacobian": lambda n: bp.jacobian(n, PARAMS, XS),
    "ghost_norms": lambda n: bp.ghost_norms(n, PARAMS, XS, Y),
    "clipped_grad_sum": lambda n: bp.clipped_grad_sum(n, PARAMS, XS, Y, clip=1.0),
    "fit": lambda n: bp.fit(n, PARAMS, XS, Y, learning_rate=0.1, epochs=1),
    "sweep": lambda n: bp.sweep(n, [PARAMS], XS, Y, learning_rate=0.1, epochs=1),
    "levenberg_marquardt": lambda n: bp.levenberg_marquardt(n, PARAMS, XS, Y, iterations=1),
}


@pytest.mark.parametrize("bad", [None, "net", bp.Layer(2), [bp.Layer(2)]],
                         ids=["None", "str", "Layer", "list"])
@pytest.mark.parametrize("name", NET_FIRST)
def test_a_network_that_is_not_one_is_named(name, bad):
    with pytest.raises(TypeError, match=rf"{name} expects a bpjax.Network, got "
                                        rf"{type(bad).__name__}"):
        NET_FIRST[name](bad)


@pytest.mark.parametrize("X_bad, message", [
    (None, r"X must be a numeric array, got NoneType: None"),
    ("abc", r"X must be a numeric array, got str: 'abc'"),
    ([[1, 2, "x"]], r"X must be a numeric array, got dtype <U\d+"),
    (np.ones((5, 3), np.complex64), r"X must be real, got dtype complex64"),
])
@pytest.mark.parametrize("fn", [bp.forward, bp.forward_trace])
def test_inputs_that_are_not_real_arrays(fn, X_bad, message):
    with pytest.raises(TypeError, match=message):
        fn(NET, PARAMS, X_bad)


@pytest.mark.parametrize("bad, message", [
    (dict(X=np.ones((5, 3), np.complex128)), r"X must be real, got dtype complex128"),
    (dict(Y=np.ones((5, 2), np.complex64)), r"Y must be real, got dtype complex64"),
    (dict(weights=np.ones(5, np.complex64)), r"weights must be real, got dtype complex64"),
    (dict(params=tuple(w.astype(jnp.complex64) for w in PARAMS)),
     r"params\[0\] \(layer 1\) must be floating, got dtype complex64"),
])
@pytest.mark.parametrize("fn", [bp.loss, bp.backprop, bp.value_and_backprop, bp.deltas])
def test_complex_numbers_are_refused(fn, bad, message):
    args = dict(params=PARAMS, X=X, Y=Y, weights=None) | bad
    with pytest.raises(TypeError, match=message):
        fn(NET, args["params"], args["X"], args["Y"], weights=args["weights"])


# --- NaN and Inf: the eager API computes (no host sync); the checks are opt-in, or where work
#     follows (fit, sweep, check_gradients, chain_rule_paths) ---------------------------------------

def test_nan_in_the_eager_api_propagates_as_documented():
    bad_params = (PARAMS[0].at[1, 2].set(np.nan), PARAMS[1])
    assert np.isnan(bp.forward(NET, bad_params, X)).any()
    assert not np.isfinite(bp.loss(NET, PARAMS, X, np.full_like(Y, np.inf)))
    assert np.isnan(bp.backprop(NET, PARAMS, np.full_like(X, np.nan), Y)[0]).all()


def test_check_params_finite_names_the_layer_and_the_entry():
    bad_params = (PARAMS[0], PARAMS[1].at[3, 1].set(np.inf))
    assert bp.check_params(NET, bad_params) is not None  # shapes only by default
    with pytest.raises(ValueError, match=r"params\[1\] \(layer 2\) holds 1 NaN/Inf value\(s\), "
                                         r"first at index \(3, 1\): inf"):
        bp.check_params(NET, bad_params, finite=True)
    with pytest.raises(TypeError, match=r"finite must be True or False, got 'yes'"):
        bp.check_params(NET, PARAMS, finite="yes")


def test_chain_rule_paths_refuses_nan():
    with pytest.raises(ValueError, match=r"x holds 1 NaN/Inf value\(s\), first at index \(1,\)"):
        bp.chain_rule_paths(NET, PARAMS, np.array([0.0, np.nan, 1.0]), (1, 1, 1), 1)
    bad_params = (PARAMS[0].at[0, 0].set(np.nan), PARAMS[1])
    with pytest.raises(ValueError, match=r"params\[0\] \(layer 1\) holds 1 NaN/Inf"):
        bp.chain_rule_paths(NET, bad_params, np.zeros(3), (1, 1, 1), 1)


@pytest.mark.parametrize("args, message", [
    (("1", 1, 1, 0, 1), r"l, k, m, p, r must be ints \(paper numbering\), got l = '1'"),
    ((1, 1, 1, 0.0, 1), r"l, k, m, p, r must be ints \(paper numbering\), got p = 0.0"),
])
def test_recursive_dphi_dw_indices_are_ints(args, message):
    with pytest.raises(TypeError, match=message):
        bp.recursive_dphi_dw(NET, PARAMS, XS[0], *args)
