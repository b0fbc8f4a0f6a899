"""``make bench-gpu``: on a GPU machine, the tests that matter there and the accelerator
workloads, in at most 8 minutes, written to ``benchmarks/results/results-gpu-<date>.md``.

    python benchmarks/gpu.py            # on the GPU machine (bpjax from src/, nothing installed)
    python benchmarks/gpu.py --cpu      # the same run on a CPU, small sizes (a rehearsal)

The machine it is meant for has JAX with its CUDA plugin installed and no network, so this
script installs nothing: bpjax is imported from ``src/`` (put first on ``sys.path``), and
JAX is whatever the machine has (issue 14 was written against jax 0.11). The optional
competitors of ``make bench`` (PyTorch, scikit-learn) are not needed.

1. **Tests** (``pytest``, if the machine has pytest, hypothesis and chex; else the same
   comparisons written out below, :func:`self_checks`): gradients against ``jax.grad`` in
   float64, the VJP of ``bp.apply``, ``fit`` against its definition (Algorithm 1, minibatches,
   resuming with Adam), ``sweep`` against a loop of ``fit``, the eager API's checks.
2. **W3**: the full-batch gradient of 784-512-512-10, ``bp.backprop`` against ``jax.grad``;
   target ≤ 1.05×.
3. **SWEEP4096**: 4096 networks 2-16-1 trained by Algorithm 1 in one ``bp.sweep`` against one
   ``bp.fit`` of one of them: throughput (models × sample steps per second); target ≥ 50×.
4. **MINIBATCH**: ``bp.fit(batch_size=B)`` against ``jax.grad`` + optax in ``lax.scan``, a
   subset of the grid of ``benchmarks/minibatch_grid.py``.

Every phase has a share of the 8-minute budget and is skipped, with a note, when too little
is left. ``--cpu`` runs on the CPU on purpose (nothing is faked: the same code, smaller
sizes) and writes under a temporary directory unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT / "src"), str(ROOT)):  # bpjax from this checkout, before any installed one
    if p in sys.path:
        sys.path.remove(p)
    sys.path.insert(0, p)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import bpjax as bp  # noqa: E402
from benchmarks import harness, minibatch_grid, report  # noqa: E402
from benchmarks.harness import Runner  # noqa: E402
from benchmarks.report import target  # noqa: E402
from benchmarks.run import run_workload, warm_up  # noqa: E402
from benchmarks.workloads import WORKLOADS, Workload  # noqa: E402

BUDGET_S = 8 * 60
TESTS = [  # the tests that matter on an accelerator: the maths, on its arithmetic
    "tests/backward_test.py::test_backprop_matches_jax_grad_float64",
    "tests/backward_test.py::test_float32_stays_float32_and_is_close",
    "tests/apply_test.py::test_cotangents_match_jax_vjp_of_the_reference",
    "tests/training_test.py::test_batch_size_1_is_algorithm_1_float64",
    "tests/training_test.py::test_minibatch_and_full_batch_follow_their_definition",
    "tests/training_test.py::test_resuming_n_plus_n_epochs_equals_2n_with_adam_and_shuffling",
    "tests/sweep_test.py::test_sweep_equals_a_loop_of_single_fits",
    "tests/sweep_test.py::test_sweep_with_adam_shuffling_minibatches_and_patience",
    "tests/eager_test.py",
]


# --------------------------------------------------------------------------- tests


def run_tests(timeout_s: float, log) -> dict:
    """The selection of :data:`TESTS` with pytest in a subprocess, or :func:`self_checks`."""
    missing = [m for m in ("pytest", "hypothesis", "chex") if importlib.util.find_spec(m) is None]
    if missing:
        log(f"  {', '.join(missing)} not installed: running the self-checks instead of pytest")
        return self_checks(log)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           *TESTS]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"pytest ran out of its {timeout_s:.0f} s"}
    tail = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    log(f"  pytest: {tail} ({time.perf_counter() - t0:.0f} s)")
    return {"ok": proc.returncode == 0, "detail": f"pytest {len(TESTS)} selections: {tail}",
            "output_tail": proc.stdout[-4000:] + proc.stderr[-2000:]}


def self_checks(log) -> dict:
    """The comparisons of the selected tests, without pytest: float64 on the device."""
    import optax

    failures = []

    def check(name, ok):
        log(f"    {'ok  ' if ok else 'FAIL'} {name}")
        if not ok:
            failures.append(name)

    with jax.enable_x64(True):
        net = bp.Network(3, [bp.Layer(5, ("tanh", "relu") * 2 + ("logistic",)),
                             bp.Layer(4, "softplus"), bp.Layer(2, "identity")])
        params = bp.init(net, jax.random.key(0), dtype=jnp.float64)
        params = tuple(w.at[0].set(0.1) for w in params)
        rng = np.random.default_rng(0)
        X, Y = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
        phis = {"tanh": jnp.tanh, "relu": jax.nn.relu, "logistic": jax.nn.sigmoid,
                "softplus": jax.nn.softplus, "identity": lambda a: a}

        def reference_loss(p, X, Y):  # the paper's equations, with JAX's own functions
            h = X
            for layer, w in zip(net.layers, p):
                a = h @ w[1:] + w[0]
                h = jnp.stack([phis[act.name](a[:, k]) for k, act in
                               enumerate(layer.activations)], axis=1)
            return 0.5 * jnp.sum((h - Y) ** 2) / X.shape[0]

        grads, want = bp.backprop(net, params, X, Y), jax.grad(reference_loss)(params, X, Y)
        check("backprop == jax.grad (float64, 1e-10)", all(
            np.allclose(g, w, rtol=1e-10, atol=1e-13) for g, w in zip(grads, want)))
        g_apply = jax.grad(lambda p: 0.5 * jnp.sum((bp.apply(net, p, X) - Y) ** 2)
                           / X.shape[0])(params)
        check("jax.grad through bp.apply == backprop", all(
            np.allclose(g, w, rtol=1e-10, atol=1e-13) for g, w in zip(g_apply, grads)))
        eta, p = 0.3, params
        for x, y in zip(X, Y):  # Algorithm 1, one sample at a time
            g = jax.grad(lambda q: 0.5 * jnp.sum((bp.forward(net, q, x) - y) ** 2))(p)
            p = tuple(w - eta / len(X) * gw for w, gw in zip(p, g))
        got = bp.fit(net, params, X, Y, learning_rate=eta, epochs=1).params
        check("fit(batch_size=1) == Algorithm 1 by jax.grad", all(
            np.allclose(a, b, rtol=1e-10, atol=1e-13) for a, b in zip(got, p)))
        adam = optax.adam(1e-2)
        once = bp.fit(net, params, X, Y, batch_size=3, optimizer=adam, epochs=4)
        twice = bp.fit(net, bp.fit(net, params, X, Y, batch_size=3, optimizer=adam, epochs=2),
                       X, Y, batch_size=3, optimizer=adam, epochs=2)
        check("fit 2 + 2 epochs == 4 epochs (Adam)", all(
            np.allclose(a, b, rtol=1e-10, atol=1e-13) for a, b in zip(once.params,
                                                                     twice.params)))
        stacked = jax.vmap(lambda k: bp.init(net, k, dtype=jnp.float64))(
            jax.random.split(jax.random.key(1), 3))
        etas = np.array([0.1, 0.2, 0.4])
        many = bp.sweep(net, stacked, X, Y, learning_rate=etas, epochs=2)
        ok = True
        for m in range(3):
            one = bp.fit(net, jax.tree.map(lambda v: v[m], stacked), X, Y,
                         learning_rate=float(etas[m]), epochs=2)
            ok &= all(np.allclose(a[m], b, rtol=1e-9, atol=1e-12)
                      for a, b in zip(many.params, one.params))
        check("sweep == a loop of fit", bool(ok))
    return {"ok": not failures, "detail": "self-checks: " + (
        "all passed" if not failures else f"FAILED: {', '.join(failures)}")}


# --------------------------------------------------------------------------- workloads


def _sweep_config(quick: bool) -> dict:
    return {"models": 64 if quick else 4096, "sizes": (2, 16, 1), "N": 64 if quick else 256,
            "epochs": 1 if quick else 2, "repeats": 2 if quick else 3}


def _sweep_factories(cfg: dict) -> dict:
    """``M`` networks 2-16-1 by Algorithm 1 in one sweep, and one of them in one fit."""
    net = bp.Network(2, [bp.Layer(16, "tanh"), bp.Layer(1, "identity")])
    M, E = cfg["models"], cfg["epochs"]
    stacked = jax.vmap(lambda k: bp.init(net, k))(jax.random.split(jax.random.key(6), M))
    etas = jnp.geomspace(0.05, 1.0, M, dtype=jnp.float32)
    rng = np.random.default_rng(6)
    X = jnp.asarray(rng.standard_normal((cfg["N"], 2)).astype(np.float32))
    Y = jnp.sin(X[:, :1] + X[:, 1:])
    first, eta0 = jax.tree.map(lambda v: v[0], stacked), float(etas[0])  # read once, untimed

    def sweep():
        return Runner(lambda: jax.block_until_ready(bp.sweep(
            net, stacked, X, Y, learning_rate=etas, epochs=E, on_divergence="ignore")),
            lambda r: {"loss_model_0": float(r.losses[0, -1])}, harness.device_label())

    def fit():
        return Runner(lambda: jax.block_until_ready(bp.fit(
            net, first, X, Y, learning_rate=eta0, epochs=E)),
            lambda r: {"loss_model_0": float(r.losses[-1])}, harness.device_label())

    return {"bp.sweep": sweep, "bp.fit (one model)": fit}


def _sweep_summary(cfg: dict, t: dict) -> dict:
    M = cfg["models"]
    s, f = t["bp.sweep"], t["bp.fit (one model)"]
    steps = cfg["epochs"] * cfg["N"]
    gain = M * f.median_s / s.median_s  # throughput of the sweep / throughput of one fit
    a, b = s.summary["loss_model_0"], f.summary["loss_model_0"]
    return {
        "ratios": {name: harness.ratio(tm.median_s, s.median_s) for name, tm in t.items()},
        "checks": [{"name": "same model 0", "ok": abs(a - b) <= 1e-4 * max(abs(b), 1e-30),
                    "detail": f"model 0's last loss: sweep {a:.6g}, fit {b:.6g}"}],
        "targets": _sweep_targets(gain),
        "extra": {"throughput_gain": gain,
                  "sweep_model_steps_per_s": M * steps / s.median_s,
                  "fit_model_steps_per_s": steps / f.median_s},
        "notes": [f"Throughput = models × {steps} sample steps / time; gain = {M} × time of "
                  f"one fit / time of the sweep = {gain:.0f}×."],
    }


def _sweep_targets(gain=None) -> list:
    return [target("sweep throughput / one fit's", gain, ">=", 50, "×")]


def _minibatch_config(quick: bool) -> dict:
    cfg = minibatch_grid.config(quick)
    if quick:
        return cfg | {"shapes": (0,), "batch_sizes": (64,), "optimizers": ("adam",),
                      "issue_cells": (), "repeats": 2}
    return cfg | {"shapes": (0, 1, 2, 6, 9), "batch_sizes": (64, 256), "optimizers": ("adam",),
                  "issue_cells": (), "repeats": 5}


def _w3_gpu_targets(r=None) -> list:
    return [target("backprop time / jax.grad time", r, "<=", 1.05, "×")]


def _w3_gpu_summary(cfg, t):
    out = WORKLOADS["W3"].summarize(cfg, t)
    r = out["ratios"]
    return out | {"targets": _w3_gpu_targets(1 / r["jax.grad (plain JAX MLP)"])}


PHASES = [  # (workload, seconds of the budget that must be left for it to start), in order
    (Workload("W3", "full-batch gradient, 784-512-512-10 tanh", WORKLOADS["W3"].config,
              "bpjax.backprop", WORKLOADS["W3"].factories, _w3_gpu_summary,
              skipped_targets=_w3_gpu_targets), 30),
    (Workload("SWEEP4096", "a sweep of 4096 networks 2-16-1 (Algorithm 1) vs one fit",
              _sweep_config, "bp.sweep", _sweep_factories, _sweep_summary,
              skipped_targets=_sweep_targets), 60),
    (Workload("MINIBATCH", "minibatches with Adam vs jax.grad + optax, a subset of the grid",
              _minibatch_config, "bpjax.fit", custom=minibatch_grid.run_grid,
              skipped_targets=minibatch_grid.targets), 120),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="run on the CPU, small sizes")
    p.add_argument("--out", type=Path, default=None, help="directory for the results")
    p.add_argument("--no-tests", action="store_true", help="skip the tests")
    args = p.parse_args(argv)
    start = time.perf_counter()
    left = lambda: BUDGET_S - (time.perf_counter() - start)
    platform = jax.devices()[0].platform
    if platform == "cpu" and not args.cpu:
        print("bench-gpu: JAX sees no accelerator (jax.devices() is "
              f"{jax.devices()}); on a CPU, pass --cpu for a small rehearsal run.",
              file=sys.stderr)
        return 2
    quick = args.cpu
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    stem = f"results-gpu-{date}" + ("-cpu-rehearsal" if args.cpu else "")
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-gpu-")) if args.cpu
                       else ROOT / "benchmarks" / "results")
    log = lambda s: print(s, flush=True)
    env = harness.environment(harness.device_label(), quick)
    log(f"bench-gpu on {env['label']}: jax {jax.__version__}, {', '.join(env['jax_devices'])}")
    warm_up()
    workloads = []
    if not args.no_tests:
        log("tests:")
        tests = run_tests(timeout_s=min(180.0, left() - 180), log=log)
        workloads.append({"key": "TESTS", "title": "the tests that matter on this device",
                          "status": "ok", "checks": [{"name": "tests", **tests}],
                          "notes": [tests.get("output_tail", "")[-1500:]] if not tests["ok"]
                          else []})
    for w, needs in PHASES:
        log(f"{w.key}: {w.title} ({left():.0f} s left)")
        if left() < needs:
            workloads.append({"key": w.key, "title": w.title, "status": "skipped",
                              "note": f"{left():.0f} s of the {BUDGET_S} s budget left, it needs "
                                      f"about {needs} s", "targets": w.skipped_targets()})
            continue
        try:
            workloads.append(run_workload(w, quick, None, False, log))
        except Exception as e:  # noqa: BLE001 - one broken workload must not lose the others
            workloads.append({"key": w.key, "title": w.title, "status": "error",
                              "note": f"{type(e).__name__}: {e}",
                              "targets": w.skipped_targets()})
            log(f"  error: {type(e).__name__}: {e}")
    env["wall_s"] = time.perf_counter() - start
    pj, pm = report.write({"environment": env, "workloads": workloads}, out, stem)
    log(f"wrote {pm} in {env['wall_s']:.0f} s")
    bad = [w["key"] for w in workloads if w["status"] != "ok"
           or not all(c["ok"] for c in w.get("checks", []))]
    for w in workloads:
        for t in w.get("targets", []):
            status = {None: "not run", True: "met", False: "NOT met"}[t["met"]]
            log(f"  {w['key']} {t['name']}: {status}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
