"""Timing, memory and labelling: how every number in the report is measured.

* **Interleaving.** A workload's competitors live in one process. Each is set up (data built,
  weights converted: not timed), then called once: that **first call** is timed alone and,
  for jitted code, includes tracing and compilation. Then ``repeats`` rounds call every
  competitor once each, in an order that rotates from round to round, so that a slow spell of
  a shared machine hits every competitor alike. The **steady** time is the median of the rounds.
* **CPU time.** Each round also records the process's CPU time (``time.process_time``, every
  thread of the process): on a machine shared with other work, where wall-clock times stretch
  whenever another process holds a core, it measures the work done, not the waiting.
* **Compile time** is estimated as ``first call − steady median``.
* **Ratios** are medians divided by medians, all from the same run.
* **Peak memory** is measured apart from the timings, in a fresh subprocess per competitor
  (``run.py --probe``): it imports, builds the same workload (data, weights), then resets
  the kernel's high-water mark of its resident set (``/proc/self/clear_refs``), runs the first
  call and one steady call, and reads the high-water mark again (``VmHWM``). The report gives
  ``peak RSS during the calls − RSS before them``: the extra host memory the competitor made
  resident, compilation included (XLA compiles in-process). Heap pages freed earlier and
  reused are already resident and do not count; GPU memory is not in the RSS. On a GPU the
  probe adds JAX's ``peak_bytes_in_use`` delta from ``Device.memory_stats()``, where reported.
  Where /proc is missing it falls back to the growth of ``getrusage().ru_maxrss``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass
class Runner:
    """One competitor, ready to run: ``run()`` does the timed work and blocks until done.

    Attributes:
      run: the timed call; it must finish its work before returning (``block_until_ready``).
        It returns an outcome that ``finish`` turns into a summary, outside the timing.
      finish: outcome -> dict of numbers for the report (e.g. the final loss); optional.
      device: where it runs ("cpu", "gpu", ...), for the report.
      note: a short remark for the report.
    """

    run: Callable[[], Any]
    finish: Callable[[Any], dict] | None = None
    device: str = "cpu"
    note: str = ""


@dataclasses.dataclass
class Timing:
    """What :func:`interleave` measured for one competitor."""

    first_s: float
    steady_s: list[float]
    summary: dict
    device: str = "cpu"
    note: str = ""
    cpu_s: list[float] = dataclasses.field(default_factory=list)  # process CPU time per call

    @property
    def median_s(self) -> float:
        return median(self.steady_s)

    @property
    def compile_s(self) -> float:
        """``first call − steady median``, floored at 0."""
        return max(self.first_s - self.median_s, 0.0)

    def as_dict(self) -> dict:
        return {
            "first_call_s": self.first_s,
            "steady_median_s": self.median_s,
            "steady_min_s": min(self.steady_s),
            "compile_estimate_s": self.compile_s,
            "steady_s": list(self.steady_s),
            "steady_cpu_s": list(self.cpu_s),
            "device": self.device,
            "note": self.note,
            **self.summary,
        }


def median(xs: Sequence[float]) -> float:
    """The median of a non-empty sequence of numbers."""
    if len(xs) == 0:
        raise ValueError("median of no timings")
    return float(statistics.median(xs))


def ratio(slow: float, fast: float) -> float:
    """``slow / fast`` (how many times faster ``fast`` is); inf when ``fast`` is 0."""
    return float("inf") if fast == 0 else slow / fast


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (the exponent of ``y ∝ x^s``)."""
    if len(x) < 2 or len(x) != len(y):
        raise ValueError(f"need >= 2 points of equal length, got {len(x)} and {len(y)}")
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def round_orders(names: Sequence[str], repeats: int) -> list[list[str]]:
    """The order of each round: round ``r`` starts ``r`` places further along (a rotation)."""
    n = len(names)
    return [[names[(r + i) % n] for i in range(n)] for r in range(repeats)]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def calls_for(t_call: float, min_time_s: float, max_calls: int = 1000) -> int:
    """How many back-to-back calls make one timed sample last at least ``min_time_s``."""
    if min_time_s <= 0 or t_call >= min_time_s:
        return 1
    return int(min(max_calls, np.ceil(min_time_s / max(t_call, 1e-7))))


