"""The paper's §1.3.1 quadratic network (figure 2), worked by hand: equation (6) and the
derivatives the paper lists, through forward, backprop and Algorithm 2."""

import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp

# w^1: rows j = 0, 1, 2 (bias, x[1], x[2]); columns k = 1, 2 (identity, square).
W1 = np.array([[1.0, -1.0],
               [2.0, 0.5],
               [-1.0, 3.0]])
# w^2: row 0 is the structural zero (no bias in equation (6)); w^2_11 = 2, w^2_21 = -3.
W2 = np.array([[0.0], [2.0], [-3.0]])
X = np.array([1.0, 2.0])
# By hand: a^1_1 = 1 + 2·1 − 1·2 = 1;  a^1_2 = −1 + 0.5·1 + 3·2 = 5.5
#          φ_θ(x) = 2·1 + (−3)·5.5² = 2 − 90.75 = −88.75
A1, A2, OUT = 1.0, 5.5, -88.75


def equation_6(w1, w2, x):
    """φ_θ(x) = w^2_11 (w^1_01 + w^1_11 x1 + w^1_21 x2) + w^2_21 (w^1_02 + w^1_12 x1 + w^1_22 x2)²."""
    return (w2[1, 0] * (w1[0, 0] + w1[1, 0] * x[0] + w1[2, 0] * x[1])
            + w2[2, 0] * (w1[0, 1] + w1[1, 1] * x[0] + w1[2, 1] * x[1]) ** 2)


def paper_derivatives(w1, w2, x):
    """∂φ_θ/∂w as listed in §1.3.1, as an array shaped like each params[l-1]."""
    a1 = w1[0, 0] + w1[1, 0] * x[0] + w1[2, 0] * x[1]
    a2 = w1[0, 1] + w1[1, 1] * x[0] + w1[2, 1] * x[1]
    d1 = np.array([[w2[1, 0], 2 * w2[2, 0] * a2],
                   [w2[1, 0] * x[0], 2 * w2[2, 0] * x[0] * a2],
                   [w2[1, 0] * x[1], 2 * w2[2, 0] * x[1] * a2]])
    d2 = np.array([[0.0], [a1], [a2**2]])
    return d1, d2


def test_forward_is_equation_6_worked_by_hand(quadratic_net):
    params = (jnp.asarray(W1), jnp.asarray(W2))
    assert equation_6(W1, W2, X) == OUT
    np.testing.assert_allclose(bp.forward(quadratic_net, params, X), [OUT], rtol=1e-15)
    tr = bp.forward_trace(quadratic_net, params, X)
    np.testing.assert_allclose(tr.a[1], [A1, A2], rtol=1e-15)
    np.testing.assert_allclose(tr.phi[1], [A1, A2**2], rtol=1e-15)
    np.testing.assert_array_equal(tr.phi[0], X)


def test_forward_is_equation_6_on_random_points(quadratic_net):
    rng = np.random.default_rng(0)
    for _ in range(5):
        w1, w2, x = rng.normal(size=(3, 2)), rng.normal(size=(3, 1)), rng.normal(size=2)
        w2[0] = rng.normal()  # the structural zero is ignored, whatever is stored there
        out = bp.forward(quadratic_net, (jnp.asarray(w1), jnp.asarray(w2)), x)
        np.testing.assert_allclose(out, [equation_6(w1, w2, x)], rtol=1e-13)


def test_green_path_dphi_dw1_21(quadratic_net):
    # ∂φ_θ/∂w^1_21 = ∂φ^2_1/∂a^2_1 · ∂a^2_1/∂φ^1_1 · ∂φ^1_1/∂a^1_1 · ∂a^1_1/∂w^1_21
    #              = 1 · w^2_11 · 1 · x[2] = 2 · 2 = 4
    params = (jnp.asarray(W1), jnp.asarray(W2))
    assert bp.recursive_dphi_dw(quadratic_net, params, X, l=2, k=1, m=1, p=2, r=1) == 4.0
    # backprop with residual φ − y = 1 gives Σ_r 1 · ∂φ_r/∂w = ∂φ/∂w
    per = bp.per_example_backprop(quadratic_net, params, X[None], [[OUT - 1.0]])
    assert float(per[0][0, 2, 0]) == 4.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_paper_derivatives(quadratic_net, seed):
    rng = np.random.default_rng(seed)
    w1, w2, x = rng.normal(size=(3, 2)), rng.normal(size=(3, 1)), rng.normal(size=2)
    w2[0] = 0
    params = (jnp.asarray(w1), jnp.asarray(w2))
    d1, d2 = paper_derivatives(w1, w2, x)
    y = equation_6(w1, w2, x) - 1.0  # residual 1: ∂L/∂w(x_i) = ∂φ/∂w
    per = bp.per_example_backprop(quadratic_net, params, x[None], [[y]])
    np.testing.assert_allclose(per[0][0], d1, rtol=1e-12)
    np.testing.assert_allclose(per[1][0], d2, rtol=1e-12)
    rec = [[bp.recursive_dphi_dw(quadratic_net, params, x, 2, 1, m, p, r)
            for r in range(1, quadratic_net.sizes[m] + 1)] for m in (1, 2)
           for p in range(quadratic_net.shapes[m - 1][0])]
    np.testing.assert_allclose(np.array(rec[:3]), d1, rtol=1e-12)
    np.testing.assert_allclose(np.array(rec[3:]), d2, rtol=1e-12)


def test_loss_gradient_is_the_paper_sum(quadratic_net):
    # ∂L/∂w = 1/N Σ_i ∂φ_θ/∂w(x_i) (φ_θ(x_i) − y_i)
    rng = np.random.default_rng(3)
    Xs, Ys = rng.normal(size=(6, 2)), rng.normal(size=(6, 1))
    params = (jnp.asarray(W1), jnp.asarray(W2))
    expected = [np.zeros((3, 2)), np.zeros((3, 1))]
    for x, y in zip(Xs, Ys):
        r = equation_6(W1, W2, x) - y[0]
        for e, d in zip(expected, paper_derivatives(W1, W2, x)):
            e += d * r / len(Xs)
    grads = bp.backprop(quadratic_net, params, Xs, Ys)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)
    loss = np.mean([(equation_6(W1, W2, x) - y[0]) ** 2 for x, y in zip(Xs, Ys)]) / 2
    np.testing.assert_allclose(bp.loss(quadratic_net, params, Xs, Ys), loss, rtol=1e-13)
