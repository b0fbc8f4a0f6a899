"""``make bench``: runs the workloads of issue 6 side by side and writes the results.

    python benchmarks/run.py                 # full run -> benchmarks/results/results.{json,md}
    python benchmarks/run.py --quick         # smoke run, small sizes -> results-quick.{json,md}
    python benchmarks/run.py --only W1,W3    # some workloads, merged into the existing file

The file name carries the device: ``results`` on a CPU, ``results-<label>`` elsewhere (e.g.
``results-gpu-nvidia-h200``), or the label given with ``--device-label``. How every number is
measured is written in ``benchmarks/harness.py``; the workloads are in
``benchmarks/workloads.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import harness, report  # noqa: E402
from benchmarks.workloads import WORKLOADS, Workload  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few rounds (smoke run)")
    p.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    p.add_argument("--repeats", type=int, default=None,
                   help="rounds per workload (default: its own)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--device-label", default=None, help="label for the results file name")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    p.add_argument("--probe", nargs=2, metavar=("WORKLOAD", "COMPETITOR"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def stem_for(label: str, quick: bool) -> str:
    """``results`` for the CPU, ``results-<label>`` otherwise; ``-quick`` for smoke runs."""
    stem = "results" if label == "cpu" else f"results-{label}"
    return stem + ("-quick" if quick else "")


def _probe(key: str, name: str, quick: bool) -> None:
    w = WORKLOADS[key]
    facs = w.factories(w.config(quick))
    print(json.dumps(harness.probe_memory(facs[name])))


def _memory(w: Workload, names: list[str], quick: bool, log) -> dict[str, dict]:
    out = {}
    for name in names:
        argv = [str(Path(__file__).resolve()), "--probe", w.key, name]
        out[name] = harness.run_probe_subprocess(argv + (["--quick"] if quick else []))
        m = out[name]
        log(f"    {name:<28s} peak RSS Δ {m.get('peak_rss_delta_mib', float('nan')):8.1f} MiB"
            + (f"  ({m['error']})" if "error" in m else ""))
    return out


def run_workload(w: Workload, quick: bool, repeats: int | None, memory: bool, log) -> dict:
    """Runs one workload and returns its entry of the results (see :mod:`benchmarks.report`)."""
    cfg = w.config(quick)
    reps = repeats or cfg.get("repeats", 3)
    entry = {
        "key": w.key,
        "title": w.title,
        "status": "ok",
        "config": {k: v for k, v in cfg.items()},
        "reference": w.reference,
        "competitors": {},
        "date_utc": harness.environment("", quick)["date_utc"],
    }
    missing = w.missing()
    if missing:
        log(f"  skipped: {missing}")
        return entry | {"status": "skipped", "note": missing, "targets": w.skipped_targets()}
    t0 = time.perf_counter()
    if w.custom is not None:
        entry |= w.custom(cfg, reps, log)
    else:
        timings = harness.interleave(w.factories(cfg), reps, log=log,
                                     min_time_s=cfg.get("min_time_s", 0.0))
        summary = w.summarize(cfg, timings)
        entry["competitors"] = {name: tm.as_dict() for name, tm in timings.items()}
        entry |= summary
        if memory:
            for name, m in _memory(w, list(timings), quick, log).items():
                c = entry["competitors"][name]
                if "error" in m:
                    c["memory_error"] = m["error"]
                else:
                    c.update(m)
    entry["wall_s"] = time.perf_counter() - t0
    return entry


def _merge(path: Path, result: dict) -> dict:
    """Keeps the workloads of an earlier result at ``path`` that this run did not redo."""
    if not path.exists():
        return result
    old = json.loads(path.read_text())
    if old.get("environment", {}).get("label") != result["environment"]["label"]:
        return result
    new_keys = {w["key"] for w in result["workloads"]}
    kept = [w | {"merged": True} for w in old.get("workloads", []) if w["key"] not in new_keys]
    result["workloads"] = sorted(kept + result["workloads"], key=lambda w: w["key"])
    return result


def warm_up() -> None:
    """Pays JAX's one-time costs (backend start, first compilation of dots, scans, tanh).

    Without it, whichever competitor comes first would carry them in its first-call time.
    """
    import jax
    import jax.numpy as jnp

    def f(W, x):
        return jnp.sum(jax.lax.scan(lambda h, _: (jnp.tanh(h @ W), None), x, None, length=2)[0])

    W, x = jnp.eye(8, dtype=jnp.float32), jnp.ones((4, 8), jnp.float32)
    jax.block_until_ready(jax.jit(jax.value_and_grad(f))(W, x))


def main(argv=None) -> int:
    args = _args(argv)
    if args.probe:
        _probe(*args.probe, args.quick)
        return 0
    warm_up()
    label = args.device_label or harness.device_label()
    keys = [k.strip().upper() for k in args.only.split(",") if k.strip()] or list(WORKLOADS)
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown:
        print(f"unknown workloads {unknown}; expected some of {list(WORKLOADS)}", file=sys.stderr)
        return 2
    env = harness.environment(label, args.quick)
    print(f"bpjax benchmarks on {label}: {', '.join(env['jax_devices'])}; CPU {env['cpu']}")
    workloads = []
    for key in keys:
        w = WORKLOADS[key]
        print(f"{key}: {w.title}", flush=True)
        try:
            workloads.append(run_workload(w, args.quick, args.repeats, not args.no_memory,
                                          lambda s: print(s, flush=True)))
        except Exception as e:  # noqa: BLE001 - one broken workload must not lose the others
            traceback.print_exc()
            workloads.append({"key": key, "title": w.title, "status": "error",
                              "note": f"{type(e).__name__}: {e}", "targets": w.skipped_targets()})
    result = {"environment": env, "workloads": workloads}
    stem = stem_for(label, args.quick)
    if args.only:
        result = _merge(args.out / f"{stem}.json", result)
    pj, pm = report.write(result, args.out, stem)
    print(f"wrote {pj.relative_to(ROOT) if pj.is_relative_to(ROOT) else pj} and {pm.name}")
    for w in result["workloads"]:
        for t in w.get("targets", []):
            status = {None: "not run", True: "met", False: "NOT met"}[t["met"]]
            print(f"  {w['key']} {t['name']}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
