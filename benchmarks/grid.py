"""The grid workload (issue 14): Algorithm 1 on many network shapes, not on one.

For every shape of :data:`SHAPES` (the ones looked at while optimising) and of
:data:`HELD_OUT` (random shapes drawn once with a fixed seed, never looked at while
optimising), three competitors train the same network from the same weights, one epoch of
per-sample SGD over the same ``N`` samples in the same order (``w ← w − lr ∂L/∂w(x_i)``),
and compute loss (1) after it:

* ``bp.fit`` with ``batch_size=1`` and the plain step (Algorithm 1), called as a user calls it:
  checks, the compiled loop, the transfers;
* ``jax.grad in lax.scan``: ``jax.grad`` of the per-sample loss of a plain JAX MLP inside a
  jitted ``lax.scan``, with JAX's default compile options (what a JAX user writes,
  :func:`benchmarks.baselines.make_jax_scan_trainer`);
* ``numpy loop``: :func:`benchmarks.baselines.numpy_sgd`.

One epoch a call is issue 14's protocol; it charges each call's fixed cost (``bp.fit``
checks its inputs, ``jax.grad in lax.scan`` checks nothing) to ``N`` steps. The same two
JAX competitors also run ``10`` epochs a call (``×10 epochs``), which is how ``fit`` is used.

Per-neuron mixes are written, in the plain JAX and numpy networks, as a user writes them:
each distinct function on the whole layer, then one select per function.

**The floor.** Algorithm 1 touches every weight several times a sample: the forward pass reads
``W^l``, equation (3) reads it again for every layer but the first, and the update reads and
writes it. Each shape's floor is that traffic at the speed this machine moves the same weights
through an XLA:CPU loop, measured in the same run: a ``lax.scan`` of ``N`` steps whose body
rewrites every weight matrix once (``W ← W·c + s``, one read and one write per weight, one
kernel per layer, compiled for one thread like the per-sample loop), giving
``t_rmw`` per step, so ``floor_memory = t_rmw × traffic / (2 × weights)``. The compute floor is
the step's multiply-adds (forward, backward and update: ``2 × (2P + P_{l≥2})`` FLOPs for ``P``
weights) at the single-core matrix-product peak measured in the same run (a ``512 × 512``
``jnp.dot`` compiled for one thread). ``floor = max(memory, compute)``; both include nothing
for activations, biases or the loss, so no implementation can reach it.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import bpjax as bp
from benchmarks import baselines as B
from benchmarks.harness import Runner, interleave, ratio
from benchmarks.report import target
from bpjax.algorithm1 import SEQUENTIAL_CPU
from bpjax.compilation import cpu_options


@dataclasses.dataclass(frozen=True)
class Shape:
    """A network: sizes ``D-N_1-...-d``, one activation spec per layer, a dtype."""

    sizes: tuple[int, ...]
    activations: tuple  # per layer: a name, or one name per neuron
    dtype: str = "float32"

    @property
    def name(self) -> str:
        hidden = [a if isinstance(a, str) else "/".join(dict.fromkeys(a)) + " mix"
                  for a in self.activations[:-1]]
        out = "" if self.activations[-1] == "identity" else f" → {self.activations[-1]}"
        acts = ",".join(dict.fromkeys(hidden)) or self.activations[-1]
        return f"{'-'.join(map(str, self.sizes))} {acts}{out}"

    @property
    def net(self) -> bp.Network:
        return bp.Network(self.sizes[0], [bp.Layer(n, a)
                                          for n, a in zip(self.sizes[1:], self.activations)])


def _layers(sizes, hidden, out="identity"):
    return tuple([hidden] * (len(sizes) - 2) + [out])


def _halves(n, a, b):
    return (a,) * (n // 2) + (b,) * (n - n // 2)


SHAPES = (
    # the five shapes of issue 14
    Shape((8, 32, 1), _layers((8, 32, 1), "relu")),
    Shape((16, 64, 64, 64, 3), _layers((16, 64, 64, 64, 3), "tanh")),
    Shape((100, 200, 10), _layers((100, 200, 10), "logistic")),
    Shape((3, 512, 1), _layers((3, 512, 1), "tanh")),
    Shape((48, 96, 96, 6), ("relu", "logistic", "identity")),
    # W1's shape, the paper's smallest, depth 1 and depth 5, per-neuron mixes, float64
    Shape((64, 256, 256, 1), _layers((64, 256, 256, 1), "tanh")),
    Shape((2, 2, 1), _layers((2, 2, 1), "tanh"), "float64"),
    Shape((10, 1), ("identity",), "float64"),
    Shape((30, 5), ("logistic",), "float32"),
    Shape((10, 16, 16, 16, 16, 10), _layers((10, 16, 16, 16, 16, 10), "tanh"), "float64"),
    Shape((5, 32, 2), (_halves(32, "tanh", "relu"), "identity")),
    Shape((7, 24, 5), (("identity", "square", "tanh") * 8, "identity"), "float64"),
    Shape((20, 128, 128, 4), _layers((20, 128, 128, 4), "softplus"), "float64"),
    Shape((1, 50, 50, 1), _layers((1, 50, 50, 1), "tanh")),
    Shape((32, 512, 512, 2), _layers((32, 512, 512, 2), "relu")),
)


def held_out_shapes(count: int = 8, seed: int = 14) -> tuple[Shape, ...]:
    """``count`` random shapes from a fixed seed: depth 1-5, widths 2-512 and inputs 1-64
    (log-uniform), 1-10 outputs, a random hidden activation or per-neuron mix, a random dtype.

    They were drawn once and not looked at while optimising; they measure whether the policies
    hold on shapes they were not chosen on.
    """
    rng = random.Random(seed)
    names = ("tanh", "relu", "logistic", "softplus")
    out = []
    for _ in range(count):
        depth = rng.randint(1, 5)
        D = int(round(math.exp(rng.uniform(0, math.log(64)))))
        hidden = [int(round(math.exp(rng.uniform(math.log(2), math.log(512)))))
                  for _ in range(depth - 1)]
        sizes = (D, *hidden, rng.randint(1, 10))
        acts = []
        for n in hidden:
            if rng.random() < 0.25:
                acts.append(_halves(n, *rng.sample(names, 2)))
            else:
                acts.append(rng.choice(names))
        out.append(Shape(sizes, (*acts, "identity"), rng.choice(("float32", "float64"))))
    return tuple(out)


HELD_OUT = held_out_shapes()


def config(quick: bool) -> dict:
    return {
        "N": 256 if quick else 2048,
        "learning_rate": 0.002,  # per sample step: lr = η/N
        "shapes": 4 if quick else len(SHAPES),
        "held_out": 2 if quick else len(HELD_OUT),
        "repeats": 2 if quick else 7,
        "epochs_long": 10,  # the second protocol: epochs a call
    }


def _x64(dtype: str):
    """A context in which ``dtype`` exists: float64 arrays need JAX's x64 mode (only there)."""
    return jax.enable_x64(dtype == "float64")


