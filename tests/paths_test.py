"""Chain-rule paths: each path's factors, and the paths summing to ∂φ^L_k/∂w^m_pr."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax as bp
from conftest import DAG_NETS, networks, random_params, reference_forward

FIG2 = bp.Network(2, [bp.Layer(2, ("identity", "square")), bp.Layer(1, "identity", bias=False)])
# w^1: rows (bias, x[1], x[2]) × neurons (1, 2);  w^2: rows (bias, φ^1_1, φ^1_2), no bias
FIG2_PARAMS = (jnp.array([[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]]),
               jnp.array([[0.0], [0.7], [-0.8]]))
FIG2_X = jnp.array([1.5, -0.3])


@jax.jit(static_argnums=0)
def _jac(net, params, x):
    return jax.jacrev(lambda p: reference_forward(net, p, x[None])[0])(params)


def _jacobian(net, params, x):
    """∂φ^L_k/∂w^m_pr by jax.grad of the independent reference: jac[m-1][k-1, p, r-1]."""
    return [np.asarray(j) for j in _jac(net, params, x)]


def test_the_green_path_of_figure_2():
    # The paper: ∂φ_θ/∂w^1_21 = ∂φ^2_1/∂a^2_1 · ∂a^2_1/∂φ^1_1 · ∂φ^1_1/∂a^1_1 · ∂a^1_1/∂w^1_21
    #                         = 1 · w^2_11 · 1 · x[2]  = 1 · 0.7 · 1 · (−0.3) = −0.21
    chain = bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, weight=(1, 2, 1))
    assert chain.weight == (1, 2, 1) and chain.output == (2, 1) and chain.exists
    (path,) = chain.paths
    assert path.neurons == ((1, 1), (2, 1))
    assert path.symbols() == "∂φ^2_1/∂a^2_1 · ∂a^2_1/∂φ^1_1 · ∂φ^1_1/∂a^1_1 · ∂a^1_1/∂w^1_(2,1)"
    assert path.expression() == "1 · w^2_(1,1) · 1 · x[2]"
    np.testing.assert_allclose([f.value for f in path.factors], [1, 0.7, 1, -0.3], rtol=1e-15)
    np.testing.assert_allclose(chain.value, -0.21, rtol=1e-14)
    text = str(chain)
    assert "∂φ^2_1/∂w^1_(2,1) = sum over 1 path = -0.21" in text
    assert "path 1: w^1_(2,1) → (1,1) → (2,1)" in text and "= 1 · 0.7 · 1 · -0.3" in text


def test_every_weight_of_figure_2_against_equation_6():
    # Equation (6): φ_θ = w^2_11 a^1_1 + w^2_21 (a^1_2)², a^1_k = w^1_0k + w^1_1k x[1] + w^1_2k x[2]
    (w1, w2), x = (np.asarray(w) for w in FIG2_PARAMS), np.asarray(FIG2_X)
    a1 = w1[0] + x @ w1[1:]
    by_hand = {
        (1, 0, 1): w2[1, 0], (1, 1, 1): w2[1, 0] * x[0], (1, 2, 1): w2[1, 0] * x[1],
        (1, 0, 2): 2 * w2[2, 0] * a1[1], (1, 1, 2): 2 * w2[2, 0] * a1[1] * x[0],
        (1, 2, 2): 2 * w2[2, 0] * a1[1] * x[1],
        (2, 1, 1): a1[0], (2, 2, 1): a1[1] ** 2,
    }
    for weight, expected in by_hand.items():
        chain = bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, weight)
        assert len(chain.paths) == 1
        np.testing.assert_allclose(chain.value, expected, rtol=1e-14, err_msg=str(weight))
    # the square neuron's factor is written as Algorithm 2, line 7 writes it: 2 a^l_k
    assert "2·a^1_2" in bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, (1, 1, 2)).paths[0] \
        .expression()
    # no bias in the output layer (equation (6)): a structural zero, no path, exactly 0
    bias = bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, (2, 0, 1))
    assert bias.paths == () and bias.value == 0.0 and not bias.exists
    assert "structural zero" in str(bias)


def test_two_paths_through_a_fan_out_worked_by_hand():
    # D = 1, x = 1. Layer 1: identity, w^1 = (0, 2): a^1 = 2, φ^1 = 2.
    # Layer 2: square, reads layer 1, w^2 = (1, 1): a^2 = 1 + 2 = 3, φ^2 = 9.
    # Layer 3 (output): identity, inputs=(1, 2), w^3 = (0, 0.5, 0.1): reads φ^1 (row 1), φ^2 (row 2).
    # ∂φ^3/∂w^1_11 has two paths, one per way φ^1 reaches the output:
    #   (1,1) → (3,1):         1 · w^3_(1,1) · 1 · x[1]                  = 0.5
    #   (1,1) → (2,1) → (3,1): 1 · w^3_(2,1) · 2·a^2_1 · w^2_(1,1) · 1 · x[1] = 0.1 · 6 = 0.6
    # and indeed φ^3 = w^3_11 w^1_11 x + w^3_21 (w^2_01 + w^2_11 w^1_11 x)² gives 0.5 + 0.6 = 1.1.
    net = bp.Network(1, [bp.Layer(1, "identity"), bp.Layer(1, "square"),
                         bp.Layer(1, "identity", inputs=(1, 2))])
    params = (jnp.array([[0.0], [2.0]]), jnp.array([[1.0], [1.0]]),
              jnp.array([[0.0], [0.5], [0.1]]))
    chain = bp.chain_rule_paths(net, params, jnp.array([1.0]), (1, 1, 1))
    by_route = {p.neurons: p for p in chain.paths}
    assert set(by_route) == {((1, 1), (3, 1)), ((1, 1), (2, 1), (3, 1))}
    short, long = by_route[((1, 1), (3, 1))], by_route[((1, 1), (2, 1), (3, 1))]
    assert short.expression() == "1 · w^3_(1,1) · 1 · x[1]"
    assert long.expression() == "1 · w^3_(2,1) · 2·a^2_1 · w^2_(1,1) · 1 · x[1]"
    np.testing.assert_allclose([short.value, long.value, chain.value], [0.5, 0.6, 1.1],
                               rtol=1e-14)


def _check_all_weights(net, params, x):
    """Every w^m_pr and every output k: Σ paths == jax.grad; no path ⇒ exactly 0."""
    jac = _jacobian(net, params, x)
    L = net.depth
    for m in range(1, L + 1):
        structure = net.structure(m)
        for p in range(structure.shape[0]):
            for r in range(1, net.sizes[m] + 1):
                total = 0
                for k in range(1, net.outputs + 1):
                    chain = bp.chain_rule_paths(net, params, x, (m, p, r), output=k)
                    ref = jac[m - 1][k - 1, p, r - 1]
                    np.testing.assert_allclose(chain.value, ref, rtol=1e-10,
                                               atol=1e-10 * max(1.0, np.abs(jac[m - 1]).max()),
                                               err_msg=f"w^{m}_({p},{r}), k = {k}")
                    assert chain.exists == structure[p, r - 1]
                    if not chain.paths:  # equation (4): w^m_pr is not involved in φ^L_k
                        assert chain.value == 0.0 and ref == 0.0
                    for path in chain.paths:
                        assert path.neurons[0] == (m, r) and path.neurons[-1] == (L, k)
                        assert len(path.factors) == 2 * len(path.neurons)
                        for (s, i), (l, kk) in zip(path.neurons, path.neurons[1:]):
                            assert s in net.sources(l)  # each hop is a connection that exists
                            j = dict(net.blocks(l))[s].start + i - 1
                            assert net.structure(l)[j, kk - 1]
                    assert len(set(path.neurons for path in chain.paths)) == len(chain.paths)
                    total += len(chain.paths)
                assert len(bp.weight_paths(net, (m, p, r))) == total  # output=None: every k


@pytest.mark.parametrize("name", sorted(DAG_NETS))
def test_paths_sum_to_the_derivative_on_explicit_dags(name):
    net = DAG_NETS[name]
    params = random_params(net, 21)
    x = jax.random.normal(jax.random.key(21), (net.inputs,), jnp.float64)
    _check_all_weights(net, params, x)


@settings(max_examples=6)
@given(net=networks(max_depth=3, max_width=3, dag=True, adjacency=True),
       seed=st.integers(0, 2**16))
def test_paths_sum_to_the_derivative_on_random_dags(net, seed):
    params = random_params(net, seed)
    x = jax.random.normal(jax.random.key(seed), (net.inputs,), jnp.float64)
    _check_all_weights(net, params, x)


@pytest.mark.parametrize("name, weight, k", [
    ("fan_out", (1, 1, 2), 1),  # 5 paths, through layers 2, 3 and straight to the output
    ("fan_out", (2, 0, 1), 1),
    ("unsorted_inputs", (1, 2, 3), 2),
    ("unsorted_inputs", (3, 4, 2), 2),  # row 4 of w^3 is x[2]: inputs=(2, 0, 1)
])
def test_paths_agree_with_algorithm_2(name, weight, k):
    net = DAG_NETS[name]
    params = random_params(net, 22)
    x = np.array([0.4, -0.7])
    chain = bp.chain_rule_paths(net, params, x, weight, output=k)
    ref = bp.recursive_dphi_dw(net, params, x, net.depth, k, *weight)
    np.testing.assert_allclose(chain.value, ref, rtol=1e-12, atol=1e-15)
    assert chain.paths


def test_weights_on_no_path():
    # "dead_layer": the output reads only x, so no weight of layer 1 reaches it (equation (4))
    net = DAG_NETS["dead_layer"]
    params = random_params(net, 23)
    for weight in [(1, 0, 1), (1, 2, 3)]:
        chain = bp.chain_rule_paths(net, params, np.ones(2), weight)
        assert chain.paths == () and chain.value == 0.0 and chain.exists
        assert "no path leads from" in str(chain) and "equation (4)" in str(chain)
    # in the output layer, w^L_pr only reaches φ^L_r (k ≠ r: equation (4))
    net = DAG_NETS["x_to_output"]
    assert bp.weight_paths(net, (2, 3, 1), output=2) == ()
    assert bp.weight_paths(net, (2, 3, 1), output=1) == (((2, 1),),)


def test_float32_values():
    p32 = tuple(w.astype(jnp.float32) for w in FIG2_PARAMS)
    chain = bp.chain_rule_paths(FIG2, p32, FIG2_X.astype(jnp.float32), (1, 1, 2))
    ref = bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, (1, 1, 2))
    np.testing.assert_allclose(chain.value, ref.value, rtol=1e-6)


TWO_OUT = DAG_NETS["x_to_output"]

BAD = [
    (lambda: bp.chain_rule_paths("net", FIG2_PARAMS, FIG2_X, (1, 2, 1)), TypeError,
     r"chain_rule_paths expects a bpjax.Network, got str"),
    (lambda: bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, (1, 2)), TypeError,
     r"weight must be a tuple \(m, p, r\) of ints naming w\^m_pr .* got \(1, 2\)"),
    (lambda: bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, (1, 2.0, 1)), TypeError,
     r"weight must be a tuple \(m, p, r\) of ints"),
    (lambda: bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, (3, 0, 1)), ValueError,
     r"weight w\^3_\(0,1\) is not in the network: its layer m must be in 1..2, got 3"),
    (lambda: bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, (1, 3, 1)), ValueError,
     r"weight w\^1_\(3,1\) is not in the network: layer 1 has rows p = 0..2 \(0 the bias\) "
     r"and neurons r = 1..2"),
    (lambda: bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, (1, 1, 0)), ValueError,
     r"weight w\^1_\(1,0\) is not in the network"),
    (lambda: bp.chain_rule_paths(FIG2, FIG2_PARAMS, FIG2_X, (1, 1, 1), output=2), ValueError,
     r"output neuron k must be an int in 1..1 \(counted from 1\), got 2"),
    (lambda: bp.chain_rule_paths(TWO_OUT, random_params(TWO_OUT, 0), np.zeros(3), (1, 1, 1)),
     ValueError, r"this network has d = 2 outputs: pass output=k with k in 1..2"),
    (lambda: bp.chain_rule_paths(FIG2, FIG2_PARAMS, np.zeros((2, 2)), (1, 1, 1)), ValueError,
     r"x must be one input of shape \(D,\) = \(2,\), got shape \(2, 2\)"),
    (lambda: bp.chain_rule_paths(FIG2, FIG2_PARAMS[:1], FIG2_X, (1, 1, 1)), ValueError,
     r"params has 1 layers, expected L = 2"),
    (lambda: bp.weight_paths(FIG2, (0, 1, 1)), ValueError, r"its layer m must be in 1..2"),
    (lambda: bp.weight_paths(FIG2, (1, 1, 1), output=0), ValueError,
     r"output neuron k must be an int in 1..1"),
    (lambda: bp.weight_paths(DAG_NETS["fan_out"], (1, 1, 1), max_paths=2), ValueError,
     r"w\^1_\(1,1\) lies on 5 paths to the output, more than max_paths=2"),
]


@pytest.mark.parametrize("call, error, message", BAD)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()
