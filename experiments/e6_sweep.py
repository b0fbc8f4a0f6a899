"""Experiment 6: a sweep — 256 networks trained at once over learning rate × seed.

``bp.sweep`` runs ``bp.fit``'s loop for ``M`` models of one network in a single ``jax.vmap``
ped loop: the models differ by their initial weights and learning rates and share the data.
Task: fit ``y = sin(2x)`` on 64 points of ``[−2, 2]`` with a ``1-16-1`` tanh network,
Algorithm 1 (``batch_size=1``), 16 learning rates (log-spaced) × 16 initialisations.

We time the sweep (after compiling it) against the same 256 fits run one after another with
``bp.fit`` (also compiled first), and check that both give the same final losses.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import bpjax as bp
from report import Section, run, save_figure, table

NET = bp.Network(1, [bp.Layer(16, "tanh"), bp.Layer(1, "identity")])
RATES = np.logspace(-2, 2, 16).astype(np.float32)
SEEDS = 16
EPOCHS = 300


def _data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2.0, 2.0, size=(64, 1)).astype(np.float32)
    return X, np.sin(2.0 * X).astype(np.float32)


def _final(losses):
    """The last finite loss of each model (a diverged model's history is NaN-padded)."""
    losses = np.asarray(losses)
    out = np.full(losses.shape[0], np.nan)
    for m, h in enumerate(losses):
        finite = h[np.isfinite(h)]
        if finite.size:
            out[m] = finite[-1]
    return out


def experiment() -> Section:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    X, Y = _data()
    R, S = len(RATES), SEEDS
    inits = jax.vmap(lambda k: bp.init(NET, k))(jax.random.split(jax.random.key(0), S))
    params = jax.tree.map(lambda w: jnp.tile(w, (R, 1, 1)), inits)  # model m = r·S + s
    eta = jnp.repeat(jnp.asarray(RATES), S)

    def sweep():
        r = bp.sweep(NET, params, X, Y, learning_rate=eta, epochs=EPOCHS,
                     on_divergence="ignore")  # the largest rates diverge, on purpose
        return r, np.asarray(r.losses)

    t = time.perf_counter()
    sweep()
    sweep_first = time.perf_counter() - t
    t = time.perf_counter()
    result, losses = sweep()
    sweep_seconds = time.perf_counter() - t

    one = lambda m: jax.tree.map(lambda w: w[m], params)
    t = time.perf_counter()
    bp.fit(NET, one(0), X, Y, learning_rate=float(RATES[0]), epochs=EPOCHS)  # compiles
    fit_first = time.perf_counter() - t
    singles, single_diverged = np.empty(R * S), np.zeros(R * S, bool)
    t = time.perf_counter()
    for m in range(R * S):
        r = bp.fit(NET, one(m), X, Y, learning_rate=float(eta[m]), epochs=EPOCHS,
                   on_divergence="ignore")
        # fit keeps the finite epochs only: its last loss is the last finite one (none if the
        # first epoch diverged)
        singles[m] = float(r.losses[-1]) if len(r.losses) else np.nan
        single_diverged[m] = r.diverged
    loop_seconds = time.perf_counter() - t

    final = _final(losses)
    diverged = np.asarray(result.diverged)
    ok = ~diverged
    agree = float(np.max(np.abs(final[ok] - singles[ok]) / np.abs(singles[ok])))
    same_diverged = bool(np.array_equal(single_diverged, diverged))
    grid = final.reshape(R, S)
    div_grid = diverged.reshape(R, S)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), width_ratios=(1.25, 1))
    shown = np.where(div_grid, np.nan, grid)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("#d62728")
    im = ax.imshow(shown.T, origin="lower", aspect="auto", cmap=cmap,
                   norm=LogNorm(np.nanmin(shown), np.nanmax(shown)))
    fig.colorbar(im, ax=ax, label="final training loss (1)")
    ticks = np.arange(0, R, 3)
    ax.set_xticks(ticks, [f"{RATES[i]:.3g}" for i in ticks])
    ax.set_xlabel("learning rate η (red: diverged)")
    ax.set_ylabel("initialisation (seed)")
    ax.set_title(f"{R * S} networks 1-16-1 tanh, y = sin(2x), {EPOCHS} epochs")
    med = np.array([np.median(row[~d]) if (~d).any() else np.nan
                    for row, d in zip(grid, div_grid)])
    lo = np.array([row[~d].min() if (~d).any() else np.nan for row, d in zip(grid, div_grid)])
    hi = np.array([row[~d].max() if (~d).any() else np.nan for row, d in zip(grid, div_grid)])
    ax2.loglog(RATES, med, "o-", label="median over seeds")
    ax2.fill_between(RATES, lo, hi, alpha=0.25, label="min–max over seeds")
    counts = div_grid.sum(axis=1)
    all_div = [i for i in range(R) if counts[i] == S]
    if all_div:
        ax2.axvspan(RATES[all_div[0]] / 1.15, RATES[-1] * 1.15, color="#d62728", alpha=0.15,
                    label="every run diverged")
    for rate, n in zip(RATES, counts):
        if 0 < n < S:
            ax2.annotate(f"{n}/{S}\ndiverged", (rate, np.nanmin(lo)), color="#d62728",
                         fontsize=7, ha="center")
    ax2.set_xlim(RATES[0] / 1.3, RATES[-1] * 1.3)
    ax2.set_xlabel("learning rate η")
    ax2.set_ylabel("final training loss (1), runs that did not diverge")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend()
    figure = save_figure(fig, "e6_sweep")

    best_r = int(np.nanargmin(med))
    n_div = int(diverged.sum())
    first_div = next((i for i in range(R) if div_grid[i].any()), None)
    rows = [
        [f"`bp.sweep`, {R * S} models in one call", f"{sweep_seconds:.2f}",
         f"{sweep_first:.2f}"],
        [f"`bp.fit` × {R * S}, one after another", f"{loop_seconds:.2f}", f"{fit_first:.2f}"],
    ]
    if first_div is None:
        div_text = "no run diverged"
    else:
        div_text = f"{n_div} of {R * S} runs diverged, all at η ≥ {RATES[first_div]:.3g}"
        if all_div and all(counts[i] == S for i in range(all_div[0], R)):
            div_text += f", and every run at η ≥ {RATES[all_div[0]]:.3g}"
    ratio = hi / lo
    worst_r = int(np.nanargmax(ratio))
    md = f"""
`bp.sweep` trains {R * S} networks at once: {R} learning rates η from {RATES[0]:g} to
{RATES[-1]:g} (log-spaced) × {S} initialisations, each with Algorithm 1 (`batch_size=1`)
for {EPOCHS} epochs on {len(X)} points of `y = sin(2x)`, network `1-16-1` (tanh, identity
output), float32.

{figure}

{table(["how", "seconds (compiled)", "first call (compiling)"], rows)}

The sweep takes {sweep_seconds:.2f} s; the same {R * S} fits one after another take
{loop_seconds:.2f} s ({loop_seconds / sweep_seconds:.1f}× longer), measured, not
extrapolated. Both give the same final losses (largest relative difference
{agree:.1e} over the runs that did not diverge{"" if same_diverged else
"; WARNING: they disagree on which runs diverged"}). The lowest median final loss,
{med[best_r]:.2e}, is at η = {RATES[best_r]:.3g}; {div_text}: `fit` stops a run as soon as
its loss is not finite and returns the last finite weights (`result.diverged`).
At one learning rate the final loss varies across initialisations by a factor of up to
{ratio[worst_r]:.0f} (at η = {RATES[worst_r]:.3g}; median factor over the rates
{np.nanmedian(ratio):.1f}).
"""
    numbers = {
        "rates": RATES.tolist(),
        "final_loss": [[None if np.isnan(v) else float(v) for v in row] for row in grid],
        "diverged": div_grid.tolist(),
        "sweep_seconds": sweep_seconds, "sweep_first_call_seconds": sweep_first,
        "sequential_fit_seconds": loop_seconds, "fit_first_call_seconds": fit_first,
        "max_relative_difference_sweep_vs_fit": agree,
        "best_rate": float(RATES[best_r]), "best_median_final_loss": float(med[best_r]),
    }
    return Section("e6_sweep", "6. A sweep: 256 networks over learning rate × seed", md,
                   numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
