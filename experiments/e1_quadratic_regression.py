"""Experiment 1: the paper's own example, quadratic regression (§1.3.1, figure 2).

Data come from equation (5) with a known ω, for ``D = 2``, ``d = 1``:

    y_i = (ω_2ᵀ x_i)² + ω_1ᵀ x_i + ω_0ᵀ 1_D,

and the learner is the network of figure 2: ``N_1 = 2`` neurons, ``φ^1_1(z) = z`` and
``φ^1_2(z) = z²``, and one identity output without bias, which computes equation (6):

    φ_θ(x) = w^2_11 (w^1_01 + w^1_11 x[1] + w^1_21 x[2])
           + w^2_21 (w^1_02 + w^1_12 x[1] + w^1_22 x[2])².

The experiment (all in float64)

1. checks that ``bp.forward`` is equation (6), and that the hand-written backward pass and
   Algorithm 2 give the derivatives ``∂φ_θ/∂w`` the paper lists (``bp.per_example_backprop``
   with the residual ``φ_θ(x_i) − y_i = 1`` returns ``∂φ_θ/∂w(x_i)`` itself), including the
   green path ``∂φ_θ/∂w^1_21 = 1 · w^2_11 · 1 · x[2]`` (``bp.chain_rule_paths``);
2. trains the network with Algorithm 1 (``bp.fit``, ``batch_size=1``) from several random
   initialisations, all weights free, and maps the trained weights back to ω;
3. clamps ``w^1_02 = 0``, ``w^2_11 = 1``, ``w^2_21 = 1`` as the paper suggests (``bp.clamp``),
   trains again and compares the recovered weights with the true ω.

Writing ``v = (w^1_11, w^1_21)`` and ``u = (w^1_12, w^1_22)``, equation (6) expands to

    φ_θ(x) = w^2_21 (uᵀx)² + (w^2_11 v + 2 w^2_21 w^1_02 u)ᵀ x + w^2_11 w^1_01 + w^2_21 (w^1_02)²,

so, when ``w^2_21 > 0``, the network is equation (5) with

    ω_2 = ±√(w^2_21) u,   ω_1 = w^2_11 v + 2 w^2_21 w^1_02 u,
    ω_0ᵀ1_D = w^2_11 w^1_01 + w^2_21 (w^1_02)².
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import bpjax as bp
from report import Section, run, save_figure, table

NET = bp.Network(2, [bp.Layer(2, ("identity", "square")), bp.Layer(1, "identity", bias=False)])
OMEGA_2 = np.array([1.0, -0.5])
OMEGA_1 = np.array([0.5, 2.0])
OMEGA_0 = np.array([0.3, -0.1])  # only ω_0ᵀ1_D = 0.2 reaches the data
N = 200
ETA = 0.5
EPOCHS = 600
FREE_SEEDS = (0, 1, 2)
CLAMPED_SEEDS = tuple(range(8))
FLOOR = 1e-20  # a loss this small is zero up to float64 rounding of targets of size ~1
CLAMPS = {(1, 0, 2): 0.0, (2, 1, 1): 1.0, (2, 2, 1): 1.0}  # w^1_02, w^2_11, w^2_21

# (name, params index (layer, j, k in code), the paper's expression for ∂φ_θ/∂w)
WEIGHTS = (
    ("w^1_(0,1)", (0, 0, 0), "w^2_(1,1)"),
    ("w^1_(1,1)", (0, 1, 0), "w^2_(1,1) x[1]"),
    ("w^1_(2,1)", (0, 2, 0), "w^2_(1,1) x[2]"),
    ("w^1_(0,2)", (0, 0, 1), "2 w^2_(2,1) a^1_2"),
    ("w^1_(1,2)", (0, 1, 1), "2 w^2_(2,1) x[1] a^1_2"),
    ("w^1_(2,2)", (0, 2, 1), "2 w^2_(2,1) x[2] a^1_2"),
    ("w^2_(1,1)", (1, 1, 0), "φ^1_1 = a^1_1"),
    ("w^2_(2,1)", (1, 2, 0), "φ^1_2 = (a^1_2)²"),
)


def equation_5(X):
    """``y_i = (ω_2ᵀx_i)² + ω_1ᵀx_i + ω_0ᵀ1_D``, ``X`` of shape ``(N, 2)``."""
    return (X @ OMEGA_2) ** 2 + X @ OMEGA_1 + OMEGA_0 @ np.ones(2)


def equation_6(w1, w2, X):
    """Equation (6) written out, ``w1 = params[0]`` ``(3, 2)``, ``w2 = params[1]`` ``(3, 1)``."""
    a1 = w1[0, 0] + w1[1, 0] * X[:, 0] + w1[2, 0] * X[:, 1]
    a2 = w1[0, 1] + w1[1, 1] * X[:, 0] + w1[2, 1] * X[:, 1]
    return w2[1, 0] * a1 + w2[2, 0] * a2**2


def paper_derivatives(w1, w2, X):
    """``∂φ_θ/∂w(x_i)`` as §1.3.1 lists them, in the order of :data:`WEIGHTS`: ``(8, N)``."""
    a1 = w1[0, 0] + w1[1, 0] * X[:, 0] + w1[2, 0] * X[:, 1]
    a2 = w1[0, 1] + w1[1, 1] * X[:, 0] + w1[2, 1] * X[:, 1]
    one = np.ones(len(X))
    return np.stack([
        w2[1, 0] * one, w2[1, 0] * X[:, 0], w2[1, 0] * X[:, 1],
        2 * w2[2, 0] * a2, 2 * w2[2, 0] * X[:, 0] * a2, 2 * w2[2, 0] * X[:, 1] * a2,
        a1, a2**2,
    ])


def omega_from_weights(params):
    """ω_2 (up to sign), ω_1 and ω_0ᵀ1_D from any weights of figure 2 with ``w^2_21 > 0``."""
    w1, w2 = (np.asarray(w, np.float64) for w in params)
    b, v, u = w1[0], w1[1:, 0], w1[1:, 1]
    c_lin, c_sq = w2[1, 0], w2[2, 0]
    omega_2 = np.sqrt(c_sq) * u if c_sq > 0 else np.full(2, np.nan)
    omega_1 = c_lin * v + 2 * c_sq * b[1] * u
    omega_0_sum = c_lin * b[0] + c_sq * b[1] ** 2
    return omega_2, omega_1, omega_0_sum


def _aligned(omega_2):
    """ω_2 with the sign that makes it closest to the true ω_2, and that sign."""
    s = 1.0 if omega_2 @ OMEGA_2 >= 0 else -1.0
    return s * omega_2, s


def _checks(X):
    """Equation (6), the paper's derivatives and the green path, at random weights."""
    rng = np.random.default_rng(1)
    w1, w2 = rng.normal(size=(3, 2)), rng.normal(size=(3, 1))
    w2[0] = 0.0  # the output has no bias: a structural zero
    params = (jnp.asarray(w1), jnp.asarray(w2))
    phi = np.asarray(bp.forward(NET, params, X))[:, 0]
    forward_err = float(np.abs(phi - equation_6(w1, w2, X)).max())

    expected = paper_derivatives(w1, w2, X)
    per = bp.per_example_backprop(NET, params, X, (phi - 1.0)[:, None])  # residual 1
    per = [np.asarray(g) for g in per]
    sub = X[:20]  # Algorithm 2 is slow (plain Python): a subset of the samples
    rows, errs = [], {}
    for i, (name, (l, j, k), expr) in enumerate(WEIGHTS):
        bp_err = float(np.abs(per[l][:, j, k] - expected[i]).max())
        rec = np.array([bp.recursive_dphi_dw(NET, params, x, 2, 1, l + 1, j, k + 1) for x in sub])
        rec_err = float(np.abs(rec - expected[i, :20]).max())
        scale = float(np.abs(expected[i]).max())
        errs[name] = {"backprop": bp_err, "algorithm2": rec_err, "max_abs_derivative": scale}
        rows.append([f"`{name}`", f"`{expr}`", scale, bp_err, rec_err])

    # the green path of figure 2, as a sum over chain-rule paths
    green = [bp.chain_rule_paths(NET, params, x, weight=(1, 2, 1)) for x in sub]
    green_err = float(np.abs(np.array([g.value for g in green]) - w2[1, 0] * sub[:, 1]).max())
    n_paths = sorted({len(g.paths) for g in green})

    # ∂L/∂w = 1/N Σ_i ∂φ_θ/∂w(x_i) (φ_θ(x_i) − y_i), for the real targets
    Y = equation_5(X)
    grads = bp.backprop(NET, params, X, Y[:, None])
    paper_grad = expected @ (phi - Y) / len(X)
    got = np.array([np.asarray(grads[l])[j, k] for _, (l, j, k), _ in WEIGHTS])
    grad_err = float(np.abs(got - paper_grad).max() / np.abs(paper_grad).max())
    return dict(rows=rows, errs=errs, forward_err=forward_err, phi_scale=float(np.abs(phi).max()),
                green=green[0], green_err=green_err, green_paths=n_paths, grad_err=grad_err,
                n_sub=len(sub))


