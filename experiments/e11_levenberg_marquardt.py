"""Experiment 11: Levenberg–Marquardt (``bp.levenberg_marquardt``) against gradient descent.

Part A is the paper's example (§1.3.1, equation (5)) with experiment 1's data, starts and
clamps: how many Levenberg–Marquardt iterations reach the float64 floor, against Algorithm 1's
epochs (``bp.fit``, ``batch_size=1``), free and clamped, and whether ω comes back.

Part B is a small regression, ``y = sin(2πx)`` on ``[−1, 1]`` fitted by a ``1-8-1`` tanh network
from one start, with five trainers: Levenberg–Marquardt, Algorithm 1, Adam (``bp.fit`` with
``optax.adam``, full batch), scikit-learn's ``MLPRegressor(solver="lbfgs")`` and SciPy's
``least_squares(method="lm")`` (MINPACK's Levenberg–Marquardt, given bpjax's hand-written
Jacobian). Final loss (1) and wall time.

Wall times are of a second call (the first one compiles), on a shared machine: read them as
orders of magnitude. A trainer's loss history is placed on the time axis at equal intervals
(its time divided by its iterations or epochs).
"""

from __future__ import annotations

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import bpjax as bp
from e1_quadratic_regression import (
    CLAMPS,
    ETA,
    FLOOR,
    NET,
    OMEGA_0,
    OMEGA_1,
    OMEGA_2,
    equation_5,
    omega_from_weights,
)
from report import Section, run, save_figure, table

N = 200
EPOCHS = 600  # Algorithm 1, as in experiment 1
ITERATIONS = 100  # at most; Levenberg–Marquardt stops once μ passes mu_max
FREE_SEEDS = (0, 1, 2)
CLAMPED_SEEDS = (0, 1, 2, 3)

SINE = bp.Network(1, [bp.Layer(8, "tanh"), bp.Layer(1, "identity")])
SINE_N = 60
SINE_SEEDS = (0, 1, 2)
SINE_EPOCHS = 2000  # Algorithm 1 and Adam
SINE_ETA = 0.5
ADAM = optax.adam(0.01)  # one object: the optimizer is part of what fit compiles
SINE_ITERATIONS = 200
MINPACK_NFEV = 2000  # SciPy's budget of residual evaluations


def _timed(f):
    """``f()`` twice; the result and the time of the second call (the first compiles)."""
    f()
    t = time.perf_counter()
    out = jax.block_until_ready(f())
    return out, time.perf_counter() - t


def _first_below(losses, level):
    hit = np.flatnonzero(np.asarray(losses) <= level)
    return int(hit[0]) + 1 if hit.size else None


def _omega_error(params):
    o2, o1, o0 = omega_from_weights(params)
    o2 = o2 if o2 @ OMEGA_2 >= 0 else -o2
    truth = np.concatenate([OMEGA_2, OMEGA_1, [OMEGA_0.sum()]])
    return float(np.abs(np.concatenate([o2, o1, [o0]]) - truth).max())


def _paper_runs(X, Y):
    runs = {}
    for kind, seeds in (("free", FREE_SEEDS), ("clamped", CLAMPED_SEEDS)):
        for seed in seeds:
            p0 = bp.init(NET, jax.random.key(seed), dtype=jnp.float64)
            frozen = None
            if kind == "clamped":
                p0, frozen = bp.clamp(NET, p0, CLAMPS)
            lm, t_lm = _timed(lambda p0=p0, f=frozen: bp.levenberg_marquardt(
                NET, p0, X, Y, iterations=ITERATIONS, frozen=f, min_grad=0.0))
            gd, t_gd = _timed(lambda p0=p0, f=frozen: bp.fit(
                NET, p0, X, Y, learning_rate=ETA, epochs=EPOCHS, frozen=f))
            runs[(kind, seed)] = dict(lm=lm, gd=gd, t_lm=t_lm, t_gd=t_gd, p0=p0, frozen=frozen)
    return runs


def _clamps_kept(r):
    return all(float(np.asarray(r.params[l - 1])[j, k - 1]) == v for (l, j, k), v in CLAMPS.items())


