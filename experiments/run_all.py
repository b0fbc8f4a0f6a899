"""`make experiments`: runs every experiment in order and writes results/REPORT.md.

Each experiment is a script in this folder with an ``experiment()`` function returning a
:class:`report.Section`; each also runs on its own (``python experiments/e1_....py``).
``--only e1,e4`` runs a subset (the report keeps the other sections already present).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated prefixes, e.g. e1,e4")
    args = parser.parse_args()
    wanted = [w for w in args.only.split(",") if w]
    keys = [k for k in report.ORDER if not wanted or any(k.startswith(w) for w in wanted)]
    start = time.perf_counter()
    for i, key in enumerate(keys, 1):
        print(f"[{i}/{len(keys)}] {key} ...", flush=True)
        t = time.perf_counter()
        section = report.run(importlib.import_module(key).experiment)
        print(f"[{i}/{len(keys)}] {key} done in {time.perf_counter() - t:.1f} s "
              f"({time.perf_counter() - start:.0f} s so far)", flush=True)
        del section
    path = report.build_report()
    print(f"all done in {time.perf_counter() - start:.0f} s: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
