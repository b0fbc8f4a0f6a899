"""Experiment 14: a 2-D classification picture, in the manner of TensorFlow Playground.

Two generated data sets of scikit-learn (``make_moons``, ``make_circles``), 2-D inputs and two
classes. A network with two tanh layers is trained on each, and drawn as the Playground draws
it: the decision map over the plane beside one small map per hidden neuron, ``φ^l_k(x)`` over
the same plane (blue positive, orange negative). Each neuron's formula, the function it
computes written with the trained weights (``bp.explain(...).formula(l, k, weights=True)``),
is listed, and one sample's explanation is exported as JSON.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import bpjax as bp
from report import Section, run, save_figure, save_file, table

HIDDEN = (bp.Layer(6, "tanh"), bp.Layer(4, "tanh"))
# (data set, the output layer and its loss); targets y_i ∈ {0, 1}
CASES = {
    "moons": ("make_moons", bp.Layer(1, "logistic"), "squared"),
    "circles": ("make_circles", bp.Layer(1, "logistic"), "squared"),
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


def _probability(net, params, X):
    """P(class 1 | x): the logistic output."""
    return np.asarray(bp.forward(net, params, X))[:, 0]


def _train(net, X, y, loss):
    params = bp.init(net, jax.random.key(0), dtype=jnp.float64)
    return bp.fit(net, params, X, y[:, None].astype(float), epochs=EPOCHS, batch_size=20,
                  optimizer=optax.adam(LEARNING_RATE), shuffle=jax.random.key(1)).params


def _figure(net, params, X, y, accuracy, title):
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
    p = np.asarray(trace.phi[-1])[:, 0].reshape(GRID, GRID)
    ax.imshow(p, origin="lower", extent=(-lim, lim, -lim, lim), cmap=cmap, vmin=0, vmax=1,
              alpha=0.5)
    ax.contour(g, g, p, levels=[0.5], colors="k", linewidths=1.2)
    for cls, colour in ((0, bp.drawing.NEGATIVE), (1, bp.drawing.POSITIVE)):
        ax.scatter(*X[y == cls].T, s=16, c=colour, edgecolors="black", linewidths=0.5,
                   label=f"class {cls} (training)")
    ax.set_xlabel("x[1]")
    ax.set_ylabel("x[2]")
    ax.set_title(f"{title}\n$P$(class 1 | x) $= \\varphi^{{{net.depth}}}_1(x)$, boundary at "
                 f"0.5; test accuracy {accuracy:.0%}", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
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


def experiment() -> Section:
    parts, numbers = [], {}
    with jax.enable_x64(True):
        for name, (maker, output, loss) in CASES.items():
            X, y, X_test, y_test = _data(maker, seed=0)
            net = bp.Network(2, [*HIDDEN, output])
            params = _train(net, X, y, loss)
            accuracy = float(np.mean((_probability(net, params, X_test) > 0.5) == y_test))
            train_accuracy = float(np.mean((_probability(net, params, X) > 0.5) == y))
            fig = _figure(net, params, X, y, accuracy, f"{maker}, {loss} loss")
            link = save_figure(fig, f"e14_{name}")
            step = bp.explain(net, params, X[0], y[:1].astype(float), loss=loss)
            save_file(f"e14_{name}_explain.json", step.to_json(indent=1).encode())
            rows = [[f"`φ^{l}_{k}`",
                     f"`{step.formula(l, k, weights=True, digits=3).split(' = ', 1)[1]}`"]
                    for l in range(1, net.depth + 1) for k in range(1, net.sizes[l] + 1)]
            parts.append(f"""### `{maker}`, {loss} loss

```text
{net.summary()}
```

Test accuracy {accuracy:.1%} ({N_TEST} points), train {train_accuracy:.1%}.

{link}

What each neuron computes, the trained weights written in (`step.formula(l, k,
weights=True, digits=3)`):

{table(["neuron", "its function"], rows)}

One sample explained, every number and formula, as JSON (`step.to_json()`):
`experiments/results/e14_{name}_explain.json`.
""")
            numbers[name] = {"loss": loss, "test_accuracy": accuracy,
                             "train_accuracy": train_accuracy}
    md = f"""
A network with two tanh layers ({HIDDEN[0].size} and {HIDDEN[1].size} neurons) on two of
scikit-learn's generated 2-D data sets ({N_TRAIN} training and {N_TEST} test points, inputs
standardised), trained for {EPOCHS} epochs with Adam ({LEARNING_RATE}, minibatches of 20).
Each picture is TensorFlow Playground's view: the output over the plane with its decision
boundary (black), and beside it one small map per hidden neuron, `φ^l_k(x)` over the same
plane (blue positive, orange negative): the first layer's neurons cut the plane along lines,
the second combines them.

""" + "\n".join(parts)
    return Section("e14_classification_picture",
                   "14. A 2-D classification picture: the output and every hidden neuron",
                   md, numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
