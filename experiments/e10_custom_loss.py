"""Experiment 10: losses bpjax does not know, through ``jax.grad`` of ``bp.apply``.

Robust regression: ``y = sin(x)`` plus noise, with a fraction of gross outliers. The same
1-16-16-1 tanh network is trained by a plain optax loop (Adam, full batch) on three losses
written in a few lines of JAX, none of them bpjax's:

* the squared loss ``½ mean (φ_θ(x) − y)²`` (equation (1)), as a baseline;
* the Huber loss, quadratic below ``c`` and linear above: outliers pull with a bounded force;
* Huber plus a gradient penalty ``λ mean_z (∂φ_θ/∂x (z))²`` over a grid of points ``z``
  spanning the inputs, which needs the input gradient ``∂φ/∂x`` inside the loss: ``jax.grad``
  of it differentiates the hand-written backward pass again (reverse over reverse).

``jax.grad`` of each loss runs bpjax's hand-written VJP (``bp.apply``'s ``custom_vjp``); the
report shows it in the jaxprs, compares the gradients with ``jax.grad`` of the same loss on the
plain-JAX ``bp.forward`` in float64, and times one jitted training step both ways.
"""

from __future__ import annotations

import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import bpjax as bp
from report import Section, run, save_figure, table

NET = bp.Network(1, [bp.Layer(16, "tanh"), bp.Layer(16, "tanh"), bp.Layer(1, "identity")])
N, OUTLIERS, NOISE = 200, 0.15, 0.1
C, LAMBDA = 0.2, 0.05  # Huber's threshold; the weight of the gradient penalty
LR, STEPS = 0.01, 1500
GRID = np.linspace(-3, 3, 301)[:, None]
Z = np.linspace(-3, 3, 61, dtype=np.float32)[:, None]  # where the gradient penalty looks
SIN_SLOPE = float(np.mean(np.abs(np.cos(GRID))))  # mean |d sin/dx| on the grid


def _data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(N, 1))
    Y = np.sin(X) + NOISE * rng.normal(size=(N, 1))
    bad = rng.random(N) < OUTLIERS
    Y[bad] += rng.choice([-1, 1], size=(bad.sum(), 1)) * rng.uniform(2, 4, size=(bad.sum(), 1))
    return X.astype(np.float32), Y.astype(np.float32), bad


def huber(r):
    return jnp.where(jnp.abs(r) <= C, 0.5 * r * r, C * (jnp.abs(r) - 0.5 * C))


def losses(phi, X, Y):
    """The three losses, each a function of ``params``, for the network function ``phi``."""
    squared = lambda p: 0.5 * jnp.mean((phi(p, X) - Y) ** 2)
    robust = lambda p: jnp.mean(huber(phi(p, X) - Y))

    def penalised(p):  # ∂φ/∂z at every z at once: the samples do not interact
        dphi_dz = jax.grad(lambda Z: jnp.sum(phi(p, Z)))(Z.astype(X.dtype))
        return robust(p) + LAMBDA * jnp.mean(dphi_dz**2)

    return {"squared (1)": squared, "Huber": robust, "Huber + gradient penalty": penalised}


def apply(p, X):
    return bp.apply(NET, p, X)


def forward(p, X):
    return bp.forward(NET, p, X)


def train(loss, params):
    """A plain optax loop: jitted ``value_and_grad`` and Adam, full batch."""
    opt = optax.adam(LR)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    state, history = opt.init(params), []
    for _ in range(STEPS):
        params, state, value = step(params, state)
        history.append(value)
    return params, np.asarray(jax.device_get(history))


def _rel_diff(a, b) -> float:
    """``max |a − b| / max |b|`` over every weight."""
    a = np.concatenate([np.ravel(v) for v in a])
    b = np.concatenate([np.ravel(v) for v in b])
    return float(np.abs(a - b).max() / np.abs(b).max())


def _agreement(trained, X, Y):
    """Max relative difference, float64, of ``jax.grad`` through apply and through forward."""
    out = {}
    with jax.enable_x64(True):
        X64, Y64 = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
        by_apply, by_forward = losses(apply, X64, Y64), losses(forward, X64, Y64)
        for name in by_apply:
            g_apply = jax.jit(jax.grad(by_apply[name]))
            g_forward = jax.jit(jax.grad(by_forward[name]))
            diffs = []
            for params in trained[name]:
                p64 = tuple(jnp.asarray(w, jnp.float64) for w in params)
                ga = g_apply(p64)
                assert all(g.dtype == jnp.float64 for g in ga)
                diffs.append(_rel_diff(ga, g_forward(p64)))
            out[name] = diffs
    return out


