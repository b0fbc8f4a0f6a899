"""Experiment 13: Algorithm 1 shown, on the paper's example (§1.3.1, figure 2).

1. **One step, every number.** ``bp.explain`` on the first sample of experiment 1's data: the
   forward pass (``a^l_k``, ``φ^l_k``), the hand-written backward pass (``δ^l_k``,
   ``∂L/∂w^l_jk``) and line 6 of Algorithm 1, as a table in the paper's notation, each neuron
   and delta written out, and ``bp.draw_network`` with ``δ`` on the neurons and ``∂L/∂w`` on the
   connections. The numbers are checked against the paper's own derivatives (§1.3.1).
2. **Training in motion.** A GIF of Algorithm 1 (``bp.fit``, ``batch_size=1``) on experiment 1's
   data: the network drawn with its weights (width by magnitude, blue positive, orange
   negative) beside the loss curve, all weights free and with the paper's three clamps.
"""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np

import bpjax as bp
from e1_quadratic_regression import (
    CLAMPS,
    ETA,
    NET,
    OMEGA_0,
    OMEGA_1,
    OMEGA_2,
    N,
    equation_5,
    paper_derivatives,
)
from report import Section, run, save_figure, save_file

SEED = 0  # bp.init's key, for both runs (the clamped run sets its three weights)
EPOCHS = 400
# The epochs shown: every epoch at first, then further apart (the loss falls on a log scale)
FRAMES = (0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 60, 75, 90, 110, 130, 160,
          200, 250, 300, 350, 400)
DPI = 85


def _data():
    rng = np.random.default_rng(0)  # experiment 1's data: N points, targets from (5)
    X = rng.uniform(-1.0, 1.0, size=(N, 2))
    return X, equation_5(X)[:, None]


def _one_step(X, Y):
    """``bp.explain`` on sample 1 at the initial weights; checked against §1.3.1's formulas."""
    params = bp.init(NET, jax.random.key(SEED), dtype=jnp.float64)
    step = bp.explain(NET, params, X[0], Y[0], learning_rate=ETA, N=N)
    w1, w2 = (np.asarray(w) for w in params)
    residual = float(step.phi[2][0]) - float(Y[0, 0])
    dphi = paper_derivatives(w1, w2, X[:1])[:, 0]  # ∂φ_θ/∂w(x_1), the paper's list
    ours = np.array([np.asarray(step.grads[l])[j, k] for l, j, k in (
        (0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 0, 1), (0, 1, 1), (0, 2, 1), (1, 1, 0), (1, 2, 0))])
    err = float(np.abs(ours - dphi * residual).max() / np.abs(dphi * residual).max())
    fig = bp.draw_network(NET, params=params, x=X[0], y=Y[0], nodes="delta", edges="grad",
                          title="one sample, backward: δ on the neurons, ∂L/∂w on the "
                                "connections")
    return step, err, save_figure(fig, "e13_one_step")


def _train(X, Y, frozen):
    """Weights at every epoch of :data:`FRAMES`, and the loss (1) after every epoch."""
    params = bp.init(NET, jax.random.key(SEED), dtype=jnp.float64)
    if frozen:
        params, frozen = bp.clamp(NET, params, CLAMPS)
    else:
        frozen = None
    snapshots, losses = {0: params}, [float(bp.loss(NET, params, X, Y))]
    for t0, t1 in zip(FRAMES, FRAMES[1:]):
        r = bp.fit(NET, params, X, Y, learning_rate=ETA, epochs=t1 - t0, frozen=frozen)
        params = r.params
        snapshots[t1] = params
        losses += [float(v) for v in np.asarray(r.losses)]
    return snapshots, np.array(losses), frozen