def _paper_figure(runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.3))
    for (kind, seed), r in ((k, v) for k, v in runs.items() if k[1] in FREE_SEEDS):
        style = "-" if kind == "free" else "--"
        color = f"C{seed}"
        lm, gd = np.asarray(r["lm"].losses), np.asarray(r["gd"].losses)
        label = f"{kind}, seed {seed}"
        ax.loglog(np.arange(1, len(lm) + 1), lm, style, color=color, marker="o", ms=3,
                  label=f"LM, {label}")
        ax.loglog(np.arange(1, len(gd) + 1), gd, style, color=color, alpha=0.35,
                  label=f"Algorithm 1, {label}")
        t_lm = r["t_lm"] / max(len(lm), 1) * np.arange(1, len(lm) + 1)
        t_gd = r["t_gd"] / len(gd) * np.arange(1, len(gd) + 1)
        ax2.loglog(t_lm, lm, style, color=color, marker="o", ms=3)
        ax2.loglog(t_gd, gd, style, color=color, alpha=0.35)
    for a in (ax, ax2):
        a.axhline(FLOOR, color="gray", ls=":", lw=1)
        a.grid(True, which="both", alpha=0.3)
        a.set_ylabel("loss (1)")
    ax.set_xlabel("iteration (LM: one accepted step) / epoch (Algorithm 1)")
    ax.set_title("Figure-2 network on data from (5): bold LM, faint Algorithm 1")
    ax2.set_xlabel("wall time (s), compiled")
    ax2.set_title(f"the same against time (floor {FLOOR:g} dotted)")
    ax.legend(fontsize=6, ncol=2)
    return save_figure(fig, "e11_levenberg_marquardt")


# --- part B ------------------------------------------------------------------------------


def _sine_data():
    X = np.linspace(-1, 1, SINE_N)[:, None]
    return X, np.sin(2 * np.pi * X)


def _loss_np(params, X, Y):
    return float(bp.loss(SINE, params, X, Y))


def _sklearn_lbfgs(p0, X, Y):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    kw = dict(hidden_layer_sizes=(8,), activation="tanh", solver="lbfgs", alpha=0.0,
              tol=0.0, max_fun=10**6)
    y = Y.ravel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)

        def fit():
            m = MLPRegressor(warm_start=True, max_iter=1, **kw)
            m.fit(X, y)  # builds the model; its weights are then replaced by bpjax's start
            m.coefs_ = [np.array(w[1:], np.float64) for w in p0]
            m.intercepts_ = [np.array(w[0], np.float64) for w in p0]
            m.set_params(max_iter=SINE_ITERATIONS * 10)
            t = time.perf_counter()
            m.fit(X, y)
            return m, time.perf_counter() - t

        (_, t1), (m, t2) = fit(), fit()
        seconds = min(t1, t2)  # the faster of two: on a shared machine noise only adds time
    params = tuple(jnp.asarray(np.concatenate([b[None], W])) for W, b in
                   zip(m.coefs_, m.intercepts_))
    return params, seconds, int(m.n_iter_)


def _scipy_lm(p0, X, Y, max_nfev):
    from scipy.optimize import least_squares

    shapes = [w.shape for w in p0]
    cuts = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]

    def unflat(v):
        return tuple(jnp.asarray(part.reshape(s)) for part, s in zip(np.split(v, cuts), shapes))

    def fun(v):  # the residuals of loss (1), scaled so that ½‖fun‖² is loss (1)
        return np.asarray(bp.forward(SINE, unflat(v), X) - Y).ravel() / np.sqrt(SINE_N)

    def jac(v):  # bpjax's hand-written Jacobian, flattened like v
        J = bp.jacobian(SINE, unflat(v), X)
        return np.concatenate([np.asarray(j).reshape(SINE_N, -1) for j in J], 1) / np.sqrt(
            SINE_N)

    x0 = np.concatenate([np.asarray(w).ravel() for w in p0])
    t = time.perf_counter()
    out = least_squares(fun, x0, jac=jac, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                        max_nfev=max_nfev)
    return unflat(out.x), time.perf_counter() - t, int(out.nfev), int(out.njev)


