"""The eager calls' overhead, and compile times (issue 14, items 4 and 5).

**OVERHEAD.** On a tiny network (2-3-1 tanh, N = 16, float32), where a call is all overhead:
``bp.forward``, ``bp.loss``, ``bp.backprop`` and ``bp.value_and_backprop`` called eagerly, as
a user calls them (argument checks included), against jitted plain-JAX functions of the same
network — ``jax.jit(jax.grad(loss))``, ``jax.jit(jax.value_and_grad(loss))``,
``jax.jit(loss)`` and ``jax.jit(forward)`` — with JAX arrays and with numpy arrays as inputs.
The target: every eager call at most 1.3× a jitted ``jax.grad`` call (JAX inputs).

**COMPILE.** The first calls on an 11-layer network of distinct sizes (9-10-11-…-19-1 tanh),
which nothing else in the run compiles: ``bp.init``, the first ``bp.fit`` (Algorithm 1, and
minibatches with Adam), ``bp.backprop``. Compile time = first call − steady median; wall and
process CPU time both. Targets: ``init`` ≤ 0.5 s, the first ``fit`` ≤ 1.5 s.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import bpjax as bp
from benchmarks import baselines as B
from benchmarks.harness import Runner, interleave, ratio
from benchmarks.report import target

# --------------------------------------------------------------------------- OVERHEAD


def overhead_config(quick: bool) -> dict:
    return {"sizes": (2, 3, 1), "N": 16, "repeats": 5 if quick else 15,
            "min_time_s": 0.02 if quick else 0.1}


def _tiny(cfg):
    D, n, d = cfg["sizes"]
    net = bp.Network(D, [bp.Layer(n, "tanh"), bp.Layer(d, "identity")])
    params = bp.init(net, jax.random.key(0))
    rng = np.random.default_rng(0)
    Xn = rng.standard_normal((cfg["N"], D)).astype(np.float32)
    Yn = np.sin(Xn[:, :1]).astype(np.float32)
    return net, params, Xn, Yn


REFERENCE = "jax.jit(jax.grad)"
EAGER = ("bp.forward", "bp.loss", "bp.backprop", "bp.value_and_backprop")


def overhead_factories(cfg: dict) -> dict[str, Callable[[], Runner]]:
    net, params, Xn, Yn = _tiny(cfg)
    Xj, Yj = jnp.asarray(Xn), jnp.asarray(Yn)
    mlp = [(jnp.asarray(W), jnp.asarray(b)) for W, b in B.to_mlp(params)]  # W3's baseline
    plain = {  # (function, supervised, its weights)
        "jax.jit(forward)": (jax.jit(B.jax_mlp_forward), False, mlp),
        "jax.jit(loss)": (jax.jit(B.jax_mlp_loss), True, mlp),
        REFERENCE: (B.jax_mlp_grad, True, mlp),
        "jax.jit(jax.value_and_grad)": (jax.jit(jax.value_and_grad(B.jax_mlp_loss)), True, mlp),
    }
    eager = {
        "bp.forward": (lambda p, X: bp.forward(net, p, X), False, params),
        "bp.loss": (lambda p, X, Y: bp.loss(net, p, X, Y), True, params),
        "bp.backprop": (lambda p, X, Y: bp.backprop(net, p, X, Y), True, params),
        "bp.value_and_backprop": (lambda p, X, Y: bp.value_and_backprop(net, p, X, Y), True,
                                  params),
    }
    out = {}
    for inputs, (X, Y) in (("", (Xj, Yj)), (", numpy", (Xn, Yn))):
        for name, (fn, supervised, w) in {**plain, **eager}.items():
            def make(fn=fn, supervised=supervised, w=w, X=X, Y=Y):
                if supervised:
                    return Runner(lambda: jax.block_until_ready(fn(w, X, Y)))
                return Runner(lambda: jax.block_until_ready(fn(w, X)))

            out[name + inputs] = make
    return out


def overhead_summary(cfg: dict, t: dict) -> dict:
    ref = t[REFERENCE].median_s
    r = {name: ratio(tm.median_s, ref) for name, tm in t.items()}
    rows = []
    for name, tm in t.items():
        rows.append([name, tm.median_s * 1e6, min(tm.steady_s) * 1e6,
                     max(tm.steady_s) * 1e6, statistics.median(tm.cpu_s) * 1e6, r[name]])
    worst = max(r[name] for name in EAGER)
    numpy_worst = max(t[f"{name}, numpy"].median_s for name in EAGER) * 1e6
    return {
        "ratios": r,
        "tables": [{
            "title": f"one call on a {'-'.join(map(str, cfg['sizes']))} tanh net, N = "
                     f"{cfg['N']}, float32 (µs)",
            "columns": ["call", "median (µs)", "min", "max", "CPU median (µs)",
                        f"÷ {REFERENCE}"],
            "rows": rows,
        }],
        "targets": overhead_targets(worst),
        "extra": {"worst_eager_over_grad": worst, "numpy_worst_us": numpy_worst},
        "notes": [
            "Every call returns device arrays and is waited for (block_until_ready). The "
            "eager calls check their arguments when jax.jit traces their core (once per "
            "network, shapes and dtypes; bpjax.data.eager), so a call with a signature seen "
            "before is one jitted dispatch; numpy inputs are converted by jax.jit on the way "
            "in, as for the plain functions. min/max are the spread over the interleaved "
            "rounds (a shared machine).",
        ],
    }


def overhead_run(cfg: dict, repeats: int, log: Callable[[str], None]) -> dict:
    """The interleaved rounds and their summary (no memory probes: nothing to measure)."""
    t = interleave(overhead_factories(cfg), repeats, log=log, min_time_s=cfg["min_time_s"])
    return overhead_summary(cfg, t) | {
        "competitors": {name: tm.as_dict() for name, tm in t.items()}}


def overhead_targets(worst=None) -> list:
    return [target(f"slowest eager call / {REFERENCE}", worst, "<=", 1.3, "×")]


# --------------------------------------------------------------------------- COMPILE


def compile_config(quick: bool) -> dict:
    return {"D": 9, "widths": tuple(range(10, 20)), "N": 256, "epochs": 2, "batch_size": 32,
            "repeats": 3 if quick else 5}


def _wall_and_cpu(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0, time.process_time() - c0


def compile_run(cfg: dict, repeats: int, log: Callable[[str], None]) -> dict:
    """First call and steady calls of init, fit and backprop on a network nothing else uses."""
    net = bp.Network(cfg["D"], [bp.Layer(n, "tanh") for n in cfg["widths"]]
                     + [bp.Layer(1, "identity")])
    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.standard_normal((cfg["N"], cfg["D"])).astype(np.float32))
    Y = jnp.sin(X[:, :1])
    drawn = {}  # the weights, drawn by the first call of bp.init
    adam = optax.adam(1e-3)
    keys = iter(range(1, 10_000))
    calls = {
        "bp.init": lambda: bp.init(net, jax.random.key(next(keys))),
        "bp.fit (batch_size=1, Algorithm 1)": lambda: bp.fit(
            net, drawn["params"], X, Y, learning_rate=0.1, epochs=cfg["epochs"]).params,
        f"bp.fit (batch_size={cfg['batch_size']}, Adam)": lambda: bp.fit(
            net, drawn["params"], X, Y, batch_size=cfg["batch_size"], optimizer=adam,
            epochs=cfg["epochs"]).params,
        "bp.backprop": lambda: bp.backprop(net, drawn["params"], X, Y),
    }
    rows, first = [], {}
    for name, fn in calls.items():
        wall, cpu = _wall_and_cpu(fn)
        if "params" not in drawn:  # after bp.init's first call: the others train these
            drawn["params"] = bp.init(net, jax.random.key(0))
        steady = [_wall_and_cpu(fn) for _ in range(repeats)]
        sw = statistics.median(w for w, _ in steady)
        sc = statistics.median(c for _, c in steady)
        first[name] = (max(wall - sw, 0.0), max(cpu - sc, 0.0), wall)
        rows.append([name, wall, cpu, sw, *first[name][:2]])
        log(f"    {name:<36s} first {wall:7.3f} s (CPU {cpu:6.3f} s), steady {sw:8.4f} s")
    init_compile = first["bp.init"][0]
    fit_first = first["bp.fit (batch_size=1, Algorithm 1)"][2]
    return {
        "reference": "bp.init",
        "tables": [{
            "title": f"first calls on {'-'.join(map(str, net.sizes))} tanh (L = {net.depth}), "
                     f"N = {cfg['N']}, {cfg['epochs']} epochs, float32",
            "columns": ["call", "first call (s)", "first call CPU (s)", "steady (s)",
                        "compile = first − steady (s)", "compile, CPU time (s)"],
            "rows": rows,
        }],
        "targets": compile_targets(init_compile, fit_first),
        "extra": {name: {"compile_s": c, "compile_cpu_s": cc, "first_s": f}
                  for name, (c, cc, f) in first.items()},
        "notes": [
            "Measured in the benchmark's process after JAX's backend started (run.py's warm-up): "
            "the first call of each on this network compiles everything it needs; "
            "compile = first call − steady median. CPU time is the process's (XLA compiles on "
            "the calling thread): on a machine shared with other work it is the steadier "
            "figure. The fit targets are on the first fit, compile and run together.",
        ],
    }


def compile_targets(init_compile=None, fit_first=None) -> list:
    return [
        target("bp.init compiles in (first − steady)", init_compile, "<=", 0.5, " s"),
        target("first bp.fit (Algorithm 1) takes", fit_first, "<=", 1.5, " s"),
    ]
