"""bp.explain: one sample's a, φ, δ, ∂L/∂w and Algorithm 1's step, against independent references.

The references: the paper's own formulas for figure 2 (§1.3.1: equation (6) and the list of
``∂φ_θ/∂w``, e.g. ``∂φ_θ/∂w^1_21 = w^2_11 x[2]``) worked by hand below, and a softmax and a
binary cross-entropy step by hand; ``jax.grad`` of the plain-JAX reference loss of conftest,
and of every loss of the registry (a user's too) written again here; bpjax's forward_trace, deltas and backprop; and bp.fit
with ``batch_size=1`` for the step. The written formulas are checked by evaluating them.
"""

import dataclasses
import itertools
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from bpjax.explain import weight_symbol
from bpjax.losses import Notation
from conftest import (
    DAG_NETS,
    REFERENCE_PHI,
    assert_close_to_reference,
    reference_forward,
    reference_grad,
)

FIG2 = bp.Network(2, [bp.Layer(2, ("identity", "square")), bp.Layer(1, "identity", bias=False)])
# w^1: rows j = 0, 1, 2 (bias, x[1], x[2]); columns k = 1, 2. w^2: row 0 a structural zero.
W1 = np.array([[1.0, -1.0], [2.0, 0.5], [-1.0, 3.0]])
W2 = np.array([[0.0], [2.0], [-3.0]])
X = np.array([1.0, 2.0])
Y = 1.0
# By hand: a^1_1 = 1 + 2·1 − 1·2 = 1, a^1_2 = −1 + 0.5·1 + 3·2 = 5.5,
# φ_θ(x) = 2·1 + (−3)·5.5² = −88.75, residual φ_θ(x) − y = −89.75.
A1, A2, OUT = 1.0, 5.5, -88.75
R = OUT - Y
NETS = {"figure_2": FIG2,
        "feedforward": bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(3, "relu"),
                                      bp.Layer(2, "identity")]),
        **DAG_NETS}


def fig2_params():
    return (jnp.asarray(W1), jnp.asarray(W2))


def paper_dphi_dw(w1, w2, x):
    """∂φ_θ/∂w(x) as listed in §1.3.1, shaped like params (w^2_01 absent: 0)."""
    a1 = w1[0, 0] + w1[1, 0] * x[0] + w1[2, 0] * x[1]
    a2 = w1[0, 1] + w1[1, 1] * x[0] + w1[2, 1] * x[1]
    return (np.array([[w2[1, 0], 2 * w2[2, 0] * a2],                 # w^1_01, w^1_02
                      [w2[1, 0] * x[0], 2 * w2[2, 0] * x[0] * a2],   # w^1_11, w^1_12
                      [w2[1, 0] * x[1], 2 * w2[2, 0] * x[1] * a2]]),  # w^1_21 (green path)
            np.array([[0.0], [a1], [a2**2]]))


# --- the paper's network, by hand ------------------------------------------------------------

def test_figure_2_worked_by_hand():
    step = bp.explain(FIG2, fig2_params(), X, Y)
    np.testing.assert_array_equal(step.phi[0], X)
    assert step.a[0] is None and step.delta[0] is None
    np.testing.assert_allclose(step.a[1], [A1, A2], rtol=1e-15)
    np.testing.assert_allclose(step.phi[1], [A1, A2**2], rtol=1e-15)
    np.testing.assert_allclose(step.phi[2], [OUT], rtol=1e-15)
    # δ^2_1 = (φ − y)·1; δ^1_1 = 1·w^2_11 δ^2_1; δ^1_2 = 2 a^1_2 · w^2_21 δ^2_1
    # Algorithm 2, lines 6-7: ∂φ/∂a = 1 for z, 2a for z²
    np.testing.assert_array_equal(step.dphi[1], [1.0, 2 * A2])
    np.testing.assert_array_equal(step.dphi[2], [1.0])
    np.testing.assert_allclose(step.delta[2], [R], rtol=1e-15)
    np.testing.assert_allclose(step.delta[1], [2.0 * R, 2 * A2 * -3.0 * R], rtol=1e-15)
    assert float(step.loss) == 0.5 * R**2  # one sample: L(x_i) = ½ (φ − y)², N = 1
    # ∂L/∂w(x_i) = ∂φ_θ/∂w(x_i) (φ_θ(x_i) − y_i), with the paper's ∂φ_θ/∂w
    d1, d2 = paper_dphi_dw(W1, W2, X)
    np.testing.assert_allclose(step.grads[0], d1 * R, rtol=1e-14)
    np.testing.assert_allclose(step.grads[1], d2 * R, rtol=1e-14)
    # the green path: ∂L/∂w^1_21 = w^2_11 x[2] (φ − y) = 2 · 2 · (−89.75)
    assert float(step.grads[0][2, 0]) == 2.0 * 2.0 * R


