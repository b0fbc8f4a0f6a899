"""Experiment 12: classification with the softmax cross-entropy, bpjax against scikit-learn's
``MLPClassifier``.

Data: scikit-learn's 8×8 digits (1797 images, 10 classes), pixels scaled to ``[0, 1]``, a
fixed stratified split of 1408 training images (1408 = 44·32, so minibatches of 32 divide it)
and 389 test images. Network ``64-32-10``: tanh hidden layer, identity outputs (the logits),
``loss="softmax_cross_entropy"`` with the integer labels as targets.

**Same algorithm, same start.** Algorithm 1 (``batch_size=1``) steps
``w ← w − (η/N) ∂ℓ_i/∂w`` after each sample, in order. scikit-learn's ``MLPClassifier(solver=
"sgd", batch_size=1, momentum=0, alpha=0, shuffle=False, learning_rate="constant")`` steps
``w ← w − η_sk ∂ℓ_i/∂w`` with the same ``ℓ_i`` (its log-loss of a softmax output), so
``η_sk = η/N`` makes the steps equal; minibatches of ``B``: ``η_sk = η·B/N`` (it averages over
the batch). scikit-learn starts from bpjax's initial weights, and both run in float64:
their weights must follow one trajectory, epoch after epoch, to rounding. Minibatch Adam
(``B = 32``) runs in both as well, from the same start: ``optax.adam``, and scikit-learn's
own Adam rule written as an optax transformation (:func:`sklearn_adam`; scikit-learn adds its
``ε`` to ``√v`` before the bias correction, optax after it), which must follow scikit-learn's
trajectory to rounding too.
"""

from __future__ import annotations

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import bpjax as bp
from report import Section, run, save_figure, table

HIDDEN = 32
NET = bp.Network(64, [bp.Layer(HIDDEN, "tanh"), bp.Layer(10, "identity")])
LOSS = "softmax_cross_entropy"
TRAIN = 1408
ETA = 30.0  # Algorithm 1: per-sample step η/N ≈ 0.021
EPOCHS = 20
B = 32
ADAM_RATE = 3e-3
SEED = 0


def _data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, train_size=TRAIN, random_state=0, stratify=y)


def sklearn_adam(rate, eps):
    """scikit-learn's Adam as an optax transformation: ``u = −rate_t m / (√v + ε)`` with
    ``rate_t = rate √(1 − β₂ᵗ) / (1 − β₁ᵗ)`` (optax.adam: ``−rate m̂ / (√v̂ + ε)``)."""
    b1, b2 = 0.9, 0.999

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return (jnp.zeros((), jnp.int32), zeros, zeros)

    def update(g, state, params=None):
        t, m, v = state
        t = t + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        rate_t = rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        u = jax.tree.map(lambda m, v: -rate_t * m / (jnp.sqrt(v) + eps), m, v)
        return u, (t, m, v)

    return optax.GradientTransformation(init, update)


def _sklearn_model(solver, batch, rate, p0, Xtr, ytr):
    """An ``MLPClassifier`` whose weights are bpjax's ``p0``, ready for one epoch per
    ``partial_fit`` (samples in order)."""
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="tanh", solver=solver,
                          batch_size=batch, learning_rate="constant", learning_rate_init=rate,
                          momentum=0.0, nesterovs_momentum=False, alpha=0.0, shuffle=False,
                          tol=0.0, n_iter_no_change=10**9, max_iter=1, random_state=SEED)
    model.partial_fit(Xtr[:1], ytr[:1], classes=np.arange(10))  # builds its state
    model.coefs_ = [np.array(w[1:], np.float64) for w in p0]
    model.intercepts_ = [np.array(w[0], np.float64) for w in p0]
    if solver == "adam":  # a fresh Adam state: the step above must not count
        from sklearn.neural_network._stochastic_optimizers import AdamOptimizer

        model._optimizer = AdamOptimizer(model.coefs_ + model.intercepts_, rate, 0.9, 0.999,
                                         1e-8)
    return model


def _sklearn_run(model, Xtr, ytr):
    """Trains for EPOCHS epochs; (weights after each epoch as bpjax params, seconds)."""
    path, seconds = [], 0.0
    for _ in range(EPOCHS):
        t = time.perf_counter()
        model.partial_fit(Xtr, ytr)
        seconds += time.perf_counter() - t
        path.append([np.vstack([b[None], w]) for w, b in zip(model.coefs_, model.intercepts_)])
    return path, seconds


