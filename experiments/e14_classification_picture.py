"""Experiment 14: a 2-D classification picture, in the manner of TensorFlow Playground.

Two generated data sets of scikit-learn (``make_moons``, ``make_circles``), 2-D inputs and two
classes. A network with two tanh layers is trained on each with a classification loss of the
registry, one each: the softmax cross-entropy on two identity outputs (the logits) for the
moons, the binary cross-entropy on one logistic output for the circles. Each is drawn as the
Playground draws it: the probability of class 1 over the plane (``bp.predict_proba``) with
the decision boundary, beside one small map per hidden neuron, ``φ^l_k(x)`` over the same
plane (blue positive, orange negative). Accuracy is ``bp.accuracy``, the misclassified test
points come from ``bp.predict``. Each neuron's formula, the function it computes written with
the trained weights (``bp.explain(...).formula(l, k, weights=True)``), is listed, and one
sample's explanation with the loss (where its backward pass starts) is exported as JSON.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import bpjax as bp
from report import Section, run, save_figure, save_file, table

HIDDEN = (bp.Layer(6, "tanh"), bp.Layer(4, "tanh"))
# (data set, the output layer, its loss, the column of predict_proba that is P(class 1 | x),
# and how that probability is read from the outputs); labels y_i ∈ {0, 1}
CASES = {
    "moons": ("make_moons", bp.Layer(2, "identity"), "softmax_cross_entropy", 1,
              r"$\mathrm{softmax}(\varphi^3(x))_2$"),
    "circles": ("make_circles", bp.Layer(1, "logistic"), "binary_cross_entropy", 0,
                r"$\varphi^3_1(x)$"),
}
N_TRAIN, N_TEST = 200, 200
EPOCHS = 300
LEARNING_RATE = 0.02  # Adam's, minibatches of 20
GRID = 120  # points a side of the maps


def _data(name: str, seed: int):
    from sklearn import datasets

    if name == "make_moons":
        X, y = datasets.make_moons(N_TRAIN + N_TEST, noise=0.2, random_state=seed)
    else:
        X, y = datasets.make_circles(N_TRAIN + N_TEST, noise=0.1, factor=0.45,
                                     random_state=seed)
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # standardised, as the Playground's inputs
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def _targets(net, y):
    """The labels as the loss takes them: integer class labels for d = 2 outputs (one-hot),
    0/1 numbers for one logistic output."""
    return y if net.outputs > 1 else y.astype(float)


def _train(net, X, y, loss):
    params = bp.init(net, jax.random.key(0), dtype=jnp.float64)
    return bp.fit(net, params, X, _targets(net, y), epochs=EPOCHS, batch_size=20, loss=loss,
                  optimizer=optax.adam(LEARNING_RATE), shuffle=jax.random.key(1)).params


def _figure(net, params, X, y, X_test, y_test, loss, column, reading, accuracy, title):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure

    cmap = LinearSegmentedColormap.from_list(
        "playground", [bp.drawing.NEGATIVE, "#ffffff", bp.drawing.POSITIVE])
    lim = float(np.abs(X).max()) + 0.3
    g = np.linspace(-lim, lim, GRID)
    G = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    trace = bp.forward_trace(net, params, G)  # every neuron's φ over the plane, one pass
    hidden = [(l, k) for l in range(1, net.depth) for k in range(1, net.sizes[l] + 1)]
    columns = max(net.sizes[1:-1])
    fig = Figure(figsize=(4.2 + 1.55 * columns, 4.4), layout="constrained")
    grid = fig.add_gridspec(net.depth - 1, columns + 3)
    ax = fig.add_subplot(grid[:, :3])
    p = np.asarray(bp.predict_proba(net, params, G, loss=loss))[:, column].reshape(GRID, GRID)
    ax.imshow(p, origin="lower", extent=(-lim, lim, -lim, lim), cmap=cmap, vmin=0, vmax=1,
              alpha=0.5)
    ax.contour(g, g, p, levels=[0.5], colors="k", linewidths=1.2)
    for cls, colour in ((0, bp.drawing.NEGATIVE), (1, bp.drawing.POSITIVE)):
        ax.scatter(*X[y == cls].T, s=16, c=colour, edgecolors="black", linewidths=0.5,
                   label=f"class {cls} (training)")
    wrong = np.asarray(bp.predict(net, params, X_test, loss=loss)) != y_test
    ax.scatter(*X_test[wrong].T, s=40, marker="x", c="black", linewidths=1.2,
               label=f"test point misclassified ({int(wrong.sum())} of {len(y_test)})")
    ax.set_xlabel("x[1]")
    ax.set_ylabel("x[2]")
    ax.set_title(f"{title}\n$P$(class 1 | x) = {reading}: blue 1, orange 0, boundary at ½; "
                 f"test accuracy {accuracy:.1%}", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=7,
              frameon=False)
    for l, k in hidden:
        sub = fig.add_subplot(grid[l - 1, 3 + k - 1])
        v = np.asarray(trace.phi[l])[:, k - 1].reshape(GRID, GRID)
        sub.imshow(v, origin="lower", extent=(-lim, lim, -lim, lim), cmap=cmap, vmin=-1, vmax=1)
        sub.set_xticks([])
        sub.set_yticks([])
        sub.set_title(f"$\\varphi^{{{l}}}_{{{k}}}$", fontsize=9)
        if k == 1:
            sub.set_ylabel(f"layer {l}", fontsize=8)
    fig.text(0.62, 0.01, "each hidden neuron's output $\\varphi^l_k(x)$ over the same plane: "
             "blue +1, white 0, orange −1", ha="center", va="bottom", fontsize=9)
    return fig


_TEX = {"φ": r"\varphi", "Σ_k": r"\sum_k", "−": "-", "log": r"\log", " ": r"\ ",
        "softmax": r"\mathrm{softmax}", "½": r"\frac{1}{2}"}


def _mathtext(text: str) -> str:
    """A formula of the loss registry's plain-text notation (``φ^L_k``, ``Σ_k``) as mathtext."""
    for plain, tex in _TEX.items():
        text = text.replace(plain, tex)
    return f"${text}$"


