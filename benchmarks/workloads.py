"""The workloads of issue 6, W1-W5: what is run, on what data, and what is reported.

Each :class:`Workload` has a ``config`` (full or ``--quick`` sizes), ``factories`` that build
one :class:`~benchmarks.harness.Runner` per competitor (the same factories serve the timing
run and the memory probes), and ``summarize``, which turns the timings into ratios, checks
and targets. W5 measures a series of sizes and has its own ``custom`` runner.

All data are float32, made with fixed seeds; every competitor starts from the same weights.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import bpjax as bp
from benchmarks import baselines as B
from benchmarks import classification as C
from benchmarks import grid as G
from benchmarks import jacobian as J
from benchmarks import minibatch_grid as M
from benchmarks import overhead as O
from benchmarks.harness import Runner, Timing, interleave, loglog_slope, ratio
from benchmarks.report import target

NEEDS_FIT = "needs bp.fit (Algorithm 1, branch `training`), which this checkout does not have"
NEEDS_SWEEP = (
    "needs bp.sweep, the vmapped many-models trainer (branch `training`), which this checkout "
    "does not have"
)


@dataclasses.dataclass
class Workload:
    """One workload: its sizes, its competitors and how its results are read."""

    key: str
    title: str
    config: Callable[[bool], dict]
    reference: str
    factories: Callable[[dict], dict[str, Callable[[], Runner]]] | None = None
    summarize: Callable[[dict, dict[str, Timing]], dict] | None = None
    missing: Callable[[], str | None] = lambda: None
    custom: Callable[[dict, int, Callable], dict] | None = None
    skipped_targets: Callable[[], list] = list


def _jax_device() -> str:
    return jax.devices()[0].platform


def _block(tree):
    return jax.block_until_ready(tree)


def _mlp_net(sizes: tuple[int, ...]) -> bp.Network:
    """A dense net ``sizes[0]-...-sizes[-1]``: tanh hidden layers, identity output."""
    hidden = [bp.Layer(n, "tanh") for n in sizes[1:-1]]
    return bp.Network(inputs=sizes[0], layers=[*hidden, bp.Layer(sizes[-1], "identity")])


def _regression_data(N: int, D: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``X ~ N(0, 1)``; ``Y`` a smooth function of a few inputs (a target worth fitting)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D)).astype(np.float32)
    Z = X[:, :3].sum(axis=1, keepdims=True)
    Y = np.concatenate([np.sin(Z + k) for k in range(d)], axis=1).astype(np.float32)
    return X, Y


def _fit_loss(net, res_params, X, Y) -> float:
    return B.mlp_loss_np(B.to_mlp(res_params), X, Y)


def _agreement_check(timings: dict[str, Timing], reference: str, rtol: float) -> dict:
    """Every competitor's final loss (1) within ``rtol`` of the reference's."""
    ref = timings[reference].summary["final_loss"]
    worst, who = 0.0, reference
    for name, t in timings.items():
        rel = abs(t.summary["final_loss"] - ref) / abs(ref)
        if rel > worst:
            worst, who = rel, name
    return {
        "name": "same work",
        "ok": bool(worst <= rtol),
        "detail": f"final losses agree with {reference}'s ({ref:.6g}) to {worst:.1e} relative "
        f"(worst: {who}; tolerance {rtol:g})",
    }


# --------------------------------------------------------------------------- W1


def _w1_config(quick: bool) -> dict:
    return {
        "sizes": (64, 256, 256, 1),
        "N": 512 if quick else 4096,
        "epochs": 1 if quick else 2,
        "learning_rate": 2.0,  # η: each sample step is η/N
        "repeats": 2 if quick else 5,
    }


def _w1_factories(cfg: dict) -> dict[str, Callable[[], Runner]]:
    net = _mlp_net(cfg["sizes"])
    params = bp.init(net, jax.random.key(0))
    X, Y = _regression_data(cfg["N"], cfg["sizes"][0], cfg["sizes"][-1], seed=0)
    eta, E = cfg["learning_rate"], cfg["epochs"]
    lr = eta / cfg["N"]
    mlp = B.to_mlp(params)

    def loss_of(mlp_out):
        return {"final_loss": B.mlp_loss_np(mlp_out, X, Y)}

    def bpjax_fit():
        Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

        def run():
            res = bp.fit(net, params, Xj, Yj, learning_rate=eta, epochs=E)
            return _block(res)

        return Runner(run, lambda res: loss_of(B.to_mlp(res.params)), _jax_device())

    def jax_scan():
        Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
        mlp_j = [(jnp.asarray(W), jnp.asarray(b)) for W, b in mlp]

        def run():
            return _block(B.jax_mlp_scan_train(mlp_j, Xj, Yj, lr, E))

        return Runner(run, lambda out: loss_of(out[0]), _jax_device())

    def torch_eager():
        import torch

        torch.set_num_threads(1)
        tX, tY = torch.from_numpy(X.copy()), torch.from_numpy(Y.copy())

        def run():
            model = B.torch_model(mlp)
            B.torch_sgd(model, tX, tY, lr, E)
            return model

        return Runner(run, lambda m: loss_of(B.torch_to_mlp(m)), "cpu",
                      "torch.set_num_threads(1)")

    def sklearn():
        y = Y.ravel()
        m = B.sklearn_model(mlp, X, y, lr)

        def run():
            B.sklearn_reset(m, mlp)
            for _ in range(E):
                m.partial_fit(X, y)
            return m

        return Runner(run, lambda m: loss_of(B.sklearn_to_mlp(m)), "cpu")

    def numpy_loop():
        return Runner(lambda: B.numpy_sgd(mlp, X, Y, lr, E), loss_of, "cpu")

    out = {}
    if hasattr(bp, "fit"):
        out["bpjax.fit"] = bpjax_fit
    out |= {
        "jax.grad in lax.scan": jax_scan,
        "PyTorch eager": torch_eager,
        "scikit-learn MLPRegressor": sklearn,
        "numpy loop": numpy_loop,
    }
    return out


def _per_sample_summary(cfg: dict, t: dict[str, Timing], targets, notes: list) -> dict:
    """Ratios to bpjax.fit, time per sample step, the same-work check; W1 and W2 alike."""
    ref = "bpjax.fit"
    steps = cfg["N"] * cfg["epochs"]
    for tm in t.values():
        tm.summary["per_step_us"] = tm.median_s / steps * 1e6
    r = {name: ratio(tm.median_s, t[ref].median_s) for name, tm in t.items()}
    return {
        "ratios": r,
        "checks": [_agreement_check(t, ref, rtol=1e-3)],
        "targets": targets(r, t[ref]),
        "notes": notes,
    }


def _w1_summary(cfg: dict, t: dict[str, Timing]) -> dict:
    return _per_sample_summary(cfg, t, lambda r, _: _w1_targets(r), [
        f"Every competitor runs {cfg['epochs']} epoch(s) of per-sample SGD over the same "
        f"N={cfg['N']} samples in the same order, from the same float32 weights, with "
        f"steps η/N = {cfg['learning_rate']}/{cfg['N']}, and computes loss (1) after each "
        "epoch (scikit-learn accumulates its own). *ratio* = time / bpjax.fit's time, "
        "i.e. bpjax's speed-up. PyTorch runs with one intra-op thread: its per-sample ops "
        "are too small to parallelise, and two OpenMP threads on a shared 2-core machine "
        "made each step up to 10× slower (spin-waiting)."
    ])


def _w8_summary(cfg: dict, t: dict[str, Timing]) -> dict:
    return _per_sample_summary(cfg, t, lambda r, _: [], C.w8_notes(cfg))


def _w1_targets(r: dict | None = None) -> list:
    r = r or {}
    return [
        target("speed-up vs jax.grad in lax.scan", r.get("jax.grad in lax.scan"), ">=", 2, "×"),
        target("speed-up vs PyTorch eager", r.get("PyTorch eager"), ">=", 10, "×"),
        target("speed-up vs scikit-learn", r.get("scikit-learn MLPRegressor"), ">=", 25, "×"),
    ]


# --------------------------------------------------------------------------- W2


def _quadratic_net() -> bp.Network:
    """The paper's network (§1.3.1, figure 2, equation (6))."""
    return bp.Network(
        inputs=2,
        layers=[bp.Layer(2, ("identity", "square")), bp.Layer(1, "identity", bias=False)],
    )


