"""bp.jacobian against jax.jacrev / jax.jacfwd of the independent reference forward pass, and
against the derivatives that §1.3.1 of the paper lists by hand (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax as bp
from bpjax.jacobian import costs, resolve_mode
from conftest import (
    DAG_NETS,
    assert_close_to_reference,
    networks,
    random_data,
    random_params,
    reference_forward,
)

MODES = ("forward", "reverse", "auto")


def _reference(transform):
    """``∂φ_θ(X)/∂θ`` by autodiff of the reference: per layer ``(N, d, 1 + fan_in, N_l)``."""
    def jac(net, params, X):
        return transform(lambda p: reference_forward(net, p, X))(params)
    return jax.jit(jac, static_argnums=0)  # compiled once per network and shapes


jacrev, jacfwd = _reference(jax.jacrev), _reference(jax.jacfwd)


@settings(max_examples=10)  # 5 missed a DAG whose sources were not summed
@given(net=networks(max_depth=4, max_width=6, dag=True, adjacency=True),
       N=st.sampled_from([1, 3]), seed=st.integers(0, 2**16))
def test_both_modes_match_jacrev_on_random_dags_with_masks(net, N, seed):
    params = random_params(net, seed)
    X, _ = random_data(net, N, seed)
    ref = jacrev(net, params, X)
    for mode in ("forward", "reverse"):
        J = bp.jacobian(net, params, X, mode=mode)
        assert all(j.dtype == jnp.float64 for j in J)
        assert_close_to_reference(J, ref, rtol=1e-10)
        for l, j in enumerate(J, start=1):  # structural zeros: exactly 0
            assert np.all(np.asarray(j)[:, :, ~net.structure(l)] == 0)


@pytest.mark.parametrize("name", sorted(DAG_NETS))
def test_every_mode_matches_jacfwd_on_explicit_dags(name):
    net = DAG_NETS[name]
    params = random_params(net, 3)
    X, _ = random_data(net, 4, 3)
    fwd = jacfwd(net, params, X)
    for mode in MODES:
        J = bp.jacobian(net, params, X, mode=mode)
        assert [j.shape for j in J] == [(4, net.outputs, *s) for s in net.shapes]
        assert_close_to_reference(J, fwd, rtol=1e-10)


def test_dead_layer_has_a_zero_jacobian():
    net = DAG_NETS["dead_layer"]  # the output reads only x: layer 1 feeds nothing
    params = random_params(net, 0)
    X, _ = random_data(net, 4, 0)
    for mode in ("forward", "reverse"):
        J = bp.jacobian(net, params, X, mode=mode)
        assert np.all(np.asarray(J[0]) == 0) and np.any(np.asarray(J[1]) != 0)


def test_the_paper_s_derivatives_of_section_1_3_1(quadratic_net):
    """§1.3.1 lists ∂φ_θ/∂w(x_i) for the network of figure 2; no autodiff involved."""
    rng = np.random.default_rng(5)
    w1, w2 = rng.normal(size=(3, 2)), rng.normal(size=(3, 1))
    w2[0] = 0.0
    X = rng.normal(size=(7, 2))
    a1 = w1[0, 0] + X @ w1[1:, 0]
    a2 = w1[0, 1] + X @ w1[1:, 1]
    one = np.ones(len(X))
    expected_1 = np.stack([  # [i, j, k] = ∂φ_θ/∂w^1_jk
        np.stack([w2[1, 0] * one, 2 * w2[2, 0] * a2], -1),
        np.stack([w2[1, 0] * X[:, 0], 2 * w2[2, 0] * X[:, 0] * a2], -1),
        np.stack([w2[1, 0] * X[:, 1], 2 * w2[2, 0] * X[:, 1] * a2], -1)], axis=1)
    expected_2 = np.stack([0 * one, a1, a2**2], -1)[:, :, None]  # w^2_01 is a structural 0
    for mode in MODES:
        J1, J2 = bp.jacobian(quadratic_net, (jnp.asarray(w1), jnp.asarray(w2)), X, mode=mode)
        np.testing.assert_allclose(J1[:, 0], expected_1, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(J2[:, 0], expected_2, rtol=1e-13, atol=1e-14)
        assert np.all(np.asarray(J2)[:, 0, 0] == 0)


def test_structural_zeros_are_exactly_zero_even_with_nan_stored():
    net = DAG_NETS["masked_skip"]
    params = random_params(net, 1)
    dirty = tuple(jnp.where(net.structure(l), w, jnp.nan) for l, w in enumerate(params, 1))
    X, _ = random_data(net, 4, 1)
    for mode in ("forward", "reverse"):
        J = bp.jacobian(net, dirty, X, mode=mode)
        for l, j in enumerate(J, start=1):
            j = np.asarray(j)
            assert np.all(np.isfinite(j))
            assert np.all(j[:, :, ~net.structure(l)] == 0)
        assert_close_to_reference(J, bp.jacobian(net, params, X, mode=mode), rtol=1e-15)


def test_one_x_drops_the_sample_axis_and_equals_a_batch_of_one():
    net = DAG_NETS["x_to_output"]
    params = random_params(net, 2)
    X, _ = random_data(net, 1, 2)
    one = bp.jacobian(net, params, X[0])
    batch = bp.jacobian(net, params, X)
    for a, b in zip(one, batch):
        assert a.shape == b.shape[1:]
        np.testing.assert_array_equal(a, b[0])


def test_under_jit_and_in_float32():
    net = DAG_NETS["fan_out"]
    params = random_params(net, 4)
    X, _ = random_data(net, 4, 4)
    eager = bp.jacobian(net, params, X)
    jitted = jax.jit(bp.jacobian, static_argnums=(0, 3))(net, params, X, "reverse")
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)
    p32 = tuple(w.astype(jnp.float32) for w in params)
    J32 = bp.jacobian(net, p32, X.astype(jnp.float32), mode="forward")
    assert all(j.dtype == jnp.float32 for j in J32)
    assert_close_to_reference(J32, eager, rtol=1e-5)


def test_jacobian_times_residual_is_the_gradient():
    """∂L/∂w = 1/N Σ_i Σ_k ∂φ_θ[k]/∂w (x_i) (φ_θ(x_i)_k − y_ik): the paper's first equation."""
    net = DAG_NETS["unsorted_inputs"]
    params = random_params(net, 6)
    X, Y = random_data(net, 4, 6)
    r = np.asarray(bp.forward(net, params, X) - Y)
    J = bp.jacobian(net, params, X)
    grads = [np.einsum("ikpr,ik->pr", np.asarray(j), r) / len(X) for j in J]
    assert_close_to_reference(grads, bp.backprop(net, params, X, Y), rtol=1e-12)


