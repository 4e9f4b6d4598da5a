"""Run every benchmark in a sensible order, then write the headline table.

    python benchmarks/run_all.py [--only book,node] [--skip failover] [--summary-only]

What ``make bench`` runs. Each ``bench_*.py`` in this folder runs as its own process with
this interpreter, in :data:`ORDER` (``bench_fleet.py`` after ``bench_node.py``, whose
per-symbol costs it uses; any benchmark not listed runs last, by name). A benchmark that
fails is reported and the others still run; the exit status is non-zero if any failed.
Afterwards ``results/summary.md`` (and ``summary.json``) puts SPEC §10's targets next to
the latest figures of ``results/*.json``: the table the top-level README shows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, machine, machine_line, markdown_table, write_results

HERE = Path(__file__).resolve().parent
RESULTS = REPO_ROOT / "benchmarks" / "results"
ORDER = ("book", "book_breakdown", "decode", "venue", "calculators", "report", "node", "fleet",
         "publish", "hrw", "failover", "http")


def benchmarks(only: set[str], skip: set[str]) -> list[str]:
    found = {path.stem.removeprefix("bench_") for path in HERE.glob("bench_*.py")}
    names = [name for name in ORDER if name in found]
    names += sorted(found - set(ORDER))
    return [n for n in names if (not only or n in only) and n not in skip]


VARIANTS: dict[str, tuple[list[str], ...]] = {
    "node": ([], ["--processes", "2", "--symbols", "100,150,200,250"]),
}
"""Benchmarks run more than once, with these arguments each time (others: once, none)."""

PLUGIN_RESULTS = REPO_ROOT / "plugins" / "coord_redis" / "benchmarks" / "results"


def _load(name: str) -> dict[str, Any] | None:
    """``results/<name>.json``; for the coordination figures not copied here yet, the
    plugin's own results."""
    for folder in (RESULTS, PLUGIN_RESULTS):
        try:
            return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


def _row(item: str, target: str, measured: str, met: bool | None, source: str) -> list[str]:
    verdict = "—" if met is None else ("yes" if met else "**no**")
    return [item, target, measured, verdict, source]


def _node_row(node: dict[str, Any] | None, label: str, table: str) -> list[str] | None:
    """The node capacity target's row from one ``bench_node.py`` result, if any."""
    if not node or not node.get("points"):
        return None
    measured = [p for p in node["points"] if p.get("measured")]
    good = [p for p in measured if p["fast_p99_ms"] <= 250 and p["fast_skipped_ticks"] == 0
            and (p["added_data_age_p95_ms"] or 0) <= 100 and p["peak_rss_mib"] <= 2048]
    text = "; ".join(
        f"{p['symbols']:,}: p99 {p['fast_p99_ms']:.0f} ms, {p['fast_skipped_ticks']} "
        f"skipped, added age p95 {p['added_data_age_p95_ms']:.0f} ms, "
        f"{p['peak_rss_mib']:.0f} MiB" for p in measured)
    for p in node["points"]:
        if not p.get("measured"):
            text += (f"; {p['symbols']:,}: only {p.get('symbols_synced', '?')} books "
                     f"synced after {p.get('sync_s', 0):.0f} s")
    best = max((p["symbols"] for p in good), default=None)
    text = (f"largest count meeting every target: {best:,}. " if best else
            "no count measured meets every target. ") + text
    return _row(label, "1,000: p99 ≤ 250 ms, 0 skipped, added age p95 ≤ 100 ms, RSS ≤ 2 GB",
                text, any(p["symbols"] >= 1000 for p in good), table)