def _data(shape: Shape, N: int, seed: int):
    """``X ~ N(0, 1)`` and targets from a random tanh teacher (smooth, worth fitting)."""
    rng = np.random.default_rng(seed)
    D, d = shape.sizes[0], shape.sizes[-1]
    X = rng.standard_normal((N, D))
    V = rng.standard_normal((D, 8)) / np.sqrt(D)
    Y = np.tanh(X @ V) @ rng.standard_normal((8, d))
    return X.astype(shape.dtype), Y.astype(shape.dtype)


def _factories(shape: Shape, cfg: dict, seed: int) -> dict[str, Callable[[], Runner]]:
    """The competitors of ``shape`` (the harness records each call's process CPU time)."""
    N, lr = cfg["N"], cfg["learning_rate"]
    net = shape.net
    with _x64(shape.dtype):
        params = bp.init(net, jax.random.key(seed), dtype=jnp.dtype(shape.dtype))
    mlp = B.to_mlp(params)
    X, Y = _data(shape, N, seed)

    def loss_of(m):
        return {"final_loss": B.mlp_loss_np(m, X, Y, activations=shape.activations)}

    def in_x64(fn):
        def run():
            with _x64(shape.dtype):
                return fn()
        return run

    def fit(epochs):
        with _x64(shape.dtype):
            Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

        def run():
            return jax.block_until_ready(
                bp.fit(net, params, Xj, Yj, learning_rate=lr * N, epochs=epochs))

        return Runner(in_x64(run), lambda r: loss_of(B.to_mlp(r.params)), "cpu")

    def scan(epochs):
        train = B.make_jax_scan_trainer(B.jax_mlp(shape.activations))
        with _x64(shape.dtype):
            Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
            mlp_j = [(jnp.asarray(W), jnp.asarray(b)) for W, b in mlp]
            lr_j = jnp.asarray(lr, shape.dtype)

        def run():
            return jax.block_until_ready(train(mlp_j, Xj, Yj, lr_j, epochs))

        return Runner(in_x64(run), lambda out: loss_of(out[0]), "cpu")

    def numpy_loop():
        return Runner(lambda: B.numpy_sgd(mlp, X, Y, lr, 1, activations=shape.activations),
                      loss_of, "cpu")

    E = cfg["epochs_long"]
    return {"bp.fit": partial(fit, 1), "jax.grad in lax.scan": partial(scan, 1),
            "numpy loop": numpy_loop, f"bp.fit ×{E} epochs": partial(fit, E),
            f"jax.grad in lax.scan ×{E} epochs": partial(scan, E)}


