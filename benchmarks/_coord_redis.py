"""Run one of the ``coord_redis`` plugin's benchmarks from ``benchmarks/``.

The publishing, HRW and failover benchmarks live with the plugin they measure
(``plugins/coord_redis/benchmarks/``) and write their figures next to themselves. The
``bench_publish.py``, ``bench_hrw.py`` and ``bench_failover.py`` wrappers here run them
with this interpreter (arguments pass through), then copy the JSON and markdown into
``benchmarks/results/`` with the load average around the run, so that every figure of
the project is in one folder and ``make bench`` runs them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO_ROOT, machine, machine_line

PLUGIN_BENCHMARKS = REPO_ROOT / "plugins" / "coord_redis" / "benchmarks"
RESULTS = REPO_ROOT / "benchmarks" / "results"


def run(script: str, result: str, argv: list[str] | None = None) -> int:
    """Run ``PLUGIN_BENCHMARKS/script`` with ``argv``; copy ``result``.json/.md over."""
    argv = sys.argv[1:] if argv is None else argv
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    status = subprocess.call([sys.executable, str(PLUGIN_BENCHMARKS / script), *argv])
    load_after = os.getloadavg()[0]
    if status != 0 or {"-h", "--help"} & set(argv):
        return status
    source = PLUGIN_BENCHMARKS / "results"
    payload = json.loads((source / f"{result}.json").read_text(encoding="utf-8"))
    payload.setdefault("machine", machine())
    payload["load_average_1min"] = {"start": load_before, "end": load_after}
    payload["wall_s"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{result}.json").write_text(json.dumps(payload, indent=2) + "\n",
                                            encoding="utf-8")
    markdown = (source / f"{result}.md").read_text(encoding="utf-8").rstrip()
    note = (f"Run from `benchmarks/{Path(sys.argv[0]).name}` ({machine_line(machine())}); "
            f"1-minute load average {load_before:.2f} at the start and {load_after:.2f} at "
            f"the end. Source: `plugins/coord_redis/benchmarks/{script}`.")
    (RESULTS / f"{result}.md").write_text(f"{markdown}\n\n{note}\n", encoding="utf-8")
    print(f"copied {result}.json and {result}.md to {RESULTS}")
    return 0
