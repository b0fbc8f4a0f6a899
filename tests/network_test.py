"""Network and Layer: structure, hashing, repr and validation errors."""

import jax
import numpy as np
import pytest

import bpjax as bp


def test_sizes_depth_and_param_count(quadratic_net):
    assert quadratic_net.sizes == (2, 2, 1)
    assert quadratic_net.depth == 2
    assert quadratic_net.shapes == ((3, 2), (3, 1))
    # w^1: 3×2 = 6; w^2: two weights, no bias (equation (6))
    assert quadratic_net.num_params == 8


def test_frozen_hashable_and_a_static_jit_argument(quadratic_net):
    same = bp.Network(2, [bp.Layer(2, ["identity", "square"]), bp.Layer(1, "identity",
                                                                        bias=False)])
    assert same == quadratic_net and hash(same) == hash(quadratic_net)
    with pytest.raises(AttributeError):
        quadratic_net.inputs = 3
    f = jax.jit(lambda net, x: x * net.depth, static_argnums=0)
    assert float(f(quadratic_net, 2.0)) == 4.0


def test_repr_and_summary_are_readable(quadratic_net):
    r = repr(quadratic_net)
    assert "Layer(2, ('identity', 'square'))" in r and "bias=False" in r
    s = quadratic_net.summary()
    assert "identity×1, square×1" in s and "8 weights" in s


def test_dag_structure():
    net = bp.Network(3, [bp.Layer(4), bp.Layer(2, inputs=(0, 1)), bp.Layer(1, inputs=(1, 2))])
    assert net.sources(2) == (0, 1) and net.fan_in(2) == 7
    assert net.consumers(1) == (2, 3) and net.consumers(0) == (1, 2)
    assert net.shapes == ((4, 4), (8, 2), (7, 1))
    assert [rows for _, rows in net.blocks(3)] == [slice(1, 5), slice(5, 7)]
    assert not net.is_feedforward


def test_fan_out_and_input_to_output_structure():
    net = bp.Network(2, [bp.Layer(3), bp.Layer(2), bp.Layer(2, inputs=(1,)),
                         bp.Layer(1, inputs=(0, 1, 2, 3))])
    assert net.consumers(1) == (2, 3, 4) and net.consumers(0) == (1, 4)
    assert net.fan_in(4) == 2 + 3 + 2 + 2 and net.shapes[3] == (10, 1)
    assert [s for s, _ in net.blocks(4)] == [0, 1, 2, 3]
    assert "0,1,2,3" in net.summary()


def test_structure_masks():
    adj = np.array([[1, 0], [1, 1], [0, 1]], bool)
    net = bp.Network(3, [bp.Layer(2, "tanh", adjacency=adj, bias=False)])
    m = net.structure(1)
    assert m.shape == (4, 2) and not m[0].any()
    np.testing.assert_array_equal(m[1:], adj)
    assert net.num_params == 4 and not net.is_dense(1)


