"""Benchmark the calculator plugins: microseconds per call, on real and synthetic books.

One command writes ``calculators.json`` and ``calculators.md`` (see ``--help``)::

    python benchmarks/bench_calculators.py [--seconds 300] [--out benchmarks/results]

Each scenario replays a market through one :class:`marketcore.SymbolState` on the
recording's own clock and, as a node does, runs the fast calculators every 250 ms
(after sampling the level-size history) and the slow ones every 2000 ms. Only the
``compute`` calls are timed, so a figure is what one calculator costs per symbol and
cycle on a book that has just taken the deltas since the previous cycle:

* ``real`` — ``../shared/data/binance/hftbacktest_spot_btcusdt_20240808.gz`` (Binance
  spot BTCUSDT, 346 s, a 1000-level REST snapshot then depth@100ms diffs and trades;
  tick 0.01), skipped when the file is absent;
* ``synthetic-2000`` — :class:`marketcore.synthetic.SyntheticMarket` with 2,000 levels
  a side, ``--seconds`` of market time.

Adding a calculator: append a :class:`Case` to :data:`CASES` (its plugin's ``src`` is
put on ``sys.path`` here, so nothing needs installing besides the core's dependencies).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # single-threaded numpy, as a node runs

import argparse
import gc
import gzip
import importlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO_ROOT, SHARED_DATA, machine, machine_line, markdown_table, write_results

sys.path.insert(0, str(REPO_ROOT / "core" / "src"))
for plugin_src in sorted((REPO_ROOT / "plugins").glob("calc_*/src")):
    sys.path.insert(0, str(plugin_src))

from marketcore import (  # noqa: E402 -- the paths above make the workspace importable
    BookDelta,
    BookSnapshot,
    Cycle,
    CycleContext,
    Event,
    Instrument,
    Side,
    SymbolState,
    Trade,
)
from marketcore.pipeline import merge_needs  # noqa: E402
from marketcore.report import place_section  # noqa: E402
from marketcore.synthetic import SyntheticConfig, SyntheticMarket  # noqa: E402
from marketcore.testing import make_plugin_manager  # noqa: E402

REAL_RECORDING = SHARED_DATA / "binance" / "hftbacktest_spot_btcusdt_20240808.gz"
REAL_TICK = 0.01  # Binance spot BTCUSDT price filter in August 2024
FAST_MS, SLOW_MS = 250, 2000
LEVEL_SAMPLE_DEPTH = 20  # the host's default: top 20 levels a side per fast cycle


# ------------------------------------------------------------------------ calculators


@dataclass(frozen=True)
class Case:
    """One calculator to measure: where it lives and how to build it with default options."""

    name: str
    cycle: Cycle
    module: str
    calculator: str
    options: str

    def build(self) -> Any | None:
        """The calculator with its default options, or ``None`` if its plugin is absent.

        ``module`` ``"builtin"``: one of the core's own calculators, built through the
        plugin registry as a node builds it (their modules are private)."""
        if self.module == "builtin":
            registration = make_plugin_manager(entry_points=False).registries.calculators[
                self.calculator]
            return registration.factory(registration.options())
        try:
            module = importlib.import_module(self.module)
        except ImportError:
            return None
        return getattr(module, self.calculator)(getattr(module, self.options)())


CASES: list[Case] = [
    Case("spread", Cycle.FAST, "marketcore_calc_spread", "SpreadCalculator", "SpreadOptions"),
    Case("depth", Cycle.FAST, "marketcore_calc_spread", "DepthCalculator", "DepthOptions"),
    Case("flow", Cycle.FAST, "marketcore_calc_liquidity", "FlowCalculator", "FlowOptions"),
    Case("walls", Cycle.SLOW, "marketcore_calc_liquidity", "WallsCalculator", "WallsOptions"),
    Case("vacuums", Cycle.SLOW, "marketcore_calc_liquidity", "VacuumsCalculator",
         "VacuumsOptions"),
    Case("volume_profile", Cycle.SLOW, "marketcore_calc_liquidity", "VolumeProfileCalculator",
         "VolumeProfileOptions"),
    Case("anomaly_tracker", Cycle.FAST, "marketcore_calc_anomalies", "AnomalyTracker",
         "TrackerOptions"),
    Case("anomalies", Cycle.SLOW, "marketcore_calc_anomalies", "AnomaliesCalculator",
         "AnomaliesOptions"),
    Case("health", Cycle.FAST, "builtin", "health", ""),
]
"""Calculators in run order within their cycle. Extend this list to measure more."""


# ------------------------------------------------------------------------ markets


def real_events(path: Path) -> Iterator[tuple[int, Event]]:
    """``(recv_ns, event)`` of a hftbacktest recording, with Binance's book procedure.

    Depth diffs before the REST snapshot are buffered; at the snapshot, those with
    ``u <= lastUpdateId`` are dropped and the rest applied; afterwards each diff must
    continue the previous one (``U == u + 1``), else the benchmark stops with an error.
    """
    symbol = "BTCUSDT"
    buffered: list[tuple[int, BookDelta]] = []
    last_u: int | None = None
    yield 0, Instrument(symbol, REAL_TICK)
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            recv, _, body = line.partition(" ")
            recv_ns = int(recv)
            message = json.loads(body)
            if "lastUpdateId" in message:
                last_u = message["lastUpdateId"]
                yield recv_ns, BookSnapshot(
                    symbol, [(float(p), float(q)) for p, q in message["bids"]],
                    [(float(p), float(q)) for p, q in message["asks"]], last_u)
                for when, delta in buffered:
                    if delta.last_update_id > last_u:
                        last_u = delta.last_update_id
                        yield when, delta
                buffered.clear()
                continue
            data = message.get("data", {})
            kind = data.get("e")
            if kind == "depthUpdate":
                delta = BookDelta(symbol, [(float(p), float(q)) for p, q in data["b"]],
                                  [(float(p), float(q)) for p, q in data["a"]],
                                  data["U"], data["u"], data["E"], recv_ns)
                if last_u is None:
                    buffered.append((recv_ns, delta))
                elif delta.last_update_id > last_u:
                    if delta.first_update_id > last_u + 1:
                        raise SystemExit(f"{path.name}: sequence gap after update id {last_u}")
                    last_u = delta.last_update_id
                    yield recv_ns, delta
            elif kind == "trade" and last_u is not None:
                side = Side.SELL if data["m"] else Side.BUY
                yield recv_ns, Trade(symbol, float(data["p"]), float(data["q"]), side,
                                     data["t"], data["T"], recv_ns)


def synthetic_events(levels: int, seconds: float, seed: int) -> Iterator[tuple[int, Event]]:
    """``(recv_ns, event)`` of one synthetic symbol with ``levels`` levels a side."""
    config = SyntheticConfig(seed=seed, levels=levels)
    market = SyntheticMarket(["BTCUSDT"], config)
    yield 0, Instrument("BTCUSDT", market.tick_size("BTCUSDT"))
    for event in market.events(until_ms=config.start_ms + int(seconds * 1000)):
        yield event.recv_ns, event


# ------------------------------------------------------------------------ the run


@dataclass
class Timings:
    """Nanoseconds of every call of one calculator in one scenario."""

    samples: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Figures without the first call, which pays one-time costs (numpy's lazy
        imports, first allocations) that a running node paid long ago."""
        if len(self.samples) < 2:
            return {"calls": 0}
        us = np.array(self.samples[1:], dtype=np.float64) / 1e3
        return {
            "calls": len(us),
            "mean_us": round(float(us.mean()), 2),
            "p50_us": round(float(np.percentile(us, 50)), 2),
            "p99_us": round(float(np.percentile(us, 99)), 2),
            "max_us": round(float(us.max()), 2),
        }


