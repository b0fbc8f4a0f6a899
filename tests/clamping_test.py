"""frozen_mask and clamp: the paper's (l, j, k) triples, in its numbering, and bad triples."""

import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from conftest import random_params

# Figure 2 of the paper; layer 2 has no bias, so w^2_01 does not exist.
QUAD = bp.Network(2, [bp.Layer(2, ("identity", "square")), bp.Layer(1, "identity", bias=False)])
DAG = bp.Network(2, [bp.Layer(3, "tanh", adjacency=[[1, 0, 1], [1, 1, 0]]),
                     bp.Layer(1, "identity", inputs=(0, 1))])


def test_frozen_mask_uses_the_papers_numbering():
    # w^1_02: the bias (j = 0) of neuron 2 of layer 1 -> params[0][0, 1]
    # w^2_11, w^2_21: inputs 1 and 2 of the output neuron -> params[1][1, 0], params[1][2, 0]
    frozen = bp.frozen_mask(QUAD, [(1, 0, 2), (2, 1, 1), (2, 2, 1)])
    expected0 = np.zeros((3, 2), bool)
    expected0[0, 1] = True
    expected1 = np.zeros((3, 1), bool)
    expected1[1:, 0] = True
    np.testing.assert_array_equal(frozen[0], expected0)
    np.testing.assert_array_equal(frozen[1], expected1)
    assert all(m.dtype == jnp.bool_ for m in frozen)
    assert [m.shape for m in bp.frozen_mask(QUAD)] == [(3, 2), (3, 1)]
    assert not any(np.any(m) for m in bp.frozen_mask(QUAD))


def test_clamp_sets_values_and_returns_the_mask():
    params = random_params(QUAD, 0)
    new, frozen = bp.clamp(QUAD, params, {(1, 0, 2): 0.0, (2, 1, 1): 1.0, (2, 2, 1): 1.0})
    assert float(new[0][0, 1]) == 0.0 and float(new[1][1, 0]) == 1.0
    assert float(new[1][2, 0]) == 1.0
    for w, w0, m in zip(new, params, frozen):
        np.testing.assert_array_equal(np.asarray(w)[~np.asarray(m)], np.asarray(w0)[~np.asarray(m)])
    np.testing.assert_array_equal(frozen[1][:, 0], [False, True, True])


BAD = [
    (QUAD, [(0, 1, 1)], ValueError, r"w\^0_\(1,1\): layer l must be in 1..L = 1..2, got l = 0"),
    (QUAD, [(3, 1, 1)], ValueError, r"layer l must be in 1..L = 1..2, got l = 3"),
    (QUAD, [(1, 3, 1)], ValueError, r"w\^1_\(3,1\): input j must be in 0..2 \(0 is the bias\)"),
    (QUAD, [(1, 1, 0)], ValueError,
     r"neuron k must be in 1..N_1 = 1..2 \(the paper counts neurons from 1\), got k = 0"),
    (QUAD, [(1, 1, 3)], ValueError, r"neuron k must be in 1..N_1 = 1..2"),
    (QUAD, [(2, 0, 1)], ValueError,
     r"w\^2_\(0,1\) does not exist \(a structural zero: the layer has bias=False\)"),
    (DAG, [(1, 1, 2)], ValueError, r"w\^1_\(1,2\) does not exist .*adjacency leaves it out"),
    (QUAD, (1, 0, 2), TypeError, r"weights must be a list of triples, e.g. \[\(1, 0, 2\)\]"),
    (QUAD, [(1, 0)], TypeError, r"a weight is named by a triple of ints \(l, j, k\)"),
    (QUAD, [(1.0, 0, 1)], TypeError, r"a weight is named by a triple of ints"),
    ("net", [], TypeError, r"frozen_mask expects a bpjax.Network, got str"),
]


@pytest.mark.parametrize("net, weights, error, message", BAD)
def test_bad_triples(net, weights, error, message):
    with pytest.raises(error, match=message):
        bp.frozen_mask(net, weights)


def test_bad_clamp_values():
    params = random_params(QUAD, 0)
    with pytest.raises(TypeError, match=r"values must be a mapping \{\(l, j, k\): value\}"):
        bp.clamp(QUAD, params, [(1, 0, 2)])
    with pytest.raises(ValueError, match=r"w\^1_\(0,2\) must be set to a finite number, got nan"):
        bp.clamp(QUAD, params, {(1, 0, 2): float("nan")})
    with pytest.raises(ValueError, match=r"params has 1 layers"):
        bp.clamp(QUAD, params[:1], {(1, 0, 2): 0.0})


@pytest.mark.parametrize("dtype, value, error, message", [
    (jnp.float32, 1e40, ValueError, r"w\^1_\(0,1\) = 1e\+40 overflows float32 \(largest finite "
                                    r"3.4\d*e\+38\)"),
    (jnp.float32, -1e39, ValueError, r"overflows float32"),
    (jnp.bfloat16, 1e39, ValueError, r"overflows bfloat16"),
    (jnp.float16, 70000.0, ValueError, r"w\^1_\(0,1\) = 70000.0 overflows float16 \(largest "
                                       r"finite 65504"),
    (jnp.float64, float("inf"), ValueError, r"must be set to a finite number, got inf"),
    (jnp.float64, "x", TypeError, r"w\^1_\(0,1\) must be set to a real number, got str: 'x'"),
    (jnp.float64, None, TypeError, r"must be set to a real number, got NoneType"),
    (jnp.float64, 1 + 2j, TypeError, r"must be set to a real number, got complex"),
    (jnp.float64, True, TypeError, r"must be set to a real number, got bool"),
    (jnp.float64, [1.0], TypeError, r"must be set to a real number, got list"),
    (jnp.float64, np.ones(2), TypeError, r"must be set to a real number, got ndarray"),
])
def test_clamp_values_that_are_not_numbers_of_the_params_dtype(dtype, value, error, message):
    params = tuple(w.astype(dtype) for w in random_params(QUAD, 0))
    with pytest.raises(error, match=message):
        bp.clamp(QUAD, params, {(1, 0, 1): value})


def test_clamp_accepts_numbers_of_every_kind_that_fit():
    params = tuple(w.astype(jnp.float32) for w in random_params(QUAD, 0))
    for value in (3, 2.5, np.float64(1e38), np.int64(-4), jnp.array(0.25), np.float32(7)):
        new, _ = bp.clamp(QUAD, params, {(1, 0, 1): value})
        assert new[0].dtype == jnp.float32 and float(new[0][0, 0]) == np.float32(value)


@pytest.mark.parametrize("weights, message", [
    (None, r"weights must be a list of triples \(l, j, k\), got NoneType"),
    ("abc", r"weights must be a list of triples \(l, j, k\), got str"),
    (5, r"weights must be a list of triples \(l, j, k\), got int"),
    ({(1, 0, 1): False}, r"got a mapping: to set values and clamp, use bp.clamp"),
])
def test_weights_that_are_not_a_list_of_triples(weights, message):
    with pytest.raises(TypeError, match=message):
        bp.frozen_mask(QUAD, weights)