def _bpjax_run(p0, Xtr, ytr, **kw):
    """Trains for EPOCHS epochs: (weights after each epoch, seconds of one compiled call,
    seconds of the first call, the result)."""
    t = time.perf_counter()
    bp.fit(NET, p0, Xtr, ytr, loss=LOSS, epochs=EPOCHS, **kw)
    first = time.perf_counter() - t
    seconds = np.inf
    for _ in range(2):  # the faster of two: on a shared machine noise only adds time
        t = time.perf_counter()
        result = bp.fit(NET, p0, Xtr, ytr, loss=LOSS, epochs=EPOCHS, **kw)
        jax.block_until_ready(result.params)
        seconds = min(seconds, time.perf_counter() - t)
    path, r = [], p0
    for _ in range(EPOCHS):  # the same epochs, one call each: the trajectory
        r = bp.fit(NET, r, Xtr, ytr, loss=LOSS, epochs=1, **kw)
        path.append([np.asarray(w) for w in r.params])
    return path, seconds, first, result


def _gap(path_a, path_b):
    """Per epoch, the largest ``|w_a − w_b|`` over every weight."""
    return np.array([max(float(np.abs(a - b).max()) for a, b in zip(pa, pb))
                     for pa, pb in zip(path_a, path_b)])


def _accuracy(params, X, y):
    return float(bp.accuracy(NET, tuple(jnp.asarray(w) for w in params), X, y, loss=LOSS))


