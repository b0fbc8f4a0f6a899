"""Bad input gets a clear error that names what was expected and what was received."""

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
