"""Experiment 2: logistic regression as a neural network (the paper's exercise, §1.1).

One logistic neuron, ``φ^1_1(x) = σ(w^1_01 + Σ_j w^1_j1 x[j])``, is logistic regression's
model: ``P(y = 1 | x) = σ(w_0 + wᵀx)``. The paper trains it with the squared loss (1);
scikit-learn's ``LogisticRegression`` fits the same model by maximum likelihood (the
cross-entropy loss) with an L2 penalty (``C = 1`` by default), by L-BFGS.

Data: scikit-learn's bundled breast-cancer set (569 samples, 30 features, labels 0/1), a
fixed stratified 70/30 split, features standardised with the training split's mean and
standard deviation. The bpjax neuron is trained by Algorithm 1 (``bp.fit``,
``batch_size=1``). To see that the comparison does not hinge on one split, both are also
run on 10 further random splits.
"""

from __future__ import annotations

import time

import jax
import numpy as np

import bpjax as bp
from report import Section, run, save_figure, table

NET = bp.Network(30, [bp.Layer(1, "logistic")])
ETA = 2.0
EPOCHS = 300
TEST_SIZE = 0.3
SPLIT_SEED = 0
EXTRA_SPLITS = tuple(range(1, 11))


def _split(seed):
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=TEST_SIZE, random_state=seed,
                                          stratify=y)
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)  # training-split statistics only
    f32 = lambda a: np.asarray(a, np.float32)
    return f32((Xtr - mu) / sd), f32((Xte - mu) / sd), f32(ytr), f32(yte)


def _neuron(Xtr, ytr, Xte, yte, seed=0, validation=False):
    p0 = bp.init(NET, jax.random.key(seed))
    start = time.perf_counter()
    r = bp.fit(NET, p0, Xtr, ytr[:, None], learning_rate=ETA, epochs=EPOCHS,
               validation=(Xte, yte[:, None]) if validation else None)
    seconds = time.perf_counter() - start
    p_tr = np.asarray(bp.forward(NET, r.params, Xtr))[:, 0]
    p_te = np.asarray(bp.forward(NET, r.params, Xte))[:, 0]
    return r, p_tr, p_te, seconds


def _sklearn(Xtr, ytr, C):
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    model = LogisticRegression(C=C, max_iter=10_000).fit(Xtr, ytr)
    return model, time.perf_counter() - start


def _samples(d, n):
    """An accuracy difference as a number of test samples."""
    k = round(abs(d) * n)
    return f"{k} test sample{'s' if k != 1 else ''}"


def _acc(p, y):
    return float(((p > 0.5) == (y > 0.5)).mean())


