"""The fleet on paper: 10,000 symbols over 10-30 nodes, from measured per-symbol costs.

    python benchmarks/bench_fleet.py [--symbols 10000] [--nodes 10,20,30] [--repeat 30]

Measures what only depends on the fleet's shape — the coordinator's HRW assignment of
``--symbols`` over each node count (``marketcore_coord_redis.hrw.assign``: first call,
recompute with the owners given, and the share of symbols that move when one node joins
or leaves) — and combines it with the per-symbol costs that ``bench_node.py`` measured on
one node (``results/node.json``: node CPU, RSS, report size, Redis commands and bytes
per symbol) and Binance's published limits into ``fleet.json`` and ``fleet.md``.
``docs/scaling.md`` explains the model row by row.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, machine, machine_line, markdown_table, write_results

HRW_BENCH = REPO_ROOT / "plugins" / "coord_redis" / "benchmarks" / "bench_hrw.py"
NODE_RESULTS = REPO_ROOT / "benchmarks" / "results" / "node.json"

# Binance's published limits (spot API docs, "WebSocket Streams" and "LIMITS"); the venue
# enforces the same numbers (plugins/venue_binance: options.py, snapshots.py).
STREAMS_PER_CONNECTION = 1024
CONNECTIONS_PER_5_MIN_PER_IP = 300
MESSAGES_PER_SECOND_PER_CONNECTION = 5
REST_WEIGHT_PER_MINUTE_PER_IP = 6000
SNAPSHOT_WEIGHT = {100: 5, 500: 25, 1000: 50, 5000: 250}
STREAMS_PER_SYMBOL = 3
"""The venue's default streams: ``depth@100ms``, ``trade``, ``ticker``."""
PARAMS_PER_SUBSCRIBE = 200
"""Stream names per SUBSCRIBE message the model assumes (the venue batches them)."""


