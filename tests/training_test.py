"""fit: Algorithm 1 against independent loops, the step family, optimizers, clamping, stopping,
shuffling, divergence, resuming, no recompilation, and every bad input."""

import io

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bpjax as bp
from conftest import count_compiles, random_data, random_params, reference_grad

# One network of each kind, shared by the tests so that their compiled loops are reused.
MLP = bp.Network(3, [bp.Layer(4, ("tanh", "logistic", "square", "identity")),
                     bp.Layer(3, "tanh"), bp.Layer(2, "identity")])
DAG = bp.Network(2, [
    bp.Layer(3, "tanh", adjacency=[[1, 0, 1], [1, 1, 0]]),
    bp.Layer(2, ("logistic", "identity"), inputs=(0, 1), bias=False),
    bp.Layer(1, "identity", inputs=(1, 2)),
])
QUAD = bp.Network(2, [bp.Layer(2, ("identity", "square")), bp.Layer(1, "identity", bias=False)])
N = 7
PARAMS = random_params(MLP, 0)
X, Y = random_data(MLP, N, 0)


def assert_trees_equal(a, b):
    """Bit for bit."""
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


# --- an independent Algorithm 1 in numpy --------------------------------------------------------

def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


NP_ACTIVATIONS = {  # φ(a) and φ'(a), written here from scratch
    "identity": (lambda a: a, lambda a: np.ones_like(a)),
    "square": (lambda a: a * a, lambda a: 2 * a),
    "logistic": (_sigmoid, lambda a: _sigmoid(a) * (1 - _sigmoid(a))),
    "tanh": (np.tanh, lambda a: 1 - np.tanh(a) ** 2),
}


def _layer_acts(layer):
    names = layer.activation if isinstance(layer.activation, tuple) else (
        (layer.activation,) * layer.size)
    return names


def _apply(names, a, which):
    return np.array([NP_ACTIVATIONS[n][which](a[k]) for k, n in enumerate(names)])


def numpy_sample_gradient(net, W, x, y):
    """∂L/∂w(x_i) (without 1/N) for a feedforward net, by the chain rule, sample by sample."""
    acts = [_layer_acts(layer) for layer in net.layers]
    phi, a = [x], [None]
    for l, w in enumerate(W, start=1):  # a^l_k = w^l_0k + Σ_j w^l_jk φ^{l-1}_j
        a.append(w[0] + phi[-1] @ w[1:])
        phi.append(_apply(acts[l - 1], a[-1], 0))
    grads = [None] * len(W)
    dphi = phi[-1] - y  # ∂/∂φ^L of ½‖φ^L − y‖²
    for l in range(len(W), 0, -1):
        delta = dphi * _apply(acts[l - 1], a[l], 1)  # (2)
        grads[l - 1] = np.vstack([delta, np.outer(phi[l - 1], delta)])
        dphi = W[l - 1][1:] @ delta  # (3)
    return grads


def numpy_loss(net, W, X, Y):
    out = []
    for x in X:
        phi = x
        for l, w in enumerate(W, start=1):
            phi = _apply(_layer_acts(net.layers[l - 1]), w[0] + phi @ w[1:], 0)
        out.append(phi)
    return 0.5 * np.sum((np.array(out) - Y) ** 2) / len(X)


def numpy_algorithm1(net, params, X, Y, eta, epochs):
    """Algorithm 1: for t, for i in order, w ← w − (η/N) ∂L/∂w(x_i)."""
    W = [np.array(w) for w in params]
    X, Y = np.asarray(X), np.asarray(Y)
    losses = []
    for _ in range(epochs):
        for i in range(len(X)):
            g = numpy_sample_gradient(net, W, X[i], Y[i])
            W = [w - eta / len(X) * gw for w, gw in zip(W, g)]
        losses.append(numpy_loss(net, W, X, Y))
    return W, np.array(losses)


def test_numpy_reference_gradient_is_right():
    """The reference's own chain rule agrees with jax.grad of the conftest reference."""
    g = numpy_sample_gradient(MLP, [np.asarray(w) for w in PARAMS], np.asarray(X[0]),
                              np.asarray(Y[0]))
    ref = reference_grad(MLP, PARAMS, X[:1], Y[:1])
    for u, v in zip(g, ref):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