# --------------------------------------------------------------------------- the floor


def _weights(shape: Shape) -> list[int]:
    """``fan_in × N_l`` per layer (the matrices the step multiplies), biases apart."""
    return [a * b for a, b in zip(shape.sizes[:-1], shape.sizes[1:])]


def traffic_and_flops(shape: Shape) -> tuple[int, int, int]:
    """Entries moved and FLOPs of one sample step of Algorithm 1, and the weights ``P``.

    Traffic, in weights (biases included): the forward pass reads each, equation (3) reads
    those of every layer but the first, the update reads and writes each. FLOPs: one
    multiply-add (2 FLOPs) per weight in the forward pass and in the update, and per weight of
    the layers ``l ≥ 2`` in equation (3).
    """
    w = _weights(shape)
    biases = sum(shape.sizes[1:])
    P = sum(w) + biases
    backward = sum(w[1:])
    return 3 * P + backward, 2 * (2 * sum(w) + backward), P


def _rmw_step_seconds(shape: Shape, N: int, repeats: int) -> float:
    """``t_rmw``: the time a step of a one-thread ``lax.scan`` takes to rewrite every weight."""
    with _x64(shape.dtype):
        Ws = tuple(jnp.ones((a + 1, b), shape.dtype)
                   for a, b in zip(shape.sizes[:-1], shape.sizes[1:]))
        cs = jnp.linspace(0.999, 1.0, N, dtype=shape.dtype)

        def body(Ws, c):
            return tuple(W * c + (1 - c) for W in Ws), None

        options = cpu_options(SEQUENTIAL_CPU)
        f = jax.jit(lambda Ws, cs: jax.lax.scan(body, Ws, cs)[0], compiler_options=options)
        jax.block_until_ready(f(Ws, cs))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f(Ws, cs))
            times.append(time.perf_counter() - t0)
    return min(times) / N


def peak_flops(dtype: str, n: int = 512, repeats: int = 5) -> float:
    """FLOP/s of a one-thread ``n × n`` matrix product in ``dtype``: the best of ``repeats``."""
    with _x64(dtype):
        a = jnp.ones((n, n), dtype)
        dot = jax.jit(jnp.dot, compiler_options=cpu_options(SEQUENTIAL_CPU))
        jax.block_until_ready(dot(a, a))
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(dot(a, a))
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def floor(shape: Shape, N: int, peak: float, repeats: int = 5) -> dict:
    """The floor of one sample step of ``shape`` (see the module docstring), in seconds."""
    traffic, flops, P = traffic_and_flops(shape)
    rmw = _rmw_step_seconds(shape, N, repeats)
    memory = rmw * traffic / (2 * P)
    compute = flops / peak
    return {"floor_s": max(memory, compute), "floor_memory_s": memory,
            "floor_compute_s": compute, "rmw_step_s": rmw, "bound": (
                "memory" if memory >= compute else "compute"), "weights": P}


# --------------------------------------------------------------------------- the run


def _same_work(t, dtype: str, E: int) -> tuple[bool, float]:
    """Whether the final losses agree: the largest relative gap to bp.fit's, after one epoch
    and after ``E`` epochs, as a multiple of its tolerance (≤ 1 passes).

    The competitors add in different orders, so float32 results differ by rounding, which
    ``E × N`` steps amplify (most where relu's kink flips a neuron): ``1e-3`` per epoch in
    float32, ``1e-8`` in float64.
    """
    worst = 0.0
    for ref, names, epochs in (("bp.fit", ("jax.grad in lax.scan", "numpy loop"), 1),
                               (f"bp.fit ×{E} epochs", (f"jax.grad in lax.scan ×{E} epochs",),
                                E)):
        r = t[ref].summary["final_loss"]
        tol = (1e-3 if dtype == "float32" else 1e-8) * epochs
        worst = max(worst, *(abs(t[n].summary["final_loss"] - r) / abs(r) / tol
                             for n in names))
    return worst <= 1, worst