def test_auto_takes_the_cheaper_mode():
    narrow_wide = bp.Network(3, [bp.Layer(2, "tanh"), bp.Layer(50, "identity")])  # d ≫ widths
    mlp = bp.Network(3, [bp.Layer(16, "tanh"), bp.Layer(16, "tanh"), bp.Layer(1, "identity")])
    for net, cheaper in ((narrow_wide, "forward"), (mlp, "reverse")):
        c = costs(net)
        assert min(c, key=c.get) == cheaper
        assert resolve_mode(net, "auto") == cheaper
    # the counts by hand: c_l = (Σ_{sources ≠ x} N_s + 1) N_l per tangent and layer
    assert costs(narrow_wide) == {"forward": 2 * 2 + 2 * 3 * 50 + 50 * 50,
                                  "reverse": 50 * (1 * 2 + 3 * 50)}
    assert costs(mlp)["reverse"] == 1 * (16 + 17 * 16 + 17 * 1)


@pytest.mark.parametrize("mode", ["sideways", "Forward", None, 1])
def test_unknown_mode_is_refused(quadratic_net, mode):
    params = bp.init(quadratic_net, jax.random.key(0))
    with pytest.raises(ValueError, match=r"mode must be one of 'auto', 'forward', 'reverse'"):
        bp.jacobian(quadratic_net, params, jnp.ones((2, 2)), mode=mode)


def test_bad_inputs_are_refused_like_forward(quadratic_net):
    params = bp.init(quadratic_net, jax.random.key(0))
    with pytest.raises(ValueError, match=r"X must have shape \(N, D\) = \(N, 2\)"):
        bp.jacobian(quadratic_net, params, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"params\[0\] \(layer 1\) has shape"):
        bp.jacobian(quadratic_net, (params[0][:2], params[1]), jnp.ones((2, 2)))