def test_batch_size_1_is_algorithm_1_float64():
    eta, epochs = 0.7, 3
    result = bp.fit(MLP, PARAMS, X, Y, learning_rate=eta, epochs=epochs)
    W, losses = numpy_algorithm1(MLP, PARAMS, X, Y, eta, epochs)
    for w, ref in zip(result.params, W):
        assert w.dtype == jnp.float64
        np.testing.assert_allclose(w, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.losses, losses, rtol=1e-10)
    assert result.losses.shape == (epochs,)
    assert (result.epoch, result.epochs_run, result.best_epoch) == (epochs, epochs, epochs)
    assert not (result.diverged or result.converged or result.stopped_early)


def test_batch_size_1_on_a_dag_with_structural_zeros():
    """Algorithm 1 with jax.grad of the independent reference, per sample, in a Python loop."""
    params = random_params(DAG, 3)
    X2, Y2 = random_data(DAG, 5, 3)
    eta, epochs = 0.9, 2
    W = params
    for _ in range(epochs):
        for i in range(5):
            g = reference_grad(DAG, W, X2[i:i + 1], Y2[i:i + 1])  # ∂L/∂w(x_i), no 1/N
            W = tuple(w - eta / 5 * gw for w, gw in zip(W, g))
    result = bp.fit(DAG, params, X2, Y2, learning_rate=eta, epochs=epochs)
    for l, (w, ref) in enumerate(zip(result.params, W), start=1):
        np.testing.assert_allclose(w, ref, rtol=1e-10, atol=1e-12)
        assert np.all(np.asarray(w)[~DAG.structure(l)] == 0)  # structural zeros stay 0


# Wider layers: the output layer kept transposed and equation (3) through it a broadcast sum
# (bpjax.algorithm1.layer_plan; tests/algorithm1_test.py has every layout, deferral included).
WIDE = bp.Network(16, [bp.Layer(64, "tanh"), bp.Layer(64, ("logistic",) * 32 + ("tanh",) * 32),
                       bp.Layer(2, "identity")])
WIDE_DAG = bp.Network(8, [bp.Layer(64, "tanh"), bp.Layer(64, "tanh"),
                          bp.Layer(64, "tanh", inputs=(1, 2)), bp.Layer(2, "identity")])


def test_large_layers_are_still_algorithm_1():
    params = random_params(WIDE, 4)
    Xw, Yw = random_data(WIDE, 37, 4)
    result = bp.fit(WIDE, params, Xw, Yw, learning_rate=2.0, epochs=2)
    W, losses = numpy_algorithm1(WIDE, params, Xw, Yw, 2.0, 2)
    for w, ref in zip(result.params, W):
        np.testing.assert_allclose(w, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.losses, losses, rtol=1e-10)


def test_large_layers_of_a_dag_are_still_algorithm_1():
    params = random_params(WIDE_DAG, 5)
    Xw, Yw = random_data(WIDE_DAG, 37, 5)
    W = params
    for i in range(37):
        g = reference_grad(WIDE_DAG, W, Xw[i:i + 1], Yw[i:i + 1])
        W = tuple(w - 1.5 / 37 * gw for w, gw in zip(W, g))
    result = bp.fit(WIDE_DAG, params, Xw, Yw, learning_rate=1.5, epochs=1)
    for w, ref in zip(result.params, W):
        np.testing.assert_allclose(w, ref, rtol=1e-10, atol=1e-12)


def _compiled_loop_text(batch_size):
    """The compiled loop that fit uses for WIDE with ``batch_size``, as HLO text."""
    from bpjax import algorithm1, arguments, training
    from bpjax import loop as fit_loop

    params = random_params(WIDE, 4)
    Xw, Yw = random_data(WIDE, 37, 4)
    prep, _ = arguments.prepare(
        WIDE, params, Xw, Yw, learning_rate=1.0, epochs=1, batch_size=batch_size,
        optimizer=None, frozen=None, opt_state=None, shuffle=None, validation=None, tol=None,
        patience=None, min_delta=0.0)
    loop = fit_loop.initial_state_jit(WIDE, prep.config, prep.data, prep.params, prep.opt_state,
                                      prep.epoch, chunk=fit_loop.CHUNK)
    sequential = algorithm1.sequential(prep.config, prep.data)
    jit = training._loop_sequential_jit if sequential else training._loop_jit
    text = jit.lower(WIDE, None, prep.config, loop, prep.data, prep.hyper,
                     jnp.asarray(1, jnp.int32)).compile().as_text()
    return sequential, text