def _spread(t, slow: str, fast: str) -> tuple[float, float]:
    """The lowest and highest ratio ``slow / fast`` over the interleaved rounds."""
    r = [s / f for s, f in zip(t[slow].steady_s, t[fast].steady_s)]
    return min(r), max(r)


def run(cfg: dict, repeats: int, log: Callable[[str], None]) -> dict:
    """Every shape, interleaved competitors; tables, worst and median ratios, targets."""
    N = cfg["N"]
    peaks = {d: peak_flops(d) for d in ("float32", "float64")}
    shapes = [(s, False) for s in SHAPES[:cfg["shapes"]]]
    shapes += [(s, True) for s in HELD_OUT[:cfg["held_out"]]]
    rows, out, failed = [], [], []
    E = cfg["epochs_long"]
    for i, (shape, held_out) in enumerate(shapes):
        log(f"  {shape.name} {shape.dtype}{' (held out)' if held_out else ''}")
        t = interleave(_factories(shape, cfg, 100 + i), repeats, log=lambda s: None)
        cpu_median = {k: statistics.median(tm.cpu_s) for k, tm in t.items()}
        fl = floor(shape, N, peaks[shape.dtype])
        ok, gap = _same_work(t, shape.dtype, E)
        if not ok:
            failed.append(f"{shape.name} {shape.dtype}: {gap:.1f}× the tolerance")
        step = {name: tm.median_s / (N * (E if "epochs" in name else 1))
                for name, tm in t.items()}
        r_scan = ratio(t["jax.grad in lax.scan"].median_s, t["bp.fit"].median_s)
        r_long = ratio(t[f"jax.grad in lax.scan ×{E} epochs"].median_s,
                       t[f"bp.fit ×{E} epochs"].median_s)
        r_np = ratio(t["numpy loop"].median_s, t["bp.fit"].median_s)
        r_cpu = ratio(cpu_median["jax.grad in lax.scan"], cpu_median["bp.fit"])
        r_cpu_long = ratio(cpu_median[f"jax.grad in lax.scan ×{E} epochs"],
                           cpu_median[f"bp.fit ×{E} epochs"])
        lo, hi = _spread(t, "jax.grad in lax.scan", "bp.fit")
        entry = {
            "shape": shape.name, "sizes": list(shape.sizes), "dtype": shape.dtype,
            "held_out": held_out, "weights": fl["weights"],
            "step_us": {k: v * 1e6 for k, v in step.items()},
            "first_call_s": {k: tm.first_s for k, tm in t.items()},
            "ratio_vs_scan": r_scan, "ratio_vs_scan_rounds": [lo, hi],
            "ratio_vs_scan_long": r_long,
            "cpu_ratio_vs_scan": r_cpu, "cpu_ratio_vs_scan_long": r_cpu_long,
            "cpu_step_us": {k: v / (N * (E if "epochs" in k else 1)) * 1e6
                            for k, v in cpu_median.items()},
            "ratio_vs_numpy": r_np, "floor_us": fl["floor_s"] * 1e6,
            "floor_memory_us": fl["floor_memory_s"] * 1e6,
            "floor_compute_us": fl["floor_compute_s"] * 1e6, "bound": fl["bound"],
            "final_losses": {k: tm.summary["final_loss"] for k, tm in t.items()},
            "same_work_gap_over_tolerance": gap,
        }
        out.append(entry)
        log(f"    bp.fit {step['bp.fit'] * 1e6:.3f} µs/step, scan "
            f"{step['jax.grad in lax.scan'] * 1e6:.3f}, numpy {step['numpy loop'] * 1e6:.2f}, "
            f"floor {fl['floor_s'] * 1e6:.3f}: {r_scan:.2f}× (rounds {lo:.2f}–{hi:.2f}); "
            f"×{E} epochs: {r_long:.2f}×; CPU time {r_cpu:.2f}×, ×{E} {r_cpu_long:.2f}×")
        rows.append([
            shape.name, shape.dtype[-2:], fl["weights"], "yes" if held_out else "",
            step["bp.fit"] * 1e6, step["jax.grad in lax.scan"] * 1e6, step["numpy loop"] * 1e6,
            fl["floor_s"] * 1e6, fl["bound"], step[f"bp.fit ×{E} epochs"] / fl["floor_s"],
            r_scan, f"{lo:.2f}–{hi:.2f}", r_long, r_cpu, r_cpu_long, r_np,
            "yes" if ok else f"NO ({gap:.1f}× tol.)",
        ])
    summary = summarize(out)
    return {
        "tables": [
            {"title": f"per shape: µs per sample step (median of {repeats} interleaved rounds, "
                      f"N = {N}, one epoch a call), the floor, and bp.fit's speed-up",
             "columns": ["shape", "dtype", "weights", "held out", "bp.fit (µs)",
                         "jax.grad in scan (µs)", "numpy (µs)", "floor (µs)", "bound",
                         f"bp.fit ×{E} / floor", "× vs scan", "× per round",
                         f"× vs scan, {E} epochs a call", "× vs scan, CPU time",
                         f"× vs scan, CPU time, {E} epochs", "× vs numpy", "same work"],
             "rows": rows},
            {"title": "speed-up of bp.fit over jax.grad in lax.scan: worst / median / best",
             "columns": ["shapes", "count", "1 epoch a call (issue 14)", f"{E} epochs a call",
                         "CPU time, 1 epoch", f"CPU time, {E} epochs"],
             "rows": [[k, v["count"], *("/".join(f"{v[m + x]:.2f}" for m in (
                 "worst", "median", "best")) if v["count"] else "—"
                 for x in ("", "_long", "_cpu", "_cpu_long"))] for k, v in summary.items()]},
        ],
        "extra": {"shapes": out, "summary": summary,
                  "peak_gflops": {d: p / 1e9 for d, p in peaks.items()}},
        "checks": [{
            "name": "same work",
            "ok": not failed,
            "detail": ("final losses of bp.fit, jax.grad in scan and the numpy loop agree on "
                       "every shape (relative: 1e-3 per epoch in float32, 1e-8 per epoch in "
                       "float64)" if not failed
                       else "final losses differ: " + "; ".join(failed)),
        }],
        "targets": targets(summary["all"]),
        "notes": [
            "Single-core peaks measured in this run: "
            + ", ".join(f"{d} {p / 1e9:.0f} GFLOP/s" for d, p in peaks.items())
            + ". The floor is explained in benchmarks/grid.py: traffic at the measured "
              "speed of a one-thread loop that rewrites the same weights, or FLOPs at the "
              "peak, whichever is larger. 'held out' shapes were drawn at random with a "
              "fixed seed (grid.held_out_shapes) and not used while optimising. "
              "'× per round' is the lowest and highest ratio over the interleaved rounds: "
              "the machine is shared, so a single round can be off. The targets are on "
              "wall-clock time (the median of the rounds); 'CPU time' is each call's process "
              "CPU time (median), steadier on a loaded machine but blind to a competitor that "
              "gains from a second core (jax.grad in lax.scan runs with XLA's thread pool, "
              "bp.fit's per-sample loop on one thread).",
        ],
    }


def summarize(entries: list[dict]) -> dict:
    """Worst, median and best speed-up over scan: all shapes, tuned ones, held-out ones."""
    groups = {"all": entries, "tuned on": [e for e in entries if not e["held_out"]],
              "held out": [e for e in entries if e["held_out"]]}
    out = {}
    for k, es in groups.items():
        out[k] = {"count": len(es)}
        for key, suffix in (("ratio_vs_scan", ""), ("ratio_vs_scan_long", "_long"),
                            ("cpu_ratio_vs_scan", "_cpu"), ("cpu_ratio_vs_scan_long", "_cpu_long")):
            r = [e[key] for e in es]
            out[k] |= {"worst" + suffix: min(r) if r else None,
                       "median" + suffix: statistics.median(r) if r else None,
                       "best" + suffix: max(r) if r else None}
    return out


def targets(all_shapes: dict | None = None) -> list:
    all_shapes = all_shapes or {}
    return [
        target("worst speed-up vs jax.grad in lax.scan, every shape", all_shapes.get("worst"),
               ">=", 1.0, "×"),
        target("median speed-up vs jax.grad in lax.scan", all_shapes.get("median"), ">=", 1.5,
               "×"),
    ]
