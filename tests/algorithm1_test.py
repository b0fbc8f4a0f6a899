"""The per-sample step's layouts (bpjax.algorithm1): the plan's rules, worked by hand, and
Algorithm 1 under every layout against an independent loop of jax.grad steps.

Every layout computes the same numbers up to rounding, so each case is checked to 1e-10 in
float64 (and to float32's precision in float32) against ``w ← w − (η/N) ∂L/∂w(x_i)`` with
``∂L/∂w(x_i)`` from ``jax.grad`` of the independent reference forward pass of conftest.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from bpjax import algorithm1
from bpjax.algorithm1 import Plan, layer_plan, network_plan
from conftest import random_data, random_params, reference_grad

# --- the plan's rules, case by case ------------------------------------------------------------


@pytest.mark.parametrize("fan_in, size, itemsize, plan", [
    # 200 → 10: the update loop would run over 10 entries: kept (10, 200); the forward product
    # S @ φ sums 200 columns (a product call); equation (3), δ @ S, sums 10 rows of a 8 KB S.
    (200, 10, 4, Plan(transposed=True, forward_sum=False, backward_sum=True)),
    # 100 → 200: long minor axis, both products are calls.
    (100, 200, 4, Plan()),
    # 8 → 32: too narrow to transpose (fan_in < 40); φ @ W sums 8 rows of a 1 KB W; W @ δ
    # sums 32 columns (> 8): a call.
    (8, 32, 4, Plan(forward_sum=True)),
    # 512 → 3: kept (3, 512); S @ φ sums 512 columns: a call; δ @ S sums 3 rows (6 KB).
    (512, 3, 4, Plan(transposed=True, backward_sum=True)),
    # the same in float64: 3 × 512 × 8 = 12 KB, still within L1.
    (512, 3, 8, Plan(transposed=True, backward_sum=True)),
    # 16 → 512 in float64: 64 KB is beyond L1: φ @ W is a call.
    (16, 512, 8, Plan()),
    # 16 → 512 in float32: 32 KB, 16 rows: a sum.
    (16, 512, 4, Plan(forward_sum=True)),
    # 64 → 5: kept (5, 64); S @ φ sums 64 columns; δ @ S sums 5 rows.
    (64, 5, 8, Plan(transposed=True, backward_sum=True)),
    # 30 → 5: fan_in < 40, not transposed; φ @ W: 5 outputs (≤ 8): a sum; W @ δ: rows of
    # 5 × 4 bytes (≤ 32): a sum.
    (30, 5, 4, Plan(forward_sum=True, backward_sum=True)),
    # 30 → 8: rows of 32 bytes in float32 (a sum), of 64 in float64 (a call).
    (30, 8, 4, Plan(forward_sum=True, backward_sum=True)),
    (30, 8, 8, Plan(forward_sum=True)),
])
def test_layer_plan(fan_in, size, itemsize, plan):
    assert layer_plan(fan_in, size, itemsize) == plan


def test_network_plan_defers_large_unmasked_layers_only():
    net = bp.Network(64, [bp.Layer(256, "tanh"), bp.Layer(256, "tanh"), bp.Layer(1)])
    # 64 × 256 = 16384 < 32768 ≤ 256 × 256
    assert [p.deferred for p in network_plan(net, 4)] == [False, True, False]
    masks = (None, jnp.ones((257, 256), bool), None)  # a clamp in layer 2
    assert [p.deferred for p in network_plan(net, 4, masks)] == [False, False, False]


# --- Algorithm 1 under every layout -------------------------------------------------------------


def reference_algorithm1(net, params, X, Y, eta, epochs=1, frozen=None):
    """Each sample in order: w ← w − (η/N) ∂L/∂w(x_i), by jax.grad of the reference loss."""
    N = X.shape[0]
    W = params
    for _ in range(epochs):
        for i in range(N):
            g = reference_grad(net, W, X[i:i + 1], Y[i:i + 1])  # ∂L/∂w(x_i), no 1/N
            W = tuple(w - eta / N * gw if m is None else jnp.where(m, w, w - eta / N * gw)
                      for w, gw, m in zip(W, g, frozen or (None,) * net.depth))
    return W


def assert_algorithm1(net, N=23, seed=0, eta=0.9, epochs=1, frozen=None, dtype=jnp.float64):
    params = random_params(net, seed, dtype)
    X, Y = random_data(net, N, seed, dtype)
    result = bp.fit(net, params, X, Y, learning_rate=eta, epochs=epochs, frozen=frozen)
    f64 = lambda t: tuple(jnp.asarray(v, jnp.float64) for v in t)
    ref = reference_algorithm1(net, f64(params), *f64((X, Y)), eta, epochs, frozen)
    rtol = 1e-10 if dtype == jnp.float64 else 2e-5
    for l, (w, r) in enumerate(zip(result.params, ref), start=1):
        assert w.dtype == dtype
        scale = float(np.abs(np.asarray(r)).max())
        np.testing.assert_allclose(np.asarray(w, np.float64), r, rtol=rtol, atol=rtol * scale,
                                   err_msg=f"layer {l}")
        assert np.all(np.asarray(w)[~net.structure(l)] == 0)  # structural zeros stay 0
    return result, params


# 3 → 48 → (tanh, identity, logistic) per neuron: layer 1 a broadcast sum (3 rows), layer 2
# kept transposed (3, 48), equation (3) through it a sum over its 3 rows.
NARROW = bp.Network(3, [bp.Layer(48, "tanh"), bp.Layer(3, ("tanh", "identity", "logistic"))])


def test_plans_of_the_networks_below_cover_every_layout():
    assert network_plan(NARROW, 8) == (Plan(forward_sum=True),
                                       Plan(transposed=True, backward_sum=True))
    assert network_plan(SKIP, 8)[2] == Plan(transposed=True, backward_sum=True)
    assert network_plan(WIDE_OUT, 8)[1] == Plan(transposed=True, backward_sum=True)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_transposed_layers_and_broadcast_sums(dtype):
    assert_algorithm1(NARROW, dtype=dtype)


# A DAG whose output layer reads x and layer 2 (fan_in 4 + 44 ≥ 40: kept transposed), no bias
# in layer 2, an adjacency mask on the transposed layer.
SKIP = bp.Network(4, [
    bp.Layer(6, "tanh"),
    bp.Layer(44, ("relu",) * 20 + ("softplus",) * 24, bias=False),
    bp.Layer(2, "identity", inputs=(0, 2),
             adjacency=np.arange(96).reshape(48, 2) % 5 != 0),
])


def test_dag_bias_false_and_adjacency_in_a_transposed_layer():
    assert_algorithm1(SKIP, epochs=2)


def test_clamped_weights_of_a_transposed_layer_stay_bit_identical():
    frozen = bp.frozen_mask(NARROW, [(2, 5, 1), (2, 0, 3), (1, 2, 7)])
    result, params = assert_algorithm1(NARROW, seed=1, frozen=frozen)
    for w, w0, m in zip(result.params, params, frozen):
        np.testing.assert_array_equal(np.asarray(w)[np.asarray(m)], np.asarray(w0)[np.asarray(m)])


# Deferred layers, forced by a threshold of 1 weight: every unmasked layer, the transposed
# output layer (64 → 2) included, keeps its updates as factors over blocks of 16 samples.
# N = 37: two blocks and a tail of 5 samples stepped directly.
WIDE_OUT = bp.Network(5, [bp.Layer(64, ("logistic",) * 32 + ("tanh",) * 32),
                          bp.Layer(2, "identity")])
DEFER_DAG = bp.Network(6, [bp.Layer(40, "tanh"), bp.Layer(41, "tanh"),
                           bp.Layer(3, "identity", inputs=(1, 2))])


@pytest.mark.parametrize("net", [WIDE_OUT, DEFER_DAG], ids=["mlp", "dag"])
def test_deferred_layers_are_still_algorithm_1(monkeypatch, net):
    monkeypatch.setattr(algorithm1, "_DEFER_MIN", 1)
    assert all(p.deferred for p in network_plan(net, 8))
    assert network_plan(net, 8)[-1].transposed
    assert_algorithm1(net, N=37, eta=1.3, epochs=2)


def test_deferred_layers_with_a_clamp(monkeypatch):
    # the clamped layer steps directly, the other one is deferred; within one loop
    monkeypatch.setattr(algorithm1, "_DEFER_MIN", 1)
    from bpjax.arguments import prepare

    frozen = bp.frozen_mask(DEFER_DAG, [(2, 3, 4)])
    params = random_params(DEFER_DAG, 2)
    X, Y = random_data(DEFER_DAG, 37, 2)
    prep, _ = prepare(DEFER_DAG, params, X, Y, learning_rate=1.0, epochs=1, batch_size=1,
                      optimizer=None, frozen=frozen, opt_state=None, shuffle=None,
                      validation=None, tol=None, patience=None, min_delta=0.0)
    masks = prep.data.trainable  # None for the layers without a clamp
    assert [m is None for m in masks] == [True, False, True]
    assert [p.deferred for p in network_plan(DEFER_DAG, 8, masks)] == [True, False, True]
    assert_algorithm1(DEFER_DAG, N=37, seed=2, frozen=frozen)


def test_the_last_sample_is_not_fetched_twice():
    # the loop fetches the next sample one step ahead; N = 1 and N = 2 step each sample once
    net = bp.Network(2, [bp.Layer(3, "tanh"), bp.Layer(1, "identity")])
    for N in (1, 2):
        assert_algorithm1(net, N=N, seed=N, epochs=3)


def test_float32_epoch_keeps_float32(monkeypatch):
    monkeypatch.setattr(algorithm1, "_DEFER_MIN", 1)
    assert_algorithm1(DEFER_DAG, N=37, seed=3, dtype=jnp.float32)
    assert jax.config.jax_enable_x64  # the float64 reference needs it; the library never sets it


def test_vector_width_follows_the_widest_layer():
    from bpjax.algorithm1 import vector_width

    assert vector_width(bp.Network(300, [bp.Layer(255, "tanh"), bp.Layer(1)])) == 256
    assert vector_width(bp.Network(3, [bp.Layer(256, "tanh"), bp.Layer(1)])) == 512


def test_fit_compiles_a_narrow_network_for_256_bit_vectors():
    from bpjax import training

    if jax.default_backend() != "cpu":
        pytest.skip("the per-sample loop's options are XLA:CPU's")
    assert_algorithm1(NARROW, N=3, seed=4)
    assert (("xla_cpu_prefer_vector_width", 256),) in training._loop_sequential_jit.jits


def test_kernels_estimate_by_hand():
    from bpjax.algorithm1 import _kernels

    net = bp.Network(8, [bp.Layer(32, "relu"), bp.Layer(1)])
    # layer 1: update + a sum over 8 rows (1); layer 2: update + a sum over 32 rows (1) +
    # equation (3) as a sum (0); fetch and count (2)
    assert _kernels(net, network_plan(net, 4)) == 6
    net = bp.Network(3, [bp.Layer(512, "tanh"), bp.Layer(1)])
    # layer 2 kept transposed (1, 512): its forward product is a call (3)
    assert _kernels(net, network_plan(net, 4)) == 8