def test_per_sample_loop_on_a_cpu_is_compiled_for_one_thread():
    # Algorithm 1 (batch_size=1) on a CPU: no operation split over threads, no YNNPACK call;
    # minibatches are compiled with bpjax.compilation.BATCHED_CPU.
    sequential, text = _compiled_loop_text(1)
    assert sequential == (jax.default_backend() == "cpu")
    if sequential:
        assert "outer_dimension_partitions" not in text and "__ynn_fusion" not in text
    assert not _compiled_loop_text(4)[0]


def test_one_step_worked_by_hand():
    # x ∈ R¹ → one "square" neuron → one "identity" neuron without bias; one sample, N = 1.
    #   w^1_01 = 0.5, w^1_11 = 1, w^2_11 = 2, x = 1, y = 3, η = 0.1.
    # Forward:  a^1 = 0.5 + 1·1 = 1.5,  φ^1 = 1.5² = 2.25,  φ^2 = 2·2.25 = 4.5,  r = 4.5 − 3 = 1.5.
    # Backward: δ^2 = r·1 = 1.5;  ∂L/∂w^2_11 = δ^2 φ^1 = 3.375;
    #           δ^1 = w^2_11 δ^2 · 2a^1 = 2·1.5·3 = 9;  ∂L/∂w^1_01 = 9,  ∂L/∂w^1_11 = 9·x = 9.
    # Step (η/N = 0.1): w^1_01 = 0.5 − 0.9 = −0.4,  w^1_11 = 1 − 0.9 = 0.1,
    #                   w^2_11 = 2 − 0.3375 = 1.6625.
    # Loss after: a^1 = −0.4 + 0.1 = −0.3, φ^1 = 0.09, φ^2 = 0.149625, r = −2.850375,
    #             L = r²/2 = 4.0623188203125.
    net = bp.Network(1, [bp.Layer(1, "square"), bp.Layer(1, "identity", bias=False)])
    params = (jnp.array([[0.5], [1.0]]), jnp.array([[0.0], [2.0]]))
    result = bp.fit(net, params, jnp.array([[1.0]]), jnp.array([[3.0]]), learning_rate=0.1,
                    epochs=1)
    np.testing.assert_allclose(result.params[0], [[-0.4], [0.1]], rtol=1e-14)
    np.testing.assert_allclose(result.params[1], [[0.0], [1.6625]], rtol=1e-14)
    np.testing.assert_allclose(result.losses, [4.0623188203125], rtol=1e-14)


@pytest.mark.parametrize("batch_size", [2, 3, 7, None])
def test_minibatch_and_full_batch_follow_their_definition(batch_size):
    """Each step: w ← w − η (1/N) Σ_{i∈B} ∂L/∂w(x_i); the last batch holds N mod B samples."""
    eta, epochs = 0.8, 2
    B = N if batch_size is None else batch_size
    W = PARAMS
    for _ in range(epochs):
        for start in range(0, N, B):
            Xb, Yb = X[start:start + B], Y[start:start + B]
            mean = reference_grad(MLP, W, Xb, Yb)  # (1/|B|) Σ_{i∈B} ∂L/∂w(x_i)
            W = tuple(w - eta * (len(Xb) / N) * g for w, g in zip(W, mean))
    result = bp.fit(MLP, PARAMS, X, Y, learning_rate=eta, epochs=epochs, batch_size=batch_size)
    for w, ref in zip(result.params, W):
        np.testing.assert_allclose(w, ref, rtol=1e-10, atol=1e-12)