def _jaxpr_evidence(params, X, Y):
    """What the jaxprs of each loss and of its gradient hold."""
    rows, numbers, excerpt = [], {}, ""
    for name, loss in losses(apply, X, Y).items():
        value = str(jax.make_jaxpr(loss)(params))
        grad = str(jax.make_jaxpr(jax.grad(loss))(params))
        plain = str(jax.make_jaxpr(jax.grad(losses(forward, X, Y)[name]))(params))
        n = {"custom_vjp_call in loss": value.count("custom_vjp_call["),
             "backward_pass in gradient": grad.count("name=backward_pass"),
             "backward_pass in plain gradient": plain.count("name=backward_pass")}
        numbers[name] = n
        rows.append([name, *n.values()])
        if name == "Huber":
            call = re.search(r"custom_vjp_call\[[^\]]*\]", value, re.S).group(0)
            bwd = re.search(r"jit\[\s*name=backward_pass", grad).group(0)
            excerpt = " ".join(call.split()) + "\n...\n" + " ".join(bwd.split()) + " ..."
    return rows, numbers, excerpt


def _step_times(params, X, Y, repeats=7, calls=200):
    """Median seconds of one jitted value-and-grad step (Huber) through apply and forward."""
    steps = {name: jax.jit(jax.value_and_grad(losses(phi, X, Y)["Huber"]))
             for name, phi in (("bp.apply", apply), ("bp.forward", forward))}
    for f in steps.values():
        jax.block_until_ready(f(params))
    times = {name: [] for name in steps}
    for _ in range(repeats):  # interleaved, so both see the same machine
        for name, f in steps.items():
            t = time.perf_counter()
            for _ in range(calls):
                out = f(params)
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - t) / calls)
    return {name: float(np.median(t)) for name, t in times.items()}


