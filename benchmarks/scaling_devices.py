"""How data-parallel ``fit`` and a sharded ``sweep`` scale from 1 to 2 and 4 devices.

    python benchmarks/scaling_devices.py          # -> benchmarks/results/scaling_devices.{json,md}
    python benchmarks/scaling_devices.py --quick  # small sizes -> scaling_devices-quick.*
    python benchmarks/scaling_devices.py --devices 1,2,4,8

Each device count runs in its own process, started with
``XLA_FLAGS=--xla_force_host_platform_device_count=n`` (JAX fixes its devices when it starts).
Inside it, two competitors per workload are timed with the harness of ``benchmarks/harness.py``
(first call alone, then interleaved rounds, medians):

* ``fit``: minibatch training, ``fit(..., batch_size=B)`` on one device (no mesh) against
  ``fit(..., batch_size=B, mesh=...)``, every batch split over the ``n`` devices; the same
  weights come out up to float32 rounding (the largest relative difference is reported);
* ``sweep``: ``M`` models of Algorithm 1 (``batch_size=1``), unsharded against
  ``sweep(..., mesh=...)`` with ``M/n`` models per device (the same numbers up to float32
  rounding: XLA may vectorise a batch of ``M/n`` models differently from one of ``M``).

**What this measures on a CPU.** Host "devices" made by the XLA flag are slices of the same
CPU: on a machine with 2 cores they share those 2 cores, and one device alone already uses
several threads for its matrix products. So on such a machine the ratio ``mesh / one device``
measures the overhead of partitioning and of the collectives (and that the results are
right), not a speed-up; speed-ups need devices with their own compute (GPUs, TPU cores).
Where the ratio drops below 1 on a CPU, the devices kept busy cores that one device left
idle (the per-sample loop of a sweep is made of small operations): at most the core count.
Run this script on such a machine for that: ``--devices`` takes the counts to try, up to the
local device count when the flag is not used (see ``--real-devices``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import harness, report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

SIZES = {  # full run / --quick
    False: dict(D=16, hidden=256, N=8192, B=512, epochs=2, M=256, sweep_N=512, sweep_epochs=2,
                repeats=7),
    True: dict(D=4, hidden=8, N=256, B=32, epochs=2, M=8, sweep_N=32, sweep_epochs=2,
               repeats=2),
}


def _child(n: int, quick: bool) -> dict:
    """The measurements in a process that has ``n`` devices (the flag was set by the parent)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import bpjax as bp

    assert jax.device_count() >= n, (jax.device_count(), n)
    s = SIZES[quick]
    rng = np.random.default_rng(0)
    net = bp.Network(s["D"], [bp.Layer(s["hidden"], "tanh"), bp.Layer(s["hidden"], "tanh"),
                              bp.Layer(1, "identity")])
    X = rng.normal(size=(s["N"], s["D"])).astype(np.float32)
    Y = (np.sin(X[:, :1]) + X[:, 1:2] ** 2).astype(np.float32)
    params = bp.init(net, jax.random.key(0))
    devices = jax.devices()[:n]
    mesh = jax.make_mesh((n,), ("data",), devices=devices)
    models = jax.make_mesh((n,), ("models",), devices=devices)
    kw = dict(learning_rate=0.5, epochs=s["epochs"], batch_size=s["B"])

    def fit_runner(mesh_or_none):
        def run():
            r = bp.fit(net, params, X, Y, mesh=mesh_or_none, **kw)
            jax.block_until_ready(r.params)
            return r
        return harness.Runner(run=run, finish=lambda r: {"final_loss": float(r.losses[-1])})

    small = bp.Network(2, [bp.Layer(16, "tanh"), bp.Layer(1, "identity")])
    many = jax.vmap(lambda k: bp.init(small, k))(jax.random.split(jax.random.key(1), s["M"]))
    Xs = X[:s["sweep_N"], :2]
    Ys = Y[:s["sweep_N"]]
    etas = jnp.logspace(-2, 0, s["M"], dtype=jnp.float32)

    def sweep_runner(mesh_or_none):
        def run():
            r = bp.sweep(small, many, Xs, Ys, learning_rate=etas, epochs=s["sweep_epochs"],
                         mesh=mesh_or_none)
            jax.block_until_ready(r.params)
            return r
        return harness.Runner(run=run, finish=lambda r: {
            "median_final_loss": float(np.nanmedian(np.asarray(r.losses)[:, -1]))})

    log = lambda line: print(line, file=sys.stderr)
    fit_t = harness.interleave({"one device": lambda: fit_runner(None),
                                f"mesh of {n}": lambda: fit_runner(mesh)}, s["repeats"], log)
    sweep_t = harness.interleave({"one device": lambda: sweep_runner(None),
                                  f"mesh of {n}": lambda: sweep_runner(models)}, s["repeats"], log)

    def rel(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))
                                / np.maximum(np.abs(np.asarray(y)), 1)))
                   for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    one_fit, n_fit = (bp.fit(net, params, X, Y, mesh=m, **kw) for m in (None, mesh))
    one_sw, n_sw = (bp.sweep(small, many, Xs, Ys, learning_rate=etas, epochs=s["sweep_epochs"],
                             mesh=m) for m in (None, models))
    return {
        "devices": n,
        "fit": {name: t.as_dict() for name, t in fit_t.items()},
        "fit_max_rel_diff": rel(n_fit.params, one_fit.params),
        "fit_per_device_batch": s["B"] // n,
        "sweep": {name: t.as_dict() for name, t in sweep_t.items()},
        "sweep_max_rel_diff": rel(n_sw.params, one_sw.params),
        "sweep_models_per_device": s["M"] // n,
        "params_sharding": str(n_fit.params[0].sharding.spec),
        "sweep_params_sharding": str(n_sw.params[0].sharding.spec),
    }