def test_full_batch_epoch_is_one_gradient_step():
    result = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.3, epochs=1, batch_size=None)
    grads = reference_grad(MLP, PARAMS, X, Y)  # ∂L/∂θ of loss (1)
    for w, w0, g in zip(result.params, PARAMS, grads):
        np.testing.assert_allclose(w, w0 - 0.3 * g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_optax_sgd_with_rate_1_is_the_plain_step(batch_size):
    kw = dict(learning_rate=0.5, epochs=2, batch_size=batch_size)
    plain = bp.fit(MLP, PARAMS, X, Y, **kw)
    via_optax = bp.fit(MLP, PARAMS, X, Y, optimizer=optax.sgd(1.0), **kw)
    chex.assert_trees_all_close(via_optax.params, plain.params, rtol=1e-12, atol=1e-14)


ADAM = optax.adam(1.0)


def test_learning_rate_is_required_without_optimizer_and_1_with_one():
    with pytest.raises(TypeError, match=r"learning_rate is required for the plain step"):
        bp.fit(MLP, PARAMS, X, Y, epochs=1)
    a = bp.fit(MLP, PARAMS, X, Y, epochs=2, optimizer=optax.adam(0.01))
    b = bp.fit(MLP, PARAMS, X, Y, learning_rate=1.0, epochs=2, optimizer=optax.adam(0.01))
    chex.assert_trees_all_equal(a.params, b.params)


def test_learning_rate_scales_the_optimizer_updates():
    """w ← w + η u: fit(η, adam(1)) is adam(η) with fit's η = 1."""
    a = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.01, epochs=2, optimizer=ADAM)
    b = bp.fit(MLP, PARAMS, X, Y, learning_rate=1.0, epochs=2, optimizer=optax.adam(0.01))
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-12, atol=1e-14)
    assert not np.allclose(a.params[0], PARAMS[0])


def test_no_recompilation_for_new_rate_data_epochs_and_stopping_values():
    kw = dict(batch_size=1, tol=0.0, patience=50)
    bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=2, **kw)  # compiles
    bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=2, optimizer=ADAM)
    X2, Y2 = random_data(MLP, N, 1)
    with count_compiles() as compiles:
        bp.fit(MLP, PARAMS, X, Y, learning_rate=0.1, epochs=2, **kw)  # another η
        bp.fit(MLP, PARAMS, X2, Y2, learning_rate=0.5, epochs=2, **kw)  # other data
        bp.fit(MLP, random_params(MLP, 5), X, Y, learning_rate=0.5, epochs=3, **kw)
        bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=70,  # more than one call
               batch_size=1, tol=0.001, patience=80)
        bp.fit(MLP, PARAMS, X, Y, learning_rate=0.02, epochs=5, optimizer=ADAM)
    assert compiles == []


def test_optimizer_hyperparameters_in_the_state_do_not_recompile():
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=1.0, b1=0.9)
    state = opt.init(PARAMS)
    a = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.05, epochs=2, optimizer=opt, opt_state=state)
    state.hyperparams["b1"] = jnp.asarray(0.5)
    with count_compiles() as compiles:
        b = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.05, epochs=2, optimizer=opt,
                   opt_state=state)
    assert compiles == []
    assert not np.allclose(a.params[0], b.params[0])


# --- clamping ---------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 2, None])
def test_clamped_weights_are_bit_identical_under_adamw(batch_size):
    # The paper's suggestion for figure 2: clamp w^1_02, w^2_11 and w^2_21.
    params = random_params(QUAD, 1)
    params, frozen = bp.clamp(QUAD, params, {(1, 0, 2): 0.25, (2, 1, 1): 1.0, (2, 2, 1): -0.5})
    Xq, Yq = random_data(QUAD, 6, 1)
    opt = optax.adamw(1.0, b1=0.9, weight_decay=0.5)
    result = bp.fit(QUAD, params, Xq, Yq, learning_rate=0.05, epochs=3, optimizer=opt,
                    frozen=frozen, batch_size=batch_size)
    for l, (w, w0, m) in enumerate(zip(result.params, params, frozen), start=1):
        w, w0, m = np.asarray(w), np.asarray(w0), np.asarray(m)
        np.testing.assert_array_equal(w[m], w0[m])  # clamped: bit for bit
        assert np.all(w[~QUAD.structure(l)] == 0)  # w^2_01 does not exist: stays 0
        free = ~m & QUAD.structure(l)
        assert np.all(w[free] != w0[free])  # everything else trained
    assert float(result.params[0][0, 1]) == 0.25


def test_clamped_weights_and_structural_zeros_with_plain_sgd_on_a_dag():
    params = random_params(DAG, 2)
    frozen = bp.frozen_mask(DAG, [(1, 1, 1), (3, 0, 1)])
    X2, Y2 = random_data(DAG, 5, 2)
    result = bp.fit(DAG, params, X2, Y2, learning_rate=0.5, epochs=2, frozen=frozen)
    for l, (w, w0, m) in enumerate(zip(result.params, params, frozen), start=1):
        w, w0, m = np.asarray(w), np.asarray(w0), np.asarray(m)
        np.testing.assert_array_equal(w[m], w0[m])
        assert np.all(w[~DAG.structure(l)] == 0)