def test_figure_2_one_step_of_algorithm_1():
    eta, N = 0.5, 200
    step = bp.explain(FIG2, fig2_params(), X, Y, learning_rate=eta, N=N)
    d1, d2 = paper_dphi_dw(W1, W2, X)
    np.testing.assert_allclose(step.updated[0], W1 - eta / N * d1 * R, rtol=1e-14)
    np.testing.assert_allclose(step.updated[1], W2 - eta / N * d2 * R, rtol=1e-14)
    assert float(step.updated[1][0, 0]) == 0.0  # the structural zero stays
    # and the printed table says so, with the numbers of line 6
    text = str(step)
    assert "η = 0.5" in text and "N = 200" in text and "η/N = 0.0025" in text
    row = next(line for line in text.splitlines() if line.startswith("w^1_21"))
    assert row.split() == ["w^1_21", "-1", "x[2]", "=", "2", "-179.5", "-359",
                           f"{-1 - eta / N * -359:.6g}"]


def test_figure_2_against_the_library_and_jax_grad():
    params = fig2_params()
    step = bp.explain(FIG2, params, X, Y)
    tr = bp.forward_trace(FIG2, params, X)
    deltas = bp.deltas(FIG2, params, X, [Y])
    for l in range(1, 3):
        np.testing.assert_array_equal(step.a[l], tr.a[l])
        np.testing.assert_array_equal(step.phi[l], tr.phi[l])
        np.testing.assert_array_equal(step.delta[l], deltas[l][0])
    for g, b in zip(step.grads, bp.backprop(FIG2, params, X, [Y])):
        np.testing.assert_array_equal(g, b)
    assert_close_to_reference(step.grads, reference_grad(FIG2, params, X[None], jnp.array([[Y]])))


def test_figure_2_formulas_are_the_papers():
    step = bp.explain(FIG2, fig2_params(), X, Y)
    assert step.formula(1, 1) == "φ^1_1 = w^1_01 + w^1_11 x[1] + w^1_21 x[2]"
    assert step.formula(1, 2) == "φ^1_2 = (w^1_02 + w^1_12 x[1] + w^1_22 x[2])²"
    assert step.formula(2, 1) == "φ^2_1 = w^2_11 φ^1_1 + w^2_21 φ^1_2"  # no w^2_01
    # equation (6), written out down to x
    assert step.formula(2, 1, expand=True) == (
        "φ^2_1 = w^2_11 (w^1_01 + w^1_11 x[1] + w^1_21 x[2]) "
        "+ w^2_21 (w^1_02 + w^1_12 x[1] + w^1_22 x[2])²")
    # the function each neuron computes, with the weights' values (as Playground users ask)
    assert step.formula(1, 2, weights=True) == "φ^1_2 = (-1 + 0.5 x[1] + 3 x[2])²"
    assert step.formula(2, 1, weights=True, expand=True) == (
        "φ^2_1 = 2 (1 + 2 x[1] − 1 x[2]) − 3 (-1 + 0.5 x[1] + 3 x[2])²")
    assert step.formula(1, 2, numbers=True) == (
        "φ^1_2 = (w^1_02 + w^1_12 x[1] + w^1_22 x[2])² = (-1 + 0.5·1 + 3·2)² = 5.5² = 30.25")
    assert step.delta_formula(2, 1, numbers=True) == (
        "δ^2_1 = ∂ℓ/∂φ^2_1 · ∂φ^2_1/∂a^2_1 = (φ^2_1 − y_1) · 1 = (-88.75 − 1) · 1 = -89.75")
    assert step.delta_formula(1, 2) == (
        "δ^1_2 = ∂φ^1_2/∂a^1_2 · (w^2_21 δ^2_1) = 2·a^1_2 · (w^2_21 δ^2_1)")
    assert step.formulas() == (step.formula(1, 1), step.formula(1, 2), step.formula(2, 1))


# --- every network: the same numbers as the library and jax.grad ------------------------------