def _load_hrw_bench() -> Any:
    spec = importlib.util.spec_from_file_location("coord_redis_bench_hrw", HRW_BENCH)
    if spec is None or spec.loader is None:
        raise ImportError(HRW_BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hrw_rows(symbols: int, node_counts: list[int], repeat: int) -> list[dict[str, Any]]:
    bench = _load_hrw_bench()
    rows = []
    for nodes in node_counts:
        figures = bench.measure(symbols, nodes, repeat)
        rows.append({"nodes": nodes, "timings": figures, "movement": figures["movement"]})
    return rows


def _timing(row: dict[str, Any], key: str) -> float | None:
    """The median ms of one of the HRW benchmark's timings."""
    value = row["timings"].get(key)
    return value["median_ms"] if isinstance(value, dict) else None


def per_symbol_costs(node: dict[str, Any]) -> dict[str, Any] | None:
    """Per-symbol and per-report costs from ``bench_node.py``'s results.

    CPU and memory come from the largest point whose node kept pace (published at least
    90% of the reports its fast cycle owes: 4 per symbol and second), else from the point
    closest to pace (then they are a lower bound). Redis costs are per published report,
    so they do not depend on the pace.
    """
    points = [p for p in node.get("points", []) if p.get("measured") and p["reports_per_s"]]
    if not points:
        return None
    period_s = node.get("parameters", {}).get("fast_period_ms", 250) / 1000

    def pace(p: dict[str, Any]) -> float:
        return p["reports_per_s"] * period_s / p["symbols"]

    rss_base, rss_slope = _rss_fit(points)
    kept = [p for p in points if pace(p) >= 0.9]
    point = max(kept, key=lambda p: p["symbols"]) if kept else max(points, key=pace)
    n = point["symbols"]
    reports = point["reports_per_s"]
    return {
        "from_symbols": n,
        "kept_pace": bool(kept),
        "pace": pace(point),
        "reports_per_s_per_symbol": 1 / period_s,
        "cpu_cores_per_symbol": point["cpu_cores"] / n,
        "rss_mib_per_symbol": rss_slope,
        "rss_mib_base": rss_base,
        "report_bytes": point["report_bytes_mean"],
        "redis_commands_per_report": point.get("redis_commands_per_s", 0.0) / reports,
        "redis_in_bytes_per_report": point.get("redis_in_bytes_per_s", 0.0) / reports,
        "redis_cpu_s_per_report": (point.get("redis_cpu_cores_outside") or 0.0) / reports,
    }


def _rss_fit(points: list[dict[str, Any]]) -> tuple[float, float]:
    """Peak RSS as ``base + slope * symbols`` (least squares over the measured points;
    with one point, all of it per symbol)."""
    xs = [p["symbols"] for p in points]
    ys = [p["peak_rss_mib"] for p in points]
    if len(set(xs)) < 2:
        return 0.0, ys[0] / xs[0]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def fleet_rows(symbols: int, node_counts: list[int], costs: dict[str, Any],
               hrw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    by_nodes = {row["nodes"]: row for row in hrw}
    reports = symbols * costs["reports_per_s_per_symbol"]
    for nodes in node_counts:
        per_node = math.ceil(symbols / nodes)
        streams = per_node * STREAMS_PER_SYMBOL
        connections = math.ceil(streams / STREAMS_PER_CONNECTION)
        subscribe_messages = math.ceil(streams / PARAMS_PER_SUBSCRIBE)
        resync_weight = per_node * SNAPSHOT_WEIGHT[100]
        row = by_nodes.get(nodes)
        rows.append({
            "nodes": nodes,
            "symbols_per_node": per_node,
            "node_cpu_cores": per_node * costs["cpu_cores_per_symbol"],
            "node_rss_gib": (costs["rss_mib_base"] + per_node * costs["rss_mib_per_symbol"])
            / 1024,
            "reports_per_s": reports,
            "redis_commands_per_s": reports * costs["redis_commands_per_report"],
            "redis_in_mb_per_s": reports * costs["redis_in_bytes_per_report"] / 1e6,
            "redis_cpu_cores": reports * costs["redis_cpu_s_per_report"],
            "ws_connections_per_node": connections,
            "subscribe_s_per_node": subscribe_messages / MESSAGES_PER_SECOND_PER_CONNECTION,
            "resync_weight_per_node": resync_weight,
            "resync_minutes_one_ip": resync_weight / REST_WEIGHT_PER_MINUTE_PER_IP,
            "resync_minutes_fleet_one_ip": symbols * SNAPSHOT_WEIGHT[100]
            / REST_WEIGHT_PER_MINUTE_PER_IP,
            "hrw_first_ms": _timing(row, "assign_cold") if row else None,
            "hrw_recompute_ms": _timing(row, "assign_sticky") if row else None,
            "join_moved_pct": row["movement"]["join_moved_pct"] if row else None,
            "leave_moved_pct": row["movement"]["leave_moved_pct"] if row else None,
        })
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--nodes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[10, 20, 30])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    hrw = hrw_rows(args.symbols, args.nodes, args.repeat)
    node = json.loads(NODE_RESULTS.read_text()) if NODE_RESULTS.exists() else {}
    costs = per_symbol_costs(node)
    load_after = os.getloadavg()[0]
    info = machine()
    payload: dict[str, Any] = {
        "benchmark": "fleet", "machine": info, "symbols": args.symbols, "hrw": hrw,
        "per_symbol_costs": costs, "load_average_1min": {"start": load_before,
                                                         "end": load_after}}
    lines = ["# Fleet on paper", "",
             f"{machine_line(info)} 1-minute load average {load_before:.2f} → "
             f"{load_after:.2f}.", "",
             f"HRW over {args.symbols:,} symbols (measured here, median ms of "
             f"{args.repeat}):", ""]
    hrw_table = [[f"{r['nodes']}", _fmt(_timing(r, "assign_cold"), ".1f"),
                  _fmt(_timing(r, "assign"), ".1f"),
                  _fmt(_timing(r, "assign_sticky"), ".1f"),
                  _fmt(_timing(r, "assign_join_sticky"), ".1f"),
                  f"{r['movement']['join_moved_pct']:.2f} ({r['movement']['join_ideal_pct']})",
                  f"{r['movement']['leave_moved_pct']:.2f} ({r['movement']['leave_ideal_pct']})"]
                 for r in hrw]
    lines.append(markdown_table(["nodes", "first call ms", "recompute ms",
                                 "recompute, owners given ms", "after a join, owners given ms",
                                 "join: moved % (ideal)",
                                 "leave: moved % (leaver's share)"], hrw_table))
    if costs is None:
        lines += ["", "No `results/node.json`: run `bench_node.py` first for the fleet table."]
    else:
        rows = fleet_rows(args.symbols, args.nodes, costs, hrw)
        payload["fleet"] = rows
        lines += [
            "", f"Costs from `node.json` at {costs['from_symbols']:,} symbols (the node published "
            f"{100 * costs['pace']:.0f}% of the reports its fast cycle owes"
            f"{'' if costs['kept_pace'] else ': CPU and RSS are a lower bound'}): "
            f"{costs['cpu_cores_per_symbol'] * 1000:.2f} ms of node CPU per second and "
            f"{costs['rss_mib_per_symbol']:.2f} MiB of RSS per symbol (on a base of "
            f"{costs['rss_mib_base']:.0f} MiB, fitted over the points); per report "
            f"{costs['report_bytes']:,.0f} bytes of JSON, "
            f"{costs['redis_in_bytes_per_report']:,.0f} bytes into Redis, "
            f"{costs['redis_commands_per_report']:.1f} Redis commands (lease and membership "
            f"traffic included) and {costs['redis_cpu_s_per_report'] * 1e6:.0f} µs of Redis "
            f"CPU; {costs['reports_per_s_per_symbol']:.0f} reports per symbol and second.", "",
            markdown_table(
                ["nodes", "symbols/node", "node CPU cores", "node RSS GiB", "reports/s",
                 "Redis commands/s", "Redis in MB/s", "Redis CPU cores", "WS connections/node",
                 "subscribe s/node", "resync weight/node (min at 6000/min)"],
                [[f"{r['nodes']}", f"{r['symbols_per_node']:,}",
                  f"{r['node_cpu_cores']:.1f}", f"{r['node_rss_gib']:.2f}",
                  f"{r['reports_per_s']:,.0f}",
                  f"{r['redis_commands_per_s']:,.0f}", f"{r['redis_in_mb_per_s']:.0f}",
                  f"{r['redis_cpu_cores']:.2f}", f"{r['ws_connections_per_node']}",
                  f"{r['subscribe_s_per_node']:.1f}",
                  f"{r['resync_weight_per_node']:,} ({r['resync_minutes_one_ip']:.2f})"]
                 for r in rows])]
    write_results(args.out, "fleet", payload, "\n".join(lines))
    print("\n".join(lines))
    print(f"\n{time.perf_counter() - started:.0f} s; wrote {args.out}/fleet.json and fleet.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