def _markdown(result: dict) -> str:
    env, s = result["environment"], result["sizes"]
    lines = [
        "# Data-parallel fit and sharded sweeps: 1, 2, 4 devices",
        "",
        f"Generated by `python benchmarks/scaling_devices.py{' --quick' if env['quick'] else ''}`"
        f" on {env['date_utc']}: {env['cpu']}, {env['cpu_count']} cores, load average at start "
        f"{report.fmt_load(env['load_average_at_start'])}; jax {env['versions']['jax']}.",
        "",
        f"> **Read this first.** {result['devices_kind']}. " + result["caveat"],
        "",
        f"* **fit**: `{s['D']}-{s['hidden']}-{s['hidden']}-1` tanh network, N = {s['N']} samples, "
        f"B = {s['B']}, plain SGD, {s['epochs']} epochs per call; *one device* is `fit` without "
        "a mesh, *mesh of n* is `fit(..., mesh=)` with every batch split over n devices.",
        f"* **sweep**: M = {s['M']} models of `2-16-1` trained by Algorithm 1 (`batch_size=1`) on "
        f"{s['sweep_N']} samples, {s['sweep_epochs']} epochs per call; *mesh of n* puts M/n "
        "models on each device.",
        "* Times are medians of interleaved rounds in one process per device count "
        "(`benchmarks/harness.py`); *first call* includes compilation. *max rel. diff* is the "
        "largest `|w_mesh − w_one| / max(|w_one|, 1)` over the trained weights.",
        "",
        "| devices | workload | one device (s/call) | mesh of n (s/call) | mesh / one | "
        "first call, mesh (s) | per device | max rel. diff |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in result["runs"]:
        n = r["devices"]
        for w, per in (("fit", f"{r['fit_per_device_batch']} samples per batch"),
                       ("sweep", f"{r['sweep_models_per_device']} models")):
            one, mesh = r[w]["one device"], r[w][f"mesh of {n}"]
            lines.append(
                f"| {n} | {w} | {report.fmt(one['steady_median_s'])} | "
                f"{report.fmt(mesh['steady_median_s'])} | "
                f"{mesh['steady_median_s'] / one['steady_median_s']:.2f} | "
                f"{report.fmt(mesh['first_call_s'])} | {per} | {r[f'{w}_max_rel_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, 2 rounds (smoke run)")
    p.add_argument("--devices", default="1,2,4", help="device counts, e.g. 1,2,4")
    p.add_argument("--real-devices", action="store_true",
                   help="use the machine's own devices (GPUs, TPU cores), no XLA flag")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(args.child, args.quick)))
        return

    counts = [int(c) for c in args.devices.split(",")]
    runs = []
    for n in counts:
        env = dict(os.environ)
        if not args.real_devices:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                                f" --xla_force_host_platform_device_count={n}").strip()
            env["JAX_PLATFORMS"] = "cpu"
        print(f"{n} device(s):", file=sys.stderr)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--child", str(n)]
                             + (["--quick"] if args.quick else []),
                             env=env, stdout=subprocess.PIPE, text=True, check=True, timeout=1800)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    import jax  # the parent's view of the machine, for the labels (after the children)

    env = harness.environment(harness.device_label(), args.quick)
    on_cpu = not args.real_devices
    result = {
        "environment": env,
        "sizes": SIZES[args.quick],
        "devices_kind": (f"Host CPU devices made by `--xla_force_host_platform_device_count`, "
                         f"all sharing the same {os.cpu_count()} CPU cores") if on_cpu else
                        f"{jax.devices()[0].device_kind} devices",
        "caveat": ("This measures correctness and the overhead of partitioning and "
                   "collectives, not a speed-up from more hardware: the n devices share one "
                   "CPU, and one device alone already uses several threads for its matrix "
                   "products. A ratio below 1 means the n devices kept busy cores that one "
                   f"device left idle (at most {os.cpu_count()}x here), typically in the "
                   "sweep, whose per-sample loop is made of small operations.") if on_cpu else
                  "Each device has its own compute: the ratio is the scaling.",
        "runs": runs,
    }
    stem = "scaling_devices" + ("-quick" if args.quick else "")
    report.write_atomic(args.out / f"{stem}.json", report.to_json(result))
    report.write_atomic(args.out / f"{stem}.md", _markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
