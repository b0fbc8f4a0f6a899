"""The hand-written backward pass against jax.grad of an independent reference (float64)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bpjax as bp
from conftest import (
    DAG_NETS,
    assert_close_to_reference,
    networks,
    random_data,
    random_params,
    reference_grad,
    reference_loss,
)


@given(net=networks(), N=st.sampled_from([1, 3]), seed=st.integers(0, 2**16))
def test_backprop_matches_jax_grad_float64(net, N, seed):
    params = random_params(net, seed)
    X, Y = random_data(net, N, seed)
    grads = bp.backprop(net, params, X, Y)
    assert all(g.dtype == jnp.float64 for g in grads)
    assert_close_to_reference(grads, reference_grad(net, params, X, Y), rtol=1e-10)


@given(net=networks(max_depth=3, dag=True, adjacency=True), seed=st.integers(0, 2**16))
def test_backprop_matches_jax_grad_on_dags_with_masks(net, seed):
    params = random_params(net, seed)
    X, Y = random_data(net, 4, seed)
    grads = bp.backprop(net, params, X, Y)
    assert_close_to_reference(grads, reference_grad(net, params, X, Y), rtol=1e-10)
    for l, g in enumerate(grads, start=1):  # structural zeros have a gradient of exactly 0
        assert np.all(np.asarray(g)[~net.structure(l)] == 0)


MIXED = bp.Network(3, [bp.Layer(5, ("tanh", "relu", "logistic", "softplus", "square")),
                       bp.Layer(4, "tanh"), bp.Layer(2, "identity")])


@pytest.fixture
def mixed():
    params = random_params(MIXED, 7)
    X, Y = random_data(MIXED, 6, 7)
    return params, X, Y


def test_value_and_backprop_returns_loss_and_same_grads(mixed):
    params, X, Y = mixed
    value, grads = bp.value_and_backprop(MIXED, params, X, Y)
    np.testing.assert_allclose(value, reference_loss(MIXED, params, X, Y), rtol=1e-13)
    chex.assert_trees_all_close(grads, bp.backprop(MIXED, params, X, Y), rtol=0, atol=0)


def test_backprop_under_jit_equals_eager(mixed):
    params, X, Y = mixed
    jitted = jax.jit(bp.backprop, static_argnums=0)(MIXED, params, X, Y)
    chex.assert_trees_all_close(jitted, bp.backprop(MIXED, params, X, Y), rtol=1e-14)
    assert_close_to_reference(jitted, reference_grad(MIXED, params, X, Y))


def test_backprop_under_vmap_over_params(mixed):
    params, X, Y = mixed
    stacked = jax.tree.map(lambda *w: jnp.stack(w), params, random_params(MIXED, 8))
    batched = jax.vmap(lambda p: bp.backprop(MIXED, p, X, Y))(stacked)
    for i, p in enumerate((params, random_params(MIXED, 8))):
        one = jax.tree.map(lambda g, i=i: g[i], batched)
        assert_close_to_reference(one, reference_grad(MIXED, p, X, Y))


def test_backprop_under_vmap_over_samples_gives_per_sample_gradients(mixed):
    params, X, Y = mixed
    per_sample = jax.vmap(lambda x, y: bp.backprop(MIXED, params, x, y))(X, Y)
    for i in range(X.shape[0]):
        one = jax.tree.map(lambda g, i=i: g[i], per_sample)
        assert_close_to_reference(one, reference_grad(MIXED, params, X[i:i + 1], Y[i:i + 1]))


def test_backprop_is_pure(mixed):
    params, X, Y = mixed
    before = jax.tree.map(np.array, params)
    first = bp.backprop(MIXED, params, X, Y)
    second = bp.backprop(MIXED, params, X, Y)
    chex.assert_trees_all_equal(first, second)
    chex.assert_trees_all_equal(before, jax.tree.map(np.array, params))


def test_float32_stays_float32_and_is_close(mixed):
    params, X, Y = mixed
    p32 = tuple(w.astype(jnp.float32) for w in params)
    grads = bp.backprop(MIXED, p32, X.astype(jnp.float32), Y.astype(jnp.float32))
    assert all(g.dtype == jnp.float32 for g in grads)
    ref = reference_grad(MIXED, params, X, Y)
    for g, r in zip(grads, ref):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(r).max()))


def test_per_example_gradients_average_to_backprop(mixed):
    params, X, Y = mixed
    per = bp.per_example_backprop(MIXED, params, X, Y)
    N = X.shape[0]
    for g, shape in zip(per, MIXED.shapes):
        assert g.shape == (N, *shape)
    assert_close_to_reference([g.mean(0) for g in per], bp.backprop(MIXED, params, X, Y), 1e-12)
    # sample i's term without the 1/N: the gradient of 1/2 ||φ(x_i) − y_i||²
    for i in (0, N - 1):
        ref = reference_grad(MIXED, params, X[i:i + 1], Y[i:i + 1])
        assert_close_to_reference([g[i] for g in per], ref)


def test_weighted_loss_gradient(mixed):
    params, X, Y = mixed
    s = jnp.arange(1.0, X.shape[0] + 1)

    def weighted(p):
        r = bp.forward(MIXED, p, X) - Y
        return 0.5 * jnp.sum(s[:, None] * r**2) / s.sum()

    value, grads = bp.value_and_backprop(MIXED, params, X, Y, weights=s)
    np.testing.assert_allclose(value, weighted(params), rtol=1e-13)
    assert_close_to_reference(grads, jax.grad(weighted)(params))


def test_deltas_are_dL_da(mixed):
    params, X, Y = mixed
    delta = bp.deltas(MIXED, params, X, Y)
    assert delta[0] is None and len(delta) == MIXED.depth + 1
    # δ^L = (1/N)(φ^L − y) φ'(a^L), φ identity at the output
    out = bp.forward(MIXED, params, X)
    np.testing.assert_allclose(delta[-1], (out - Y) / X.shape[0], rtol=1e-13)
    # bias gradient = Σ_i δ^l_i
    grads = bp.backprop(MIXED, params, X, Y)
    for l in range(1, MIXED.depth + 1):
        np.testing.assert_allclose(grads[l - 1][0], delta[l].sum(0), rtol=1e-12, atol=1e-15)


def test_single_sample_equals_batch_of_one(mixed):
    params, X, Y = mixed
    one = bp.backprop(MIXED, params, X[2], Y[2])
    chex.assert_trees_all_close(one, bp.backprop(MIXED, params, X[2:3], Y[2:3]), rtol=1e-14)


def test_targets_of_shape_N_when_d_is_1():
    net = bp.Network(2, [bp.Layer(3, "tanh"), bp.Layer(1, "identity")])
    params = random_params(net, 1)
    X, Y = random_data(net, 5, 1)
    chex.assert_trees_all_close(bp.backprop(net, params, X, Y[:, 0]),
                                bp.backprop(net, params, X, Y), rtol=0, atol=0)


def test_dead_layer_gets_zero_gradient():
    # layer 2 feeds nothing: no path to the output, so every ∂L/∂w^2 is 0 (equation (4))
    net = bp.Network(2, [bp.Layer(3, "tanh"), bp.Layer(2, "tanh"), bp.Layer(1, inputs=(1,))])
    params = random_params(net, 3)
    X, Y = random_data(net, 4, 3)
    grads = bp.backprop(net, params, X, Y)
    assert np.all(np.asarray(grads[1]) == 0)
    assert_close_to_reference(grads, reference_grad(net, params, X, Y))


def test_no_autodiff_on_the_gradient_path():
    """Only the gradient checker may call autodiff: every other module computes by hand."""
    import ast
    import pathlib

    import bpjax

    banned = {"grad", "vjp", "jvp", "value_and_grad", "linearize", "jacfwd", "jacrev", "hessian"}
    paths = sorted(pathlib.Path(bpjax.__file__).parent.glob("*.py"))
    assert {"apply.py", "backward.py"} <= {p.name for p in paths}  # the custom VJP too
    custom = set()  # (module, function) of every jax.custom_vjp / custom_jvp
    for path in paths:
        if path.name == "gradcheck.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in banned:
                raise AssertionError(f"{path.name}:{node.lineno} uses jax.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jax"):
                used = banned & {alias.name for alias in node.names}
                assert not used, f"{path.name}:{node.lineno} imports {used}"
        for node in tree.body:  # the module's functions, nested definitions included
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(inner, ast.Attribute) and inner.attr in ("custom_vjp",
                                                                        "custom_jvp")
                    for inner in ast.walk(node)):
                custom.add((path.name, node.name))
    # A custom VJP only registers a hand-written backward pass as the derivative JAX uses;
    # these two are checked against autodiff of plain JAX code (apply_test.py, and
    # test_loss_by_hand_differentiates_by_equations_2_to_4 below). A new one needs the same.
    assert custom == {("apply.py", "phi_theta"), ("backward.py", "loss_by_hand")}, custom


# An activation JAX cannot differentiate (its derivative through autodiff is 0), with the
# derivative written by hand: a gradient taken by autodiff through the network would differ
# from one taken by equations (2)-(4), which use dphi.
OPAQUE = bp.Activation("opaque_tanh", lambda a: jax.lax.stop_gradient(jnp.tanh(a)),
                       lambda a: 1 - jnp.tanh(a) ** 2)


def test_loss_by_hand_differentiates_by_equations_2_to_4():
    # optax's line searches call jax.value_and_grad(value_fn) themselves: the custom VJP of
    # loss_by_hand must give them the hand-written gradient, not autodiff through the network
    from bpjax.backward import loss_by_hand

    net = bp.Network(3, [bp.Layer(4, OPAQUE), bp.Layer(2, "identity")])
    same = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, "identity")])
    params = random_params(net, 21)
    X, Y = random_data(net, 6, 21)
    f, _ = loss_by_hand(net, X, Y, scale=2.0)
    value, grads = jax.jit(jax.value_and_grad(f))(params)
    np.testing.assert_allclose(value, 2.0 * float(bp.loss(same, params, X, Y)), rtol=1e-13)
    assert_close_to_reference(grads, [2.0 * g for g in reference_grad(same, params, X, Y)])
    through = jax.grad(lambda p: bp.loss(net, p, X, Y))(params)  # autodiff: blind to dphi
    assert np.all(np.asarray(through[0]) == 0)


def test_an_optimizer_differentiating_value_fn_gets_equations_2_to_4():
    # An optimizer that ignores G_B and takes jax.value_and_grad of value_fn itself, as
    # optax's line searches do: through fit it must still step along the hand-written
    # gradient, so the opaque network trains as the tanh one does with the plain step
    import optax

    def descend_by_value_fn(eta):
        def update(updates, state, params=None, *, value_fn, **extra):
            _, g = jax.value_and_grad(value_fn)(params)
            return jax.tree.map(lambda gi: -eta * gi, g), state

        return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)

    net = bp.Network(3, [bp.Layer(4, OPAQUE), bp.Layer(2, "identity")])
    same = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, "identity")])
    params = random_params(net, 22)
    X, Y = random_data(net, 8, 22)
    opaque = bp.fit(net, params, X, Y, optimizer=descend_by_value_fn(0.3), batch_size=None,
                    epochs=4)
    plain = bp.fit(same, params, X, Y, learning_rate=0.3, batch_size=None, epochs=4)
    assert_close_to_reference(opaque.params, plain.params, rtol=1e-12)
    np.testing.assert_allclose(opaque.losses, plain.losses, rtol=1e-12)
    assert np.max(np.abs(np.asarray(opaque.params[0]) - np.asarray(params[0]))) > 1e-3


# --- DAGs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DAG_NETS))
def test_backprop_on_explicit_dags(name):
    net = DAG_NETS[name]
    params = random_params(net, 11)
    X, Y = random_data(net, 5, 11)
    grads = bp.backprop(net, params, X, Y)
    assert_close_to_reference(grads, reference_grad(net, params, X, Y), rtol=1e-10)
    for l, g in enumerate(grads, start=1):  # structural zeros: exactly 0
        assert np.all(np.asarray(g)[~net.structure(l)] == 0)
    per = bp.per_example_backprop(net, params, X, Y)
    assert_close_to_reference([g.mean(0) for g in per], grads, rtol=1e-12)
    jitted = jax.jit(bp.backprop, static_argnums=0)(net, params, X, Y)
    chex.assert_trees_all_close(jitted, grads, rtol=1e-13)


def test_fan_out_deltas_sum_over_every_consumer():
    # Layer 1 of "fan_out" feeds layers 2, 3 and 4, so (3) gives, in plain numpy,
    #   ∂L/∂φ^1 = δ^2 (w^2_{1:})ᵀ + δ^3 (w^3_{1:})ᵀ + δ^4 (w^4 rows of φ^1)ᵀ,   δ^1 = ∂L/∂φ^1 ⊙ tanh'(a^1)
    net = DAG_NETS["fan_out"]
    params = random_params(net, 12)
    X, Y = random_data(net, 4, 12)
    delta = [None] + [np.asarray(d) for d in bp.deltas(net, params, X, Y)[1:]]
    w = [np.asarray(p) for p in params]
    assert net.consumers(1) == (2, 3, 4) and net.blocks(4)[0] == (1, slice(1, 4))
    dL_dphi1 = delta[2] @ w[1][1:].T + delta[3] @ w[2][1:].T + delta[4] @ w[3][1:4].T
    a1 = np.asarray(bp.forward_trace(net, params, X).a[1])
    np.testing.assert_allclose(delta[1], dL_dphi1 * (1 - np.tanh(a1) ** 2), rtol=1e-12)


def test_dag_worked_by_hand():
    # D = 1, x = 2, y = 1, N = 1. Layer 1: one "square" neuron. Layer 2 (output): identity,
    # inputs=(0, 1), so its rows are j = 0 (bias), j = 1 (x, the skip), j = 2 (φ^1_1).
    #   a^1 = w^1_01 + w^1_11 x = 0.5 + 1.0·2 = 2.5          φ^1 = (a^1)² = 6.25
    #   a^2 = w^2_01 + w^2_11 x + w^2_21 φ^1 = 0.1 − 2 + 0.4·6.25 = 0.6,   φ^2 = 0.6
    #   L = ½ (0.6 − 1)² = 0.08
    #   δ^2 = (φ^2 − y) · 1 = −0.4
    #   ∂L/∂w^2 = δ^2 · (1, x, φ^1) = (−0.4, −0.8, −2.5)
    #   ∂L/∂φ^1 = δ^2 w^2_21 = −0.16  (x is not a function of θ: the skip adds nothing here)
    #   δ^1 = −0.16 · 2a^1 = −0.8
    #   ∂L/∂w^1 = δ^1 · (1, x) = (−0.8, −1.6)
    net = bp.Network(1, [bp.Layer(1, "square"), bp.Layer(1, "identity", inputs=(0, 1))])
    params = (jnp.array([[0.5], [1.0]]), jnp.array([[0.1], [-1.0], [0.4]]))
    x, y = jnp.array([2.0]), jnp.array([1.0])
    value, grads = bp.value_and_backprop(net, params, x, y)
    np.testing.assert_allclose(value, 0.08, rtol=1e-13)
    np.testing.assert_allclose(grads[1][:, 0], [-0.4, -0.8, -2.5], rtol=1e-13)
    np.testing.assert_allclose(grads[0][:, 0], [-0.8, -1.6], rtol=1e-13)
    delta = bp.deltas(net, params, x, y)
    np.testing.assert_allclose([delta[1][0, 0], delta[2][0, 0]], [-0.8, -0.4], rtol=1e-13)
    rec = bp.recursive_grad(net, params, x, y)
    np.testing.assert_allclose(np.concatenate([rec[0][:, 0], rec[1][:, 0]]),
                               [-0.8, -1.6, -0.4, -0.8, -2.5], rtol=1e-13)


# The forward pass, equation (3) and the gradients take one of two equal forms per layer,
# chosen by 4 N <= N_l: with the homogenised inputs [φ_0 | φ_in] and the whole of w, or with
# w[1:] and the bias apart (gradient [Σ_i δ ; φ_inᵀ δ] concatenated): layers of 4, N = 1 and
# N = 3, 4, 9.
BOTH_WAYS = bp.Network(3, [
    bp.Layer(4, "tanh"),
    bp.Layer(4, ("square", "tanh", "identity", "logistic"), bias=False,
             adjacency=((True, False, True, True),) * 2 + ((False, True, True, True),) * 2),
    bp.Layer(2, "identity", bias=False, inputs=(0, 2)),
])


@pytest.mark.parametrize("N", [1, 3, 4, 9])
def test_both_ways_of_forming_the_gradient_match_the_reference(N):
    params = random_params(BOTH_WAYS, 7)
    X, Y = random_data(BOTH_WAYS, N, 7)
    grads = bp.backprop(BOTH_WAYS, params, X, Y)
    assert_close_to_reference(grads, reference_grad(BOTH_WAYS, params, X, Y), rtol=1e-10)
    per = bp.per_example_backprop(BOTH_WAYS, params, X, Y)
    assert_close_to_reference([g.mean(0) for g in per], grads, 1e-12)
    for l in (2, 3):  # structural zeros: no bias, absent connections
        mask = BOTH_WAYS.structure(l)
        assert np.all(np.asarray(grads[l - 1])[~mask] == 0)
        assert np.all(np.asarray(per[l - 1])[:, ~mask] == 0)


@pytest.mark.parametrize("bias_row", [True, False])
def test_delta_rule_on_one_sample_is_its_batch_of_one(bias_row):
    # W with its bias row (params) or without it (w[1:]): one sample (d,) and a batch (1, d)
    from bpjax.backward import delta_rule
    from bpjax.forward import propagate

    net = DAG_NETS["fan_out"]
    params = random_params(net, 31)
    X, _ = random_data(net, 1, 31)
    W = params if bias_row else tuple(w[1:] for w in params)
    g = jnp.asarray(np.random.default_rng(31).standard_normal(net.outputs))
    one = delta_rule(net, W, propagate(net, params, X[0]), g, bias_row=bias_row, inputs=True)
    batch = delta_rule(net, W, propagate(net, params, X), g[None], bias_row=bias_row,
                       inputs=True)
    for l, (a, b) in enumerate(zip(one, batch)):
        np.testing.assert_allclose(a, b[0], rtol=1e-13, atol=1e-15, err_msg=f"delta[{l}]")
