"""The forward pass and loss (1): trace contents, shapes, dtypes, jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from conftest import random_data, random_params, reference_forward, reference_loss

NET = bp.Network(3, [bp.Layer(4, ("tanh", "relu", "softplus", "square")),
                     bp.Layer(3, "logistic", inputs=(0, 1)), bp.Layer(2, "identity")])


@pytest.fixture
def data():
    return random_params(NET, 0), *random_data(NET, 5, 0)


def test_forward_matches_reference_and_trace(data):
    params, X, _ = data
    out = bp.forward(NET, params, X)
    assert out.shape == (5, 2)
    np.testing.assert_allclose(out, reference_forward(NET, params, X), rtol=1e-14)
    tr = bp.forward_trace(NET, params, X)
    assert tr.a[0] is None and len(tr.a) == len(tr.phi) == NET.depth + 1
    assert [p.shape for p in tr.phi] == [(5, 3), (5, 4), (5, 3), (5, 2)]
    np.testing.assert_array_equal(tr.phi[-1], out)
    # a^2 = w_0 + [φ^0, φ^1] w_{1:} and φ^2 = logistic(a^2), from the stored values
    a2 = params[1][0] + jnp.concatenate([X, tr.phi[1]], 1) @ params[1][1:]
    np.testing.assert_allclose(tr.a[2], a2, rtol=1e-14)
    np.testing.assert_allclose(tr.phi[2], 1 / (1 + np.exp(-np.asarray(a2))), rtol=1e-14)


def test_single_x_drops_the_batch_axis(data):
    params, X, _ = data
    np.testing.assert_array_equal(bp.forward(NET, params, X[1]), bp.forward(NET, params, X)[1])
    tr = bp.forward_trace(NET, params, X[1])
    assert tr.phi[1].shape == (4,) and tr.a[3].shape == (2,)


def test_dtype_follows_inputs(data):
    params, X, Y = data
    p32 = tuple(w.astype(jnp.float32) for w in params)
    assert bp.forward(NET, p32, X.astype(jnp.float32)).dtype == jnp.float32
    assert bp.forward(NET, params, X).dtype == jnp.float64
    assert bp.loss(NET, params, X, Y).dtype == jnp.float64
    assert bp.forward(NET, p32, np.ones((2, 3), np.int32)).dtype == jnp.float32


def test_loss_is_equation_1(data):
    params, X, Y = data
    out = np.asarray(bp.forward(NET, params, X))
    expected = ((out - np.asarray(Y)) ** 2).sum() / (2 * len(X))
    np.testing.assert_allclose(bp.loss(NET, params, X, Y), expected, rtol=1e-14)
    np.testing.assert_allclose(bp.loss(NET, params, X, Y), reference_loss(NET, params, X, Y),
                               rtol=1e-14)
    weights = jnp.array([1.0, 0.0, 2.0, 1.0, 0.0])
    r2 = ((out - np.asarray(Y)) ** 2).sum(1)
    np.testing.assert_allclose(bp.loss(NET, params, X, Y, weights=weights),
                               (r2 * np.asarray(weights)).sum() / (2 * 4.0), rtol=1e-14)


def test_under_jit_and_vmap(data):
    params, X, Y = data
    np.testing.assert_allclose(jax.jit(bp.forward, static_argnums=0)(NET, params, X),
                               bp.forward(NET, params, X), rtol=1e-15)
    per_sample = jax.vmap(lambda x: bp.forward(NET, params, x))(X)
    np.testing.assert_allclose(per_sample, bp.forward(NET, params, X), rtol=1e-14)
    losses = jax.vmap(lambda x, y: bp.loss(NET, params, x, y))(X, Y)
    np.testing.assert_allclose(losses.mean(), bp.loss(NET, params, X, Y), rtol=1e-14)


def test_structural_zero_is_ignored_even_if_stored_nonzero():
    net = bp.Network(2, [bp.Layer(2, "tanh", adjacency=[[1, 0], [0, 1]]),
                         bp.Layer(1, "identity", bias=False)])
    params = random_params(net, 0)
    X = jnp.ones((1, 2))
    dirty = (params[0].at[1, 1].set(5.0), params[1].at[0, 0].set(np.nan))
    np.testing.assert_array_equal(bp.forward(net, dirty, X), bp.forward(net, params, X))


# a^l is formed as [φ_0 | φ_in] w (homogenised input, φ_0 = 1, or 0 without bias) when
# 4 N <= N_l, else as φ_in w[1:] + w[0]; small layers (<= 64 weights) take a broadcast sum.
TWO_FORMS = bp.Network(3, [bp.Layer(12, "tanh"),
                           bp.Layer(8, "logistic", inputs=(0, 1), bias=False),
                           bp.Layer(2, "identity")])


@pytest.mark.parametrize("N", [1, 2, 3, 5])  # N = 1, 2: homogenised in layers 1 and 2
def test_both_forms_of_the_activation_match_the_reference(N):
    from bpjax.forward import homogeneous, propagate, propagate_split, split
    from bpjax.params import structural

    assert [homogeneous(layer, N) for layer in TWO_FORMS.layers] == [N <= 3, N <= 2, False]
    params = random_params(TWO_FORMS, 3)
    params = (params[0], params[1].at[0].set(7.0), params[2])  # a stored non-zero w_0 of l = 2
    X, _ = random_data(TWO_FORMS, N, 3)
    clean = structural(TWO_FORMS, params)
    np.testing.assert_allclose(bp.forward(TWO_FORMS, params, X),
                               reference_forward(TWO_FORMS, clean, X), rtol=1e-13)
    tr, tr_split = propagate(TWO_FORMS, clean, X), propagate_split(TWO_FORMS, *split(clean), X)
    for a, b in zip(tr.a[1:], tr_split.a[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    # φ_0 = 0 for the layer without bias: a stored w_0 takes no part, even unmasked
    np.testing.assert_array_equal(propagate(TWO_FORMS, params, X).a[2], tr.a[2])