# --- stopping, shuffling, divergence, resuming --------------------------------------------------

def test_tol_stops_once_the_training_loss_reaches_it():
    full = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=20)
    tol = float(full.losses[9])  # reached at epoch 10 (the loss decreases here)
    assert np.all(np.diff(np.asarray(full.losses)) < 0)
    result = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=20, tol=tol)
    assert result.converged and result.epochs_run == 10 and result.best_epoch == 10
    np.testing.assert_array_equal(result.losses, full.losses[:10])


def test_patience_returns_the_best_weights_by_validation_loss():
    Xv, Yv = X, 0.5 * Y  # the training passes near these targets on its way to Y
    result = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=200, patience=5,
                    validation=(Xv, Yv))
    val = np.asarray(result.val_losses)
    best = result.best_epoch
    assert result.stopped_early and result.epochs_run == best + 5
    assert 0 < best < result.epochs_run
    assert val[best - 1] == val.min()
    np.testing.assert_allclose(bp.loss(MLP, result.params, Xv, Yv), val[best - 1], rtol=1e-12)
    # the returned weights are those after `best` epochs
    again = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=best)
    chex.assert_trees_all_close(result.params, again.params, rtol=1e-12, atol=1e-14)


def test_patience_can_return_the_initial_weights():
    result = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=50, patience=2,
                    validation=(X, Y + 100.0), min_delta=1e6)
    assert result.best_epoch == 0 and result.epochs_run == 2
    assert_trees_equal(result.params, PARAMS)


def test_same_shuffle_key_is_bit_identical_and_epoch_t_uses_fold_in():
    key = jax.random.key(7)
    a = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=2, shuffle=key)
    b = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=2, shuffle=key)
    assert_trees_equal(a, b)
    c = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=2, shuffle=jax.random.key(8))
    assert not np.array_equal(a.params[0], c.params[0])
    # Algorithm 1 over the documented order: epoch t visits permutation(fold_in(key, t), N).
    W = [np.asarray(w) for w in PARAMS]
    for t in range(2):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, t), N))
        W, _ = numpy_algorithm1(MLP, W, np.asarray(X)[perm], np.asarray(Y)[perm], 0.5, 1)
    for w, ref in zip(a.params, W):
        np.testing.assert_allclose(w, ref, rtol=1e-10, atol=1e-12)


# Divergence, and the history after it: tests/loop_test.py.


def test_resuming_n_plus_n_epochs_equals_2n_with_adam_and_shuffling():
    kw = dict(learning_rate=0.05, optimizer=ADAM, shuffle=jax.random.key(3))
    first = bp.fit(MLP, PARAMS, X, Y, epochs=3, **kw)
    second = bp.fit(MLP, first, X, Y, epochs=3, **kw)
    whole = bp.fit(MLP, PARAMS, X, Y, epochs=6, **kw)
    assert second.epoch == 6 and second.epochs_run == 3
    chex.assert_trees_all_close(second.params, whole.params, rtol=1e-12, atol=1e-14)
    chex.assert_trees_all_close(second.opt_state, whole.opt_state, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.concatenate([first.losses, second.losses]), whole.losses,
                               rtol=1e-12)
    # the same through an explicit opt_state (no epoch count: no shuffling here)
    a = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.05, epochs=2, optimizer=ADAM)
    b = bp.fit(MLP, a.params, X, Y, learning_rate=0.05, epochs=2, optimizer=ADAM,
               opt_state=a.opt_state)
    c = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.05, epochs=4, optimizer=ADAM)
    chex.assert_trees_all_close(b.params, c.params, rtol=1e-12, atol=1e-14)


def test_zero_epochs_returns_the_initial_weights():
    result = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=0)
    assert result.losses.shape == (0,) and result.epochs_run == 0 and result.epoch == 0
    assert_trees_equal(result.params, PARAMS)


def test_float32_stays_float32():
    p32 = tuple(w.astype(jnp.float32) for w in PARAMS)
    result = bp.fit(MLP, p32, X.astype(jnp.float32), Y.astype(jnp.float32), learning_rate=0.5,
                    epochs=2)
    assert all(w.dtype == jnp.float32 for w in result.params)
    assert result.losses.dtype == jnp.float32
    ref = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=2)
    chex.assert_trees_all_close(result.params, ref.params, rtol=1e-4, atol=1e-5)


