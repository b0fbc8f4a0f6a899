"""The competitors of benchmark W8 (benchmarks/classification.py) take Algorithm 1's steps on
the softmax cross-entropy: checked against bp.fit and against a loop of jax.grad, in float64."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import baselines as B  # noqa: E402
from benchmarks import classification as C  # noqa: E402

import bpjax as bp  # noqa: E402

NET = bp.Network(inputs=4, layers=[bp.Layer(5, "tanh"), bp.Layer(3, "identity")])


@pytest.fixture(scope="module")
def case():
    params = bp.init(NET, jax.random.key(3), dtype=jnp.float64)
    X, y = C.classification_data(6, 4, 3, seed=3)
    X = X.astype(np.float64)
    eta, epochs = 2.0, 2
    lr = eta / len(X)
    mlp = [(jnp.asarray(W), jnp.asarray(b)) for W, b in B.to_mlp(params)]
    grad = jax.grad(lambda m, x, c: -jax.nn.log_softmax(B.jax_mlp_forward(m, x))[c])
    for _ in range(epochs):  # Algorithm 1, a plain loop of jax.grad
        for x, c in zip(X, y):
            g = grad(mlp, jnp.asarray(x), int(c))
            mlp = [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(mlp, g)]
    fit = bp.fit(NET, params, X, y, learning_rate=eta, epochs=epochs, loss=C.LOSS)
    return params, X, y, lr, epochs, mlp, fit


def _close(got, want):
    for (W, b), (W0, b0) in zip(got, want):
        np.testing.assert_allclose(np.asarray(W), np.asarray(W0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(b), np.asarray(b0), rtol=1e-10, atol=1e-12)


def test_bp_fit_and_the_jax_scan_baseline_are_algorithm_1(case):
    params, X, y, lr, epochs, want, fit = case
    _close(B.to_mlp(fit.params), want)
    got, losses = C.jax_ce_scan_train([(jnp.asarray(W), jnp.asarray(b))
                                       for W, b in B.to_mlp(params)],
                                      jnp.asarray(X), jnp.asarray(y), lr, epochs)
    _close(got, want)
    assert float(losses[-1]) == pytest.approx(float(fit.losses[-1]), rel=1e-12)
    assert C.mean_cross_entropy(want, X, y) == pytest.approx(float(fit.losses[-1]), rel=1e-12)


def test_torch_baseline_is_algorithm_1(case):
    torch = pytest.importorskip("torch")
    params, X, y, lr, epochs, want, fit = case
    torch.set_default_dtype(torch.float64)
    try:
        model = B.torch_model(B.to_mlp(params))
        losses = B.torch_sgd(model, torch.from_numpy(X), torch.from_numpy(y.astype(np.int64)),
                             lr, epochs, ell=torch.nn.functional.cross_entropy)
    finally:
        torch.set_default_dtype(torch.float32)
    _close(B.torch_to_mlp(model), want)
    assert losses[-1] == pytest.approx(float(fit.losses[-1]), rel=1e-10)