def _train(X, Y):
    free, clamped = {}, {}
    for seed in FREE_SEEDS:
        p0 = bp.init(NET, jax.random.key(seed), dtype=jnp.float64)
        free[seed] = (p0, bp.fit(NET, p0, X, Y, learning_rate=ETA, epochs=EPOCHS))
    for seed in CLAMPED_SEEDS:
        p0, frozen = bp.clamp(NET, bp.init(NET, jax.random.key(seed), dtype=jnp.float64),
                              CLAMPS)
        r = bp.fit(NET, p0, X, Y, learning_rate=ETA, epochs=EPOCHS, frozen=frozen)
        unchanged = all(float(np.asarray(r.params[l - 1])[j, k - 1]) == v
                        for (l, j, k), v in CLAMPS.items())
        clamped[seed] = (p0, r, unchanged)
    return free, clamped


def _figure(free, clamped):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    epochs = np.arange(1, EPOCHS + 1)
    for i, (seed, (_, r)) in enumerate(free.items()):
        ax.semilogy(epochs, np.asarray(r.losses), "--", color=f"C{i}",
                    label=f"all 8 weights free, seed {seed}")
    for i, (seed, (_, r, _)) in enumerate(list(clamped.items())[: len(free)]):
        ax.semilogy(epochs, np.asarray(r.losses), "-", color=f"C{i}", alpha=0.8,
                    label=f"3 weights clamped, seed {seed}")
    ax.set_xlabel("epoch t (one pass of Algorithm 1 over the N samples)")
    ax.set_ylabel("loss (1)")
    ax.set_title(f"Figure-2 network on data from (5): Algorithm 1, η = {ETA}, N = {N}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, "e1_quadratic_regression")


def _reach_sentence(worst_loss, reach):
    """How the loss went down, from the measured histories."""
    if any(r is None for r in reach):
        return f"The final loss is at most {worst_loss:.1e}"
    return (f"The loss falls below {FLOOR:g} within {min(reach)}–{max(reach)} epochs "
            f"(final loss at most {worst_loss:.1e}, the float64 rounding floor)")


def _fmt(v):
    return f"{v:+.6f}"


def _vec(v):
    return "(" + ", ".join(f"{x:g}" for x in v) + ")"


def _first_below(losses, level):
    """The first epoch (1-based) whose loss is ≤ ``level``, or None."""
    hit = np.flatnonzero(np.asarray(losses) <= level)
    return int(hit[0]) + 1 if hit.size else None


def experiment() -> Section:
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        X = rng.uniform(-1.0, 1.0, size=(N, 2))
        Y = equation_5(X)[:, None]
        chk = _checks(X)
        free, clamped = _train(X, Y)
    figure = _figure(free, clamped)

    # --- all weights free: different weights, one function ---
    truth = np.concatenate([OMEGA_2, OMEGA_1, [OMEGA_0.sum()]])
    free_rows, free_num = [], {}
    for seed, (_, r) in free.items():
        w1, w2 = (np.asarray(w) for w in r.params)
        o2, o1, o0 = omega_from_weights(r.params)
        o2, _ = _aligned(o2)
        err = float(np.abs(np.concatenate([o2, o1, [o0]]) - truth).max())
        raw = [w1[0, 0], w1[1, 0], w1[2, 0], w1[0, 1], w1[1, 1], w1[2, 1], w2[1, 0], w2[2, 0]]
        free_rows.append([seed, *[f"{v:+.3f}" for v in raw], f"{float(r.losses[-1]):.1e}",
                          f"{err:.1e}"])
        free_num[str(seed)] = {"final_loss": float(r.losses[-1]), "omega_error": err,
                               "weights": [float(v) for v in raw]}
    free_spread = float(np.ptp(np.array([v["weights"] for v in free_num.values()]), axis=0).max())
    free_worst = max(v["omega_error"] for v in free_num.values())
    free_loss = max(v["final_loss"] for v in free_num.values())
    free_reach = [_first_below(r.losses, FLOOR) for _, r in free.values()]
    cl_reach = [_first_below(r.losses, FLOOR) for _, r, _ in clamped.values()]

    # --- three weights clamped: the weights are ω ---
    rec, signs, init_signs, dots, cl_num = {}, {}, {}, {}, {}
    for seed, (p0, r, unchanged) in clamped.items():
        w1 = np.asarray(r.params[0])
        u, v, b = w1[1:, 1], w1[1:, 0], w1[0, 0]
        _, s = _aligned(u)
        signs[seed] = s
        dots[seed] = float(np.asarray(p0[0])[1:, 1] @ OMEGA_2)
        init_signs[seed] = 1.0 if dots[seed] >= 0 else -1.0
        rec[seed] = np.concatenate([u, v, [b]])
        err = float(np.abs(np.concatenate([s * u, v, [b]]) - truth).max())
        cl_num[str(seed)] = {"final_loss": float(r.losses[-1]), "omega_error": err,
                             "sign": s, "initial_sign": init_signs[seed],
                             "clamps_unchanged": unchanged, "u": u.tolist(), "v": v.tolist(),
                             "w1_01": float(b)}
    cl_worst = max(v["omega_error"] for v in cl_num.values())
    cl_loss = max(v["final_loss"] for v in cl_num.values())
    all_unchanged = all(v["clamps_unchanged"] for v in cl_num.values())
    n_plus = sum(1 for s in signs.values() if s > 0)
    plus_seed = next(s for s in CLAMPED_SEEDS if signs[s] > 0)
    minus_seed = next((s for s in CLAMPED_SEEDS if signs[s] < 0), None)
    shown = [plus_seed] + ([minus_seed] if minus_seed is not None else [])
    names = [("ω_2[1]", "w^1_(1,2)"), ("ω_2[2]", "w^1_(2,2)"), ("ω_1[1]", "w^1_(1,1)"),
             ("ω_1[2]", "w^1_(2,1)"), ("ω_0ᵀ1_D = ω_0[1] + ω_0[2]", "w^1_(0,1)")]
    rec_rows = [[sym, f"`{w}`", _fmt(truth[i]), *[_fmt(rec[s][i]) for s in shown]]
                for i, (sym, w) in enumerate(names)]
    rec_headers = ["ω", "carried by", "true", *[f"recovered, seed {s}" for s in shown]]

    faster = ""
    if None not in free_reach + cl_reach and max(cl_reach) < min(free_reach):
        faster = (": with the redundant directions gone, training is also faster here than "
                  "with all weights free (solid lines in the figure against dashed ones)")
    chk_rows = chk["rows"]
    worst_bp = max(e["backprop"] for e in chk["errs"].values())
    worst_rec = max(e["algorithm2"] for e in chk["errs"].values())
    green_text = str(chk["green"])
    crossed = [s for s in signs if signs[s] != init_signs[s]]
    stayed = [s for s in signs if s not in crossed]
    sign_sentence = (f"{len(stayed)} of {len(CLAMPED_SEEDS)} seeds ended at the mirror image "
                     f"nearer to their initial `u⁽⁰⁾` (the sign of `u⁽⁰⁾·ω_2`)")
    if crossed:
        which = f"{'seed' if len(crossed) == 1 else 'seeds'} {', '.join(map(str, crossed))}"
        dot_c = ", ".join(f"{abs(dots[s]):.2f}" for s in crossed)
        sign_sentence += f"; {which} crossed over (`|u⁽⁰⁾·ω_2|` = {dot_c}"
        if stayed and max(abs(dots[s]) for s in crossed) < min(abs(dots[s]) for s in stayed):
            sign_sentence += (f", against at least {min(abs(dots[s]) for s in stayed):.2f} for "
                              f"the others: they started nearly orthogonal to ω_2")
        sign_sentence += ")"
    sign_sentence += "."

    md = f"""
The paper's example. Data: N = {N} points `x_i` uniform in [−1, 1]², targets from equation
(5) without noise (`y_i = f(x_i)`, as in §1) with

    ω_2 = {_vec(OMEGA_2)},  ω_1 = {_vec(OMEGA_1)},  ω_0 = {_vec(OMEGA_0)}
    (so ω_0ᵀ1_D = {OMEGA_0.sum():g}).

Network: figure 2, `Network(2, [Layer(2, ("identity", "square")), Layer(1, "identity",
bias=False)])`, 8 weights. Everything in float64.

**The network is equation (6).** At random weights (all 8 non-zero), `bp.forward` and
equation (6) written out differ by at most {chk["forward_err"]:.1e} over the {N} points
(outputs up to {chk["phi_scale"]:.2g}).

**The paper's derivatives.** `bp.per_example_backprop` with targets `y_i = φ_θ(x_i) − 1`
(residual 1) returns `∂φ_θ/∂w(x_i)` for every sample; Algorithm 2 (`bp.recursive_dphi_dw`)
gives it on {chk["n_sub"]} of them. Against the expressions of §1.3.1 (with
`a^1_1 = w^1_01 + w^1_11 x[1] + w^1_21 x[2]`, `a^1_2 = w^1_02 + w^1_12 x[1] + w^1_22 x[2]`):

{table(["weight", "∂φ_θ/∂w (§1.3.1)", "max abs value", "max abs error, backprop",
        "max abs error, Algorithm 2"], chk_rows, ".1e")}

The loss gradient `∂L/∂w = 1/N Σ_i ∂φ_θ/∂w(x_i) (φ_θ(x_i) − y_i)` built from these
expressions matches `bp.backprop` to {chk["grad_err"]:.1e} (relative). The green path of
figure 2, `∂φ_θ/∂w^1_21`, is a single chain-rule path (found: {chk["green_paths"]} path(s)
per sample) whose value equals `w^2_11 x[2]` to {chk["green_err"]:.1e}. For the first sample:

```
{green_text}
```

**Training, all weights free.** Algorithm 1 (`bp.fit`, `batch_size=1`, samples in order),
η = {ETA}, {EPOCHS} epochs, from {len(FREE_SEEDS)} initialisations (`bp.init`, seeds
{", ".join(map(str, FREE_SEEDS))}):

{figure}

{table(["seed", "w^1_01", "w^1_11", "w^1_21", "w^1_02", "w^1_12", "w^1_22", "w^2_11",
        "w^2_21", "final loss", "max ω error"], free_rows)}

{_reach_sentence(free_loss, free_reach)}, but the weights differ from seed to seed (by up
to {free_spread:.2f} in one weight): the model is over-specified, as the paper notes.
Writing `v = (w^1_11, w^1_21)` and `u = (w^1_12, w^1_22)`, equation (6) expands to

    φ_θ(x) = w^2_21 (uᵀx)² + (w^2_11 v + 2 w^2_21 w^1_02 u)ᵀx + w^2_11 w^1_01 + w^2_21 (w^1_02)²

so, whenever `w^2_21 > 0`, the network is equation (5) with

    ω_2 = ±√(w^2_21) u,   ω_1 = w^2_11 v + 2 w^2_21 w^1_02 u,
    ω_0ᵀ1_D = w^2_11 w^1_01 + w^2_21 (w^1_02)².

Through this map every seed's weights give the true ω (sign of ω_2 aligned) to within
{free_worst:.1e} ("max ω error" above). The function is determined by 5 numbers
(ω_2 up to its sign, ω_1, ω_0ᵀ1_D) and the network has 8 weights: the 3 extra directions
are the rescalings `(w^2_11, v, w^1_01) → (c w^2_11, v/c, w^1_01/c)` and
`(w^2_21, u, w^1_02) → (c² w^2_21, u/c, w^1_02/c)`, and the shift of the square neuron's argument by
`w^1_02`, which `v` and `w^1_01` pay back.

**Training with the paper's clamps.** Clamping one weight per extra direction removes
them: `bp.clamp(net, params, {{(1, 0, 2): 0.0, (2, 1, 1): 1.0, (2, 2, 1): 1.0}})`, i.e.
`w^1_02 = 0`, `w^2_11 = 1`, `w^2_21 = 1`, leaves

    φ_θ(x) = (uᵀx)² + vᵀx + w^1_01,   so   ω_2 = ±u,  ω_1 = v,  ω_0ᵀ1_D = w^1_01.

The values matter, not only which weights are clamped. `w^2_21` must be positive: with
`w^2_21 = −1` the network computes `−(uᵀx)²` and cannot represent (5)'s `+(ω_2ᵀx)²` (any
`c > 0` works, with `ω_2 = ±√c u`; 1 makes the map the identity). `w^2_11` must be non-zero
(0 would remove the linear term; `c ≠ 0` gives `ω_1 = c v`). `w^1_02 = b` could be any
value (`ω_1 = v + 2b u`, `ω_0ᵀ1_D = w^1_01 + b²`); 0 makes the map the identity. Same
data, η and epochs, {len(CLAMPED_SEEDS)} seeds
({"the clamped weights kept their values bit for bit in every run" if all_unchanged
  else "WARNING: a clamped weight changed"}):

{table(rec_headers, rec_rows)}

Over the {len(CLAMPED_SEEDS)} seeds the final loss is at most {cl_loss:.1e} and, with the
sign of ω_2 aligned, the recovered ω is within {cl_worst:.1e} of the truth: the trained
weights are ω itself. {_reach_sentence(cl_loss, cl_reach)}{faster}.

**What stays unidentifiable.**
- *The sign of ω_2.* `(ω_2ᵀx)² = (−ω_2ᵀx)²`: `u` and `−u` give the same function, so the data
  cannot choose. {n_plus} of {len(CLAMPED_SEEDS)} seeds recovered `+ω_2` and
  {len(CLAMPED_SEEDS) - n_plus} recovered `−ω_2`: the random start decides.
  {sign_sentence}
- *How ω_0 splits.* Equation (5) adds `ω_0ᵀ1_D = ω_0[1] + ω_0[2]`: only the sum reaches the
  data, and the network carries it in the single bias `w^1_01` (recovered:
  {rec[plus_seed][4]:.6f}, true sum {OMEGA_0.sum():g}). The data cannot tell
  ω_0 = {_vec(OMEGA_0)} from {_vec(OMEGA_0 + [-0.2, 0.2])} or any other pair with the same
  sum; a scalar would do. Likewise ω_1 enters as `ω_1ᵀx`: the identity neuron carries ω_1
  in its weights `w^1_11, w^1_21` and the constant in its bias, while the square neuron
  carries ω_2.
"""
    numbers = {
        "omega_true": {"omega_2": OMEGA_2.tolist(), "omega_1": OMEGA_1.tolist(),
                       "omega_0": OMEGA_0.tolist(), "omega_0_sum": float(OMEGA_0.sum())},
        "check": {"forward_max_abs_error": chk["forward_err"], "derivatives": chk["errs"],
                  "backprop_worst": worst_bp, "algorithm2_worst": worst_rec,
                  "green_path_error": chk["green_err"], "loss_gradient_rel_error": chk["grad_err"]},
        "training": {"eta": ETA, "epochs": EPOCHS, "N": N},
        "free": free_num,
        "clamped": cl_num,
        "clamped_worst_omega_error": cl_worst,
        "free_worst_omega_error": free_worst,
    }
    return Section("e1_quadratic_regression", "1. Quadratic regression, the paper's example "
                   "(§1.3.1, figure 2)", md, numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