def _w2_config(quick: bool) -> dict:
    return {
        "N": 512 if quick else 4096,
        "epochs": 10 if quick else 100,
        "learning_rate": 0.5,
        "repeats": 2 if quick else 5,
    }


def _w2_factories(cfg: dict) -> dict[str, Callable[[], Runner]]:
    net = _quadratic_net()
    params = bp.init(net, jax.random.key(1))
    rng = np.random.default_rng(2)
    X = rng.standard_normal((cfg["N"], 2)).astype(np.float32)
    # equation (5): y = (ω_2ᵀx)² + ω_1ᵀx + ω_0
    Y = ((X @ np.array([1.0, -0.5])) ** 2 + X @ np.array([0.5, 1.0]) + 0.3)[:, None]
    Y = Y.astype(np.float32)
    eta, E = cfg["learning_rate"], cfg["epochs"]
    mlp = B.to_mlp(params)

    def loss_of(mlp_out):
        (W1, b1), (W2, _) = mlp_out
        a1 = X.astype(np.float64) @ W1 + b1
        phi = np.stack([a1[:, 0], a1[:, 1] ** 2], axis=1)
        r = phi @ W2 - Y
        return {"final_loss": float(0.5 * np.sum(r * r) / len(X))}

    def bpjax_fit():
        Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

        def run():
            return _block(bp.fit(net, params, Xj, Yj, learning_rate=eta, epochs=E))

        return Runner(run, lambda res: loss_of(B.to_mlp(res.params)), _jax_device())

    def jax_scan():
        Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
        mlp_j = [(jnp.asarray(W), jnp.asarray(b)) for W, b in mlp]

        def run():
            return _block(B.quadratic_scan_train(mlp_j, Xj, Yj, eta / cfg["N"], E))

        return Runner(run, lambda out: loss_of(out[0]), _jax_device())

    out = {}
    if hasattr(bp, "fit"):
        out["bpjax.fit"] = bpjax_fit
    out["jax.grad in lax.scan"] = jax_scan
    return out


