"""Ghost norms and the clipped per-sample sum against jax.vmap(jax.grad) of the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax as bp
from conftest import DAG_NETS, networks, random_data, random_params, reference_forward


def _sample_loss(net, params, x, y):
    """Sample i's term of loss (1) without the 1/N: ½‖φ_θ(x_i) − y_i‖²."""
    r = reference_forward(net, params, x[None])[0] - y
    return 0.5 * jnp.sum(r * r)


@jax.jit(static_argnums=0)
def per_sample_grads(net, params, X, Y):
    """``g_i = ∂L/∂θ(x_i)`` by autodiff, per layer ``(N, 1 + fan_in, N_l)``."""
    return jax.vmap(jax.grad(_sample_loss, argnums=1), in_axes=(None, None, 0, 0))(
        net, params, X, Y)


def _reference_norms(net, params, X, Y):
    g = per_sample_grads(net, params, X, Y)
    layers = np.stack([np.sum(np.asarray(gl) ** 2, axis=(1, 2)) for gl in g], axis=1)
    return g, layers


def _check_norms(net, params, X, Y):
    g, layers = _reference_norms(net, params, X, Y)
    got = bp.ghost_norms(net, params, X, Y)
    assert got.layers.shape == (len(X), net.depth) and got.total.shape == (len(X),)
    scale = max(layers.max(), 1e-300)
    np.testing.assert_allclose(got.layers, layers, rtol=1e-10, atol=1e-10 * scale)
    np.testing.assert_allclose(got.total, layers.sum(1), rtol=1e-10, atol=1e-10 * scale)
    return g, got


@settings(max_examples=5)
@given(net=networks(max_depth=4, max_width=6, dag=True, adjacency=True),
       N=st.sampled_from([1, 5]), seed=st.integers(0, 2**16))
def test_ghost_norms_match_vmap_grad_on_random_dags_with_masks(net, N, seed):
    params = random_params(net, seed)
    X, Y = random_data(net, N, seed)
    _check_norms(net, params, X, Y)


@pytest.mark.parametrize("name", sorted(DAG_NETS))
def test_ghost_norms_and_clipped_sum_on_explicit_dags(name):
    net = DAG_NETS[name]
    params = random_params(net, 8)
    X, Y = random_data(net, 6, 8)
    g, norms = _check_norms(net, params, X, Y)
    norm = np.sqrt(norms.total)
    clip = float(np.median(norm))  # about half the samples get clipped
    out = bp.clipped_grad_sum(net, params, X, Y, clip=clip)
    c = np.minimum(1.0, clip / np.sqrt(_reference_norms(net, params, X, Y)[1].sum(1)))
    np.testing.assert_allclose(out.scale, c, rtol=1e-10)
    assert np.any(c < 1) or np.all(norm == 0)
    for l, (got, gl) in enumerate(zip(out.grads, g), start=1):
        expected = np.einsum("i,ipr->pr", c, np.asarray(gl))
        np.testing.assert_allclose(got, expected, rtol=1e-10,
                                   atol=1e-10 * max(np.abs(expected).max(), 1e-300))
        assert np.all(np.asarray(got)[~net.structure(l)] == 0)


def test_a_large_clip_gives_the_plain_sum_and_a_zero_gradient_is_not_scaled():
    net = DAG_NETS["x_to_output"]
    params = random_params(net, 9)
    X, Y = random_data(net, 5, 9)
    Y = Y.at[2].set(bp.forward(net, params, X)[2])  # sample 2 fitted exactly: g_2 = 0
    out = bp.clipped_grad_sum(net, params, X, Y, clip=1e30)
    assert out.norms.total[2] == 0 and np.all(np.asarray(out.scale) == 1)
    mean = bp.backprop(net, params, X, Y)  # (1/N) Σ_i g_i
    for a, b in zip(out.grads, mean):
        np.testing.assert_allclose(a, len(X) * np.asarray(b), rtol=1e-12, atol=1e-14)
    tiny = bp.clipped_grad_sum(net, params, X, Y, clip=1e-8)
    assert tiny.scale[2] == 1 and np.all(np.asarray(tiny.scale)[[0, 1, 3, 4]] < 1e-6)
    clipped = np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in tiny.grads))
    assert clipped <= 4 * 1e-8 * (1 + 1e-12)  # four non-zero g_i, each clipped to norm C


def test_under_jit():
    net = DAG_NETS["fan_out"]
    params = random_params(net, 10)
    X, Y = random_data(net, 4, 10)
    eager = bp.clipped_grad_sum(net, params, X, Y, clip=0.5)
    jitted = jax.jit(lambda p, c: bp.clipped_grad_sum(net, p, X, Y, clip=c))(params, 0.5)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("clip, error, match", [
    (0.0, ValueError, r"clip must be > 0, got 0.0"),
    (-1.0, ValueError, r"clip must be > 0"),
    (float("inf"), ValueError, r"clip must be finite"),
    ("1", TypeError, r"clip must be a number"),
])
def test_bad_clip_is_refused(quadratic_net, clip, error, match):
    params = bp.init(quadratic_net, jax.random.key(0))
    with pytest.raises(error, match=match):
        bp.clipped_grad_sum(quadratic_net, params, np.zeros((3, 2)), np.zeros(3), clip=clip)


def test_bad_data_is_refused(quadratic_net):
    params = bp.init(quadratic_net, jax.random.key(0))
    with pytest.raises(ValueError, match=r"X has N = 3 samples but Y has 2"):
        bp.ghost_norms(quadratic_net, params, np.zeros((3, 2)), np.zeros((2, 1)))