BAD_LAYERS = [
    (dict(size=0), ValueError, r"size must be an int >= 1, got 0"),
    (dict(size=2.5), ValueError, r"size must be an int >= 1, got 2.5"),
    (dict(size=True), ValueError, r"size must be an int >= 1"),
    (dict(size=3, activation=("tanh", "relu")), ValueError,
     r"size 3 got 2 per-neuron activations"),
    (dict(size=2, activation="nope"), ValueError, r"unknown activation 'nope'; known"),
    (dict(size=2, inputs=()), ValueError, r"inputs is empty"),
    (dict(size=2, inputs=(-1,)), ValueError, r"layer indices >= 0"),
    (dict(size=2, inputs=(0, 0)), ValueError, r"names a layer twice"),
    (dict(size=2, adjacency=np.ones((3, 4), bool)), ValueError, r"shape \(fan_in, 2\)"),
    (dict(size=2, bias="yes"), TypeError, r"bias must be True or False"),
    (dict(size=2, inputs="01"), TypeError, r"inputs must be a tuple of layer indices, got '01'"),
    (dict(size=2, inputs=(0, 1.5)), ValueError, r"layer indices >= 0 \(0 is the input x\), got 1.5"),
    (dict(size=2, adjacency=np.ones(2, bool)), ValueError,
     r"adjacency must have shape \(fan_in, 2\), got shape \(2,\)"),
    (dict(size=2, adjacency=[[1, 0], [1]]), ValueError,
     r"adjacency must be a rectangular \(fan_in, 2\) boolean array"),
    (dict(size=2, adjacency=[[1, 0.5], [1, 1]]), ValueError, r"adjacency must hold booleans"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD_LAYERS)
def test_bad_layer(kwargs, error, message):
    with pytest.raises(error, match=message):
        bp.Layer(**kwargs)


BAD_NETWORKS = [
    (lambda: bp.Network(0, [bp.Layer(1)]), ValueError, r"inputs \(D\) must be an int >= 1"),
    (lambda: bp.Network(2, []), ValueError, r"at least one layer"),
    (lambda: bp.Network(2, bp.Layer(1)), TypeError, r"sequence of Layer"),
    (lambda: bp.Network(2, [bp.Layer(2), "x"]), TypeError, r"layer 2 must be a bpjax.Layer"),
    (lambda: bp.Network(2, [bp.Layer(2, inputs=(1,))]), ValueError,
     r"layer 1 reads layer 1 \(itself\).*must be a DAG"),
    (lambda: bp.Network(2, [bp.Layer(2), bp.Layer(1, inputs=(0, 3))]), ValueError,
     r"layer 2 reads layer 3, which is out of range: this network has layers 0..2"),
    (lambda: bp.Network(2, [bp.Layer(2, adjacency=np.ones((3, 2), bool))]), ValueError,
     r"adjacency must have shape \(fan_in, N_l\) = \(2, 2\), got \(3, 2\)"),
    (lambda: bp.Network(2, [bp.Layer(2, adjacency=[[1, 0], [1, 0]])]), ValueError,
     r"leaves neuron \(l=1, k=2\) with no inputs"),
    # the list for DAGs: a cycle (itself or a later layer), an index out of range, an
    # adjacency of the wrong shape or leaving a neuron without inputs, on deeper networks
    (lambda: bp.Network(2, [bp.Layer(2), bp.Layer(2, inputs=(0, 2)), bp.Layer(1)]), ValueError,
     r"layer 2 reads layer 2 \(itself\): inputs must name earlier layers 0..1 \(0 is the "
     r"input x\); a network must be a DAG"),
    (lambda: bp.Network(2, [bp.Layer(2, inputs=(0,)), bp.Layer(2, inputs=(3,)), bp.Layer(1)]),
     ValueError, r"layer 2 reads layer 3 \(a later layer\).*must be a DAG"),
    (lambda: bp.Network(2, [bp.Layer(2), bp.Layer(1, inputs=(0, 5))]), ValueError,
     r"layer 2 reads layer 5, which is out of range: this network has layers 0..2 \(0 is the "
     r"input x\)"),
    (lambda: bp.Network(2, [bp.Layer(3), bp.Layer(1, inputs=(0, 1), adjacency=np.ones((3, 1)))]),
     ValueError, r"layer 2 adjacency must have shape \(fan_in, N_l\) = \(5, 1\), got \(3, 1\)"),
    (lambda: bp.Network(2, [bp.Layer(3), bp.Layer(2, inputs=(0, 1), bias=False,
                                                  adjacency=[[1, 0]] * 4 + [[0, 0]])]),
     ValueError, r"layer 2 adjacency leaves neuron \(l=2, k=2\) with no inputs: column 1 is "
                 r"all False"),
]


@pytest.mark.parametrize("build, error, message", BAD_NETWORKS)
def test_bad_network(build, error, message):
    with pytest.raises(error, match=message):
        build()
