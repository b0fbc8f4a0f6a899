"""The loss registry (``loss=``): every loss against jax.grad of an independent reference in
float64, Algorithm 1 and minibatches against a numpy loop, the saturated binary cross-entropy,
class labels, users' losses, and every bad input."""

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import bpjax as bp
from bpjax.losses import Notation
from conftest import (
    DAG_NETS,
    REFERENCE_PHI,
    assert_close_to_reference,
    count_compiles,
    networks,
    random_params,
    reference_forward,
)

# A user's output activation with values in (1/4, 3/4): binary cross-entropy on it takes the
# φ-form (∂ℓ/∂φ · ∂φ/∂a), not the fused logistic one.
QUARTER = bp.register_activation(
    "test_losses_quarter", lambda a: 0.25 + 0.5 * jax.nn.sigmoid(a),
    lambda a: 0.5 * jax.nn.sigmoid(a) * (1 - jax.nn.sigmoid(a)), overwrite=True)
REFERENCE_PHI[QUARTER.name] = lambda a: 0.25 + 0.5 / (1 + jnp.exp(-a))


# --- independent references: the losses written again, differently --------------------------

def reference_terms(case, phi, Y):
    """ℓ_i for each case, from the definitions in issue 10 (log of the probabilities)."""
    if case == "squared":
        return 0.5 * jnp.sum((phi - Y) ** 2, axis=-1)
    if case.startswith("bce"):
        return -jnp.sum(Y * jnp.log(phi) + (1 - Y) * jnp.log(1 - phi), axis=-1)
    return -jnp.sum(Y * jax.nn.log_softmax(phi, axis=-1), axis=-1)


def reference_loss(case, net, params, X, Y, s=None):
    ell = reference_terms(case, reference_forward(net, params, X), Y)
    s = jnp.ones(X.shape[0], X.dtype) if s is None else s
    return jnp.sum(s * ell) / jnp.sum(s)


@functools.partial(jax.jit, static_argnums=(0, 1))
def reference_value_and_grad(case, net, params, X, Y, s):
    return jax.value_and_grad(reference_loss, argnums=2)(case, net, params, X, Y, s)


NAME = {"squared": "squared", "bce": "binary_cross_entropy",
        "bce_phi": "binary_cross_entropy", "softmax": "softmax_cross_entropy"}


def for_case(net, case):
    """``net`` with the output layer each case needs: logistic for the fused binary
    cross-entropy, the user's (0, 1) activation for its φ-form; the others as drawn."""
    act = {"bce": "logistic", "bce_phi": QUARTER.name}.get(case)
    if act is None:
        return net
    return bp.Network(net.inputs, [*net.layers[:-1],
                                   dataclasses.replace(net.layers[-1], activation=act)])


def targets(case, N, d, seed, dtype=jnp.float64):
    """Targets of the kind each loss takes, with exact 0/1 and one-hot rows among them."""
    rng = np.random.default_rng(seed)
    if case == "squared":
        return jnp.asarray(rng.normal(size=(N, d)), dtype)
    if case.startswith("bce"):
        Y = rng.uniform(size=(N, d))
        Y[::2] = rng.integers(0, 2, (len(Y[::2]), d))
        return jnp.asarray(Y, dtype)
    e = np.exp(rng.normal(size=(N, d)))
    Y = e / e.sum(-1, keepdims=True)
    Y[::2] = np.eye(d)[rng.integers(0, d, len(Y[::2]))]
    return jnp.asarray(Y, dtype)


def assert_loss_and_gradient_match(case, net, params, X, Y, s):
    value, grads = bp.value_and_backprop(net, params, X, Y, s, loss=NAME[case])
    ref_value, ref_grads = reference_value_and_grad(case, net, params, X, Y, s)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(bp.loss(net, params, X, Y, s, loss=NAME[case]), ref_value,
                               rtol=1e-12)
    assert_close_to_reference(grads, ref_grads, rtol=1e-10)
    for l, g in enumerate(grads, start=1):  # structural zeros: exactly 0
        assert np.all(np.asarray(g)[~net.structure(l)] == 0), f"layer {l}"


CASES = ["squared", "bce", "bce_phi", "softmax"]


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=3)
@given(net=networks(max_depth=3, max_width=6, dag=True, adjacency=True),
       N=st.sampled_from([1, 4]), seed=st.integers(0, 2**16), weighted=st.booleans())
def test_every_loss_matches_jax_grad_on_random_dags(case, net, N, seed, weighted):
    assume(case != "softmax" or net.outputs >= 2)
    net = for_case(net, case)
    params = random_params(net, seed)
    X = jax.random.normal(jax.random.key(seed), (N, net.inputs))
    Y = targets(case, N, net.outputs, seed)
    s = jnp.asarray(np.random.default_rng(seed).uniform(0.1, 2, N)) if weighted else None
    assert_loss_and_gradient_match(case, net, params, X, Y, s)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", ["x_to_output", "masked_skip", "unsorted_inputs"])