def _frames(free, clamped):
    """One RGB image per frame: the two networks and the loss curves."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    (w_free, loss_free, _), (w_clamped, loss_clamped, frozen) = free, clamped
    scale = max(float(np.abs(np.asarray(w)).max()) for run in (w_free, w_clamped)
                for p in run.values() for w in p)
    epochs = np.arange(EPOCHS + 1)
    images = []
    clamps = r"$w^1_{0,2} = 0$, $w^2_{1,1} = w^2_{2,1} = 1$ clamped (dotted)"
    for t in FRAMES:
        fig = Figure(figsize=(12, 7.6), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        top, bottom = fig.subfigures(2, 1, height_ratios=(1.75, 1))
        ax_free, ax_clamped = top.subplots(1, 2)
        ax_loss = bottom.subplots()
        bp.draw_network(NET, params=w_free[t], edges="w", ax=ax_free, edge_scale=scale,
                        digits=3, title="all 8 weights free")
        bp.draw_network(NET, params=w_clamped[t], edges="w", frozen=frozen, ax=ax_clamped,
                        edge_scale=scale, digits=3, title=clamps)
        for losses, colour, label in ((loss_free, "#222222", "all weights free"),
                                      (loss_clamped, "#7b3294", "3 weights clamped")):
            ax_loss.plot(epochs, losses, color=colour, alpha=0.15, lw=1)
            ax_loss.plot(epochs[:t + 1], losses[:t + 1], color=colour, lw=2,
                         label=f"{label}: {losses[t]:.1e}")
            ax_loss.plot([t], [losses[t]], "o", color=colour, ms=6)
        ax_loss.set_xscale("symlog", linthresh=1)
        ax_loss.set_yscale("log")
        ax_loss.set_xlim(0, EPOCHS)
        ax_loss.set_ylim(1e-30, 10 * max(loss_free.max(), loss_clamped.max()))
        ax_loss.set_xlabel(f"epoch t (one pass over the N = {N} samples)")
        ax_loss.set_ylabel("loss (1)")
        ax_loss.grid(True, which="major", alpha=0.3)
        ax_loss.legend(loc="lower left", fontsize=10)
        ax_loss.set_title(f"loss (1) after epoch t = {t}", fontsize=10)
        fig.suptitle(f"Algorithm 1 on the paper's example (§1.3.1, figure 2): "
                     f"w ← w − (η/N) ∂L/∂w(x_i), η = {ETA}, N = {N}.  Weights after epoch "
                     f"t = {t}", fontsize=11)
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    return images


def _gif(images, name: str) -> tuple[str, int]:
    """Writes ``results/<name>.gif``, every frame on one shared palette."""
    from PIL import Image

    # One fixed palette for every frame: greys, and each colour drawn mixed with white in
    # steps (anti-aliased lines are such mixtures), so that orange stays orange.
    colours = [(v, v, v) for v in np.linspace(0, 255, 24).astype(int)]
    for hex_ in (bp.drawing.POSITIVE, bp.drawing.NEGATIVE, bp.drawing.HIGHLIGHT, "#7b3294",
                 "#fff8dc", "#222222"):
        rgb = np.array([int(hex_[i:i + 2], 16) for i in (1, 3, 5)])
        colours += [tuple((255 - t * (255 - rgb)).astype(int)) for t in np.linspace(0.1, 1, 11)]
    palette = Image.new("P", (1, 1))
    palette.putpalette([c for rgb in colours for c in rgb])
    frames = [Image.fromarray(im).quantize(palette=palette, dither=Image.Dither.NONE)
              for im in images]
    durations = [700] + [350] * (len(frames) - 2) + [2500]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                   duration=durations, loop=0, optimize=True)
    return save_file(f"{name}.gif", buf.getvalue()), len(buf.getvalue())


def experiment() -> Section:
    with jax.enable_x64(True):
        X, Y = _data()
        step, step_err, step_png = _one_step(X, Y)
        table = step.to_markdown()
        free = _train(X, Y, frozen=False)
        clamped = _train(X, Y, frozen=True)
        gif, size = _gif(_frames(free, clamped), "e13_training_animation")
    loss_free, loss_clamped = free[1], clamped[1]
    w_end = np.asarray(clamped[0][FRAMES[-1]][0])
    unchanged = all(float(np.asarray(clamped[0][t][l - 1])[j, k - 1]) == v
                    for t in FRAMES for (l, j, k), v in CLAMPS.items())

    md = f"""
**One step, every number.** `bp.explain(net, params, x, y, learning_rate=η, N=N)` runs one
sample through the network of figure 2 and back, and takes line 6 of Algorithm 1. Here: the
first sample of experiment 1's data at the initial weights (`bp.init`, seed {SEED}), η = {ETA},
N = {N}. `∂L/∂w^l_jk` is this sample's term of the gradient without the `1/N` (what
`bp.backprop(net, params, x, y)` gives for the one sample); line 6 divides by N. Against the
paper's derivatives of §1.3.1 (`∂L/∂w = ∂φ_θ/∂w (φ_θ(x_i) − y_i)`, e.g. `∂φ_θ/∂w^1_21 = w^2_11
x[2]`) the gradients agree to {step_err:.1e} (relative, float64).

{table}
The same step drawn: `bp.draw_network(net, params=params, x=x, y=y, nodes="delta",
edges="grad")`. Each neuron carries its `δ^l_k`, each connection its `∂L/∂w^l_jk` (blue
positive, orange negative, width proportional to the magnitude).

{step_png}

**Training in motion.** Algorithm 1 (`bp.fit`, `batch_size=1`, the samples in order) on
experiment 1's data, η = {ETA}, from the same initial weights (seed {SEED}), with all 8 weights
free (top left) and with the paper's clamps `w^1_02 = 0`, `w^2_11 = w^2_21 = 1` (top right,
dotted: they never change{"" if unchanged else " — WARNING: a clamped weight changed"}). Each
frame
shows the weights after epoch t (line width proportional to `|w|` on one scale for every
frame, largest {max(float(np.abs(np.asarray(w)).max()) for r in (free[0], clamped[0])
                    for p in r.values() for w in p):.3g}) and the loss (1) so far.
{len(FRAMES)} frames, epochs {FRAMES[0]} to {FRAMES[-1]}, {size / 1024:.0f} KB.

{gif}

The loss after {EPOCHS} epochs: {loss_free[-1]:.1e} free, {loss_clamped[-1]:.1e} clamped
(from {loss_free[0]:.2g} and {loss_clamped[0]:.2g} at t = 0). With the clamps, the last frame
reads equation (5)'s ω off the picture: `(w^1_12, w^1_22) = ({w_end[1, 1]:.3g},
{w_end[2, 1]:.3g})` is ±ω_2 = ±{tuple(OMEGA_2.tolist())}, `(w^1_11, w^1_21) = ({w_end[1, 0]:.3g},
{w_end[2, 0]:.3g})` is ω_1 = {tuple(OMEGA_1.tolist())} and `w^1_01 = {w_end[0, 0]:.3g}` is
ω_0ᵀ1_D = {OMEGA_0.sum():g} (experiment 1 explains why). Without clamps the network ends at
other weights that compute the same function: the over-specification the paper notes.
"""
    numbers = {
        "one_step": {"gradient_vs_paper_rel_error": step_err, "loss": float(step.loss),
                     "learning_rate": ETA, "N": N},
        "animation": {"frames": len(FRAMES), "epochs": list(FRAMES), "bytes": size,
                      "clamps_unchanged": unchanged},
        "loss_free": {str(t): float(loss_free[t]) for t in FRAMES},
        "loss_clamped": {str(t): float(loss_clamped[t]) for t in FRAMES},
    }
    return Section("e13_training_animation",
                   "13. Algorithm 1 shown: one step in the paper's notation, and training in "
                   "motion", md, numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