def experiment() -> Section:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    Xtr, Xte, ytr, yte = _data()
    N = len(Xtr)
    runs = {}
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning for max_iter=1
        Xtr, Xte = np.asarray(Xtr, np.float64), np.asarray(Xte, np.float64)
        p0 = bp.init(NET, jax.random.key(SEED), dtype=jnp.float64)
        cases = {
            "Algorithm 1 (B = 1, plain step)": (
                dict(learning_rate=ETA), ("sgd", 1, ETA / N)),
            f"minibatch SGD (B = {B})": (
                dict(learning_rate=ETA, batch_size=B), ("sgd", B, ETA * B / N)),
            # G_B = (1/N) Σ_B is B/N times scikit-learn's batch mean: Adam is invariant to
            # that scale once ε is scaled with it
            f"minibatch Adam (B = {B}), scikit-learn's rule": (
                dict(optimizer=sklearn_adam(ADAM_RATE, 1e-8 * B / N), batch_size=B),
                ("adam", B, ADAM_RATE)),
            f"minibatch Adam (B = {B}), optax.adam": (
                dict(optimizer=optax.adam(ADAM_RATE, eps=1e-8 * B / N), batch_size=B),
                ("adam", B, ADAM_RATE)),
        }
        for name, (kw, sk) in cases.items():
            path, seconds, first, result = _bpjax_run(p0, Xtr, ytr, **kw)
            sk_path, sk_seconds = _sklearn_run(_sklearn_model(*sk, p0, Xtr, ytr), Xtr, ytr)
            gap = _gap(path, sk_path)
            runs[name] = dict(
                path=path, seconds=seconds, first=first, sk_seconds=sk_seconds, gap=gap,
                losses=np.asarray(result.losses), sk_rate=sk[2],
                test_accuracy=_accuracy(path[-1], Xte, yte),
                sk_test_accuracy=_accuracy(sk_path[-1], Xte, yte),
                train_accuracy=_accuracy(path[-1], Xtr, ytr),
                curve=[_accuracy(p, Xte, yte) for p in path],
                classes=np.asarray(bp.predict(NET, tuple(jnp.asarray(w) for w in path[-1]),
                                              Xte, loss=LOSS)),
                scale=max(float(np.abs(w).max()) for w in path[-1]))
        loss_value = float(bp.loss(NET, p0, Xtr, ytr, loss=LOSS))

    sgd_names = [n for n in runs if "Adam" not in n]
    adam_name = next(n for n in runs if "optax.adam" in n)
    same_names = [n for n in runs if "optax.adam" not in n]
    worst_sgd = max(float(runs[n]["gap"].max()) for n in same_names)

    rows = []
    for name, r in runs.items():
        rows.append([name, f"{r['sk_rate']:.4g}", f"{r['gap'][0]:.1e}", f"{r['gap'].max():.1e}",
                     f"{r['test_accuracy']:.3f}", f"{r['sk_test_accuracy']:.3f}",
                     f"{r['seconds']:.3f} (first call {r['first']:.2f})",
                     f"{r['sk_seconds']:.2f}", f"{r['sk_seconds'] / r['seconds']:.0f}×"])

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    ep = np.arange(1, EPOCHS + 1)
    for i, (name, r) in enumerate(runs.items()):
        axes[0].plot(ep, np.maximum(r["gap"], 1e-17), "o-", color=f"C{i}", ms=3, label=name)
        axes[1].plot(ep, r["losses"], color=f"C{i}", label=f"{name}: training loss")
        axes[1].plot(ep, 1 - np.array(r["curve"]), color=f"C{i}", ls="--",
                     label=f"{name}: test error")
    for ax, title, size in ((axes[0], "max |w_bpjax − w_sklearn|, same start, float64", 7),
                            (axes[1], "bpjax: cross-entropy and test error rate", 6)):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=size)
    name = sgd_names[0]
    cm = confusion_matrix(yte, runs[name]["classes"], labels=np.arange(10))
    ax = axes[2]
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion matrix, test set: {name}")
    figure = save_figure(fig, "e12_digits_classification")

    errors = [(int(i), int(j), int(cm[i, j])) for i, j in zip(*np.nonzero(cm))
              if i != j and cm[i, j] >= 2]
    errors.sort(key=lambda t: -t[2])
    confusions = ", ".join(f"{i} read as {j} ({n}×)" for i, j, n in errors[:3]) or "none twice"
    numbers = {
        "initial_loss": loss_value,
        "max_weight_difference_sgd": worst_sgd,
        **{name: {"test_accuracy": r["test_accuracy"],
                  "sklearn_test_accuracy": r["sk_test_accuracy"],
                  "train_accuracy": r["train_accuracy"],
                  "max_weight_difference_per_epoch": r["gap"].tolist(),
                  "largest_weight": r["scale"], "seconds": r["seconds"],
                  "first_call_seconds": r["first"], "sklearn_seconds": r["sk_seconds"],
                  "sklearn_learning_rate": r["sk_rate"]} for name, r in runs.items()},
    }
    alg1 = runs[sgd_names[0]]
    md = f"""
Data: scikit-learn's digits, {N} training and {len(yte)} test images (fixed stratified
split), pixels in `[0, 1]`, integer labels as targets. Network `64-{HIDDEN}-10`, tanh hidden
layer, identity outputs (the logits), `loss="softmax_cross_entropy"`, float64, {EPOCHS}
epochs, samples in dataset order, bpjax's initial weights for both libraries (initial loss
{loss_value:.4f}; `log 10` = {np.log(10):.4f}). bpjax: `bp.fit(net, params, X, y,
loss="softmax_cross_entropy", learning_rate=η, ...)`, η = {ETA:g}; scikit-learn:
`MLPClassifier(hidden_layer_sizes=({HIDDEN},), activation="tanh", solver=..., batch_size=B,
learning_rate="constant", learning_rate_init=η_sk, momentum=0, alpha=0, shuffle=False)`
trained one epoch per `partial_fit` call, with `η_sk = η·B/N` for SGD (scikit-learn averages
the batch's gradients, bpjax adds the batch's terms of the loss, `1/N` each) and Adam's own
rate {ADAM_RATE:g} in both for Adam.

{table(["training", "η_sk", "max abs Δw, epoch 1", "max abs Δw, all epochs",
        "test accuracy bpjax", "test accuracy scikit-learn", "bpjax time (s)",
        "scikit-learn time (s)", "speed-up"], rows)}

{figure}

**Same algorithm, same start, same trajectory.** With plain SGD — Algorithm 1 and minibatches
of {B} — and with scikit-learn's Adam rule, scikit-learn's weights stay within
{worst_sgd:.1e} of bpjax's after every one of the {EPOCHS} epochs (the largest weight is about
{alg1["scale"]:.1f}): two independent implementations of the softmax cross-entropy's gradient,
`softmax(φ^L) − y` backpropagated, trace the same path to rounding. The gap grows slowly with
the number of steps, as rounding differences do. With `optax.adam` the gap
({runs[adam_name]["gap"].max():.1e} at most) is not rounding but the two Adams: scikit-learn
adds `ε` to `√v` before the bias correction, optax after it, so scikit-learn's effective `ε`
is `ε/√(1 − β₂ᵗ)`, about 30 times larger in the first step, which matters for the weights of
pixels that are almost always blank (their gradients are tiny); the accuracies agree.

**Accuracy.** Algorithm 1 reaches {alg1["test_accuracy"]:.3f} test accuracy
({alg1["train_accuracy"]:.3f} on the training set) in {EPOCHS} epochs; minibatch Adam
{runs[adam_name]["test_accuracy"]:.3f}. The issue that asked for this loss reported 53% for the
same task with the squared loss on logistic outputs. The most frequent confusions of
Algorithm 1: {confusions}.

**Time.** bpjax's time is one compiled `fit` call (the faster of two; the first call, which
compiles, in brackets); scikit-learn's the sum of its {EPOCHS} `partial_fit` calls. Algorithm 1
is {alg1["sk_seconds"] / alg1["seconds"]:.0f}× faster in bpjax's compiled loop than in
scikit-learn's Python loop over {N * EPOCHS} steps. Times were taken on a shared machine: read
them as orders of magnitude.
"""
    return Section("e12_digits_classification", "12. Classification: digits with the softmax "
                   "cross-entropy, bpjax against scikit-learn's MLPClassifier", md, numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