def experiment() -> Section:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Xtr, Xte, ytr, yte = _split(SPLIT_SEED)
    _neuron(Xtr, ytr, Xte, yte, validation=True)  # compile once, so the timing is the run
    r, p_tr, p_te, t_bp = _neuron(Xtr, ytr, Xte, yte, validation=True)
    models = {"C = 1 (default)": 1.0, "C = 10⁴ (almost no penalty)": 1e4}
    rows = [["bpjax: one logistic neuron, squared loss (1), Algorithm 1", _acc(p_tr, ytr),
             _acc(p_te, yte), f"{t_bp:.3f}"]]
    numbers = {"bpjax": {"train_accuracy": _acc(p_tr, ytr), "test_accuracy": _acc(p_te, yte),
                         "seconds": t_bp, "final_train_loss": float(r.losses[-1]),
                         "final_test_loss": float(r.val_losses[-1])}}
    sk_p = {}
    for name, C in models.items():
        model, t = _sklearn(Xtr, ytr, C)
        sk_p[name] = model.predict_proba(Xte)[:, 1]
        tr_acc, te_acc = model.score(Xtr, ytr), model.score(Xte, yte)
        rows.append([f"scikit-learn LogisticRegression, cross-entropy, {name}", tr_acc, te_acc,
                     f"{t:.3f}"])
        numbers[f"sklearn C={C:g}"] = {"train_accuracy": tr_acc, "test_accuracy": te_acc,
                                       "seconds": t}
    default = next(iter(models))
    agree = float(((p_te > 0.5) == (sk_p[default] > 0.5)).mean())
    n_test = len(yte)

    # the same comparison over further random splits
    accs = {"bpjax": [], "sklearn": []}
    for seed in EXTRA_SPLITS:
        a, b, c, d = _split(seed)
        accs["bpjax"].append(_acc(_neuron(a, c, b, d)[2], d))
        accs["sklearn"].append(_sklearn(a, c, 1.0)[0].score(b, d))
    diff = np.array(accs["bpjax"]) - np.array(accs["sklearn"])
    numbers["splits"] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "all": v}
                         for k, v in accs.items()}
    numbers["agreement_with_sklearn_default"] = agree

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ep = np.arange(1, EPOCHS + 1)
    ax.semilogy(ep, np.asarray(r.losses), label="training split")
    ax.semilogy(ep, np.asarray(r.val_losses), label="test split")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (1)")
    ax.set_title(f"one logistic neuron, Algorithm 1, η = {ETA:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax2.scatter(sk_p[default], p_te, s=12, c=yte, cmap="coolwarm", edgecolor="k", linewidth=0.3)
    ax2.plot([0, 1], [0, 1], color="gray", lw=0.8)
    ax2.axhline(0.5, color="gray", lw=0.5, ls=":")
    ax2.axvline(0.5, color="gray", lw=0.5, ls=":")
    ax2.set_xlabel("scikit-learn P(y = 1 | x), C = 1")
    ax2.set_ylabel(r"bpjax neuron $\varphi^1_1(x)$")
    ax2.set_title(f"test split ({n_test} samples; colour = true label)")
    figure = save_figure(fig, "e2_logistic_regression")

    n_disagree = round((1 - agree) * n_test)
    md = f"""
Logistic regression is a network of one logistic neuron: `Network(30, [Layer(1,
"logistic")])` computes `σ(w^1_01 + Σ_j w^1_j1 x[j])`, the model of logistic regression.
Data: scikit-learn's breast-cancer set (569 samples, 30 features), a fixed stratified
split ({len(ytr)} training, {n_test} test samples, `random_state={SPLIT_SEED}`), features
standardised with the training split's statistics. The neuron is trained by Algorithm 1
(`bp.fit`, `batch_size=1`) on the squared loss (1) with targets 0/1, η = {ETA:g},
{EPOCHS} epochs (set by hand), float32. The prediction is `φ^1_1(x) > 0.5`.

{table(["model", "train accuracy", "test accuracy", "fit time (s)"], rows, ".4f")}

{figure}

On this split the neuron's test accuracy is {_acc(p_te, yte):.4f} against
{numbers["sklearn C=1"]["test_accuracy"]:.4f} for scikit-learn's default, a difference of
{_samples(numbers["sklearn C=1"]["test_accuracy"] - _acc(p_te, yte), n_test)} (one test
sample is {1 / n_test:.4f}). The two classify {agree:.1%} of the test samples alike
({n_disagree} differ). Over {len(EXTRA_SPLITS)} further random stratified splits (same
recipe, `random_state` {EXTRA_SPLITS[0]}–{EXTRA_SPLITS[-1]}) the test accuracy is
{np.mean(accs["bpjax"]):.4f} ± {np.std(accs["bpjax"]):.4f} for the neuron and
{np.mean(accs["sklearn"]):.4f} ± {np.std(accs["sklearn"]):.4f} for scikit-learn (mean ± std;
per split the neuron's accuracy minus scikit-learn's ranges from {diff.min():+.4f} to
{diff.max():+.4f}, {diff.mean() * n_test:+.1f} test samples on average).

The two fit the same model with different losses. Logistic regression maximises the
likelihood (cross-entropy), whose gradient for one sample is `(σ − y) x`; the squared loss
(1) gives `(σ − y) σ(1 − σ) x`, which vanishes for a confidently wrong prediction
(`σ → 1` while `y = 0`), so such samples barely pull on the weights. scikit-learn also adds
an L2 penalty (`C = 1`); the neuron has none. The times above are one fit each after
compilation (bpjax: {EPOCHS} epochs of {len(ytr)} per-sample steps, compiled once beforehand;
scikit-learn: L-BFGS to convergence), on a shared machine.
"""
    return Section("e2_logistic_regression", "2. Logistic regression as a neural network",
                   md, numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