def replay(events: Iterator[tuple[int, Event]], calculators: list[Any],
           seconds: float | None) -> tuple[dict[str, Timings], dict[str, Any]]:
    """Apply ``events`` to one SymbolState; run and time the cycles on the events' clock."""
    fast = [c for c in calculators if c.cycle is Cycle.FAST]
    slow = [c for c in calculators if c.cycle is Cycle.SLOW]
    state: SymbolState | None = None
    timings = {c.name: Timings() for c in calculators}
    slow_sections: dict[str, Any] = {}
    next_fast = next_slow = start_ms = None
    clock = time.perf_counter_ns
    omitted: dict[str, int] = {}

    def run(cycle_calculators: list[Any], cycle: Cycle, now_ms: int,
            report: dict[str, Any]) -> None:
        ctx = CycleContext(now_ms=now_ms, cycle=cycle, report=report)
        for calculator in cycle_calculators:
            started = clock()
            sections = calculator.compute(state, ctx)
            timings[calculator.name].samples.append(clock() - started)
            for section, value in sections.items():
                if hasattr(value, "reason"):
                    omitted[section] = omitted.get(section, 0) + 1
                else:
                    place_section(report, section, value)

    applied = 0
    for recv_ns, event in events:
        now_ms = recv_ns // 1_000_000
        if state is None:
            state = SymbolState("BTCUSDT", "bench", merge_needs(calculators))
        if start_ms is None and recv_ns:
            start_ms = now_ms
            next_fast, next_slow = now_ms + FAST_MS, now_ms + SLOW_MS
        while next_fast is not None and now_ms >= next_fast and state.book.mid() is not None:
            if next_slow <= next_fast:
                slow_sections = {}
                run(slow, Cycle.SLOW, next_slow, slow_sections)
                next_slow += SLOW_MS
            state.sample_levels(LEVEL_SAMPLE_DEPTH)
            run(fast, Cycle.FAST, next_fast, dict(slow_sections))
            next_fast += FAST_MS
        if seconds is not None and start_ms is not None and now_ms - start_ms > seconds * 1000:
            break
        state.apply(event)
        applied += 1
    book = state.book if state is not None else None
    scratch = {c.name: scratch_bytes(state.scratch(c.name)) for c in calculators} if state else {}
    facts = {
        "events": applied,
        "market_seconds": round(((next_fast or 0) - (start_ms or 0)) / 1000, 1),
        "bid_levels_at_end": book.bid_count if book else 0,
        "ask_levels_at_end": book.ask_count if book else 0,
        "trades": state.counts["trades"] if state else 0,
        "omitted_sections": omitted,
        "scratch_bytes": {name: size for name, size in scratch.items() if size},
    }
    return timings, facts