def _random(net, seed):
    params = bp.init(net, jax.random.key(seed), dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    return params, rng.normal(size=net.inputs), rng.normal(size=net.outputs)


@pytest.mark.parametrize("name", sorted(NETS))
def test_numbers_match_the_library_and_jax_grad(name):
    net = NETS[name]
    params, x, y = _random(net, 1)
    step = bp.explain(net, params, x, y)
    tr = bp.forward_trace(net, params, x)
    deltas = bp.deltas(net, params, x, y)
    assert len(step.a) == len(step.phi) == len(step.delta) == net.depth + 1
    for l in range(1, net.depth + 1):
        np.testing.assert_array_equal(step.a[l], tr.a[l])
        np.testing.assert_array_equal(step.phi[l], tr.phi[l])
        np.testing.assert_array_equal(step.delta[l], deltas[l][0])
        assert step.delta[l].shape == (net.sizes[l],)
    for g, b in zip(step.grads, bp.backprop(net, params, x, y)):
        np.testing.assert_array_equal(g, b)
    assert_close_to_reference(step.grads, reference_grad(net, params, x[None], y[None]))
    np.testing.assert_allclose(step.loss, 0.5 * np.sum((np.asarray(tr.phi[-1]) - y) ** 2),
                               rtol=1e-14)


@pytest.mark.parametrize("name", ["figure_2", "masked_skip", "fan_out"])
def test_chained_steps_are_one_epoch_of_algorithm_1(name):
    """Line 6 for i = 1..N in order, each step from the weights the previous one left, is
    bp.fit's epoch with batch_size=1; clamped weights stay."""
    net = NETS[name]
    params, _, _ = _random(net, 2)
    rng = np.random.default_rng(3)
    Xs, Ys = rng.normal(size=(5, net.inputs)), rng.normal(size=(5, net.outputs))
    eta = 0.1
    w = (net.depth, 1, 1)  # w^L_11 exists in these networks: clamp it
    params, frozen = bp.clamp(net, params, {w: 0.25})
    p = params
    for x, y in zip(Xs, Ys):
        p = bp.explain(net, p, x, y, learning_rate=eta, N=len(Xs), frozen=frozen).updated
    fitted = bp.fit(net, params, Xs, Ys, learning_rate=eta, epochs=1, batch_size=1,
                    frozen=frozen).params
    for a, b in zip(p, fitted):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert float(p[w[0] - 1][w[1], w[2] - 1]) == 0.25


# --- the written formulas compute the numbers ----------------------------------------------

_FUNCTIONS = {"tanh": np.tanh, "σ": lambda v: 1 / (1 + np.exp(-v)), "max": max,
              "clip": lambda v, lo, hi: min(max(v, lo), hi),
              "log": np.log, "e": np.e}


def _evaluate(expression: str) -> float:
    """A formula with numbers, in Python: ``·`` ``²`` ``σ(`` ``e^(`` ``−`` translated."""
    py = (expression.replace("·", "*").replace("²", "**2").replace("−", "-")
          .replace("e^", "e**"))
    return float(eval(py, {"__builtins__": {}}, _FUNCTIONS))  # noqa: S307 - our own output


def _symbols(step):
    """Every symbol of the written formulas with its value: w^l_jk, x[k], φ^s_i."""
    values = {}
    for l in range(1, step.net.depth + 1):
        w = np.asarray(step.params[l - 1])
        for j in range(w.shape[0]):
            for k in range(1, w.shape[1] + 1):
                values[weight_symbol(l, j, k)] = w[j, k - 1]
        for k in range(1, step.net.sizes[l] + 1):
            values[f"φ^{l}_{k}"] = np.asarray(step.phi[l])[k - 1]
    for k in range(1, step.net.inputs + 1):
        values[f"x[{k}]"] = np.asarray(step.x)[k - 1]
    return values


_SYMBOL = re.compile(r"w\^\d+_(?:\(\d+,\d+\)|\d\d)|x\[\d+\]|φ\^\d+_\d+")


def _evaluate_symbols(expression: str, values: dict) -> float:
    """A symbolic formula at the given values; a product of symbols is written with a space."""
    expression = re.sub(r"(?<=[\w\]\)²]) (?=[wxφσ(]|tanh|max|log)", " * ", expression)
    return _evaluate(_SYMBOL.sub(lambda m: f"({float(values[m.group()])!r})", expression))


@pytest.mark.parametrize("name", sorted(NETS))
def test_formulas_evaluate_to_the_values(name):
    net = NETS[name]
    params, x, y = _random(net, 4)
    step = bp.explain(net, params, x, y)
    values = _symbols(step)
    for l in range(1, net.depth + 1):
        for k in range(1, net.sizes[l] + 1):
            phi = float(np.asarray(step.phi[l])[k - 1])
            stages = step.formula(l, k, numbers=True).split(" = ")
            assert stages[0] == f"φ^{l}_{k}"
            assert math.isclose(float(stages[-1]), phi, rel_tol=1e-5, abs_tol=1e-6)
            if len(stages) > 2:  # the sum with numbers (6 significant digits)
                assert math.isclose(_evaluate(stages[2]), phi, rel_tol=1e-4, abs_tol=1e-5)
            for expand, weights in itertools.product((False, True), (False, True)):
                symbolic = step.formula(l, k, expand=expand, weights=weights).split(" = ")[1]
                got = _evaluate_symbols(symbolic, values)
                tol = 1e-4 if weights else 1e-9  # weights written with 6 significant digits
                assert math.isclose(got, phi, rel_tol=tol, abs_tol=tol), symbolic
            delta = float(np.asarray(step.delta[l])[k - 1])
            stages = step.delta_formula(l, k, numbers=True).split(" = ")
            assert math.isclose(float(stages[-1].split(":")[0]), delta, rel_tol=1e-5,
                                abs_tol=1e-6)
            if len(stages) > 2:
                assert math.isclose(_evaluate(stages[-2]), delta, rel_tol=1e-4, abs_tol=1e-5)


# --- renderings ------------------------------------------------------------------------------

def test_text_markdown_html_and_json_carry_every_number():
    net = DAG_NETS["masked_skip"]
    params, x, y = _random(net, 5)
    step = bp.explain(net, params, x, y, learning_rate=0.3, N=10)
    text, md, page = str(step), step.to_markdown(), step._repr_html_()
    assert page == step.to_html() and page.startswith('<div class="bpjax-explain">')
    assert "w<sup>3</sup><sub>21</sub>" in page and "δ<sup>l</sup><sub>k</sub>" in page
    data = json.loads(step.to_json())
    weights = {(w["l"], w["j"], w["k"]): w for w in data["weights"]}
    assert len(weights) == net.num_params  # structural zeros are not weights
    for l in range(1, net.depth + 1):
        exists = net.structure(l)
        g, u = np.asarray(step.grads[l - 1]), np.asarray(step.updated[l - 1])
        for j, k in zip(*np.nonzero(exists)):
            w = weights[(l, int(j), int(k) + 1)]
            assert w["grad"] == float(g[j, k]) and w["updated"] == float(u[j, k])
            symbol = weight_symbol(l, int(j), int(k) + 1)
            assert w["symbol"] == symbol
            assert symbol in text and f"`{symbol}`" in md
        for j, k in zip(*np.nonzero(~exists)):
            symbol = weight_symbol(l, int(j), int(k) + 1)
            assert symbol in data["structural_zeros"] and (l, int(j), int(k) + 1) not in weights
        np.testing.assert_array_equal(data["grads"][l - 1], step.grads[l - 1])
        np.testing.assert_array_equal(data["params"][l - 1], step.params[l - 1])
    neurons = {(n["l"], n["k"]): n for n in data["neurons"]}
    assert len(neurons) == sum(net.sizes)
    assert neurons[(2, 1)]["delta"] == float(step.delta[2][0])
    assert neurons[(2, 1)]["formula"] == step.formula(2, 1)
    assert neurons[(2, 1)]["formula_weights"] == step.formula(2, 1, weights=True)
    assert data["loss"] == {"name": "squared", "value": float(step.loss),
                            "formula": "L(x_i) = ½ Σ_k (φ^L_k − y_k)²", "fused": False,
                            "output_error": "∂ℓ/∂φ^L_k = φ^L_k − y_k",
                            "output_error_values": np.asarray(step.output_error).tolist(),
                            "proba": None}
    np.testing.assert_array_equal(step.output_error, np.asarray(step.phi[-1]) - y)
    assert data["learning_rate"] == 0.3 and data["N"] == 10
    assert data["network"]["sizes"] == list(net.sizes)
    # the exported weights load back
    again = bp.explain(net, tuple(jnp.asarray(w) for w in data["params"]), x, y)
    np.testing.assert_array_equal(again.grads[1], step.grads[1])
    assert "| `φ^3_2` | 3 | 2 |" in md
    assert "clamped" not in text


def test_large_networks_render_a_bounded_table():
    net = bp.Network(30, [bp.Layer(30, "tanh"), bp.Layer(2, "identity")])
    params, x, y = _random(net, 6)
    step = bp.explain(net, params, x, y)
    text = step.to_text(max_rows=50)
    assert f"… {net.num_params - 50} more rows" in text
    assert len(text.splitlines()) < 250
    assert "more rows" not in step.to_text(max_rows=10_000)


def test_float32_stays_float32_and_clamps_are_marked():
    params = tuple(w.astype(jnp.float32) for w in fig2_params())
    params, frozen = bp.clamp(FIG2, params, {(1, 0, 2): 0.0, (2, 1, 1): 1.0, (2, 2, 1): 1.0})
    step = bp.explain(FIG2, params, X.astype(np.float32), Y, learning_rate=0.5, N=200,
                      frozen=frozen)
    assert all(g.dtype == jnp.float32 for g in step.grads)
    assert all(u.dtype == jnp.float32 for u in step.updated)
    assert float(step.updated[1][1, 0]) == 1.0 and float(step.updated[0][0, 1]) == 0.0
    assert str(step).count("(clamped)") == 3


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(net="net"), TypeError, r"explain expects a bpjax.Network, got str"),
    (dict(x=np.ones((3, 2))), ValueError, r"explain takes one sample: x must have shape \(D,\)"),
    (dict(x=np.ones(3)), ValueError, r"x must have shape \(N, D\) = \(N, 2\) or \(D,\)"),
    (dict(y=np.ones(2)), ValueError, r"y must have shape \(d,\) = \(1,\)"),
    (dict(learning_rate=0.0), ValueError, r"learning_rate"),
    (dict(learning_rate="fast"), TypeError, r"learning_rate"),
    (dict(learning_rate=0.1, N=0), ValueError, r"N"),
    (dict(learning_rate=0.1, N=2.5), TypeError, r"N"),
    (dict(N=5), ValueError, r"N is the 1/N of Algorithm 1's step: pass learning_rate"),
    (dict(frozen=bp.frozen_mask(FIG2, [(1, 0, 1)])), ValueError, r"frozen= clamps"),
    (dict(learning_rate=0.1, frozen=(np.zeros((3, 2), bool),)), ValueError,
     r"frozen has 1 layers"),
    (dict(loss="hinge"), ValueError, r"unknown loss 'hinge'; known losses: .*squared"),
    (dict(loss="binary_cross_entropy"), ValueError, r"needs outputs in \(0, 1\)"),
    (dict(loss="softmax_cross_entropy"), ValueError, r"needs d >= 2 outputs"),
    (dict(loss=len), TypeError, r"loss must be a name \(str\) or a bpjax.Loss"),
    (dict(params=(np.ones((2, 2)), np.ones((3, 1)))), ValueError, r"params\[0\] \(layer 1\)"),
])
def test_bad_arguments(kwargs, error, message):
    args = dict(net=FIG2, params=fig2_params(), x=X, y=Y)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        bp.explain(args.pop("net"), args.pop("params"), args.pop("x"), args.pop("y"), **args)