def summary_rows() -> list[list[str]]:
    """One row per SPEC §10 target, from whatever results exist."""
    rows = []
    book = _load("book")
    if book and book.get("streams"):
        stream = book["streams"][0]
        ours = stream["results"][0]
        others = [r for r in stream["results"][2:] if r.get("available")]
        best_apply = max(others, key=lambda r: r["apply_changes_per_s"], default=None)
        best_query = min(others, key=lambda r: r["query_us"], default=None)
        rate = ours["apply_changes_per_s"]
        ratio = f" = {rate / best_apply['apply_changes_per_s']:.2f}× {best_apply['name']}" \
            if best_apply else ""
        rows.append(_row("Book apply from frame bytes (synthetic)", "≥ 2.18 M changes/s",
                         f"{rate / 1e6:.2f} M/s{ratio}", rate >= 2.18e6, "book.md"))
        query = ours["query_us"]
        qratio = f" ({best_query['query_us'] / query:.1f}× faster than {best_query['name']})" \
            if best_query else ""
        rows.append(_row("Book dirty fast query (synthetic)", "≤ 49 µs",
                         f"{query:.1f} µs{qratio}", query <= 49, "book.md"))
    for name, label in (("node", "Symbols on one node at 250 ms"),
                        ("node-2proc", "Symbols on one node as 2 processes (2-core machine)")):
        row = _node_row(_load(name), label, f"{name}.md")
        if row is not None:
            rows.append(row)
    publish = _load("publish")
    if publish and "ratios" in publish:
        ratio = publish["ratios"].get("fenced / unfenced SET, same transport")
        if ratio is not None:
            rows.append(_row("Fenced publish vs unfenced pipelined SET", "≥ 0.6×",
                             f"{ratio:.2f}×", ratio >= 0.6, "publish.md"))
    hrw = _load("hrw")
    if hrw and "assign_sticky" in hrw:
        cases = [("settled", "assign_sticky"), ("after a join", "assign_join_sticky"),
                 ("after a leave", "assign_leave_sticky"), ("from scratch", "assign")]
        found = [(label, hrw[key]["median_ms"]) for label, key in cases if key in hrw]
        rows.append(_row("HRW 10,000 symbols × 10 nodes (median)", "≤ 10 ms",
                         ", ".join(f"{ms:.1f} ms {label}" for label, ms in found),
                         all(ms <= 10 for _, ms in found), "hrw.md"))
    failover = _load("failover")
    if failover and "kill" in failover:
        ttl = failover["setup"]["lease_ttl_ms"]
        kill, term = failover["kill"], failover["term"]
        rows.append(_row("Crash failover", f"p99 ≤ TTL + 0.5 s = {ttl + 500} ms",
                         f"p99 {kill['p99_ms']} ms over {kill['trials']} trials",
                         kill["p99_ms"] <= ttl + 500, "failover.md"))
        rows.append(_row("Graceful handoff", "≤ 500 ms",
                         f"p99 {term['p99_ms']} ms, p50 {term['p50_ms']} ms",
                         term["p99_ms"] <= 500, "failover.md"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=set(),
                        help="comma-separated names (book, node, …)")
    parser.add_argument("--skip", type=lambda s: set(s.split(",")), default=set())
    parser.add_argument("--summary-only", action="store_true",
                        help="run nothing: rewrite the summary from the latest results")
    args = parser.parse_args(argv)
    runs = []
    for name in [] if args.summary_only else benchmarks(args.only, args.skip):
        for extra in VARIANTS.get(name, ([],)):
            label = " ".join([f"bench_{name}.py", *extra])
            print(f"=== {label}", flush=True)
            started = time.perf_counter()
            status = subprocess.call([sys.executable, str(HERE / f"bench_{name}.py"), *extra])
            runs.append({"name": name, "arguments": extra, "status": status,
                         "wall_s": time.perf_counter() - started})
            if status != 0:
                print(f"{label} failed with status {status}", file=sys.stderr)
    info = machine()
    rows = summary_rows()
    markdown = "\n".join([
        "# Benchmarks: SPEC §10 targets and the latest figures", "",
        f"{machine_line(info)} Each figure comes from its benchmark's latest run (see the "
        f"linked table for its load average: on a shared machine compare rows of one run).",
        "", markdown_table(["target", "SPEC", "measured", "met", "table"], rows)])
    write_results(RESULTS, "summary", {"machine": info, "runs": runs, "rows": rows}, markdown)
    print(markdown)
    return 1 if any(run["status"] != 0 for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