def scratch_bytes(value: Any, seen: set[int] | None = None) -> int:
    """Approximate bytes a calculator keeps per symbol: numpy buffers plus Python objects."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes + 112
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(scratch_bytes(k, seen) + scratch_bytes(v, seen) for k, v in value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        size += sum(scratch_bytes(v, seen) for v in value)
    elif hasattr(value, "__slots__"):
        size += sum(scratch_bytes(getattr(value, name), seen) for name in value.__slots__
                    if hasattr(value, name))
    elif hasattr(value, "__dict__"):
        size += scratch_bytes(vars(value), seen)
    return size


def scenario(name: str, make_events: Callable[[], Iterator[tuple[int, Event]]],
             cases: list[Case], seconds: float | None) -> dict[str, Any]:
    calculators = [case.build() for case in cases]
    gc.collect()
    started = time.perf_counter()
    timings, facts = replay(make_events(), calculators, seconds)
    facts["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(f"{name}: {facts}", file=sys.stderr)
    return {"facts": facts,
            "calculators": {c.name: timings[c.name].summary() for c in calculators}}


def markdown(results: dict[str, Any], cases: list[Case]) -> str:
    scenarios = results["scenarios"]
    header = ["calculator", "cycle"]
    figures_shown = ("p50_us", "mean_us", "p99_us")
    for name in scenarios:
        header += [f"{name} {figure.removesuffix('_us')}" for figure in figures_shown]
    rows = []
    for case in cases:
        row = [f"`{case.name}`", str(case.cycle)]
        for data in scenarios.values():
            figures = data["calculators"].get(case.name, {})
            row += [f"{figures[f]:.1f}" if f in figures else "–" for f in figures_shown]
        rows.append(row)
    lines = [
        "# Calculators: µs per call per symbol",
        "",
        "Median (p50), mean and 99th percentile of one `compute` call, in microseconds. "
        "On a shared machine the mean and p99 carry other processes' pauses; p50 is the "
        "steady cost.",
        "",
        markdown_table(header, rows),
        "",
    ]
    for name, data in scenarios.items():
        facts = data["facts"]
        kept = ", ".join(f"`{k}` {v / 1024:.1f} KiB" for k, v in facts["scratch_bytes"].items())
        lines.append(f"* `{name}`: {facts['events']} events over {facts['market_seconds']} s of "
                     f"market time, {facts['trades']} trades, book at the end "
                     f"{facts['bid_levels_at_end']}/{facts['ask_levels_at_end']} levels; "
                     f"per-symbol calculator state at the end: {kept or 'none'}.")
    for note in results["notes"]:
        lines.append(f"* {note}")
    lines += ["", machine_line(results["machine"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="market seconds of each scenario (default 300)")
    parser.add_argument("--levels", type=int, default=2000,
                        help="levels a side in the synthetic book (default 2000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    cases = [case for case in CASES if case.build() is not None]
    missing = [case.name for case in CASES if case not in cases]
    notes = [f"fast cycle every {FAST_MS} ms, slow every {SLOW_MS} ms, on the market's "
             "clock; only `compute` is timed (the first call of each calculator is left "
             "out); default options."]
    if missing:
        notes.append(f"not measured (plugin not found): {', '.join(missing)}")
    scenarios: dict[str, Any] = {}
    if REAL_RECORDING.exists():
        scenarios["real"] = scenario("real", lambda: real_events(REAL_RECORDING), cases,
                                     args.seconds)
    else:
        notes.append(f"real recording absent ({REAL_RECORDING.name}): scenario skipped")
    scenarios[f"synthetic-{args.levels}"] = scenario(
        f"synthetic-{args.levels}", lambda: synthetic_events(args.levels, args.seconds, args.seed),
        cases, None)
    results = {
        "benchmark": "calculators",
        "machine": machine(),
        "config": {"seconds": args.seconds, "levels": args.levels, "seed": args.seed,
                   "fast_ms": FAST_MS, "slow_ms": SLOW_MS},
        "notes": notes,
        "scenarios": scenarios,
    }
    write_results(args.out, "calculators", results, markdown(results, cases))
    print(markdown(results, cases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
