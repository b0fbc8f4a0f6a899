"""Workload W8: per-sample training of a classifier with the softmax cross-entropy (issue 10).

Algorithm 1 with ``loss="softmax_cross_entropy"``: for each sample in order,
``w ← w − (η/N) ∂ℓ_i/∂w`` with ``ℓ_i = −log softmax(φ_θ(x_i))_{y_i}``, on a ``64-128-10`` tanh MLP
with identity outputs (the logits) and integer labels. Competitors, from the same float32
weights, taking the same steps ``lr = η/N``:

* ``bpjax.fit(..., loss="softmax_cross_entropy")``: the fused per-sample step, the output
  delta ``softmax(φ^L) − y`` by hand;
* ``jax.grad`` of the per-sample cross-entropy (``jax.nn.log_softmax``) in ``lax.scan``, jitted
  (:func:`benchmarks.baselines.make_jax_scan_trainer`);
* PyTorch eager: ``torch.nn.functional.cross_entropy``, ``loss.backward()`` and
  ``torch.optim.SGD`` per sample, one intra-op thread (as in W1).

Each computes the mean cross-entropy on the training set after each epoch; the final ones must
agree (the same work).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import bpjax as bp
from benchmarks import baselines as B
from benchmarks.harness import Runner

LOSS = "softmax_cross_entropy"


def cross_entropy(phi, y):
    """``ℓ = −log softmax(φ)_y`` for integer labels ``y`` (any leading shape)."""
    return -jnp.take_along_axis(jax.nn.log_softmax(phi, axis=-1), y[..., None], axis=-1)[..., 0]


jax_ce_scan_train = B.make_jax_scan_trainer(B.jax_mlp_forward, cross_entropy)
"""Per-sample SGD on the cross-entropy: ``jax.grad`` in ``lax.scan``, jitted."""


def classification_data(N: int, D: int, classes: int, seed: int):
    """``X ~ N(0, 1)`` float32 and labels from a random linear teacher, int32."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D)).astype(np.float32)
    teacher = rng.standard_normal((D, classes))
    return X, np.argmax(X @ teacher + 0.5 * rng.standard_normal((N, classes)), 1).astype(np.int32)


def mean_cross_entropy(mlp, X, y) -> float:
    """The mean cross-entropy of ``[(W, b), ...]`` on ``(X, y)``, in float64 numpy."""
    h = np.asarray(X, np.float64)
    for i, (W, b) in enumerate(mlp):
        h = h @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
        if i < len(mlp) - 1:
            h = np.tanh(h)
    h = h - h.max(axis=1, keepdims=True)
    log_p = h - np.log(np.exp(h).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def w8_config(quick: bool) -> dict:
    return {"sizes": (64, 128, 10), "N": 512 if quick else 4096, "epochs": 1 if quick else 2,
            "learning_rate": 8.0, "repeats": 2 if quick else 5}


def w8_factories(cfg: dict) -> dict[str, Callable[[], Runner]]:
    D, H, C = cfg["sizes"]
    net = bp.Network(D, [bp.Layer(H, "tanh"), bp.Layer(C, "identity")])
    params = bp.init(net, jax.random.key(9))
    X, y = classification_data(cfg["N"], D, C, seed=9)
    eta, E = cfg["learning_rate"], cfg["epochs"]
    lr = eta / cfg["N"]
    mlp = B.to_mlp(params)

    def loss_of(mlp_out):
        return {"final_loss": mean_cross_entropy(mlp_out, X, y)}

    def bpjax_fit():
        Xj, yj = jnp.asarray(X), jnp.asarray(y)

        def run():
            return jax.block_until_ready(bp.fit(net, params, Xj, yj, learning_rate=eta,
                                                epochs=E, loss=LOSS))

        return Runner(run, lambda r: loss_of(B.to_mlp(r.params)), jax.devices()[0].platform)

    def jax_scan():
        Xj, yj = jnp.asarray(X), jnp.asarray(y)
        mlp_j = [(jnp.asarray(W), jnp.asarray(b)) for W, b in mlp]

        def run():
            return jax.block_until_ready(jax_ce_scan_train(mlp_j, Xj, yj, lr, E))

        return Runner(run, lambda out: loss_of(out[0]), jax.devices()[0].platform)

    def torch_eager():
        import torch

        torch.set_num_threads(1)
        tX, ty = torch.from_numpy(X.copy()), torch.from_numpy(y.astype(np.int64))

        def run():
            model = B.torch_model(mlp)
            B.torch_sgd(model, tX, ty, lr, E, ell=torch.nn.functional.cross_entropy)
            return model

        return Runner(run, lambda m: loss_of(B.torch_to_mlp(m)), "cpu",
                      "torch.set_num_threads(1)")

    return {"bpjax.fit": bpjax_fit, "jax.grad in lax.scan": jax_scan,
            "PyTorch eager": torch_eager}


def w8_notes(cfg: dict) -> list[str]:
    """W8's note for its report (its summary is W1's: ``workloads._per_sample_summary``)."""
    return [
        f"Every competitor runs {cfg['epochs']} epoch(s) of per-sample SGD on the softmax "
        f"cross-entropy over the same N={cfg['N']} samples (integer labels of 10 classes) "
        f"in the same order, from the same float32 weights, with steps η/N = "
        f"{cfg['learning_rate']}/{cfg['N']}. *ratio* = time / bpjax.fit's time, i.e. "
        "bpjax's speed-up. PyTorch runs with one intra-op thread, as in W1."
    ]