@pytest.mark.parametrize("l, k, message", [
    (0, 1, r"layer l must be an int in 1..L = 1..2, got 0"),
    (3, 1, r"layer l must be an int in 1..L = 1..2, got 3"),
    (1, 3, r"neuron k of layer 1 must be an int in 1..N_1 = 1..2"),
    (1, 0, r"neuron k of layer 1 must be an int in 1..N_1 = 1..2 \(counted from 1\), got 0"),
])
def test_bad_neurons(l, k, message):
    step = bp.explain(FIG2, fig2_params(), X, Y)
    for method in (step.formula, step.delta_formula):
        with pytest.raises(ValueError, match=message):
            method(l, k)


# --- every loss of the registry, a user's too ---------------------------------------------------
# References written here, independently of bpjax.losses: the losses from their definitions
# (logs of the probabilities), on conftest's plain-JAX forward pass, differentiated by jax.grad.

QUARTER = bp.register_activation(  # outputs in (1/4, 3/4): binary cross-entropy's φ-form
    "test_explain_quarter", lambda a: 0.25 + 0.5 * jax.nn.sigmoid(a),
    lambda a: 0.5 * jax.nn.sigmoid(a) * (1 - jax.nn.sigmoid(a)), overwrite=True)
REFERENCE_PHI[QUARTER.name] = lambda a: 0.25 + 0.5 / (1 + jnp.exp(-a))