def experiment() -> Section:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, Y, bad = _data()
    init = bp.init(NET, jax.random.key(0))
    trained, histories = {}, {}
    for name, loss in losses(apply, X, Y).items():
        params, histories[name] = train(loss, init)
        trained[name] = (init, params)
    agreement = _agreement(trained, X, Y)
    jaxpr_rows, jaxpr_numbers, excerpt = _jaxpr_evidence(init, X, Y)
    times = _step_times(init, X, Y)

    clean = np.sin(GRID)
    rows, numbers = [], {"agreement": agreement, "jaxpr": jaxpr_numbers,
                         "step_seconds": times}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.scatter(X[~bad, 0], Y[~bad, 0], s=8, color="0.6", label="data")
    ax.scatter(X[bad, 0], Y[bad, 0], s=12, color="k", marker="x", label="outliers")
    ax.plot(GRID[:, 0], clean[:, 0], "k:", label="sin(x)")
    for i, (name, (_, params)) in enumerate(trained.items()):
        fit = np.asarray(bp.forward(NET, params, GRID))
        slope = np.asarray(jax.vmap(jax.grad(lambda x, p=params: bp.apply(NET, p, x)[0]))(
            jnp.asarray(GRID, jnp.float32)))
        mse = float(np.mean((fit - clean) ** 2))
        numbers[name] = {"final_loss": float(histories[name][-1]), "mse_to_sin": mse,
                         "mean_abs_slope": float(np.mean(np.abs(slope))),
                         "max_abs_slope": float(np.max(np.abs(slope)))}
        rows.append([name, f"{histories[name][-1]:.4g}", f"{mse:.3g}",
                     f"{np.mean(np.abs(slope)):.3f}",
                     f"{agreement[name][0]:.1e} / {agreement[name][1]:.1e}"])
        ax.plot(GRID[:, 0], fit[:, 0], color=f"C{i}", label=name)
        ax2.semilogy(np.arange(1, STEPS + 1), histories[name], color=f"C{i}", label=name)
    ax.set_ylim(-5.5, 5.5)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"fits after {STEPS} Adam steps; {int(bad.sum())} of {N} points are outliers")
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax2.set_xlabel("step")
    ax2.set_ylabel("training loss (each its own)")
    ax2.set_title("training through jax.grad of bp.apply")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    figure = save_figure(fig, "e10_custom_loss")

    worst = max(max(v) for v in agreement.values())
    numbers["worst_relative_difference"] = worst
    ratio = times["bp.apply"] / times["bp.forward"]
    sq, hu, gp = (numbers[k] for k in trained)
    md = f"""
`y = sin(x) + {NOISE:g}·noise` for {N} points `x ~ U(−3, 3)`; {int(bad.sum())} of them
({OUTLIERS:.0%} on average) are gross outliers, shifted by ±2 to ±4. Network 1-16-16-1 tanh,
the same initial weights for every loss; {STEPS} full-batch steps of `optax.adam({LR:g})` in a
plain Python loop around a jitted `jax.value_and_grad(loss)`, float32. Each loss is a few lines
of JAX on `bp.apply(net, params, X)`; bpjax knows none of them:

```python
huber = lambda r: jnp.where(jnp.abs(r) <= {C:g}, 0.5 * r**2, {C:g} * (jnp.abs(r) - {C / 2:g}))
robust = lambda p: jnp.mean(huber(bp.apply(net, p, X) - Y))
Z = jnp.linspace(-3, 3, {len(Z)})[:, None]  # where the penalty looks
def penalised(p):                       # needs ∂φ/∂x inside the loss
    dphi_dz = jax.grad(lambda Z: jnp.sum(bp.apply(net, p, Z)))(Z)
    return robust(p) + {LAMBDA:g} * jnp.mean(dphi_dz**2)
grads = jax.grad(penalised)(params)     # reverse over reverse through the hand-written VJP
```

{figure}

{table(["loss", "final training loss", "mean squared error to sin(x) on [−3, 3]",
        "mean abs(∂φ/∂x) on [−3, 3]", "gradient vs plain JAX (init / trained)"], rows)}

The outliers pull the squared loss's fit away from `sin(x)` (mean squared error
{sq["mse_to_sin"]:.3g}, steepest slope {sq["max_abs_slope"]:.1f}); the Huber loss bounds their
pull ({hu["mse_to_sin"]:.3g}). The gradient penalty {"flattens" if gp["mean_abs_slope"] <
hu["mean_abs_slope"] else "does not flatten"} the Huber fit: mean slope
{gp["mean_abs_slope"]:.3f} against {hu["mean_abs_slope"]:.3f} without it (`sin` itself:
{SIN_SLOPE:.3f}), at the price of a larger error ({gp["mse_to_sin"]:.3g}) — the trade-off
that λ = {LAMBDA:g} sets.

**The gradients are bpjax's.** In the jaxpr of each loss, `bp.apply` is a `custom_vjp_call`
whose backward rule is `backward_pass` (the delta rule of `bpjax.backward`); in the jaxpr of
`jax.grad(loss)` JAX inlines that rule, which shows as the named `jit[name=backward_pass]`.
The plain forward's gradient holds none: there JAX differentiates `bp.forward` itself.
Huber, excerpts:

```text
{excerpt}
```

{table(["loss", "custom_vjp_call in the loss's jaxpr", "backward_pass in jax.grad's jaxpr",
        "backward_pass in jax.grad's jaxpr, plain forward"], jaxpr_rows)}

With the penalty, `backward_pass` appears three times: once for the Huber term, and twice
for the penalty: the inner `jax.grad` (`∂φ/∂z`) runs the hand-written VJP, and the outer
`jax.grad` differentiates that JAX code (its linearised and transposed part is a second
`jit[name=backward_pass]`).

**They equal plain JAX's.** In float64, `jax.grad` of each loss through `bp.apply` and through
`bp.forward` (JAX's own autodiff) differ by at most {worst:.1e} relative to the largest
gradient entry, at the initial and at the trained weights (table above): rounding.

**Cost.** One jitted value-and-grad step of the Huber loss on this tiny network (N = {N},
{NET.num_params} weights): {times["bp.apply"] * 1e6:.0f} µs through `bp.apply`,
{times["bp.forward"] * 1e6:.0f} µs through `bp.forward` (ratio {ratio:.2f}; medians of 7
interleaved runs of 200 calls, on a shared machine).
"""
    return Section("e10_custom_loss", "10. Your own loss through jax.grad of bp.apply", md,
                   numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