def test_fit_under_jit_and_vmap():
    eager = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=3)
    jitted = jax.jit(lambda p, eta: bp.fit(MLP, p, X, Y, learning_rate=eta, epochs=3))(PARAMS,
                                                                                       0.5)
    chex.assert_trees_all_close(jitted.params, eager.params, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jitted.losses, eager.losses, rtol=1e-12)
    etas = jnp.array([0.5, 0.1])
    many = jax.vmap(lambda eta: bp.fit(MLP, PARAMS, X, Y, learning_rate=eta, epochs=3))(etas)
    np.testing.assert_allclose(many.losses[0], eager.losses, rtol=1e-12)
    assert many.losses.shape == (2, 3)


def test_progress_bar_changes_nothing():
    buffer = io.StringIO()
    with_bar = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=4,
                      progress={"file": buffer, "mininterval": 0})
    without = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=4)
    assert_trees_equal(with_bar.params, without.params)
    np.testing.assert_array_equal(with_bar.losses, without.losses)
    assert "4/4" in buffer.getvalue()


# --- bad input ------------------------------------------------------------------------------------

FROZEN_OK = bp.frozen_mask(MLP)
BAD_INPUTS = [
    (dict(learning_rate=0.0), ValueError, r"learning_rate must be > 0, got 0.0"),
    (dict(learning_rate=-1), ValueError, r"learning_rate must be > 0, got -1"),
    (dict(learning_rate=float("nan")), ValueError, r"learning_rate must be finite, got nan"),
    (dict(learning_rate=float("inf")), ValueError, r"learning_rate must be finite, got inf"),
    (dict(learning_rate="0.1"), TypeError, r"learning_rate must be a number, got str"),
    (dict(learning_rate=jnp.array([0.1, 0.2])), TypeError,
     r"learning_rate must be a number, got an array of shape \(2,\): one rate per model is "
     r"for bp.sweep"),
    (dict(epochs=-1), ValueError, r"epochs must be >= 0, got -1"),
    (dict(epochs=2.5), TypeError, r"epochs must be an int, got float"),
    (dict(batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    (dict(batch_size=N + 1), ValueError, r"batch_size must be at most N = 7 \(or None\), got 8"),
    (dict(batch_size=2.0), TypeError, r"batch_size must be an int, got float"),
    (dict(X=np.where(np.arange(3) == 1, np.nan, np.asarray(X))), ValueError,
     r"X holds 7 NaN/Inf value\(s\), first at index \(0, 1\)"),
    (dict(Y=Y.at[2, 0].set(jnp.inf)), ValueError,
     r"Y holds 1 NaN/Inf value\(s\), first at index \(2, 0\)"),
    (dict(Y=np.zeros((N - 1, 2))), ValueError, r"X has N = 7 samples but Y has 6"),
    (dict(frozen=FROZEN_OK[:2]), ValueError, r"frozen has 2 layers, expected L = 3"),
    (dict(frozen=(FROZEN_OK[0][1:], *FROZEN_OK[1:])), ValueError,
     r"frozen\[0\] \(layer 1\) has shape \(3, 4\), expected the shape of params\[0\], \(4, 4\)"),
    (dict(frozen=tuple(m.astype(int) for m in FROZEN_OK)), TypeError,
     r"frozen\[0\] \(layer 1\) must be boolean, got dtype int"),
    (dict(frozen=FROZEN_OK[0]), TypeError, r"frozen must be a tuple of 3 boolean arrays"),
    (dict(optimizer="adam"), TypeError, r"optimizer must be an optax.GradientTransformation"),
    (dict(optimizer=ADAM, opt_state=optax.sgd(1.0).init(PARAMS)), ValueError,
     r"opt_state does not fit the optimizer: expected structure"),
    (dict(shuffle=42), TypeError, r"shuffle must be a key from jax.random.key\(seed\)"),
    (dict(validation=X), TypeError, r"validation must be a pair \(X_val, Y_val\)"),
    (dict(validation=(X, Y[:3])), ValueError, r"X_val has N = 7 samples but Y_val has 3"),
    (dict(validation=(np.asarray(X) * np.nan, Y)), ValueError, r"X_val holds 21 NaN/Inf"),
    (dict(patience=0), ValueError, r"patience must be >= 1, got 0"),
    (dict(tol=-1.0), ValueError, r"tol must be >= 0, got -1.0"),
    (dict(min_delta=-0.1), ValueError, r"min_delta must be >= 0, got -0.1"),
    (dict(params=tuple(w.at[0, 0].set(jnp.nan) for w in PARAMS)), ValueError,
     r"params\[0\] \(layer 1\) holds 1 NaN/Inf value\(s\), first at index \(0, 0\)"),
    (dict(params=PARAMS[:2]), ValueError, r"params has 2 layers, expected L = 3"),
    (dict(net="mlp"), TypeError, r"fit expects a bpjax.Network, got str"),
    (dict(progress="yes"), TypeError, r"progress must be True, False or a dict of tqdm keyword "
                                      r"arguments, got str: 'yes'"),
    (dict(progress=1), TypeError, r"progress must be True, False or a dict .* got int: 1"),
]


@pytest.mark.parametrize("bad, error, message", BAD_INPUTS)
def test_bad_input_is_a_clear_error_before_any_work(bad, error, message):
    args = dict(net=MLP, params=PARAMS, X=X, Y=Y, learning_rate=0.5, epochs=2)
    args.update(bad)
    with count_compiles() as compiles, pytest.raises(error, match=message):
        bp.fit(args.pop("net"), args.pop("params"), args.pop("X"), args.pop("Y"), **args)
    assert compiles == []  # raised before compiling (or running) anything


def test_finiteness_is_checked_again_for_every_array_that_could_have_changed():
    # JAX arrays found finite are remembered by identity (they cannot change); a numpy array
    # can change in place, and a new JAX array is a new object: both are checked again.
    Xn = np.asarray(X, np.float64).copy()
    bp.fit(MLP, PARAMS, Xn, Y, learning_rate=0.5, epochs=1)
    Xn[3, 1] = np.nan  # the same numpy object, changed in place
    with pytest.raises(ValueError, match=r"X holds 1 NaN/Inf value\(s\), first at index \(3, 1\)"):
        bp.fit(MLP, PARAMS, Xn, Y, learning_rate=0.5, epochs=1)
    Xj = jnp.asarray(X)
    bp.fit(MLP, PARAMS, Xj, Y, learning_rate=0.5, epochs=1)
    bp.fit(MLP, PARAMS, Xj, Y, learning_rate=0.5, epochs=1)  # remembered: no check, same result
    with pytest.raises(ValueError, match=r"X holds 1 NaN/Inf value\(s\), first at index \(0, 2\)"):
        bp.fit(MLP, PARAMS, Xj.at[0, 2].set(jnp.inf), Y, learning_rate=0.5, epochs=1)
    for _ in range(3):  # freed arrays leave the memo: their ids cannot vouch for new ones
        del Xj
        Xj = jnp.asarray(np.where(np.arange(3) == 0, np.nan, np.asarray(X)))
        with pytest.raises(ValueError, match=r"X holds 7 NaN/Inf"):
            bp.fit(MLP, PARAMS, Xj, Y, learning_rate=0.5, epochs=1)


@pytest.mark.parametrize("start", ["mesh", "patience", "adam"])
def test_more_epochs_than_one_call_compile_nothing_more(start):
    # The first call of the loop starts from a state computed on the device (a mesh's
    # placement, the best loss for patience, Adam's initial state), the next ones from the
    # state the host read back: every call must take the same argument types, or the loop
    # compiles again for the later calls.
    from bpjax.loop import CHUNK

    net = bp.Network(3, [bp.Layer(5, "tanh"), bp.Layer(2, "identity")])  # its own compiles
    kw = {"mesh": dict(learning_rate=0.1, mesh=jax.make_mesh((1,), ("data",))),
          "patience": dict(learning_rate=0.1, patience=1000, validation=(X, Y)),
          "adam": dict(optimizer=ADAM, learning_rate=1e-3, batch_size=3)}[start]
    params = random_params(net, 8)
    bp.fit(net, params, X, Y, epochs=2, **kw)
    with count_compiles() as compiles:
        r = bp.fit(net, params, X, Y, epochs=2 * CHUNK + 3, **kw)
    assert r.epochs_run == 2 * CHUNK + 3
    assert compiles == []