def _sine_runs():
    X, Y = _sine_data()
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    runs = {}
    _scipy_lm(bp.init(SINE, jax.random.key(0), dtype=jnp.float64), X, Y, 2)  # compiles
    for seed in SINE_SEEDS:
        p0 = bp.init(SINE, jax.random.key(seed), dtype=jnp.float64)
        out = {"initial": _loss_np(p0, Xj, Yj)}
        r_lm, t = _timed(lambda p0=p0: bp.levenberg_marquardt(SINE, p0, Xj, Yj,
                                                               iterations=SINE_ITERATIONS))
        out["Levenberg–Marquardt (bpjax)"] = dict(loss=float(r_lm.losses[-1]), seconds=t,
                                                 steps=r_lm.epochs_run, history=r_lm.losses)
        r, t = _timed(lambda p0=p0: bp.fit(SINE, p0, Xj, Yj, learning_rate=SINE_ETA,
                                           epochs=SINE_EPOCHS))
        out["Algorithm 1 (bpjax)"] = dict(loss=float(r.losses[-1]), seconds=t,
                                          steps=SINE_EPOCHS, history=r.losses)
        r, t = _timed(lambda p0=p0: bp.fit(SINE, p0, Xj, Yj, optimizer=ADAM,
                                           batch_size=None, epochs=SINE_EPOCHS))
        out["Adam, full batch (bpjax)"] = dict(loss=float(r.losses[-1]), seconds=t,
                                               steps=SINE_EPOCHS, history=r.losses)
        params, t, n = _sklearn_lbfgs(p0, X, Y)
        out["scikit-learn MLPRegressor lbfgs"] = dict(loss=_loss_np(params, Xj, Yj),
                                                      seconds=t, steps=n)
        lm = out["Levenberg–Marquardt (bpjax)"]
        budget = int(r_lm.opt_state.solves)  # LM's evaluations of the loss at a trial step
        for name, nfev in ((f"SciPy least_squares lm (MINPACK), {MINPACK_NFEV} evaluations",
                            MINPACK_NFEV),
                           ("SciPy least_squares lm (MINPACK), LM's evaluations", budget)):
            params, t, n, nj = _scipy_lm(p0, X, Y, nfev)
            out[name] = dict(loss=_loss_np(params, Xj, Yj), seconds=t, steps=n, jacobians=nj)
        lm["jacobians"] = lm["steps"] + 1
        lm["evaluations"] = budget
        runs[seed] = out
    return runs


def _sine_figure(runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.3))
    seed = SINE_SEEDS[0]
    for i, (name, r) in enumerate((k, v) for k, v in runs[seed].items() if k != "initial"):
        if "history" in r:
            h = np.asarray(r["history"])
            ax.loglog(r["seconds"] / len(h) * np.arange(1, len(h) + 1), h, color=f"C{i}",
                      label=name)
        else:
            ax.loglog([r["seconds"]], [r["loss"]], "x", ms=10, mew=2, color=f"C{i}",
                      label=f"{name} (final)")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("loss (1)")
    ax.set_title(f"1-8-1 tanh on sin(2πx), N = {SINE_N}, seed {seed}: one start, five trainers")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, "e11_sine_regression")


