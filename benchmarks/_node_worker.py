"""The node process of ``bench_node.py``: one live node plus a probe that measures it.

    python benchmarks/_node_worker.py PROFILE.toml --symbols N --out DIR
                                      [--settle 5] [--measure 40] [--timeout 180]
                                      [--most M --go FILE]

Runs :func:`marketcore.testing.run_node` on the profile with one extra in-process
plugin, ``bench-probe``: a sink (the profile lists it after the fenced Redis sink) that
sees every fast cycle's batch, plus the ``marketcore_startup`` hook for the node's
:class:`marketcore.node.NodeStats`. The probe

* waits until every one of the ``N`` symbols has had its book synced (a report with an
  ``ingestion.last_update_id``), then ``--settle`` seconds more; one worker of several
  sharing a fleet (``--most M --go FILE``) waits instead until it has at least ``N``
  synced symbols and owns at most ``M`` (the fleet has rebalanced), writes
  ``DIR/synced.json`` and opens its window once the driver creates ``FILE`` (so that
  every worker measures the same seconds), and runs on after its window until the
  driver stops it;
* opens the measuring window: writes ``DIR/window_start.json`` (the driver reads Redis'
  and the simulator's counters when it appears) and notes CPU time and cycle counters;
* records, for each cycle in the window, every report's exchange event time, the
  batch's payload bytes, and the index of the cycle (its duration is recorded by the
  host once the cycle's publishing is done);
* after ``--measure`` seconds writes ``DIR/window_end.json`` and stops the node with
  SIGTERM, the node's own clean shutdown path.

The figures (``DIR/node.json``) are computed after the node has stopped, so the probe
adds only a list comprehension per cycle to the measured work.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import signal
import statistics
import sys
import time
from array import array
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import attrs
from marketcore import hookimpl
from marketcore.components import Publication
from marketcore.node import NodeInfo, NodeStats
from marketcore.testing import make_plugin_manager, run_node

PROBE = "bench-probe"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _memory_kib() -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) of this process, KiB."""
    found = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` (0-1) quantile by the nearest rank; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@attrs.define
class Cycle:
    """What the probe saw of one fast cycle in the window."""

    run_index: int
    """How many fast cycles had completed when this one published (its 0-based index)."""
    tick_ms: int
    event_ms: array
    """Each report's ``ingestion.last_event_ms``."""
    payload_bytes: int
    ok: int
    """Reports whose ``ingestion.status`` is ``ok``."""


@attrs.define
class Probe:
    """The measuring state shared by the startup hook and the probe sink."""

    symbols: int
    settle_s: float
    measure_s: float
    out: Path
    most: int | None = None
    """Own at most this many symbols before measuring (one of several fleet workers)."""
    go: Path | None = None
    """Open the window once this file exists (the driver's signal), not after settling."""
    stats: NodeStats | None = None
    info: NodeInfo | None = None
    phase: str = "warming"
    synced_at: float = 0.0
    started_sync: float = attrs.field(factory=time.monotonic)
    window: dict[str, Any] = attrs.field(factory=dict)
    cycles: list[Cycle] = attrs.field(factory=list)
    last_ok: int = 0
    gc_pauses: list[tuple[int, float]] = attrs.field(factory=list)
    """(generation, ms) of every garbage collection in the window."""
    _gc_started: float = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` entry: times each collection while the window is open."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self.phase == "measuring":
            self.gc_pauses.append((info["generation"],
                                   (time.perf_counter() - self._gc_started) * 1000))

    def on_batch(self, batch: Sequence[Publication]) -> None:
        now = time.monotonic()
        if self.phase == "warming":
            synced = sum(1 for p in batch if p.report["ingestion"]["last_update_id"] is not None)
            self.last_ok = synced
            if synced >= self.symbols and (self.most is None or len(batch) <= self.most):
                self.phase, self.synced_at = "settling", now
                if self.go is not None:
                    self.phase = "ready"
                    (self.out / "synced.json").write_text(json.dumps({"owned": len(batch)}))
            return
        if self.phase == "ready":
            if self.go is not None and self.go.exists():
                self._open(now)
            return
        if self.phase == "settling":
            if now - self.synced_at >= self.settle_s:
                self._open(now)
            return
        if self.phase != "measuring":
            return
        assert self.stats is not None
        self.cycles.append(Cycle(
            self.stats.fast.runs, batch[0].report["generated_at"] if batch else 0,
            array("q", [p.report["ingestion"]["last_event_ms"] or 0 for p in batch]),
            sum(len(p.payload) for p in batch),
            sum(1 for p in batch if p.report["ingestion"]["status"] == "ok")))
        if now - self.window["start_monotonic"] >= self.measure_s:
            self._close(now)

    def _snapshot(self, now: float) -> dict[str, Any]:
        stats = self.stats
        assert stats is not None
        return {
            "monotonic": now, "wall": time.time(), "cpu_s": _cpu_s(),
            "fast_runs": stats.fast.runs, "fast_skipped": stats.fast.skipped_ticks,
            "slow_runs": stats.slow.runs, "slow_skipped": stats.slow.skipped_ticks,
            "reports_published": stats.reports_published, **_memory_kib(),
        }

    def _open(self, now: float) -> None:
        start = self._snapshot(now)
        self.window = {"start": start, "start_monotonic": now,
                       "sync_s": self.synced_at - self.started_sync}
        self.phase = "measuring"
        (self.out / "window_start.json").write_text(json.dumps(start))

    def _close(self, now: float) -> None:
        assert self.stats is not None
        end = self._snapshot(now)
        self.window["end"] = end
        self.window["recent_fast_ms"] = list(self.stats.fast.recent_ms)
        self.window["recent_slow_ms"] = list(self.stats.slow.recent_ms)
        self.phase = "done"
        (self.out / "window_end.json").write_text(json.dumps(end))
        if self.go is None:
            os.kill(os.getpid(), signal.SIGTERM)  # the node's own clean shutdown
        # one of several: the driver stops every process once all have measured, so
        # that none leaves the fleet (handing its symbols over) inside another's window

    # ---------------------------------------------------------------- figures

    def figures(self) -> dict[str, Any]:
        """Everything the driver tabulates, from what the window recorded."""
        if "end" not in self.window:
            return {"measured": False, "phase": self.phase, "symbols_synced": self.last_ok,
                    "sync_s": time.monotonic() - self.started_sync}
        start, end = self.window["start"], self.window["end"]
        wall = end["monotonic"] - start["monotonic"]
        fast_runs = end["fast_runs"] - start["fast_runs"]
        slow_runs = end["slow_runs"] - start["slow_runs"]
        fast_ms = self.window["recent_fast_ms"][-fast_runs:] if fast_runs else []
        slow_ms = self.window["recent_slow_ms"][-slow_runs:] if slow_runs else []
        durations = self._durations_by_run(end["fast_runs"])
        ages, added, freshest = [], [], []
        for cycle in self.cycles:
            duration = durations.get(cycle.run_index)
            newest = max(cycle.event_ms)
            freshest.append(cycle.tick_ms - newest)
            ages.extend(cycle.tick_ms - e for e in cycle.event_ms)
            if duration is not None:
                added.extend(newest - e + duration for e in cycle.event_ms)
        payload = sum(c.payload_bytes for c in self.cycles)
        reports = sum(len(c.event_ms) for c in self.cycles)
        return {
            "measured": True,
            "sync_s": self.window["sync_s"],
            "window_s": wall,
            "fast_cycles": fast_runs,
            "fast_p50_ms": percentile(fast_ms, 0.50),
            "fast_p99_ms": percentile(fast_ms, 0.99),
            "fast_max_ms": max(fast_ms) if fast_ms else None,
            "fast_mean_ms": statistics.fmean(fast_ms) if fast_ms else None,
            "fast_skipped_ticks": end["fast_skipped"] - start["fast_skipped"],
            "slow_cycles": slow_runs,
            "slow_p50_ms": percentile(slow_ms, 0.50),
            "slow_max_ms": max(slow_ms) if slow_ms else None,
            "slow_skipped_ticks": end["slow_skipped"] - start["slow_skipped"],
            "data_age_p50_ms": percentile(ages, 0.50),
            "data_age_p95_ms": percentile(ages, 0.95),
            "added_data_age_p50_ms": percentile(added, 0.50),
            "added_data_age_p95_ms": percentile(added, 0.95),
            "added_data_age_max_ms": max(added) if added else None,
            "freshest_symbol_age_p95_ms": percentile(freshest, 0.95),
            "cpu_cores": (end["cpu_s"] - start["cpu_s"]) / wall,
            "rss_mib": end["VmRSS"] / 1024,
            "peak_rss_mib": end["VmHWM"] / 1024,
            "reports_per_s": (end["reports_published"] - start["reports_published"]) / wall,
            "report_bytes_mean": payload / reports if reports else None,
            "reports_in_window": reports,
            "ok_share": sum(c.ok for c in self.cycles) / reports if reports else None,
            "owned_symbols": max((len(c.event_ms) for c in self.cycles), default=0),
            "fast_ms_series": [round(ms, 1) for ms in fast_ms],
            "gc_pauses_ms": [(g, round(ms, 1)) for g, ms in self.gc_pauses if ms >= 5],
            "gc_collections": [sum(1 for g, _ in self.gc_pauses if g == k) for k in range(3)],
            "gc_max_ms": max((ms for _, ms in self.gc_pauses), default=0.0),
            "gc_max_ms_by_generation": [max((ms for g, ms in self.gc_pauses if g == k),
                                            default=0.0) for k in range(3)],
            "gc_ms_per_s": sum(ms for _, ms in self.gc_pauses) / wall,
        }

    def _durations_by_run(self, runs_end: int) -> dict[int, float]:
        recent = self.window["recent_fast_ms"]
        return {runs_end - len(recent) + i: ms for i, ms in enumerate(recent)}


