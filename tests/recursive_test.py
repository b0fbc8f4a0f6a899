"""Algorithm 2 (the literal recursion) agrees with the vectorised backward pass."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax as bp
from conftest import DAG_NETS, networks, random_data, random_params, reference_grad


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
    with pytest.raises(ValueError, match=r"x must be one input of shape \(D,\) = \(2,\), got "
                                         r"shape \(3, 2\)"):
        bp.recursive_dphi_dw(net, params, np.zeros((3, 2)), 2, 1, 1, 0, 1)


@pytest.mark.parametrize("name", sorted(DAG_NETS))
def test_recursive_grad_on_explicit_dags(name):
    net = DAG_NETS[name]
    params = random_params(net, 13)
    X, Y = random_data(net, 2, 13)
    rec = bp.recursive_grad(net, params, X, Y)
    ref = reference_grad(net, params, X, Y)  # jax.grad, float64
    for l, (r, g) in enumerate(zip(rec, ref), start=1):
        scale = max(np.abs(g).max(), 1e-300)
        np.testing.assert_allclose(r, g, rtol=1e-10, atol=1e-10 * scale, err_msg=f"layer {l}")
        assert np.all(r[~net.structure(l)] == 0)


def test_nan_stored_in_a_structural_zero_is_ignored():
    # bpjax.params.structural uses jnp.where, so backprop ignores whatever sits in a structural
    # zero; the recursion used to multiply by the mask, and NaN · 0 = NaN spread everywhere.
    net = DAG_NETS["masked_skip"]
    params = random_params(net, 14)
    X, Y = random_data(net, 2, 14)
    dirty = (params[0].at[0, 0].set(np.nan), params[1].at[2, 0].set(np.inf), params[2])
    assert not net.structure(1)[0, 0] and not net.structure(2)[2, 0]
    for r, g in zip(bp.recursive_grad(net, dirty, X, Y), bp.backprop(net, params, X, Y)):
        np.testing.assert_allclose(r, g, rtol=1e-10, atol=1e-12)