def interleave(
    factories: dict[str, Callable[[], Runner]],
    repeats: int,
    log: Callable[[str], None] = print,
    min_time_s: float = 0.0,
) -> dict[str, Timing]:
    """Sets up every competitor, times its first call, then ``repeats`` interleaved rounds.

    Args:
      factories: name -> a function that builds the :class:`Runner` (setup is not timed).
      repeats: number of rounds after the first calls.
      log: where progress lines go.
      min_time_s: for calls shorter than this, one timed sample is ``k`` back-to-back calls
        (``k`` set from a second, untimed-for-the-report call) and the time is divided by
        ``k``; this keeps timer and scheduler noise small next to microsecond calls.

    Returns:
      name -> :class:`Timing` with times per call; ``summary`` is ``finish`` of the last
      outcome.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    runners = {name: make() for name, make in factories.items()}
    first, last, calls = {}, {}, {}
    for name, r in runners.items():
        first[name], last[name] = _timed(r.run)
        log(f"    {name:<28s} first call {first[name]:9.4f} s")
        calls[name] = 1
        if min_time_s > 0:
            t2, last[name] = _timed(r.run)
            calls[name] = calls_for(t2, min_time_s)
    steady: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for order in round_orders(list(runners), repeats):
        for name in order:
            run, k = runners[name].run, calls[name]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(k):
                last[name] = run()
            steady[name].append((time.perf_counter() - t0) / k)
            cpu[name].append((time.process_time() - c0) / k)
    out = {}
    for name, r in runners.items():
        summary = r.finish(last[name]) if r.finish is not None else {}
        out[name] = Timing(first[name], steady[name], summary, r.device, r.note, cpu[name])
        log(f"    {name:<28s} median     {out[name].median_s:9.4f} s  {_fmt_summary(summary)}")
    return out


def _fmt_summary(summary: dict) -> str:
    return "  ".join(f"{k}={v:.6g}" for k, v in summary.items() if isinstance(v, float))


# --------------------------------------------------------------------------- memory


def _proc_status_mib(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc/self/status, in MiB (Linux only)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """This process's high-water resident set size, in MiB.

    ``VmHWM`` from /proc/self/status where it exists (it belongs to this process image:
    unlike ``ru_maxrss``, it is not inherited from the parent across fork and exec);
    else ``getrusage(RUSAGE_SELF).ru_maxrss``.
    """
    hwm = _proc_status_mib("VmHWM")
    if hwm is not None:
        return hwm
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


def reset_peak_rss() -> bool:
    """Resets the high-water mark to the current RSS (Linux ``clear_refs`` 5); True if done."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def device_peak_bytes() -> int | None:
    """JAX's ``peak_bytes_in_use`` on the default device, or None where it is not reported."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def probe_memory(make: Callable[[], Runner]) -> dict:
    """Peak-memory growth of one competitor: first call plus one steady call, in this process."""
    runner = make()
    dev0 = device_peak_bytes()
    reset = reset_peak_rss()
    rss0 = _proc_status_mib("VmRSS") if reset else None
    rss0 = peak_rss_mib() if rss0 is None else rss0
    runner.run()
    runner.run()
    rss1, dev1 = peak_rss_mib(), device_peak_bytes()
    out = {
        "rss_before_mib": rss0,
        "peak_rss_mib": rss1,
        "peak_rss_delta_mib": rss1 - rss0,
        "peak_rss_method": "VmHWM reset before the calls" if reset else "ru_maxrss growth",
    }
    if dev0 is not None and dev1 is not None:
        out["device_peak_delta_mib"] = (dev1 - dev0) / 2**20
    return out


def run_probe_subprocess(argv: list[str], timeout_s: float = 600) -> dict:
    """Runs ``python run.py --probe ...`` in a fresh process; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"probe failed (rc {proc.returncode}): {tail[0][:200]}"}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- labels


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_label() -> str:
    """``cpu`` on CPU; otherwise the accelerator's kind, e.g. ``gpu-nvidia-h200``."""
    import jax

    d = jax.devices()[0]
    if d.platform == "cpu":
        return "cpu"
    kind = getattr(d, "device_kind", d.platform)
    slug = "".join(c if c.isalnum() else "-" for c in kind.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"{d.platform}-{slug}"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing package is just not reported
        return None


def environment(label: str, quick: bool) -> dict:
    """Device, versions, threads and date: everything a result needs to be read."""
    import jax

    devices = jax.devices()
    return {
        "label": label,
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "quick": quick,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "jax_devices": [f"{d.platform}:{getattr(d, 'device_kind', '?')}" for d in devices],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            name: _version(name)
            for name in ("bpjax", "jax", "jaxlib", "numpy", "torch", "scikit-learn")
        },
    }