def _huber_ell(phi, y):
    r = phi - y
    return jnp.sum(jnp.where(jnp.abs(r) <= 0.5, 0.5 * r * r, 0.5 * (jnp.abs(r) - 0.25)), -1)


HUBER = bp.register_loss(
    "test_explain_huber", _huber_ell, lambda phi, y: jnp.clip(phi - y, -0.5, 0.5),
    notation=Notation("Σ_k huber_½(φ^L_k − y_k)", "clip({phi} − {y}, −0.5, 0.5)"),
    overwrite=True)
BARE = bp.Loss("test_explain_bare", _huber_ell, HUBER.dell)  # a user's loss, no notation

# case: (loss, output activation, reference ℓ(φ, y) of one sample)
LOSS_CASES = {
    "squared": ("squared", "identity", lambda phi, y: 0.5 * jnp.sum((phi - y) ** 2)),
    "bce_fused": ("binary_cross_entropy", "logistic",
                  lambda phi, y: -jnp.sum(y * jnp.log(phi) + (1 - y) * jnp.log(1 - phi))),
    "bce_phi": ("binary_cross_entropy", QUARTER.name,
                lambda phi, y: -jnp.sum(y * jnp.log(phi) + (1 - y) * jnp.log(1 - phi))),
    "softmax": ("softmax_cross_entropy", "identity",
                lambda phi, y: -jnp.sum(y * (phi - jnp.log(jnp.sum(jnp.exp(phi)))))),
    "user_huber": ("test_explain_huber", "tanh",
                   lambda phi, y: jnp.sum(jnp.where(abs(phi - y) <= 0.5, 0.5 * (phi - y) ** 2,
                                                    0.5 * abs(phi - y) - 0.125))),
    "user_bare": (BARE, "identity", lambda phi, y: jnp.sum(
        jnp.where(abs(phi - y) <= 0.5, 0.5 * (phi - y) ** 2, 0.5 * abs(phi - y) - 0.125))),
}
LOSS_NETS = {"feedforward": NETS["feedforward"], "masked_skip": DAG_NETS["masked_skip"]}


