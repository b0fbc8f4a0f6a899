"""Writing the results: ``results.json`` (everything) and ``results.md`` (tables to read).

A result is a dict ``{"environment": {...}, "workloads": [workload, ...]}``; a workload is

    {"key", "title", "status": "ok" | "skipped" | "error", "note", "config": {...},
     "reference": name the ratios are taken against,
     "competitors": {name: Timing.as_dict() + memory probe},
     "ratios": {name: median(name) / median(reference)},
     "checks": [{"name", "ok", "detail"}],
     "targets": [{"name", "measured", "op", "threshold", "unit", "met"}],
     "tables": [{"title", "columns", "rows"}], "notes": [str]}
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bpjax.checkpoint import atomic_file


def target(name: str, measured: float | None, op: str, threshold: float, unit: str) -> dict:
    """A target of issue 6: ``measured op threshold`` (op ``>=`` or ``<=``); None if not run."""
    if op not in (">=", "<="):
        raise ValueError(f"target op must be '>=' or '<=', got {op!r}")
    met = None
    if measured is not None and math.isfinite(measured):
        met = measured >= threshold if op == ">=" else measured <= threshold
    return {
        "name": name,
        "measured": measured,
        "op": op,
        "threshold": threshold,
        "unit": unit,
        "met": met,
    }


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        f.write(text.encode())


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def to_json(result: dict) -> str:
    """The result as indented JSON (non-finite floats as strings)."""
    return json.dumps(_json_safe(result), indent=2, sort_keys=False) + "\n"


def fmt(v, unit: str = "") -> str:
    """A number for a table: 3-4 significant digits, '—' for missing."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return "-".join(fmt(x) for x in v) if all(isinstance(x, int) for x in v) else str(v)
    if isinstance(v, int):
        return f"{v}{unit}"
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        s = "0"
    elif a >= 100:
        s = f"{v:,.0f}"
    elif a >= 1:
        s = f"{v:.3g}" if a < 10 else f"{v:.1f}"
    elif a >= 1e-3:
        s = f"{v:.3g}"
    else:
        s = f"{v:.2e}"
    return f"{s}{unit}"


def _table(columns: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        out.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return out


def _met(m) -> str:
    return "not run" if m is None else ("**met**" if m else "**not met**")


def _target_rows(workloads: list[dict]) -> list[list]:
    rows = []
    for w in workloads:
        for t in w.get("targets", []):
            measured = "—" if t["measured"] is None else fmt(t["measured"], t["unit"])
            threshold = f"{t['op']} {fmt(t['threshold'], t['unit'])}"
            rows.append([w["key"], t["name"], measured, threshold, _met(t["met"])])
    return rows


def _competitor_rows(w: dict) -> list[list]:
    rows = []
    ref = w.get("reference")
    for name, c in w["competitors"].items():
        extra = ", ".join(
            f"{k} {fmt(v)}" for k, v in c.items() if k in ("final_loss", "gflops", "per_step_us")
        )
        rows.append([
            f"**{name}**" if name == ref else name,
            c.get("device", ""),
            c["first_call_s"],
            c["compile_estimate_s"],
            c["steady_median_s"],
            w.get("ratios", {}).get(name),
            c.get("peak_rss_delta_mib", c.get("memory_error", None)),
            c.get("device_peak_delta_mib"),
            extra,
        ])
    return rows


def to_markdown(result: dict) -> str:
    """The report a person reads: environment, the targets, then one section per workload."""
    env = result["environment"]
    v = env["versions"]
    lines = [
        f"# bpjax benchmarks — {env['label']}",
        "",
        f"- date: {env['date_utc']}{' (quick smoke run: reduced sizes)' if env['quick'] else ''}",
        f"- device: {', '.join(env['jax_devices'])}; CPU: {env['cpu']} × {env['cpu_count']} "
        f"(load average at start {fmt_load(env.get('load_average_at_start'))})",
        "- versions: " + ", ".join(f"{k} {v[k]}" for k in v if v[k]) + f", Python {env['python']}",
        "",
        "Times are medians of interleaved rounds in one process (see `benchmarks/harness.py`);",
        "**ratio** = competitor's steady median / the bold reference's (> 1: the reference is",
        "faster). *compile* = first call − steady median. *peak RSS Δ* = growth of the",
        "process's high-water resident memory during the competitor's first and one steady",
        "call, measured in a separate fresh process.",
        "",
        "## Targets (issue 6)",
        "",
    ]
    lines += _table(["workload", "target", "measured", "threshold", "status"],
                    _target_rows(result["workloads"]))
    for w in result["workloads"]:
        lines += ["", f"## {w['key']}: {w['title']}", ""]
        if w.get("config"):
            lines.append("config: " + ", ".join(f"{k}={fmt(x)}" for k, x in w["config"].items()))
            lines.append("")
        if w.get("date_utc"):
            merged = " (merged from an earlier run)" if w.get("merged") else ""
            lines += [f"run at {w['date_utc']}{merged}", ""]
        if w["status"] != "ok":
            lines.append(f"**{w['status']}**: {w.get('note', '')}")
            continue
        if w.get("competitors"):
            lines += _table(
                ["competitor", "device", "first call (s)", "compile (s)", "steady (s)",
                 "ratio", "peak RSS Δ (MiB)", "device peak Δ (MiB)", "result"],
                _competitor_rows(w),
            )
        for t in w.get("tables", []):
            lines += ["", f"**{t['title']}**", ""]
            lines += _table(t["columns"], t["rows"])
        if w.get("checks"):
            lines.append("")
            for c in w["checks"]:
                ok = "ok" if c["ok"] else "FAILED"
                lines.append(f"- check *{c['name']}*: {ok} — {c['detail']}")
        for n in w.get("notes", []):
            lines += ["", f"> {n}"]
    return "\n".join(lines) + "\n"


def fmt_load(load) -> str:
    return "?" if not load else " ".join(f"{x:.2f}" for x in load)


def write(result: dict, directory: Path, stem: str) -> tuple[Path, Path]:
    """Writes ``<stem>.json`` and ``<stem>.md`` into ``directory``; returns their paths."""
    directory = Path(directory)
    pj, pm = directory / f"{stem}.json", directory / f"{stem}.md"
    write_atomic(pj, to_json(result))
    write_atomic(pm, to_markdown(result))
    return pj, pm