def test_every_loss_matches_jax_grad_on_explicit_dags(case, name):
    net = for_case(DAG_NETS[name], case)  # x read by several layers, masks, no bias
    params = random_params(net, 3)
    X = jax.random.normal(jax.random.key(3), (5, net.inputs))
    s = jnp.asarray([0.5, 1.0, 0.0, 2.0, 1.5])
    assert_loss_and_gradient_match(case, net, params, X, targets(case, 5, net.outputs, 3), s)


# Shared by the tests below, so that each compiles once per loss.
MLP = bp.Network(3, [bp.Layer(5, ("tanh", "softplus", "tanh", "logistic", "tanh")),
                     bp.Layer(4, "tanh"), bp.Layer(3, "identity")])
NETS = {"squared": MLP, "softmax": MLP, "bce": for_case(MLP, "bce"),
        "bce_phi": for_case(MLP, "bce_phi")}
N = 9
PARAMS = random_params(MLP, 0)
X = jax.random.normal(jax.random.key(1), (N, 3))
Y = {case: targets(case, N, 3, 1) for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_per_sample_terms_deltas_ghost_norms_and_recursion_follow_the_loss(case):
    net, Yc, name = NETS[case], Y[case], NAME[case]
    one = jax.jit(jax.grad(lambda p, x, y: reference_loss(case, net, p, x[None], y[None])),
                  )
    per = bp.per_example_backprop(net, PARAMS, X, Yc, loss=name)
    ref = jax.vmap(one, in_axes=(None, 0, 0))(PARAMS, X, Yc)  # sample i's term, no 1/N
    assert_close_to_reference(per, ref)
    mean = bp.backprop(net, PARAMS, X, Yc, loss=name)
    assert_close_to_reference(mean, [g.mean(0) for g in per])
    # δ^L: each sample's ∂ℓ_i/∂a^L / N, against jax.grad with respect to a^L
    a_L = bp.forward_trace(net, PARAMS, X).a[-1]
    out = net.layers[-1].activations[0]
    d_ref = jax.grad(lambda a: reference_terms(case, out.phi(a), Yc).sum())(a_L) / N
    np.testing.assert_allclose(bp.deltas(net, PARAMS, X, Yc, loss=name)[-1], d_ref,
                               rtol=1e-10, atol=1e-14)
    # ghost norms and the clipped sum are the per-sample gradients' norms and sum
    norms = bp.ghost_norms(net, PARAMS, X, Yc, loss=name)
    sq = sum(np.sum(np.asarray(g) ** 2, axis=(1, 2)) for g in per)
    np.testing.assert_allclose(norms.total, sq, rtol=1e-10)
    clipped = bp.clipped_grad_sum(net, PARAMS, X, Yc, clip=0.1, loss=name)
    c = np.minimum(1, 0.1 / np.sqrt(sq))
    assert_close_to_reference(clipped.grads, [np.einsum("n,npr->pr", c, g) for g in per])
    # Algorithm 2 as written, with line 17's ∂ℓ/∂φ^L (or the fused δ^L)
    assert_close_to_reference(bp.recursive_grad(net, PARAMS, X[:3], Yc[:3], loss=name),
                              reference_value_and_grad(case, net, PARAMS, X[:3], Yc[:3],
                                                       None)[1])


def test_worked_by_hand():
    # softmax: one input x = 1, two identity outputs with a = (0, ln 3): softmax = (1/4, 3/4).
    # Class 0: ℓ = −log(1/4) = log 4; δ^1 = softmax − y = (−3/4, 3/4) = ∂ℓ/∂w_0· = ∂ℓ/∂w_1·.
    net = bp.Network(1, [bp.Layer(2, "identity")])
    params = (jnp.array([[0.0, 0.0], [0.0, np.log(3.0)]]),)
    value, (g,) = bp.value_and_backprop(net, params, jnp.ones((1, 1)), jnp.array([0]),
                                        loss="softmax_cross_entropy")
    np.testing.assert_allclose(value, np.log(4.0), rtol=1e-15)
    np.testing.assert_allclose(g, [[-0.75, 0.75], [-0.75, 0.75]], rtol=1e-15)
    # binary: one logistic output at a = 0, φ = 1/2, y = 1: ℓ = log 2, δ = φ − y = −1/2.
    net = bp.Network(1, [bp.Layer(1, "logistic")])
    value, (g,) = bp.value_and_backprop(net, (jnp.zeros((2, 1)),), jnp.full((1, 1), 3.0),
                                        jnp.ones(1), loss="binary_cross_entropy")
    np.testing.assert_allclose(value, np.log(2.0), rtol=1e-15)
    np.testing.assert_allclose(g, [[-0.5], [-1.5]], rtol=1e-15)  # δ·1 and δ·x


# --- the saturated binary cross-entropy ------------------------------------------------------

@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("a", [40.0, 200.0, 1e4])
def test_saturated_logistic_outputs_keep_a_finite_loss_and_their_gradient(dtype, a):
    # one logistic output, a^1 = w_0 + w_1 x = ±a: σ(a) rounds to 1 (or 0) in both dtypes
    net = bp.Network(1, [bp.Layer(1, "logistic")])
    params = (jnp.array([[0.0], [a]], dtype),)
    Xs = jnp.array([[1.0], [-1.0], [1.0], [-1.0]], dtype)
    Ys = jnp.array([0.0, 1.0, 1.0, 0.0], dtype)  # the first two wrong and saturated
    value, (g,) = bp.value_and_backprop(net, params, Xs, Ys, loss="binary_cross_entropy")
    assert value.dtype == dtype and g.dtype == dtype
    # ℓ = softplus(a) − y a: a for each wrong sample, 0 (to rounding) for each right one
    np.testing.assert_allclose(value, 2 * a / 4, rtol=1e-6)
    # δ = σ(a) − y: 1, −1, 0, 0 (to rounding): ∂L/∂w_0 = 0, ∂L/∂w_1 = (1·1 + (−1)(−1))/4
    np.testing.assert_allclose(g, [[0.0], [0.5]], atol=1e-6)
    # the squared loss on the same outputs has lost its gradient: σ'(a) underflows
    squared = bp.backprop(net, params, Xs, Ys)
    assert float(jnp.abs(squared[0]).max()) < 1e-15


# --- Algorithm 1 and minibatches against a numpy loop ----------------------------------------

def numpy_fit(case, params, X, Y, eta, epochs, B=1, s=None):
    """Algorithm 1 (B = 1) or minibatches of the paper's step family, in numpy: for each
    batch, ``w ← w − η Σ_{i∈B} c_i ∂ℓ_i/∂w`` with ``c_i = 1/N`` (or ``s_i / Σ s``); tanh hidden
    layers, the case's output layer."""
    W = [np.array(w) for w in params]
    X, Y = np.asarray(X), np.asarray(Y)
    n = len(X)
    c = np.full(n, 1 / n) if s is None else np.asarray(s) / np.sum(s)
    for _ in range(epochs):
        for start in range(0, n, B):
            h = [X[start:start + B]]
            yb = Y[start:start + B]
            cb = c[start:start + B, None]
            a = None
            for l, w in enumerate(W):
                a = w[0] + h[-1] @ w[1:]
                last = l == len(W) - 1
                h.append(np.tanh(a) if not last else
                         1 / (1 + np.exp(-a)) if case == "bce" else a)
            if case == "softmax":
                e = np.exp(a - a.max(-1, keepdims=True))
                d = e / e.sum(-1, keepdims=True) - yb  # ∂ℓ/∂a, by hand
            else:  # squared with identity outputs; bce with logistic outputs: φ − y
                d = h[-1] - yb
            d = cb * d  # each sample's share of L
            grads = [None] * len(W)
            for l in range(len(W) - 1, -1, -1):
                grads[l] = np.vstack([d.sum(0), h[l].T @ d])
                if l:
                    d = (d @ W[l][1:].T) * (1 - h[l] ** 2)
            W = [w - eta * g for w, g in zip(W, grads)]
    return W


TANH = bp.Network(3, [bp.Layer(6, "tanh"), bp.Layer(5, "tanh"), bp.Layer(3, "identity")])
TANH_NETS = {"squared": TANH, "softmax": TANH, "bce": for_case(TANH, "bce")}


@pytest.mark.parametrize("case", ["squared", "bce", "softmax"])
@pytest.mark.parametrize("B", [1, 4, None])
def test_fit_with_each_loss_is_the_numpy_loop(case, B):
    net, Yc = TANH_NETS[case], Y[case]
    params = random_params(net, 5)
    eta, epochs = 0.8, 3
    Xv, Yv = X[:4] * 0.5, Yc[:4]
    r = bp.fit(net, params, X, Yc, learning_rate=eta, epochs=epochs, batch_size=B,
               loss=NAME[case], validation=(Xv, Yv))
    W = numpy_fit(case, params, X, Yc, eta, epochs, N if B is None else B)
    assert_close_to_reference(r.params, W)
    # the history and the validation losses are the same loss, of the weights returned
    np.testing.assert_allclose(r.losses[-1], bp.loss(net, r.params, X, Yc, loss=NAME[case]),
                               rtol=1e-12)
    np.testing.assert_allclose(r.val_losses[-1],
                               reference_loss(case, net, r.params, Xv, Yv), rtol=1e-12)


@pytest.mark.parametrize("case", ["bce", "softmax"])
@pytest.mark.parametrize("B", [1, 4, None])
def test_fit_with_sample_weights_is_the_weighted_numpy_loop(case, B):
    net, Yc = TANH_NETS[case], Y[case]
    params = random_params(net, 6)
    s = np.array([0.5, 2.0, 0.0, 1.0, 3.0, 1.0, 0.25, 1.5, 1.0])
    r = bp.fit(net, params, X, Yc, learning_rate=0.8, epochs=2, batch_size=B, weights=s,
               loss=NAME[case], validation=(X[:5], Yc[:5], s[:5]))
    assert_close_to_reference(r.params, numpy_fit(case, params, X, Yc, 0.8, 2,
                                                  N if B is None else B, s))
    np.testing.assert_allclose(r.losses[-1], reference_loss(case, net, r.params, X, Yc, s),
                               rtol=1e-12)
    np.testing.assert_allclose(r.val_losses[-1],
                               reference_loss(case, net, r.params, X[:5], Yc[:5], s[:5]),
                               rtol=1e-12)
    if B == 4:  # a sweep takes the same weights, shared by its models
        many = bp.sweep(net, tuple(w[None] for w in params), X, Yc, learning_rate=0.8,
                        epochs=2, batch_size=B, weights=s, loss=NAME[case])
        assert_close_to_reference(tuple(w[0] for w in many.params), r.params, rtol=1e-13)


def test_large_layers_defer_their_updates_with_any_loss():
    # W^1 has 64·80 = 5120 ≥ 4096 weights: its rank-1 updates are deferred over blocks of 16
    net = bp.Network(64, [bp.Layer(80, "tanh"), bp.Layer(4, "identity")])
    params = random_params(net, 7)
    Xl = jax.random.normal(jax.random.key(7), (37, 64)) * 0.3
    labels = jnp.arange(37) % 4
    s = np.linspace(0.0, 2.0, 37)  # with sample weights, block by block
    r = bp.fit(net, params, Xl, labels, learning_rate=0.5, epochs=2, weights=s,
               loss="softmax_cross_entropy")
    W = numpy_fit("softmax", params, Xl, np.eye(4)[labels], 0.5, 2, s=s)
    assert_close_to_reference(r.params, W)


def test_optimizers_with_a_loss():
    net, name = TANH, "softmax_cross_entropy"
    # Adam on minibatches: G_B by hand = jax.grad of the batch's share of the reference loss
    params = random_params(net, 2)
    r = bp.fit(net, params, X, Y["softmax"], optimizer=optax.adam(0.05), batch_size=3,
               epochs=2, loss=name)
    opt = optax.adam(0.05)
    share = jax.grad(lambda p, xb, yb: reference_loss("softmax", net, p, xb, yb) * 3 / N)

    @jax.jit
    def adam_step(p, state, xb, yb):
        u, state = opt.update(share(p, xb, yb), state, p)
        return optax.apply_updates(p, u), state

    p, state = params, opt.init(params)
    for _ in range(2):
        for i in range(0, N, 3):
            p, state = adam_step(p, state, X[i:i + 3], Y["softmax"][i:i + 3])
    assert_close_to_reference(r.params, p)
    # L-BFGS: its line search calls jax.grad of value_fn, the loss by hand (a custom VJP)
    r = bp.fit(net, params, X, Y["softmax"], optimizer=optax.lbfgs(), batch_size=None,
               epochs=3, loss=name)
    lbfgs = optax.lbfgs()
    f = lambda p: reference_loss("softmax", net, p, X, Y["softmax"])  # noqa: E731

    @jax.jit
    def lbfgs_step(p, state):
        value, grad = jax.value_and_grad(f)(p)
        u, state = lbfgs.update(grad, state, p, value=value, grad=grad, value_fn=f)
        return optax.apply_updates(p, u), state

    p, state = params, lbfgs.init(params)
    for _ in range(3):
        p, state = lbfgs_step(p, state)
    assert_close_to_reference(r.params, p, rtol=1e-8)


def test_fit_under_jit_with_a_loss_equals_eager():
    net, Yc = TANH_NETS["bce"], Y["bce"]
    params = random_params(net, 5)
    run = jax.jit(lambda p, x, y: bp.fit(net, p, x, y, learning_rate=0.5, epochs=2,
                                         loss="binary_cross_entropy").params)
    eager = bp.fit(net, params, X, Yc, learning_rate=0.5, epochs=2, loss="binary_cross_entropy")
    assert_close_to_reference(run(params, X, Yc), eager.params, rtol=1e-12)


# --- integer class labels -------------------------------------------------------------------------

def test_integer_labels_are_one_hot_targets():
    labels = np.array([2, 0, 1, 1, 0, 2, 2, 1, 0])
    one_hot = np.eye(3)[labels]
    for f in (bp.loss, bp.backprop, bp.deltas):
        for lab in (labels, jnp.asarray(labels), labels.astype(np.uint8)):
            a = f(MLP, PARAMS, X, lab, loss="softmax_cross_entropy")
            b = f(MLP, PARAMS, X, one_hot, loss="softmax_cross_entropy")
            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
                np.testing.assert_array_equal(u, v)
    # one x with one label; the squared loss too (where one-hot targets are meant)
    np.testing.assert_array_equal(bp.loss(MLP, PARAMS, X[3], 1, loss="softmax_cross_entropy"),
                                  bp.loss(MLP, PARAMS, X[3], one_hot[3],
                                          loss="softmax_cross_entropy"))
    np.testing.assert_array_equal(bp.loss(MLP, PARAMS, X, labels), bp.loss(MLP, PARAMS, X,
                                                                            one_hot))
    # under jit labels are traced: one-hot inside the compiled function
    traced = jax.jit(lambda y: bp.loss(MLP, PARAMS, X, y, loss="softmax_cross_entropy"))
    np.testing.assert_allclose(traced(jnp.asarray(labels)),
                               bp.loss(MLP, PARAMS, X, one_hot, loss="softmax_cross_entropy"),
                               rtol=1e-14)
    r1 = bp.fit(MLP, PARAMS, X, labels, learning_rate=0.5, epochs=2,
                loss="softmax_cross_entropy", validation=(X[:3], labels[:3]))
    r2 = bp.fit(MLP, PARAMS, X, one_hot, learning_rate=0.5, epochs=2,
                loss="softmax_cross_entropy", validation=(X[:3], one_hot[:3]))
    assert_close_to_reference(r1.params, r2.params, rtol=1e-15)
    np.testing.assert_array_equal(r1.val_losses, r2.val_losses)


def test_predict_proba_predict_and_accuracy():
    labels = np.array([2, 0, 1, 1, 0, 2, 2, 1, 0])
    phi = np.asarray(bp.forward(MLP, PARAMS, X))
    e = np.exp(phi - phi.max(1, keepdims=True))
    np.testing.assert_allclose(bp.predict_proba(MLP, PARAMS, X, loss="softmax_cross_entropy"),
                               e / e.sum(1, keepdims=True), rtol=1e-13)
    classes = bp.predict(MLP, PARAMS, X, loss="softmax_cross_entropy")
    np.testing.assert_array_equal(classes, phi.argmax(1))
    assert int(bp.predict(MLP, PARAMS, X[4], loss="softmax_cross_entropy")) == phi[4].argmax()
    for Ys in (labels, np.eye(3)[labels]):
        np.testing.assert_allclose(
            bp.accuracy(MLP, PARAMS, X, Ys, loss="softmax_cross_entropy"),
            np.mean(phi.argmax(1) == labels), rtol=1e-15)
    s = np.arange(1.0, N + 1)
    np.testing.assert_allclose(
        bp.accuracy(MLP, PARAMS, X, labels, s, loss="softmax_cross_entropy"),
        np.sum(s * (phi.argmax(1) == labels)) / s.sum(), rtol=1e-15)
    # binary: one logistic output gives (N,) 0/1; several give (N, d), exact match counts
    net = NETS["bce"]
    p = np.asarray(bp.forward(net, PARAMS, X))
    np.testing.assert_array_equal(bp.predict_proba(net, PARAMS, X, loss="binary_cross_entropy"),
                                  p)
    np.testing.assert_array_equal(bp.predict(net, PARAMS, X, loss="binary_cross_entropy"),
                                  (p > 0.5).astype(int))
    Yb = (np.asarray(Y["bce"]) > 0.5).astype(float)
    np.testing.assert_allclose(bp.accuracy(net, PARAMS, X, Yb, loss="binary_cross_entropy"),
                               np.mean(((p > 0.5) == Yb).all(1)), rtol=1e-15)
    one = bp.Network(3, [bp.Layer(2, "tanh"), bp.Layer(1, "logistic")])
    p1 = np.asarray(bp.forward(one, bp.init(one, jax.random.key(0)), X))[:, 0]
    pred = bp.predict(one, bp.init(one, jax.random.key(0)), X, loss="binary_cross_entropy")
    assert pred.shape == (N,)
    np.testing.assert_array_equal(pred, (p1 > 0.5).astype(int))


# --- a user's loss ------------------------------------------------------------------------------

def huber(c):
    def ell(phi, y):
        r = phi - y
        return jnp.sum(jnp.where(jnp.abs(r) <= c, 0.5 * r * r, c * (jnp.abs(r) - 0.5 * c)), -1)

    def dell(phi, y):
        return jnp.clip(phi - y, -c, c)  # by hand

    return ell, dell


def test_a_registered_loss_is_backpropagated_and_checked():
    bp.register_loss("test_huber", *huber(0.5), overwrite=True)
    assert "test_huber" in bp.available_losses()
    params = random_params(MLP, 4)

    def ref(p):
        r = reference_forward(MLP, p, X) - Y["squared"]
        return jnp.mean(jnp.sum(jnp.where(jnp.abs(r) <= 0.5, 0.5 * r * r,
                                          0.5 * (jnp.abs(r) - 0.25)), -1))

    grads = bp.backprop(MLP, params, X, Y["squared"], loss="test_huber")
    assert_close_to_reference(grads, jax.grad(ref)(params))
    report = bp.check_gradients(MLP, params, X, Y["squared"], loss="test_huber")
    assert report.ok and report.loss_derivatives == () and "test_huber loss" in str(report)
    np.testing.assert_allclose(report.loss, ref(params), rtol=1e-12)


def test_a_wrong_user_derivative_is_named_by_check_gradients():
    ell, _ = huber(0.5)
    wrong = bp.Loss("test_wrong_huber", ell, lambda phi, y: phi - y)  # forgets the clip
    with pytest.raises(bp.GradientCheckError, match=r"loss 'test_wrong_huber': dell .* differs"):
        bp.check_gradients(MLP, PARAMS, X, Y["squared"], loss=wrong)
    report = bp.check_gradients(MLP, PARAMS, X, Y["squared"], loss=wrong,
                                raise_on_failure=False)
    assert not report.ok and "dell" in report.loss_derivatives[0]
    with pytest.raises(bp.GradientCheckError, match="differs"):
        bp.check_loss(wrong)


def test_check_loss_passes_the_built_ins_and_catches_a_wrong_fused_form():
    for name in bp.available_losses():
        if not name.startswith("test_"):
            assert bp.check_loss(name) < 1e-6
    bce = bp.get_loss("binary_cross_entropy")
    fused = bce.fused._replace(delta=lambda a, y: jax.nn.sigmoid(a) - y + 1e-3)
    with pytest.raises(bp.GradientCheckError, match=r"fused delta .* differs"):
        bp.check_loss(bce._replace(name="test_bad_fused", fused=fused))
    other = bce.fused._replace(ell=lambda a, y: jnp.sum(jnp.logaddexp(a, 0) - y * a + 1, -1))
    with pytest.raises(bp.GradientCheckError, match="not one loss"):
        bp.check_loss(bce._replace(name="test_bad_fused", fused=other))
    with pytest.raises(bp.GradientCheckError, match=r"must sum over the outputs"):
        bp.check_loss(bp.Loss("test_no_sum", lambda p, y: p - y, lambda p, y: p - y))


def test_overwriting_a_loss_never_gives_stale_compiled_numbers():
    bp.register_loss("test_overwritten", *huber(1.0), overwrite=True)
    before = bp.backprop(MLP, PARAMS, X, 3 * Y["squared"], loss="test_overwritten")
    fit_before = bp.fit(MLP, PARAMS, X, 3 * Y["squared"], learning_rate=0.1, epochs=1,
                        loss="test_overwritten").params
    bp.register_loss("test_overwritten", *huber(0.1), overwrite=True)
    after = bp.backprop(MLP, PARAMS, X, 3 * Y["squared"], loss="test_overwritten")
    fit_after = bp.fit(MLP, PARAMS, X, 3 * Y["squared"], learning_rate=0.1, epochs=1,
                       loss="test_overwritten").params
    bp.register_loss("test_overwritten_ref", *huber(0.1), overwrite=True)
    assert_close_to_reference(after, bp.backprop(MLP, PARAMS, X, 3 * Y["squared"],
                                                 loss="test_overwritten_ref"), rtol=1e-15)
    assert not np.allclose(before[0], after[0])
    assert not np.allclose(fit_before[0], fit_after[0])


# --- checkpoints remember the loss ----------------------------------------------------------------

def test_a_checkpoint_resumes_with_its_loss(tmp_path):
    name = "softmax_cross_entropy"
    r = bp.fit(MLP, PARAMS, X, Y["softmax"], learning_rate=0.5, epochs=2, loss=name)
    path = bp.save(tmp_path / "c.npz", MLP, r, loss=name)
    ck = bp.load(path)
    assert ck.loss == name
    resumed = bp.fit(MLP, ck, X, Y["softmax"], learning_rate=0.5, epochs=2)
    straight = bp.fit(MLP, PARAMS, X, Y["softmax"], learning_rate=0.5, epochs=4, loss=name)
    assert_close_to_reference(resumed.params, straight.params, rtol=1e-13)
    with pytest.warns(UserWarning, match="saved with loss 'softmax_cross_entropy', now"):
        bp.fit(MLP, ck, X, Y["softmax"], learning_rate=0.5, epochs=1, loss="squared")
    assert bp.load(bp.save(tmp_path / "d.npz", MLP, ck)).loss == name  # carried along
    assert bp.load(bp.save(tmp_path / "e.npz", MLP, r)).loss is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no loss saved: nothing to warn about
        bp.fit(MLP, bp.load(tmp_path / "e.npz"), X, Y["squared"], learning_rate=0.5, epochs=1)
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        bp.save(tmp_path / "f.npz", MLP, r, loss="nope")
    assert not (tmp_path / "f.npz").exists()


# --- bad input: a clear error before any work ---------------------------------------------------

BCE_NET = NETS["bce"]
STACKED = tuple(w[None] for w in PARAMS)  # one model of a sweep
ONE_OUT = bp.Network(3, [bp.Layer(2, "tanh"), bp.Layer(1, "identity")])


def call(name, net, Yb, loss):
    """Calls public function ``name`` with ``loss=``."""
    fns = {
        "loss": lambda: bp.loss(net, PARAMS, X, Yb, loss=loss),
        "backprop": lambda: bp.backprop(net, PARAMS, X, Yb, loss=loss),
        "value_and_backprop": lambda: bp.value_and_backprop(net, PARAMS, X, Yb, loss=loss),
        "deltas": lambda: bp.deltas(net, PARAMS, X, Yb, loss=loss),
        "per_example_backprop": lambda: bp.per_example_backprop(net, PARAMS, X, Yb, loss=loss),
        "ghost_norms": lambda: bp.ghost_norms(net, PARAMS, X, Yb, loss=loss),
        "clipped_grad_sum": lambda: bp.clipped_grad_sum(net, PARAMS, X, Yb, clip=1.0,
                                                        loss=loss),
        "recursive_grad": lambda: bp.recursive_grad(net, PARAMS, X, Yb, loss=loss),
        "check_gradients": lambda: bp.check_gradients(net, PARAMS, X, Yb, loss=loss),
        "fit": lambda: bp.fit(net, PARAMS, X, Yb, learning_rate=0.1, epochs=1, loss=loss),
        "sweep": lambda: bp.sweep(net, STACKED, X, Yb, learning_rate=0.1, epochs=1, loss=loss),
        "accuracy": lambda: bp.accuracy(net, PARAMS, X, Yb, loss=loss),
    }
    return fns[name]()


FUNCTIONS = ["loss", "backprop", "value_and_backprop", "deltas", "per_example_backprop",
             "ghost_norms", "clipped_grad_sum", "recursive_grad", "check_gradients", "fit",
             "sweep", "accuracy"]
labels = np.array([2, 0, 1, 1, 0, 2, 2, 1, 0])
NEGATIVE = np.asarray(Y["softmax"]).copy()
NEGATIVE[4] = [1.2, -0.2, 0.0]
NOT_ONE = np.asarray(Y["softmax"]).copy()
NOT_ONE[6] *= 0.9
ABOVE = np.asarray(Y["bce"]).copy()
ABOVE[3, 2] = 1.5
BELOW = np.asarray(Y["bce"]).copy()
BELOW[5, 0] = -0.25
BAD = [  # (net, Y, loss, error, message), each for every function
    (MLP, labels, "hinge", ValueError,
     r"unknown loss 'hinge'; known losses: binary_cross_entropy, .*softmax_cross_entropy, "
     r"squared"),
    (MLP, labels, 3, TypeError, r"loss must be a name \(str\) or a bpjax.Loss, got int"),
    (MLP, labels, bp.Loss("x", "ell", jnp.sum), TypeError,
     r"Loss 'x' needs callables ell and dell"),
    (MLP, labels, bp.Loss("x", jnp.sum, jnp.sum, targets="labels"), ValueError,
     r"Loss 'x': targets must be one of \('any', 'probabilities', 'distribution'\)"),
    (MLP, labels, bp.Loss("x", jnp.sum, jnp.sum, fused=(1, 2, 3)), TypeError,
     r"Loss 'x': fused must be a bpjax.losses.Fused"),
    (MLP, labels, bp.Loss("x", jnp.sum, jnp.sum, notation=("ℓ", "∂ℓ", "δ")), TypeError,
     r"Loss 'x': notation must be a bpjax.losses.Notation\(ell, dell, delta\) of str"),
    (MLP, labels, bp.Loss("x", jnp.sum, jnp.sum, notation=Notation("ℓ", "{phi} − {z}")),
     ValueError, r"Loss 'x': notation.dell = '\{phi\} − \{z\}' is not a template of \{phi\}, "
     r"\{a\}, \{y\}, \{L\} and \{k\}"),
    (MLP, np.asarray(Y["bce"]), "binary_cross_entropy", ValueError,
     r"loss 'binary_cross_entropy' needs outputs in \(0, 1\), but the output layer has "
     r"'identity' neurons"),
    (ONE_OUT, np.zeros(N), "softmax_cross_entropy", ValueError,
     r"loss 'softmax_cross_entropy' needs d >= 2 outputs .* got a network with d = 1"),
    (BCE_NET, ABOVE, "binary_cross_entropy", ValueError,
     r"loss 'binary_cross_entropy' needs targets in \[0, 1\] .* 1 entries outside it, first "
     r"Y\[3, 2\] = 1.5"),
    (BCE_NET, BELOW, "binary_cross_entropy", ValueError,
     r"needs targets in \[0, 1\] .* 1 entries outside it, first Y\[5, 0\] = -0.25"),
    (MLP, NEGATIVE, "softmax_cross_entropy", ValueError,
     r"distributions over the classes .* 1 negative or NaN entries, first Y\[4, 1\] = -0.2"),
    (MLP, NOT_ONE, "softmax_cross_entropy", ValueError,
     r"each row of Y to sum to 1 .* 1 rows do not, first row 6 sums to 0.9"),
    (MLP, labels + 1, "softmax_cross_entropy", ValueError,
     r"Y holds integer class labels, which must be in 0..d-1 = 0..2 .* 3 are not, first "
     r"Y\[0\] = 3"),
    (MLP, labels - 1, "squared", ValueError, r"0..d-1 = 0..2 .* first Y\[1\] = -1"),
    (MLP, labels.astype(float), "softmax_cross_entropy", ValueError,
     r"Y must have shape \(N, d\) = \(9, 3\), got shape \(9,\) \(or integer class labels"),
    (MLP, (labels + 1).tolist(), "softmax_cross_entropy", ValueError,  # a list is checked too
     r"Y holds integer class labels, which must be in 0..d-1 = 0..2 .* first Y\[0\] = 3"),
]


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("net, Yb, loss, error, message", BAD)
def test_bad_loss_and_targets_are_clear_errors_before_any_work(name, net, Yb, loss, error,
                                                               message):
    if name == "accuracy" and loss == "squared":
        return  # accuracy refuses the squared loss itself: tested below
    with count_compiles() as compiles, pytest.raises(error, match=message):
        call(name, net, Yb, loss)
    assert compiles == []


@pytest.mark.parametrize("net, Yb, loss, error, message", BAD[9:])
def test_bad_validation_targets_are_named(net, Yb, loss, error, message):
    ok = {"binary_cross_entropy": Y["bce"]}.get(loss, labels)
    with pytest.raises(error, match=message.replace("Y", "Y_val")):
        bp.fit(net, PARAMS, X, ok, learning_rate=0.1, epochs=1, loss=loss,
               validation=(X, Yb))


BAD_WEIGHTS = [
    (dict(weights=-np.ones(N)), ValueError, r"weights must be finite, >= 0, and not all 0"),
    (dict(weights=np.zeros(N)), ValueError, r"weights must be finite, >= 0, and not all 0"),
    (dict(weights=np.full(N, np.nan)), ValueError, r"weights must be finite"),
    (dict(weights=np.ones(N - 1)), ValueError, r"weights must have shape \(N,\) = \(9,\), got "
     r"shape \(8,\)"),
    (dict(weights=np.ones((N, 1))), ValueError, r"weights must have shape \(N,\) = \(9,\)"),
    (dict(weights="ones"), TypeError, r"weights must be a numeric array"),
    (dict(validation=(X, labels, np.ones(3))), ValueError,
     r"weights_val must have shape \(N,\) = \(9,\), got shape \(3,\)"),
    (dict(validation=(X, labels, -np.ones(N))), ValueError, r"weights_val must be finite, >= 0"),
    (dict(validation=(X, labels, np.ones(N), 1)), TypeError,
     r"validation must be a pair \(X_val, Y_val\) or a triple \(X_val, Y_val, weights_val\), "
     r"got tuple of 4"),
]


@pytest.mark.parametrize("who", ["fit", "sweep"])
@pytest.mark.parametrize("bad, error, message", BAD_WEIGHTS)
def test_bad_sample_weights_are_clear_errors_before_any_work(who, bad, error, message):
    f, p = (bp.fit, PARAMS) if who == "fit" else (bp.sweep, STACKED)
    with count_compiles() as compiles, pytest.raises(error, match=message):
        f(MLP, p, X, labels, learning_rate=0.1, epochs=1, loss="softmax_cross_entropy", **bad)
    assert compiles == []


@pytest.mark.parametrize("name", ["predict", "predict_proba", "accuracy"])
def test_predictions_need_a_classification_loss(name):
    f = getattr(bp, name)
    args = (MLP, PARAMS, X, labels) if name == "accuracy" else (MLP, PARAMS, X)
    with pytest.raises(ValueError, match=r"needs a classification loss .* got loss 'squared'"):
        f(*args, loss="squared")
    with pytest.raises(TypeError, match="required keyword-only argument: 'loss'"):
        f(*args)


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "softmax_cross_entropy"])
def test_levenberg_marquardt_refuses_other_losses(loss):
    with pytest.raises(ValueError, match=rf"supports only the squared loss .* got loss='{loss}'"):
        bp.levenberg_marquardt(MLP, PARAMS, X, Y["squared"], iterations=1, loss=loss)
    bp.register_loss("test_lm_squared", *huber(1e9), overwrite=True)
    with pytest.raises(ValueError, match="supports only the squared loss"):
        bp.levenberg_marquardt(MLP, PARAMS, X, Y["squared"], iterations=1,
                               loss="test_lm_squared")


def test_registering_is_checked():
    with pytest.raises(ValueError, match="loss 'squared' is already registered"):
        bp.register_loss("squared", *huber(1.0))
    with pytest.raises(TypeError, match="loss name must be a non-empty str"):
        bp.register_loss("", *huber(1.0))
    class Unhashable:  # a callable that cannot be a static argument of jax.jit
        __hash__ = None

        def __call__(self, phi, y):
            return phi - y

    with pytest.raises(TypeError, match="Loss 'x' must be hashable"):
        bp.get_loss(bp.Loss("x", jnp.sum, Unhashable()))
    with pytest.raises(ValueError, match="outputs must be one of"):
        bp.register_loss("test_outputs", *huber(1.0), outputs="positive", overwrite=True)


def test_traced_targets_pass_unchecked():
    # under jit the values cannot be looked at: a traced 1.5 computes (the documented limit)
    f = jax.jit(lambda y: bp.loss(BCE_NET, PARAMS, X, y, loss="binary_cross_entropy"))
    assert np.isfinite(f(jnp.full((N, 3), 1.5)))