def _with_output(net, activation):
    return bp.Network(net.inputs, [*net.layers[:-1],
                                   dataclasses.replace(net.layers[-1], activation=activation)])


def _sample(case, net, seed):
    params = bp.init(net, jax.random.key(seed), dtype=jnp.float64)
    params = tuple(2 * w for w in params)  # away from 0, so every loss has work to do
    rng = np.random.default_rng(seed)
    x, d = rng.normal(size=net.inputs), net.outputs
    y = {"bce_fused": rng.uniform(size=d), "bce_phi": (rng.uniform(size=d) > 0.5) * 1.0,
         "softmax": np.eye(d)[1]}.get(case, rng.normal(size=d))
    return params, x, y


@pytest.mark.parametrize("net_name", sorted(LOSS_NETS))
@pytest.mark.parametrize("case", sorted(LOSS_CASES))
def test_every_loss_matches_backprop_and_jax_grad(case, net_name):
    loss, activation, reference_ell = LOSS_CASES[case]
    net = _with_output(LOSS_NETS[net_name], activation)
    params, x, y = _sample(case, net, 7)
    step = bp.explain(net, params, x, y, loss=loss)
    # the library's own functions, with the same loss=
    for g, b in zip(step.grads, bp.backprop(net, params, x, y, loss=loss)):
        np.testing.assert_array_equal(g, b)
    ds = bp.deltas(net, params, x, y, loss=loss)
    for l in range(1, net.depth + 1):
        np.testing.assert_array_equal(step.delta[l], ds[l][0])
    np.testing.assert_array_equal(step.loss, bp.loss(net, params, x, y, loss=loss))
    # jax.grad of the reference forward and loss written above, float64
    def ell(p):
        return reference_ell(reference_forward(net, p, jnp.asarray(x)[None])[0], jnp.asarray(y))

    assert_close_to_reference(step.grads, jax.grad(ell)(params), rtol=1e-10)
    np.testing.assert_allclose(step.loss, ell(params), rtol=1e-12)
    # where the backward pass starts: ∂ℓ/∂φ^L, or the fused δ^L = ∂ℓ/∂a^L
    phi_L = jnp.asarray(step.phi[-1])
    names = [a.name for a in net.layers[-1].activations]
    dphi_da = jax.vmap(jax.grad(lambda a, n: REFERENCE_PHI[n](a)), (0, None))
    assert step.fused == (case == "bce_fused")
    if step.fused:
        phi_of_a = lambda a: REFERENCE_PHI["logistic"](a)  # noqa: E731
        ref = jax.grad(lambda a: reference_ell(phi_of_a(a), jnp.asarray(y)))(step.a[-1])
        np.testing.assert_allclose(step.output_error, ref, rtol=1e-10, atol=1e-14)
        np.testing.assert_array_equal(step.delta[-1], step.output_error)
    else:
        ref = jax.grad(reference_ell)(phi_L, jnp.asarray(y))
        np.testing.assert_allclose(step.output_error, ref, rtol=1e-10, atol=1e-14)
        dphi = np.array([float(dphi_da(jnp.asarray([a]), n)[0])
                         for a, n in zip(np.asarray(step.a[-1]), names)])
        np.testing.assert_allclose(step.delta[-1], ref * dphi, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("case", sorted(LOSS_CASES))
def test_every_loss_is_written_and_its_numbers_evaluate(case):
    loss, activation, _ = LOSS_CASES[case]
    net = _with_output(NETS["feedforward"], activation)
    params, x, y = _sample(case, net, 8)
    step = bp.explain(net, params, x, y, loss=loss, learning_rate=0.1, N=4)
    L = net.depth
    notation = bp.get_loss(loss).notation
    for k in range(1, net.outputs + 1):
        stages = step.delta_formula(L, k, numbers=True).split(" = ")
        delta = float(step.delta[L][k - 1])
        assert stages[0] == f"δ^{L}_{k}"
        assert math.isclose(float(stages[-1]), delta, rel_tol=1e-5, abs_tol=1e-6)
        assert math.isclose(_evaluate(stages[-2]), delta, rel_tol=1e-4, abs_tol=1e-6)
        if step.fused:  # δ^L_k = ∂ℓ/∂a^L_k = σ(a^L_k) − y_k = σ(number) − number
            assert stages[1:3] == [f"∂ℓ/∂a^{L}_{k}", f"σ(a^{L}_{k}) − y_{k}"]
        else:
            assert stages[1] == f"∂ℓ/∂φ^{L}_{k} · ∂φ^{L}_{k}/∂a^{L}_{k}"
            written = notation.output(notation.dell, k, L=L)
            assert stages[2] in (f"({written}) · 1", f"{written} · 1",
                                 f"({written}) · {bp.activations.dphi_expression(activation, L, k)}")
    text, md, page = str(step), step.to_markdown(), step.to_html()
    formula = step.loss_formula()
    assert formula == f"L(x_i) = {notation.ell}" and formula in text and f"`{formula}`" in md
    assert f"{step.loss_name} loss" in text and step.loss_name == bp.get_loss(loss).name
    assert step.delta_formula(L, 1, numbers=True) in text
    data = json.loads(step.to_json())
    assert data["loss"]["name"] == step.loss_name and data["loss"]["fused"] == step.fused
    assert data["loss"]["output_error_values"] == np.asarray(step.output_error).tolist()
    if case == "softmax":
        np.testing.assert_allclose(data["loss"]["proba"], bp.predict_proba(net, params, x,
                                                                           loss=loss))
        assert "P(class k)" in text and "softmax(φ<sup>L</sup>)<sub>k</sub>" in page
    if case == "user_bare":  # no notation: the bare symbols, and the numbers still
        assert "L(x_i) = ℓ(φ^L, y)" in text and f"∂ℓ/∂φ^{L}_1 · 1 = " in text


def test_softmax_and_fused_binary_cross_entropy_worked_by_hand():
    # softmax: x = 1 → φ^1 = 2x = 2 (identity) → a^2 = (0, (ln 3 / 2)·2) = (0, ln 3), logits;
    # softmax = (1/4, 3/4). Class 1: ℓ = −log(3/4); δ^2 = softmax − y = (1/4, −1/4);
    # δ^1 = 1 · (w^2_11 δ^2_1 + w^2_12 δ^2_2) = 0 + (ln 3 / 2)(−1/4) = −ln 3 / 8.
    net = bp.Network(1, [bp.Layer(1, "identity"), bp.Layer(2, "identity")])
    c = math.log(3) / 2
    params = (jnp.array([[0.0], [2.0]]), jnp.array([[0.0, 0.0], [0.0, c]]))
    step = bp.explain(net, params, np.array([1.0]), 1, loss="softmax_cross_entropy")
    np.testing.assert_allclose(step.y, [0.0, 1.0])  # the class label, one-hot
    np.testing.assert_allclose(step.a[2], [0.0, math.log(3)], rtol=1e-15)
    np.testing.assert_allclose(step.loss, -math.log(0.75), rtol=1e-15)
    np.testing.assert_allclose(step.delta[2], [0.25, -0.25], rtol=1e-15)
    np.testing.assert_allclose(step.delta[1], [-math.log(3) / 8], rtol=1e-15)
    np.testing.assert_allclose(step.grads[0], [[-math.log(3) / 8], [-math.log(3) / 8]],
                               rtol=1e-15)  # ∂ℓ/∂w^1_j1 = φ^0_j δ^1_1, φ^0 = (1, x = 1)
    np.testing.assert_allclose(step.grads[1], [[0.25, -0.25], [0.5, -0.5]], rtol=1e-15)
    np.testing.assert_allclose(step.proba(), [0.25, 0.75], rtol=1e-15)
    assert step.delta_formula(2, 2, numbers=True) == (
        "δ^2_2 = ∂ℓ/∂φ^2_2 · ∂φ^2_2/∂a^2_2 = (softmax(φ^2)_2 − y_2) · 1 = (-0.25) · 1 = -0.25")
    assert step.loss_formula() == "L(x_i) = −Σ_k y_k log softmax(φ^L)_k"
    # binary cross-entropy on one logistic neuron: a = ln 3 · x = ln 3, σ(a) = 3/4; y = 0:
    # ℓ = −log(1 − 3/4) = log 4, δ = σ(a) − y = 3/4 (fused), ∂ℓ/∂w_0 = 3/4, ∂ℓ/∂w_1 = x·3/4.
    net = bp.Network(1, [bp.Layer(1, "logistic")])
    step = bp.explain(net, (jnp.array([[0.0], [math.log(3)]]),), np.array([1.0]), 0.0,
                      loss="binary_cross_entropy", learning_rate=2.0, N=3)
    assert step.fused
    np.testing.assert_allclose(step.loss, math.log(4), rtol=1e-15)
    np.testing.assert_allclose(step.delta[1], [0.75], rtol=1e-15)
    np.testing.assert_allclose(step.grads[0], [[0.75], [0.75]], rtol=1e-15)
    np.testing.assert_allclose(step.updated[0], [[-0.5], [math.log(3) - 0.5]], rtol=1e-15)
    assert step.delta_formula(1, 1, numbers=True) == (
        "δ^1_1 = ∂ℓ/∂a^1_1 = σ(a^1_1) − y_1 = σ(1.09861) − 0 = 0.75")


def test_a_saturated_logistic_output_keeps_its_gradient_in_the_explanation():
    # a = 60: φ rounds to 1 in float32; wrong target 0: the fused δ = σ(a) − y = 1, not ~0
    net = bp.Network(1, [bp.Layer(1, "logistic")])
    params = (jnp.array([[0.0], [60.0]], jnp.float32),)
    step = bp.explain(net, params, np.array([1.0], np.float32), 0.0, loss="binary_cross_entropy")
    assert float(step.delta[1][0]) == 1.0 and float(step.dphi[1][0]) < 1e-20
    assert np.isfinite(float(step.loss)) and "σ(60) − 0 = 1" in str(step)


def test_bad_targets_for_the_loss():
    net = bp.Network(2, [bp.Layer(2, "identity")])
    params = bp.init(net, jax.random.key(0))
    with pytest.raises(ValueError, match=r"class labels, which must be in 0..d-1 = 0..1"):
        bp.explain(net, params, X, 2, loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match=r"each row of y to sum to 1"):
        bp.explain(net, params, X, [0.5, 0.6], loss="softmax_cross_entropy")
    logistic = bp.Network(2, [bp.Layer(1, "logistic")])
    with pytest.raises(ValueError, match=r"targets in \[0, 1\].* y has 1 entries"):
        bp.explain(logistic, bp.init(logistic, jax.random.key(0)), X, 1.5,
                   loss="binary_cross_entropy")