def _w2_summary(cfg: dict, t: dict[str, Timing]) -> dict:
    return _per_sample_summary(cfg, t, lambda _, ref: _w2_targets(ref), [
        f"{cfg['epochs']} epochs × N={cfg['N']} sample steps per call. The first call is "
        "timed in a process whose JAX backend is already started (a small warm-up "
        "compilation at start-up); compile = first call − steady median."
    ])


def _w2_targets(tm: Timing | None = None) -> list:
    return [
        target("first call compiles in (first − steady)", tm and tm.compile_s, "<=", 1.5, " s"),
    ]


# --------------------------------------------------------------------------- W3


def dense_flops(sizes: tuple[int, ...], N: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward + backward pass of a dense MLP.

    forward ``a^l = φ^{l-1} W^l``: ``2 N n_{l-1} n_l`` per layer; backward, the weight
    gradient ``φ^{l-1}ᵀ δ^l``: the same again; and ``δ^l W^lᵀ`` for every layer but the first
    (nothing flows back into x): ``2 N n_{l-1} n_l`` for ``l ≥ 2``. Biases, activations and
    the loss are O(N Σ n_l) and not counted.
    """
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * N * (2 * sum(macs) + sum(macs[1:]))


def _w3_config(quick: bool) -> dict:
    return {
        "sizes": (784, 512, 512, 10),
        "N": 256 if quick else 1024,
        "matmul_n": (512, 1024) if quick else (1024, 2048),
        "repeats": 3 if quick else 11,
        "min_time_s": 0.05 if quick else 0.2,
    }


def _w3_factories(cfg: dict) -> dict[str, Callable[[], Runner]]:
    from bpjax.backward import loss_and_gradients_jit

    net = _mlp_net(cfg["sizes"])
    params = bp.init(net, jax.random.key(3))
    X, Y = _regression_data(cfg["N"], cfg["sizes"][0], cfg["sizes"][-1], seed=3)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    mlp_j = [(jnp.asarray(W), jnp.asarray(b)) for W, b in B.to_mlp(params)]
    def grads_summary(grads):
        return {"grads": grads}

    def backprop():
        return Runner(lambda: _block(bp.backprop(net, params, Xj, Yj)), grads_summary,
                      _jax_device())

    def core():
        return Runner(lambda: _block(loss_and_gradients_jit(net, params, Xj, Yj, None)[1]),
                      grads_summary, _jax_device(), "bpjax.backward.loss_and_gradients_jit: "
                      "no input checks")

    def jgrad():
        def run():
            g = _block(B.jax_mlp_grad(mlp_j, Xj, Yj))
            return tuple(jnp.concatenate([gb[None], gw]) for gw, gb in g)

        return Runner(run, grads_summary, _jax_device())

    def matmul(n):
        A = jax.random.normal(jax.random.key(4), (n, n), jnp.float32)
        Bm = jax.random.normal(jax.random.key(5), (n, n), jnp.float32)
        dot = jax.jit(jnp.dot)
        return Runner(lambda: _block(dot(A, Bm)), None, _jax_device(),
                      f"jnp.dot of two {n}×{n} float32")

    return {
        "bpjax.backprop": backprop,
        "bpjax core (jitted, no checks)": core,
        "jax.grad (plain JAX MLP)": jgrad,
        **{f"matmul {n}²": functools.partial(matmul, n) for n in cfg["matmul_n"]},
    }


def _w3_summary(cfg: dict, t: dict[str, Timing]) -> dict:
    ref = "bpjax.backprop"
    flops = dense_flops(cfg["sizes"], cfg["N"])
    mm_flops = {f"matmul {n}²": 2 * n**3 for n in cfg["matmul_n"]}
    # The peak is a physical limit: take each matmul's fastest round, not its median.
    peak = max(f / min(t[name].steady_s) / 1e9 for name, f in mm_flops.items())
    rel = 0.0
    g_ref = t[ref].summary["grads"]
    g_jax = t["jax.grad (plain JAX MLP)"].summary["grads"]
    for a, b in zip(g_ref, g_jax):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        rel = max(rel, float(np.max(np.abs(a - b)) / np.max(np.abs(b))))
    for name, tm in t.items():
        tm.summary.pop("grads", None)
        f = mm_flops.get(name, flops)
        tm.summary["gflops"] = f / tm.median_s / 1e9
    r = {name: ratio(tm.median_s, t[ref].median_s) for name, tm in t.items()}
    frac = t[ref].summary["gflops"] / peak
    return {
        "ratios": r,
        "checks": [{
            "name": "same gradient",
            "ok": bool(rel < 1e-4),
            "detail": f"bpjax.backprop vs jax.grad, float32: max |Δ| / max |g| = {rel:.1e} "
            "(tolerance 1e-4)",
        }],
        "targets": _w3_targets(ratio(t[ref].median_s, t["jax.grad (plain JAX MLP)"].median_s)),
        "extra": {"flops": flops, "matmul_peak_gflops": peak, "fraction_of_peak": frac},
        "notes": [
            f"FLOPs per gradient, forward + backward, counted analytically "
            f"(`benchmarks.workloads.dense_flops`): {flops / 1e9:.3f} GFLOP. "
            f"Matmul peak measured in this run (the fastest round of the square float32 "
            f"`jnp.dot`s; the other GFLOP/s use medians): "
            f"{peak:.1f} GFLOP/s; bpjax.backprop reaches "
            f"{t[ref].summary['gflops']:.1f} GFLOP/s = {100 * frac:.0f}% of it."
        ],
    }


def _w3_targets(r: float | None = None) -> list:
    return [target("backprop time / jax.grad time", r, "<=", 1.0, "×")]


# --------------------------------------------------------------------------- W4


def _w4_missing() -> str | None:
    if not hasattr(bp, "fit"):
        return NEEDS_FIT
    if not hasattr(bp, "sweep"):
        return NEEDS_SWEEP
    return None


def _w4_config(quick: bool) -> dict:
    return {
        "models": 32 if quick else 256,
        "sizes": (2, 16, 1),
        "N": 128 if quick else 256,
        "epochs": 5 if quick else 20,
        "repeats": 2 if quick else 3,
    }


def _w4_factories(cfg: dict) -> dict[str, Callable[[], Runner]]:
    """``M`` nets with their own initial weights and learning rates η_m, per-sample SGD."""
    net = _mlp_net(cfg["sizes"])
    M, E = cfg["models"], cfg["epochs"]
    stacked = jax.vmap(lambda k: bp.init(net, k))(jax.random.split(jax.random.key(6), M))
    etas = jnp.geomspace(0.05, 2.0, M, dtype=jnp.float32)
    X, Y = _regression_data(cfg["N"], cfg["sizes"][0], cfg["sizes"][-1], seed=6)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

    def at_once():
        def run():
            return _block(bp.sweep(net, stacked, Xj, Yj, learning_rate=etas, epochs=E))

        return Runner(run, lambda res: {"final_losses": np.asarray(res.losses[:, -1])},
                      _jax_device(), "bp.sweep: one vmapped loop")

    def one_by_one():
        models = [jax.tree.map(lambda v, m=m: v[m], stacked) for m in range(M)]
        eta_list = [float(e) for e in etas]

        def run():
            return [_block(bp.fit(net, p, Xj, Yj, learning_rate=e, epochs=E))
                    for p, e in zip(models, eta_list)]

        return Runner(run, lambda rs: {"final_losses": np.array([r.losses[-1] for r in rs])},
                      _jax_device(), "a Python loop of bp.fit")

    return {"at once": at_once, "one after another": one_by_one}


def _w4_summary(cfg: dict, t: dict[str, Timing]) -> dict:
    a, b = t["at once"].summary.pop("final_losses"), t["one after another"].summary.pop(
        "final_losses")
    rel = float(np.max(np.abs(a - b) / np.abs(b)))
    steps = cfg["models"] * cfg["epochs"] * cfg["N"]
    for tm in t.values():
        tm.summary["model_steps_per_s"] = steps / tm.median_s
    r = ratio(t["one after another"].median_s, t["at once"].median_s)
    return {
        "ratios": {name: ratio(tm.median_s, t["at once"].median_s) for name, tm in t.items()},
        "checks": [{
            "name": "same models",
            "ok": bool(rel <= 1e-3),
            "detail": f"final losses of the {cfg['models']} models agree to {rel:.1e} relative "
            "(tolerance 1e-3)",
        }],
        "targets": _w4_targets(r),
        "notes": [
            f"Throughput = models × epochs × samples / time = {steps:,} sample steps per call; "
            "the ratio is the throughput gain of training them at once."
        ],
    }


def _w4_targets(r: float | None = None) -> list:
    return [target("throughput, at once / one after another", r, ">=", 8, "×")]


# --------------------------------------------------------------------------- W5


def _w5_config(quick: bool) -> dict:
    return {
        "D": 4,
        "N": 16,
        "fast_widths": (2, 8, 32, 128) if quick else (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        "recursive_widths": (2, 3, 4) if quick else (2, 3, 4, 6, 8, 12, 16),
        "recursive_N": 2 if quick else 4,
        "repeats": 3 if quick else 5,
        "min_time_s": 0.02 if quick else 0.1,
    }


def _w5_run(cfg: dict, repeats: int, log: Callable[[str], None]) -> dict:
    """Time per gradient as the width of a D-n-n-1 net grows; slopes on log-log."""
    rows, series = [], {"bpjax.backprop": [], "jax.grad": [], "recursive_grad (Alg. 2)": []}
    widths = sorted(set(cfg["fast_widths"]) | set(cfg["recursive_widths"]))
    for n in widths:
        sizes = (cfg["D"], n, n, 1)
        net = _mlp_net(sizes)
        params = bp.init(net, jax.random.key(n))
        facs = {}
        if n in cfg["fast_widths"]:
            X, Y = _regression_data(cfg["N"], cfg["D"], 1, seed=n)
            Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
            mlp_j = [(jnp.asarray(W), jnp.asarray(b)) for W, b in B.to_mlp(params)]
            facs["bpjax.backprop"] = functools.partial(
                Runner, lambda net=net, p=params, X=Xj, Y=Yj: _block(bp.backprop(net, p, X, Y))
            )
            facs["jax.grad"] = functools.partial(
                Runner, lambda m=mlp_j, X=Xj, Y=Yj: _block(B.jax_mlp_grad(m, X, Y))
            )
        if n in cfg["recursive_widths"]:
            Xr, Yr = _regression_data(cfg["recursive_N"], cfg["D"], 1, seed=n)
            facs["recursive_grad (Alg. 2)"] = functools.partial(
                Runner, lambda net=net, p=params, X=Xr, Y=Yr: bp.recursive_grad(net, p, X, Y)
            )
        log(f"  width {n} ({net.num_params} weights)")
        t = interleave(facs, repeats, log=lambda s: None, min_time_s=cfg["min_time_s"])
        row = [n, net.num_params]
        for name in series:
            if name in t:
                N_used = cfg["recursive_N"] if name.startswith("recursive") else cfg["N"]
                per_sample = t[name].median_s / N_used
                series[name].append((net.num_params, per_sample))
                row.append(per_sample * 1e6)
            else:
                row.append(None)
        rows.append(row)
    slopes = []
    for name, pts in series.items():
        x, y = [p[0] for p in pts], [p[1] for p in pts]
        top = pts[-4:]
        slopes.append([
            name,
            loglog_slope(x, y) if len(pts) >= 2 else None,
            loglog_slope([p[0] for p in top], [p[1] for p in top]) if len(top) >= 2 else None,
            f"{x[0]}–{x[-1]}" if x else "—",
        ])
    # Algorithm 2's recursion, counted: each of the (D+1)·n weights of layer 1 re-walks n²
    # paths, each of the (n+1)·n of layer 2 n paths, each of the (n+1) of layer 3 one.
    D, rw = cfg["D"], sorted(cfg["recursive_widths"])
    paths = [(D + 1) * n**3 + (n + 1) * n * n + (n + 1) for n in rw]
    weights = [_mlp_net((D, n, n, 1)).num_params for n in rw]
    slopes.append([
        "Algorithm 2 path count (model)",
        loglog_slope(weights, paths),
        loglog_slope(weights[-4:], paths[-4:]),
        f"{weights[0]}–{weights[-1]}",
    ])
    return {
        "tables": [
            {
                "title": "time per sample of one full gradient (µs), D-n-n-1 tanh nets",
                "columns": ["width n", "weights", *[f"{k} (µs)" for k in series]],
                "rows": rows,
            },
            {
                "title": "log-log slopes of time against the number of weights",
                "columns": ["competitor", "slope (all sizes)", "slope (largest 4)", "weights"],
                "rows": slopes,
            },
        ],
        "extra": {"slopes": {s[0]: {"all": s[1], "largest4": s[2]} for s in slopes}},
        "notes": [
            "backprop and jax.grad cost O(weights) once the sizes are large enough to amortise "
            "dispatch (slope → 1; below ~10⁵ weights a call costs its fixed overhead). "
            "Algorithm 2 re-walks every path from the output to each weight: O(n³) calls for "
            "a D-n-n-1 net, against n² + (D+3)n + 1 weights, so its slope tends to 1.5 for "
            "large n and is steeper at these small widths; the 'path count (model)' row is "
            "that count's slope over the same widths, to compare with the measured one. With "
            "depth the count grows exponentially. Times are per sample: the recursive "
            f"reference runs on N={cfg['recursive_N']} samples, the others on N={cfg['N']}."
        ],
    }


# --------------------------------------------------------------------------- the list


def _missing_fit() -> str | None:
    return None if hasattr(bp, "fit") else NEEDS_FIT


WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in [
        Workload(
            "W1", "per-sample SGD (Algorithm 1), 64-256-256-1 tanh", _w1_config, "bpjax.fit",
            _w1_factories, _w1_summary, _missing_fit, skipped_targets=_w1_targets,
        ),
        Workload(
            "W2", "the paper's quadratic network (§1.3.1), per-sample SGD", _w2_config,
            "bpjax.fit", _w2_factories, _w2_summary, _missing_fit, skipped_targets=_w2_targets,
        ),
        Workload(
            "W3", "full-batch gradient, 784-512-512-10 tanh", _w3_config, "bpjax.backprop",
            _w3_factories, _w3_summary, skipped_targets=_w3_targets,
        ),
        Workload(
            "W4", "a sweep: many 2-16-1 networks at once vs one after another", _w4_config,
            "at once", _w4_factories, _w4_summary, _w4_missing, skipped_targets=_w4_targets,
        ),
        Workload(
            "W5", "scaling with the number of weights: backprop vs Algorithm 2 vs jax.grad",
            _w5_config, "bpjax.backprop", custom=_w5_run,
        ),
        Workload("W6", "per-sample Jacobian of a 16-32-32-4 tanh MLP", J.w6_config,
                 "bp.jacobian (auto)", J.w6_factories, J.w6_summary),
        Workload("W7", "ghost norms and clipped sum vs vmap(grad), 64-256-256-1 tanh",
                 J.w7_config, "bp.ghost_norms", J.w7_factories, J.w7_summary),
        Workload("GRID", "Algorithm 1 over a grid of network shapes vs jax.grad in lax.scan",
                 G.config, "bp.fit", custom=G.run, missing=_missing_fit,
                 skipped_targets=G.targets),
        Workload("W8", "per-sample softmax cross-entropy (Algorithm 1), 64-128-10 tanh",
                 C.w8_config, "bpjax.fit", C.w8_factories, _w8_summary, _missing_fit),
        Workload("MINIBATCH",
                 "minibatches and optimizers over a grid of shapes vs jax.grad + optax",
                 M.config, "bpjax.fit", custom=M.run_grid, skipped_targets=M.targets),
        Workload("OVERHEAD", "eager calls on a tiny net vs jitted jax.grad",
                 O.overhead_config, O.REFERENCE, custom=O.overhead_run,
                 skipped_targets=O.overhead_targets),
        Workload("COMPILE", "compile times: init, fit, backprop on an 11-layer net",
                 O.compile_config, "bp.init", custom=O.compile_run,
                 skipped_targets=O.compile_targets),
    ]
}