@attrs.frozen
class ProbeOptions:
    """The probe takes no options: its settings come from the worker's command line."""


class ProbeSink:
    """Hands each cycle's batch to the probe; writes nothing, refuses nothing."""

    name = PROBE

    def __init__(self, options: ProbeOptions) -> None:
        self.probe = PROBE_STATE

    async def start(self) -> None:
        pass

    async def publish(self, batch: Sequence[Publication]) -> Collection[str]:
        self.probe.on_batch(batch)
        return ()

    async def close(self) -> None:
        pass


class ProbePlugin:
    """The in-process plugin: registers the probe sink, keeps the node's stats."""

    @hookimpl
    def marketcore_register_sinks(self, register: Any) -> None:
        register(PROBE, ProbeSink, options=ProbeOptions)

    @hookimpl
    def marketcore_startup(self, node: NodeInfo) -> None:
        PROBE_STATE.stats = node.stats
        PROBE_STATE.info = node


PROBE_STATE: Probe


def main(argv: list[str] | None = None) -> int:
    global PROBE_STATE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--symbols", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--measure", type=float, default=40.0)
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="stop the node after this long even if it never synced")
    parser.add_argument("--most", type=int, help="own at most this many before measuring")
    parser.add_argument("--go", type=Path, help="open the window once this file exists")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    PROBE_STATE = Probe(args.symbols, args.settle, args.measure, args.out, args.most, args.go)
    gc.callbacks.append(PROBE_STATE.on_gc)
    pm = make_plugin_manager((PROBE, ProbePlugin()), entry_points=True)
    info = run_node(args.profile.read_text(encoding="utf-8"), duration_s=args.timeout,
                    plugin_manager=pm)
    figures = PROBE_STATE.figures()
    figures["component_stats"] = info.component_stats()
    figures["sink_errors"] = dict(info.stats.sink_errors)
    figures["sink_publish_mean_ms"] = {
        name: d.sum_ms / d.count for name, d in info.stats.sink_publish.items() if d.count}
    figures["refused"] = info.stats.refused
    figures["fast_calculators"] = list(info.fast_calculators)
    figures["slow_calculators"] = list(info.slow_calculators)
    (args.out / "node.json").write_text(json.dumps(figures, indent=2, default=str))
    return 0 if figures["measured"] else 1


if __name__ == "__main__":
    sys.exit(main())