def experiment() -> Section:
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)  # experiment 1's data
        X = rng.uniform(-1.0, 1.0, size=(N, 2))
        Y = equation_5(X)[:, None]
        runs = _paper_runs(X, Y)
        sine = _sine_runs()
    figure = _paper_figure(runs)
    sine_figure = _sine_figure(sine)

    rows, numbers = [], {"paper": {}, "sine": {}}
    reach = {"free": ([], []), "clamped": ([], [])}
    speed = {"free": [], "clamped": []}
    for (kind, seed), r in runs.items():
        lm, gd = r["lm"], r["gd"]
        it_lm, ep_gd = _first_below(lm.losses, FLOOR), _first_below(gd.losses, FLOOR)
        reach[kind][0].append(it_lm)
        reach[kind][1].append(ep_gd)
        per_ep = r["t_gd"] / EPOCHS
        gd_to_floor = None if ep_gd is None else ep_gd * per_ep
        if gd_to_floor is not None and it_lm is not None:
            speed[kind].append(gd_to_floor / r["t_lm"])
        err_lm, err_gd = _omega_error(lm.params), _omega_error(gd.params)
        kept = kind == "free" or _clamps_kept(lm)
        rows.append([kind, seed, it_lm or "—", lm.epochs_run, int(lm.opt_state.solves),
                     f"{float(lm.losses[-1]):.1e}", f"{err_lm:.1e}", f"{1e3 * r['t_lm']:.2f}",
                     ep_gd or f"> {EPOCHS}", f"{float(gd.losses[-1]):.1e}", f"{err_gd:.1e}",
                     "—" if gd_to_floor is None else f"{1e3 * gd_to_floor:.2f}"])
        numbers["paper"][f"{kind} {seed}"] = dict(
            lm_iterations_to_floor=it_lm, lm_iterations_run=lm.epochs_run,
            lm_solves=int(lm.opt_state.solves), lm_final_loss=float(lm.losses[-1]),
            lm_omega_error=err_lm, lm_final_mu=float(lm.opt_state.mu),
            lm_stopped_by_mu_max=not bool(lm.opt_state.found) and float(lm.opt_state.mu) > 1e10,
            clamps_kept=kept, gd_epochs_to_floor=ep_gd, gd_final_loss=float(gd.losses[-1]),
            gd_omega_error=err_gd, lm_seconds=r["t_lm"], gd_seconds=r["t_gd"],
            gd_seconds_to_floor=gd_to_floor)
    paper = numbers["paper"].values()
    all_kept = all(v["clamps_kept"] for v in paper)
    all_mu = all(v["lm_stopped_by_mu_max"] for v in paper)
    worst_lm_err = max(v["lm_omega_error"] for v in paper)
    worst_gd_err = max(v["gd_omega_error"] for v in paper)
    worst_lm_loss = max(v["lm_final_loss"] for v in paper)

    def span(v, fmt="{}"):
        v = [x for x in v if x is not None]
        return f"{fmt.format(min(v))}–{fmt.format(max(v))}" if v else "—"

    ratio = lambda v: span(v, "{:.1f}")
    numbers["paper"]["time_ratio_gd_to_floor_over_lm_run"] = {k: v for k, v in speed.items()}

    sine_rows = []
    names = [k for k in sine[SINE_SEEDS[0]] if k != "initial"]
    for name in names:
        losses = [sine[s][name]["loss"] for s in SINE_SEEDS]
        secs = [sine[s][name]["seconds"] for s in SINE_SEEDS]
        steps = [sine[s][name]["steps"] for s in SINE_SEEDS]
        extra = ""
        if "jacobians" in sine[SINE_SEEDS[0]][name]:
            extra = " / ".join(str(sine[s][name]["jacobians"]) for s in SINE_SEEDS)
        sine_rows.append([name, " / ".join(f"{v:.1e}" for v in losses),
                          f"{np.median(secs):.3f}", " / ".join(map(str, steps)), extra or "—"])
        numbers["sine"][name] = dict(final_loss=losses, seconds=secs, steps=steps)
    numbers["sine"]["initial_loss"] = [sine[s]["initial"] for s in SINE_SEEDS]
    lm_name = "Levenberg–Marquardt (bpjax)"
    same_name = "SciPy least_squares lm (MINPACK), LM's evaluations"
    big_name = f"SciPy least_squares lm (MINPACK), {MINPACK_NFEV} evaluations"
    ranked = sorted(names, key=lambda n: np.median([sine[s][n]["loss"] for s in SINE_SEEDS]))
    lm_evals = [sine[s][lm_name]["evaluations"] for s in SINE_SEEDS]
    vs_same = [sine[s][lm_name]["loss"] / sine[s][same_name]["loss"] for s in SINE_SEEDS]
    t_lm = np.median([sine[s][lm_name]["seconds"] for s in SINE_SEEDS])
    t_big = np.median([sine[s][big_name]["seconds"] for s in SINE_SEEDS])
    numbers["sine"]["lm_loss_over_minpack_same_evaluations"] = vs_same

    def med(name):
        return float(np.median([sine[s][name]["loss"] for s in SINE_SEEDS]))

    md = f"""
`bp.levenberg_marquardt` follows MATLAB's `trainlm`: each iteration solves
`(JᵀJ + μI) Δ = −Jᵀe` for the free weights (dense Cholesky), with the residuals
`e = φ_θ(X) − Y` and the per-sample Jacobian `J = ∂φ_θ/∂w` from `bp.jacobian` (by hand,
equations (2)–(4)), accepts `w + Δ` if loss (1) goes down (then `μ ← μ/10`) and otherwise
retries with `μ ← 10μ`; it stops once `μ` passes `10¹⁰`. trainlm's defaults (`μ = 10⁻³`),
with `min_grad = 0` in part A so that training runs down to the float64 floor.

**A. The paper's example.** Experiment 1's data (N = {N} points, equation (5), no noise) and
network (figure 2), from the same initialisations; "clamped" is the paper's
`w^1_02 = 0, w^2_11 = 1, w^2_21 = 1`. Algorithm 1: `bp.fit`, `batch_size=1`, η = {ETA},
{EPOCHS} epochs. "To floor": the first iteration or epoch whose loss is ≤ {FLOOR:g}. LM's
time is its whole run, until it stopped by itself; Algorithm 1's time to the floor is its
epochs to the floor × its time per epoch.

{table(["weights", "seed", "LM: iterations to floor", "LM: iterations run",
        "LM: Cholesky solves", "LM: final loss", "LM: ω error", "LM: time (ms)",
        "Alg. 1: epochs to floor", "Alg. 1: final loss", "Alg. 1: ω error",
        "Alg. 1: ms to floor"], rows)}

{figure}

Levenberg–Marquardt reaches the floor in {span(reach["free"][0])} iterations with all 8
weights free and {span(reach["clamped"][0])} with the clamps, where Algorithm 1 needs
{span(reach["free"][1])} and {span(reach["clamped"][1])} epochs. In the last iterations each
step roughly squares the loss (left panel): Gauss–Newton on a problem whose residual is zero
at the minimum. With all weights free `JᵀJ` is singular — the three redundant directions of
experiment 1 — and `μI` is what makes the step defined. Final losses are at most
{worst_lm_loss:.0e}; {"in every run" if all_mu else "NOT in every run:"} the steps at the
floor are rejected until `μ` passes `10¹⁰` and training stops by itself (the iterations run
beyond "to floor", and most of the solves, are that end). ω comes back to {worst_lm_err:.0e}
(Algorithm 1: {worst_gd_err:.0e}; through experiment 1's map for free weights, with the
clamps the weights are ω), and the clamped weights kept their values bit for bit
{"in every run" if all_kept else "— NOT in every run"}. In time, an LM iteration (a Jacobian
`(N, 8)`, `JᵀJ`, a factorisation per trial of `μ`) costs more than an epoch of Algorithm 1's
{N} per-sample steps: Algorithm 1's time to the floor is {ratio(speed["free"])}× LM's whole run
with the weights free, {ratio(speed["clamped"])}× with the clamps (below 1: Algorithm 1 got
there first).

**B. A small regression.** `y = sin(2πx)`, {SINE_N} points on [−1, 1], network `1-8-1`
(tanh, identity output, {SINE.num_params} weights), float64, every trainer from bpjax's
initial weights for seeds {", ".join(map(str, SINE_SEEDS))} (initial loss
{" / ".join(f"{v:.2f}" for v in numbers["sine"]["initial_loss"])}). LM: {SINE_ITERATIONS}
iterations. Algorithm 1: η = {SINE_ETA}, {SINE_EPOCHS} epochs. Adam: rate 0.01, full batch,
{SINE_EPOCHS} epochs. scikit-learn: `MLPRegressor(hidden_layer_sizes=(8,), activation="tanh",
solver="lbfgs", alpha=0, tol=0)` started from the same weights (`warm_start`), at most
{SINE_ITERATIONS * 10} iterations. SciPy: `least_squares(method="lm")`, MINPACK's
Levenberg–Marquardt (a trust-region variant with scaled steps), on the residuals `e/√N` with
bpjax's hand-written Jacobian, tolerances 1e-15, given {MINPACK_NFEV} residual evaluations, and
given as many as bpjax's LM made ({" / ".join(map(str, lm_evals))}: its trial steps). "steps":
iterations (LM, L-BFGS), epochs, or residual evaluations (MINPACK's `nfev`); "Jacobians":
how many `J` each Levenberg–Marquardt computed.

{table(["trainer", "final loss (1), per seed", "time (s), median", "steps, per seed",
        "Jacobians"], sine_rows)}

{sine_figure}

Ranked by median final loss: {", ".join(f"{n} ({med(n):.0e})" for n in ranked)}. With the
same number of residual evaluations, bpjax's LM ends at {span(vs_same, "{:.2g}")}× MINPACK's
loss (below 1: bpjax's is lower). Past the first iterations its progress slows: trainlm's rule
(`μ` × or ÷ 10, no scaling of the step) alternates between a rejected and an accepted `μ`,
{np.median(lm_evals) / SINE_ITERATIONS:.1f} solves per iteration here. Given {MINPACK_NFEV}
evaluations MINPACK goes further, in {t_big:.1f} s against LM's {t_lm:.3f} s for its
{SINE_ITERATIONS} iterations: MINPACK's driver calls back into Python for
every residual and Jacobian, bpjax's loop runs compiled.
"""
    return Section("e11_levenberg_marquardt", "11. Levenberg–Marquardt: the paper's example in "
                   "a handful of iterations, and a small regression against five trainers",
                   md, numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