MAPPING = {"softmax_cross_entropy": " Class `c` is output `k = c + 1` (label `c` is the "
                                    "one-hot row with 1 in column `k`), so `P(class 1 | x) = "
                                    "softmax(φ^3(x))_2`.",
           "binary_cross_entropy": " The one output is `P(class 1 | x) = φ^3_1(x)`."}
TITLES = {"softmax_cross_entropy": "softmax cross-entropy on 2 logits (identity outputs)",
          "binary_cross_entropy": "binary cross-entropy on 1 logistic output"}


def experiment() -> Section:
    parts, numbers = [], {}
    with jax.enable_x64(True):
        for name, (maker, output, loss, column, reading) in CASES.items():
            X, y, X_test, y_test = _data(maker, seed=0)
            net = bp.Network(2, [*HIDDEN, output])
            params = _train(net, X, y, loss)
            accuracy = float(bp.accuracy(net, params, X_test, _targets(net, y_test), loss=loss))
            train_accuracy = float(bp.accuracy(net, params, X, _targets(net, y), loss=loss))
            # the training sample the network finds hardest (the lowest probability of its
            # own class), explained with the loss it is trained on (a label is one-hot)
            p1 = np.asarray(bp.predict_proba(net, params, X, loss=loss))[:, column]
            i = int(np.argmin(np.where(y == 1, p1, 1 - p1)))
            step = bp.explain(net, params, X[i], _targets(net, y)[i], loss=loss)
            title = f"{maker}, {TITLES[loss]}\ntrained on {_mathtext(step.loss_formula())}"
            fig = _figure(net, params, X, y, X_test, y_test, loss, column, reading, accuracy,
                          title)
            link = save_figure(fig, f"e14_{name}")
            save_file(f"e14_{name}_explain.json", step.to_json(indent=1).encode())
            rows = [[f"`φ^{l}_{k}`",
                     f"`{step.formula(l, k, weights=True, digits=3).split(' = ', 1)[1]}`"]
                    for l in range(1, net.depth + 1) for k in range(1, net.sizes[l] + 1)]
            L = net.depth
            start = "\n".join(f"- `{step.delta_formula(L, k, numbers=True)}`"
                               for k in range(1, net.outputs + 1))
            x0 = ", ".join(f"{v:.3g}" for v in X[i])
            y0 = ", ".join(f"{v:g}" for v in np.asarray(step.y))
            parts.append(f"""### `{maker}`: {TITLES[loss]}

```text
{net.summary()}
```

Trained with `loss="{loss}"`, `{step.loss_formula()}`. Test accuracy
{accuracy:.1%} ({N_TEST} points), train {train_accuracy:.1%} (`bp.accuracy`); the decision map
is `bp.predict_proba`, the crosses are the test points `bp.predict` gets wrong.{MAPPING[loss]}

{link}

What each neuron computes, the trained weights written in (`step.formula(l, k,
weights=True, digits=3)`):

{table(["neuron", "its function"], rows)}

One sample explained with this loss: the training point the network finds hardest (the
lowest probability of its own class), `x_{i + 1} = ({x0})`, `y_{i + 1} = ({y0})`
(`bp.explain(net, params, x, y, loss="{loss}")`). Its loss is {float(step.loss):.4g}, and its
backward pass starts at the output{"s" if net.outputs > 1 else ""} with

{start}

Every number and formula of it, as JSON (`step.to_json()`):
`experiments/results/e14_{name}_explain.json`.
""")
            numbers[name] = {"loss": loss, "test_accuracy": accuracy,
                             "train_accuracy": train_accuracy,
                             "explained_sample": i + 1, "explained_loss": float(step.loss),
                             "explained_output_delta": np.asarray(step.delta[L]).tolist()}
    md = f"""
A network with two tanh layers ({HIDDEN[0].size} and {HIDDEN[1].size} neurons) on two of
scikit-learn's generated 2-D data sets ({N_TRAIN} training and {N_TEST} test points, inputs
standardised), trained for {EPOCHS} epochs with Adam ({LEARNING_RATE}, minibatches of 20) on
a classification loss of the registry: the softmax cross-entropy on two identity outputs (the
logits, class labels one-hot) for the moons, the binary cross-entropy on one logistic output
(labels 0/1) for the circles. Each picture is TensorFlow Playground's view: on the left the
probability of class 1 over the plane with the decision boundary (black, probability ½), the
training points, and the test points the network gets wrong; on the right one small map per
hidden neuron, `φ^l_k(x)` over the same plane (blue positive, orange negative): the first
layer's neurons cut the plane along lines, the second combines them.

""" + "\n".join(parts)
    return Section("e14_classification_picture",
                   "14. A 2-D classification picture: the output and every hidden neuron",
                   md, numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
