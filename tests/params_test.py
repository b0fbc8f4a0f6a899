"""init: shapes, dtypes, seeds, documented scales, structural zeros; check_params errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp

NET = bp.Network(64, [bp.Layer(400, "tanh"), bp.Layer(300, "relu"), bp.Layer(1, "identity")])


def test_shapes_dtype_and_seed():
    p = bp.init(NET, jax.random.key(0))
    assert [w.shape for w in p] == [(65, 400), (401, 300), (301, 1)]
    assert all(w.dtype == jnp.float64 for w in p)  # x64 is on in the tests
    p32 = bp.init(NET, jax.random.key(0), dtype=jnp.float32)
    assert all(w.dtype == jnp.float32 for w in p32)
    again = bp.init(NET, jax.random.key(0))
    assert all(np.array_equal(a, b) for a, b in zip(p, again))
    other = bp.init(NET, jax.random.key(1))
    assert not np.array_equal(p[0], other[0])


def test_documented_scales_glorot_and_he():
    p = bp.init(NET, jax.random.key(0))
    np.testing.assert_array_equal(p[0][0], 0)  # biases start at 0
    # tanh: Glorot σ² = 2 / (fan_in + fan_out); relu: He σ² = 2 / fan_in
    np.testing.assert_allclose(np.var(p[0][1:]), 2 / (64 + 400), rtol=0.05)
    np.testing.assert_allclose(np.var(p[1][1:]), 2 / 400, rtol=0.05)


def test_structural_zeros_start_at_zero():
    adj = np.eye(3, dtype=bool)
    net = bp.Network(3, [bp.Layer(3, "tanh", adjacency=adj), bp.Layer(1, bias=False)])
    p = bp.init(net, jax.random.key(0))
    assert np.all(np.asarray(p[0])[1:][~adj] == 0) and np.all(np.asarray(p[0])[1:][adj] != 0)
    assert float(p[1][0, 0]) == 0


@pytest.mark.parametrize("params, error, message", [
    (lambda p: p[:2], ValueError, r"params has 2 layers, expected L = 3"),
    (lambda p: (p[0], p[1].T, p[2]), ValueError,
     r"params\[1\] \(layer 2\) has shape \(300, 401\), expected \(1 \+ fan_in, N_l\) = \(401, 300\)"),
    (lambda p: p[0], TypeError, r"params must be a tuple of 3 arrays"),
    (lambda p: (p[0], p[1], p[2].astype(jnp.int32)), TypeError, r"must be floating"),
    (lambda p: (p[0], p[1], None), TypeError, r"params\[2\] \(layer 3\) must be an array"),
])
def test_check_params_errors(params, error, message):
    p = bp.init(NET, jax.random.key(0))
    with pytest.raises(error, match=message):
        bp.check_params(NET, params(p))
    with pytest.raises(error, match=message):
        bp.forward(NET, params(p), jnp.zeros((2, 64)))


def test_init_errors():
    with pytest.raises(TypeError, match="dtype must be floating"):
        bp.init(NET, jax.random.key(0), dtype=jnp.int32)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        bp.init(NET, jax.random.key(0), scale=0.0)
    with pytest.raises(TypeError, match="expects a bpjax.Network"):
        bp.init("net", jax.random.key(0))


SMALL = bp.Network(2, [bp.Layer(3, "tanh"), bp.Layer(1, "identity")])


@pytest.mark.parametrize("key, error, message", [
    (0, TypeError, r"key must be a key from jax.random.key\(seed\).*got int: 0; "
                   r"e.g. jax.random.key\(0\)"),
    (None, TypeError, r"key must be a key from jax.random.key\(seed\).*got NoneType"),
    ("0", TypeError, r"key must be a key .* got str"),
    (np.zeros(3, np.uint32), TypeError, r"key must be a key .* got uint32 array of shape \(3,\)"),
    (np.zeros(2, np.float32), TypeError, r"key must be a key .* got float32 array"),
    (jax.random.split(jax.random.key(0), 3), ValueError,
     r"key must be one key, got 3 \(shape \(3,\)\): for many models, "
     r"jax.vmap\(lambda k: bp.init\(net, k\)\)\(keys\)"),
])
def test_bad_keys_are_named(key, error, message):
    with pytest.raises(error, match=message):
        bp.init(SMALL, key)


@pytest.mark.parametrize("scale, error, message", [
    ("1", TypeError, r"init scale must be a number, got str: '1'"),
    (None, TypeError, r"init scale must be a number, got NoneType"),
    (1j, TypeError, r"init scale must be a number, got complex"),
    (-1.0, ValueError, r"init scale must be a finite number > 0, got -1.0"),
    (float("inf"), ValueError, r"init scale must be a finite number > 0, got inf"),
])
def test_bad_scales_are_named(scale, error, message):
    with pytest.raises(error, match=message):
        bp.init(SMALL, jax.random.key(0), scale=scale)


def test_bad_dtypes_are_named():
    with pytest.raises(TypeError, match=r"init dtype must be a floating dtype, got 'float99'"):
        bp.init(SMALL, jax.random.key(0), dtype="float99")
    with pytest.raises(TypeError, match=r"init dtype must be floating, got complex64"):
        bp.init(SMALL, jax.random.key(0), dtype=jnp.complex64)


def test_old_style_keys_give_the_same_weights_as_new_ones():
    new = bp.init(SMALL, jax.random.key(3))
    old = bp.init(SMALL, jax.random.PRNGKey(3))
    for a, b in zip(new, old):
        np.testing.assert_array_equal(a, b)
    many = jax.vmap(lambda k: bp.init(SMALL, k))(jax.random.split(jax.random.PRNGKey(3), 2))
    assert many[0].shape == (2, 3, 3)


# --- the draw: the numbers of a layer-by-layer draw, from few compiled kernels ----------------


def _layer_by_layer(net, key, dtype, scale=1.0):
    """The definition (and bpjax's draw before it was compiled as one): layer l's weights are
    jax.random.normal(split(key, L)[l-1], shape) σ, biases and structural zeros 0."""
    keys = jax.random.split(key, net.depth)
    out = []
    for l in range(1, net.depth + 1):
        layer, mask = net.layer(l), net.structure(l)
        fan_in = np.maximum(mask[1:].sum(axis=0), 1)
        he = np.array([a.init == "he" for a in layer.activations])
        sigma = scale * np.sqrt(np.where(he, 2.0 / fan_in, 2.0 / (fan_in + layer.size)))
        w = jax.random.normal(keys[l - 1], mask.shape, dtype) * sigma.astype(dtype)
        out.append(jnp.where(mask, w.at[0].set(0), 0).astype(dtype))
    return out


DRAWN = [
    NET,  # sizes close together: one joint draw
    bp.Network(300, [bp.Layer(3000, "relu"), bp.Layer(1), bp.Layer(2), bp.Layer(3)]),  # apart
    bp.Network(3, [bp.Layer(3, "tanh", adjacency=np.eye(3, dtype=bool)),
                   bp.Layer(2, ("relu", "tanh"), inputs=(0, 1)), bp.Layer(1, bias=False)]),
]


@pytest.mark.parametrize("net", DRAWN, ids=["close", "apart", "dag"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
def test_the_weights_are_those_of_a_draw_layer_by_layer(net, dtype):
    key = jax.random.key(5)
    for got, want in zip(bp.init(net, key, dtype=dtype, scale=0.7),
                         _layer_by_layer(net, key, dtype, 0.7)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got, np.float64), np.asarray(want, np.float64))
    keys = jax.random.split(jax.random.key(6), 3)  # and under vmap, as a sweep draws them
    many = jax.vmap(lambda k: bp.init(net, k, dtype=dtype))(keys)
    want = jax.vmap(lambda k: tuple(_layer_by_layer(net, k, dtype)))(keys)
    for got, w in zip(many, want):
        np.testing.assert_array_equal(np.asarray(got, np.float64), np.asarray(w, np.float64))


def test_networks_of_one_depth_and_size_class_share_the_compiled_draw():
    from training_test import count_compiles

    a = bp.Network(9, [bp.Layer(10 + i, "tanh") for i in range(4)])
    b = bp.Network(8, [bp.Layer(12 - i, "relu") for i in range(4)])  # other sizes, same bucket
    bp.init(a, jax.random.key(0))
    with count_compiles() as compiles:
        bp.init(b, jax.random.key(1))
    assert compiles == []
