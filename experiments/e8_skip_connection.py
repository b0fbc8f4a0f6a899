"""Experiment 8: a skip connection helping (the paper's DAG note, §1.1).

Target: mostly linear with a small nonlinear part,
``y = aᵀx + 0.3 sin(2 bᵀx)`` for ``x ∈ R^4``. A deep, narrow tanh network (six hidden
layers of four neurons) has to pass the linear part through six saturating layers; the same
network with one skip connection (the output also reads ``x``: ``Layer(1, "identity",
inputs=(0, 6))``) can carry it straight to the output and leave the hidden layers the
nonlinear rest. Both are trained with Algorithm 1 (``batch_size=1``), the same η, epochs,
data and seeds, all seeds at once with ``bp.sweep``.
"""

from __future__ import annotations

import jax
import numpy as np

import bpjax as bp
from report import Section, run, save_figure, table

D, H, DEPTH = 4, 4, 6
A = np.array([1.0, -2.0, 0.5, 1.5])
B = np.array([0.5, 0.5, -0.5, 0.5])
N_TRAIN, N_TEST = 256, 256
ETA = 0.5
EPOCHS = 200
SEEDS = 8
_HIDDEN = [bp.Layer(H, "tanh") for _ in range(DEPTH)]
NETS = {
    "plain (no skip)": bp.Network(D, [*_HIDDEN, bp.Layer(1, "identity")]),
    "with skip x → output": bp.Network(D, [*_HIDDEN, bp.Layer(1, "identity",
                                                              inputs=(0, DEPTH))]),
}


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_TRAIN + N_TEST, D))
    Y = (X @ A + 0.3 * np.sin(2.0 * X @ B))[:, None]
    f32 = lambda a: a.astype(np.float32)
    return f32(X[:N_TRAIN]), f32(Y[:N_TRAIN]), f32(X[N_TRAIN:]), f32(Y[N_TRAIN:])


def _linear_loss(X, Y, Xte, Yte):
    """Loss (1) of the least-squares affine fit: what the linear part alone achieves."""
    Z = np.c_[np.ones(len(X)), X]
    coef = np.linalg.lstsq(Z, Y, rcond=None)[0]
    loss = lambda Z, Y: float(0.5 * np.mean((Z @ coef - Y) ** 2))
    return loss(Z, Y), loss(np.c_[np.ones(len(Xte)), Xte], Yte)


def _vec(v):
    return "(" + ", ".join(f"{x:g}" for x in v) + ")"


def _first_below(h, level):
    hit = np.flatnonzero(h <= level)
    return int(hit[0]) + 1 if hit.size else None


def experiment() -> Section:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, Y, Xte, Yte = _data()
    lin_train, lin_test = _linear_loss(X, Y, Xte, Yte)
    keys = jax.random.split(jax.random.key(0), SEEDS)
    results = {}
    for name, net in NETS.items():
        params = jax.vmap(lambda k, net=net: bp.init(net, k))(keys)
        results[name] = bp.sweep(net, params, X, Y, learning_rate=ETA, epochs=EPOCHS,
                                 validation=(Xte, Yte), on_divergence="ignore")  # reported

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    ep = np.arange(1, EPOCHS + 1)
    rows, numbers = [], {"linear_fit_train_loss": lin_train, "linear_fit_test_loss": lin_test}
    for i, (name, r) in enumerate(results.items()):
        L, V = np.asarray(r.losses), np.asarray(r.val_losses)
        ax.semilogy(ep, np.median(L, axis=0), color=f"C{i}", label=f"{name}: median")
        ax.fill_between(ep, L.min(axis=0), L.max(axis=0), color=f"C{i}", alpha=0.2,
                        label=f"{name}: min–max over {SEEDS} seeds")
        reach = [_first_below(h, lin_train) for h in L]
        reached = [e for e in reach if e is not None]
        at10 = L[:, 9]
        rows.append([name, NETS[name].num_params, f"{np.median(at10):.3g}",
                     f"{len(reached)}/{SEEDS}" + (f" (median epoch {np.median(reached):.0f})"
                                                  if reached else ""),
                     f"{np.median(L[:, -1]):.3g} [{L[:, -1].min():.3g}, {L[:, -1].max():.3g}]",
                     f"{np.median(V[:, -1]):.3g}"])
        numbers[name] = {"weights": NETS[name].num_params, "loss_epoch_10": at10.tolist(),
                         "final_train_loss": L[:, -1].tolist(), "final_test_loss":
                         V[:, -1].tolist(), "epoch_reaching_linear_fit": reach,
                         "diverged": np.asarray(r.diverged).tolist()}
    ax.axhline(lin_train, color="gray", ls=":", label="least-squares linear fit")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (1)")
    ax.set_title(f"{D}-" + "-".join([str(H)] * DEPTH) + f"-1 tanh, Algorithm 1, η = {ETA:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    figure = save_figure(fig, "e8_skip_connection")

    (plain, skip) = NETS
    Lp, Ls = (np.asarray(results[k].losses) for k in (plain, skip))
    wins = int(np.sum(Ls[:, -1] < Lp[:, -1]))
    ratio10 = float(np.median(Lp[:, 9]) / np.median(Ls[:, 9]))
    ratio_end = float(np.median(Lp[:, -1]) / np.median(Ls[:, -1]))
    numbers["seeds_where_skip_ends_lower"] = wins
    helps = wins > SEEDS // 2 and ratio10 > 1 and ratio_end > 1
    verdict = ("The skip connection helps on this task" if helps else
               "On this run the skip connection does not clearly help")
    diverged = sum(int(np.asarray(r.diverged).sum()) for r in results.values())
    md = f"""
Target `y = aᵀx + 0.3 sin(2 bᵀx)`, `x ~ N(0, I_{D})`, `a = {_vec(A)}`, `b = {_vec(B)}`;
{N_TRAIN} training and {N_TEST} test samples. Two networks with the same six tanh layers
of width {H}: one plain, one whose output also reads `x` (`Layer(1, "identity", inputs=(0,
{DEPTH}))`, {D} more weights). Both: Algorithm 1 (`batch_size=1`), η = {ETA:g}, {EPOCHS}
epochs, the same {SEEDS} initialisation seeds (`bp.sweep` trains the {SEEDS} seeds of
each network at once), float32. The dotted line is the least-squares affine fit
(training loss {lin_train:.3g}): below it, a network has learned more than the linear part.

{figure}

{table(["network", "weights", "loss after 10 epochs (median)",
        "seeds below the linear fit (epoch)", "final training loss: median [min, max]",
        "final test loss (median)"], rows)}

{verdict}: after 10 epochs the median training loss is {ratio10:.1f}× lower with the skip,
and at the end {ratio_end:.1f}× lower; the skip network ends lower in {wins} of {SEEDS}
seeds. {"No run diverged." if diverged == 0 else f"{diverged} runs diverged."} Why (an
explanation, not measured here): with the skip, the linear part goes straight from `x` to
the output through one layer of weights; without it, the linear map has to be threaded
through {DEPTH} saturating tanh layers of width {H}, and the gradient that reaches the
first layers is a product of {DEPTH} Jacobians.
"""
    return Section("e8_skip_connection", "8. A skip connection helping", md, numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
