"""HRW assignment: time to (re)assign 10,000 symbols over 10 nodes, and movement on join/leave.

    python plugins/coord_redis/benchmarks/bench_hrw.py [--symbols 10000] [--nodes 10]

Writes ``benchmarks/results/hrw.json`` and ``hrw.md`` next to this file. Also
times the per-pair alternatives a plain implementation would use (BLAKE2b per
pair in a Python loop; xxhash per pair when installed), which is why the
weights are mixed from cached per-name hashes with numpy instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from marketcore_coord_redis.hrw import _universe, assign

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "os": platform.platform()}


def timed(function: Callable[[], object], repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"runs": repeat, "min_ms": round(samples[0], 3),
            "median_ms": round(statistics.median(samples), 3),
            "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 3)}


def naive_blake2b(symbols: list[str], nodes: list[str]) -> dict[str, str]:
    """Plain HRW with a BLAKE2b-64 hash per (node, symbol) pair: the textbook version."""
    owner = {}
    for symbol in symbols:
        best, best_weight = "", -1
        for node in nodes:
            digest = hashlib.blake2b(f"{node}\x00{symbol}".encode(), digest_size=8).digest()
            weight = int.from_bytes(digest, "little")
            if weight > best_weight:
                best, best_weight = node, weight
        owner[symbol] = best
    return owner


def naive_xxhash(symbols: list[str], nodes: list[str]) -> dict[str, str] | None:
    try:
        import xxhash
    except ImportError:
        return None
    digest = xxhash.xxh64_intdigest
    return {symbol: max(nodes, key=lambda n: digest(f"{n}\x00{symbol}".encode()))
            for symbol in symbols}


def movement(symbols: list[str], nodes: list[str]) -> dict[str, Any]:
    """Movement from a settled assignment when one node joins, and when one leaves."""
    before = assign(symbols, nodes).as_dict()
    joined = assign(symbols, [*nodes, "node-new"], before)
    left = assign(symbols, nodes[1:], before)
    moved_join = [s for s in symbols if before[s] != joined.owner(s)]
    moved_leave = [s for s in symbols if before[s] != left.owner(s)]
    leaver = sum(owner == nodes[0] for owner in before.values())
    return {
        "join_moved": len(moved_join),
        "join_moved_pct": round(100 * len(moved_join) / len(symbols), 2),
        "join_ideal_pct": round(100 / (len(nodes) + 1), 2),
        "join_bound": -(-12 * len(symbols) // (10 * (len(nodes) + 1))),
        "join_all_to_joiner": all(joined.owner(s) == "node-new" for s in moved_join),
        "join_max_load": max(joined.loads().values()), "join_cap": joined.cap,
        "leave_moved": len(moved_leave),
        "leave_moved_pct": round(100 * len(moved_leave) / len(symbols), 2),
        "leave_ideal_pct": round(100 * leaver / len(symbols), 2),
        "leave_only_leavers": all(before[s] == nodes[0] for s in moved_leave),
        "leave_max_load": max(left.loads().values()), "leave_cap": left.cap,
    }


def measure(symbols_count: int = 10_000, nodes_count: int = 10, repeat: int = 50) -> dict[str, Any]:
    symbols = [f"S{i:05d}USDT" for i in range(symbols_count)]
    nodes = [f"node-{i}" for i in range(nodes_count)]
    owners = assign(symbols, nodes).as_dict()

    def cold() -> None:
        _universe.cache_clear()
        assign(symbols, nodes)

    figures: dict[str, Any] = {
        "symbols": symbols_count, "nodes": nodes_count,
        "assign_cold": timed(cold, max(5, repeat // 5)),
        "assign": timed(lambda: assign(symbols, nodes), repeat),
        "assign_sticky": timed(lambda: assign(symbols, nodes, owners), repeat),
        "assign_join_sticky": timed(lambda: assign(symbols, [*nodes, "node-new"], owners),
                                    repeat),
        "assign_leave_sticky": timed(lambda: assign(symbols, nodes[1:], owners), repeat),
        "naive_blake2b_per_pair": timed(lambda: naive_blake2b(symbols, nodes), 3),
    }
    if naive_xxhash(symbols[:10], nodes) is not None:
        figures["naive_xxhash_per_pair"] = timed(lambda: naive_xxhash(symbols, nodes), 3)
    figures["movement"] = movement(symbols, nodes)
    return figures


def markdown(figures: dict[str, Any], info: dict[str, Any]) -> str:
    rows = [
        ("assign from scratch (universe hashes cached)", "assign"),
        ("assign, settled owners given (nothing moves)", "assign_sticky"),
        ("assign after a join, owners given", "assign_join_sticky"),
        ("assign after a leave, owners given", "assign_leave_sticky"),
        ("assign, first call (hashes the universe)", "assign_cold"),
        ("plain HRW, BLAKE2b per pair (Python loop)", "naive_blake2b_per_pair"),
        ("plain HRW, xxhash per pair (Python loop)", "naive_xxhash_per_pair"),
    ]
    lines = [f"# HRW: {figures['symbols']:,} symbols × {figures['nodes']} nodes", "",
             "| what | median ms | min ms | p90 ms |", "|:---|---:|---:|---:|"]
    for label, key in rows:
        if key in figures:
            f = figures[key]
            lines.append(f"| {label} | {f['median_ms']} | {f['min_ms']} | {f['p90_ms']} |")
    m = figures["movement"]
    lines += ["", "| change | moved | moved % (ideal) | bound | only to joiner / only leaver's "
              "| max load / cap |", "|:---|---:|---:|---:|:---|---:|",
              f"| join | {m['join_moved']} | {m['join_moved_pct']} ({m['join_ideal_pct']}) | "
              f"{m['join_bound']} | {'yes' if m['join_all_to_joiner'] else 'NO'} | "
              f"{m['join_max_load']} / {m['join_cap']} |",
              f"| leave | {m['leave_moved']} | {m['leave_moved_pct']} ({m['leave_ideal_pct']}) | "
              f"— | {'yes' if m['leave_only_leavers'] else 'NO'} | "
              f"{m['leave_max_load']} / {m['leave_cap']} |"]
    lines += ["", f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
              f"numpy {info['numpy']}, {info['os']}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    figures = measure(args.symbols, args.nodes, args.repeat)
    info = machine()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hrw.json").write_text(json.dumps({"machine": info, **figures}, indent=2) + "\n")
    table = markdown(figures, info)
    (RESULTS / "hrw.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
