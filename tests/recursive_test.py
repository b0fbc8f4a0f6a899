"""Algorithm 2 (the literal recursion) agrees with the vectorised backward pass."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax as bp
from conftest import networks, random_data, random_params


@settings(max_examples=15)
@given(net=networks(max_depth=3, max_width=3, dag=True, adjacency=True),
       N=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_recursive_grad_equals_backprop(net, N, seed):
    params = random_params(net, seed)
    X, Y = random_data(net, N, seed)
    rec = bp.recursive_grad(net, params, X, Y)
    grads = bp.backprop(net, params, X, Y)
    for l, (r, g) in enumerate(zip(rec, grads), start=1):
        assert r.dtype == np.float64 and r.shape == g.shape
        scale = max(np.abs(r).max(), 1e-300)
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10 * scale, err_msg=f"layer {l}")


def test_recursion_cases_of_lines_10_to_15():
    net = bp.Network(2, [bp.Layer(2, "tanh"), bp.Layer(2, "logistic"), bp.Layer(1, "identity")])
    params = random_params(net, 0)
    x = np.array([0.3, -1.2])
    tr = bp.forward_trace(net, params, x)
    # l = m, k = r: ∂φ^2_1/∂w^2_21 = φ'(a^2_1) · φ^1_2
    s = 1 / (1 + np.exp(-float(tr.a[2][0])))
    np.testing.assert_allclose(bp.recursive_dphi_dw(net, params, x, 2, 1, 2, 2, 1),
                               s * (1 - s) * float(tr.phi[1][1]), rtol=1e-13)
    # l = m, k ≠ r: 0
    assert bp.recursive_dphi_dw(net, params, x, 2, 2, 2, 2, 1) == 0.0
    # l < m: equation (4), 0
    assert bp.recursive_dphi_dw(net, params, x, 1, 1, 2, 0, 1) == 0.0
    # m = 1, p = 0: ∂a^1_r/∂w^1_0r = 1, so ∂φ^1_1/∂w^1_01 = tanh'(a^1_1)
    np.testing.assert_allclose(bp.recursive_dphi_dw(net, params, x, 1, 1, 1, 0, 1),
                               1 - np.tanh(float(tr.a[1][0])) ** 2, rtol=1e-13)


def test_recursive_dphi_dw_rejects_indices_outside_the_network():
    net = bp.Network(2, [bp.Layer(2), bp.Layer(1)])
    params = random_params(net, 0)
    with pytest.raises(ValueError, match=r"neuron \(l=3, k=1\) is not in the network"):
        bp.recursive_dphi_dw(net, params, np.zeros(2), 3, 1, 1, 0, 1)
    with pytest.raises(ValueError, match=r"weight w\^1_\(3,1\) is not in the network"):
        bp.recursive_dphi_dw(net, params, np.zeros(2), 2, 1, 1, 3, 1)
