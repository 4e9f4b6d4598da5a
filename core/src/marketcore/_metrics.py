"""Prometheus metrics of one node, read from its counters when scraped.

Nothing is recorded for Prometheus on the hot path. The node, its pipelines and its
components keep plain counters (and bucket counts of durations) for their own sake; a
custom collector turns them into metric families only when Prometheus asks. Each node
has its own ``CollectorRegistry``, so several nodes can live in one process.

The exposition is served by a small HTTP server on the node's own event loop, not on a
thread: a scrape sees one consistent moment of the node (no counter dict changes size
under it), and a node whose loop is stuck stops answering, which Prometheus reports as
``up == 0``. Every metric is named ``marketcore_*`` and labelled with ``node``;
``docs/operations.md`` documents each one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from marketcore import _logging
from marketcore.node import Durations, NodeInfo
from marketcore.pipeline import CALC_BOUNDS_NS, CalculatorStats

__all__ = ["CONTENT_TYPE_LATEST", "MetricsServer", "NodeCollector", "make_registry", "render"]

log = logging.getLogger("marketcore.metrics")

VENUE_COUNTERS = {
    "reconnects": ("marketcore_venue_reconnects_total",
                   "Venue connections opened again after one was lost."),
    "resyncs": ("marketcore_venue_resyncs_total",
                "Books declared wrong and rebuilt from a snapshot (gap, crossed book, lost feed)."),
    "gaps": ("marketcore_venue_gaps_total", "Sequence breaks in the venue's book stream."),
    "malformed": ("marketcore_venue_malformed_frames_total",
                  "Frames skipped as malformed (garbage, missing fields, absurd values, …)."),
    "snapshot_weight_used": ("marketcore_venue_snapshot_weight_used_total",
                             "REST request weight spent on book snapshots and metadata."),
    "frames": ("marketcore_venue_frames_total", "Frames received from the venue."),
    "events": ("marketcore_venue_events_total", "Normalized events the venue emitted."),
}
"""The venue's well-known counters (``stats_of(venue)`` keys) and their fixed names."""

COORDINATOR_COUNTERS = {
    "acquisitions": ("marketcore_lease_acquisitions_total",
                     "Writer leases acquired (a new token for a symbol)."),
    "losses": ("marketcore_lease_losses_total",
               "Leases found held by another node at renewal."),
    "releases": ("marketcore_lease_releases_total",
                 "Leases given back (reassignment, refusal or shutdown)."),
    "lease_conflicts": ("marketcore_lease_conflicts_total",
                        "Writes refused by a fencing sink: a newer writer holds the symbol."),
    "rebalances": ("marketcore_hrw_rebalances_total",
                   "Times the HRW assignment changed this node's share of the symbols."),
}
"""The coordinator's well-known counters and their fixed names."""

COORDINATOR_GAUGES = {
    "members": ("marketcore_fleet_members", "Live members of the fleet, this node included."),
    "epoch": ("marketcore_token_epoch", "The highest writer-token epoch this node has seen."),
}


def _seconds_buckets(bounds_ms: Sequence[float], counts: Sequence[int],
                     ) -> list[tuple[str, float]]:
    """Prometheus' cumulative ``le`` buckets (in seconds) from per-bucket counts."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(bounds_ms, counts, strict=False):
        running += count
        buckets.append((_le(bound / 1000), running))
    buckets.append(("+Inf", running + counts[-1]))
    return buckets


def _le(seconds: float) -> str:
    return f"{seconds:.6f}".rstrip("0").rstrip(".")


class _Families:
    """Builds metric families that all carry the ``node`` label first."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def gauge(self, name: str, doc: str, labels: Sequence[str] = (),
              rows: Iterable[tuple[Sequence[str], float]] = ()) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=["node", *labels])
        for values, value in rows:
            family.add_metric([self.node_id, *values], value)
        return family

    def counter(self, name: str, doc: str, labels: Sequence[str] = (),
                rows: Iterable[tuple[Sequence[str], float]] = ()) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=["node", *labels])
        for values, value in rows:
            family.add_metric([self.node_id, *values], value)
        return family

    def histogram(self, name: str, doc: str, labels: Sequence[str] = (),
                  rows: Iterable[tuple[Sequence[str], Durations]] = ()) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=["node", *labels])
        for values, durations in rows:
            family.add_metric([self.node_id, *values],
                              _seconds_buckets(durations.bounds_ms, durations.counts),
                              durations.sum_ms / 1000)
        return family


class NodeCollector(Collector):
    """Every ``marketcore_*`` metric of one node, computed from its counters at scrape time."""

    def __init__(self, info: NodeInfo, *, clock: Callable[[], float] = time.time) -> None:
        self.info = info
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        info = self.info
        f = _Families(info.node_id)
        components = info.component_stats()
        yield from self._node(f, components.get("coordinator", {}))
        yield from self._cycles(f)
        yield from self._calculators(f)
        yield from self._freshness(f)
        yield from self._coordinator(f, components.get("coordinator", {}))
        yield from self._venue(f, components.get("venue", {}))
        yield from self._sinks(f, components)
        yield f.gauge(
            "marketcore_component_stat",
            "Every numeric counter or gauge a component exposes as `stats`, by component "
            "(venue, coordinator, sink.<name>) and stat name. Counters only grow.",
            ["component", "stat"],
            [((component, stat), value) for component, values in sorted(components.items())
             for stat, value in sorted(values.items())])

    # -- the node ----------------------------------------------------------------

    def _node(self, f: _Families, coordinator: Mapping[str, float]) -> Iterator[Metric]:
        info, stats = self.info, self.info.stats
        owned = len(info.owned())
        yield f.gauge("marketcore_node_info", "Always 1; what the node runs, as labels.",
                      ["mode", "venue", "coordinator"],
                      [((info.mode, info.venue, info.coordinator), 1)])
        yield f.gauge("marketcore_node_start_time_seconds",
                      "When the node started, UNIX time.", rows=[((), stats.started_s)])
        yield f.gauge("marketcore_node_heartbeat_timestamp_seconds",
                      "When the node last completed a fast cycle, UNIX time (0: not yet). "
                      "Alert on time() minus this.", rows=[((), stats.fast.last_end_s)])
        yield f.gauge("marketcore_symbols_universe", "Symbols the fleet serves ([node] symbols).",
                      rows=[((), len(info.profile.node.symbols))])
        assigned = coordinator.get("symbols_assigned", owned)
        yield f.gauge("marketcore_symbols_assigned",
                      "Symbols the coordinator assigns to this node.", rows=[((), assigned)])
        yield f.gauge("marketcore_symbols_owned",
                      "Symbols this node holds a writer token for and publishes.",
                      rows=[((), owned)])
        yield f.counter("marketcore_reports_published_total", "Reports handed to the sinks.",
                        rows=[((), stats.reports_published)])
        yield f.counter("marketcore_reports_refused_total",
                        "Reports a fencing sink refused (the symbol is then dropped).",
                        rows=[((), stats.refused)])
        yield f.counter("marketcore_events_unowned_total",
                        "Venue events for symbols this node does not own (late after a release).",
                        rows=[((), stats.unowned_events)])
        yield f.counter("marketcore_component_restarts_total",
                        "Times a component's run stopped with an error and was restarted.",
                        ["component"],
                        [((name,), n) for name, n in sorted(stats.component_restarts.items())])
        yield f.counter("marketcore_log_records_suppressed_total",
                        "Log records dropped by the per-kind rate limit (whole process).",
                        rows=[((), _logging.suppressed_total())])

    def _cycles(self, f: _Families) -> Iterator[Metric]:
        stats = self.info.stats
        cycles = (("fast", stats.fast), ("slow", stats.slow))
        yield f.histogram("marketcore_cycle_duration_seconds",
                          "Wall time of one whole cycle over every owned symbol.", ["cycle"],
                          [((name, ), cycle.durations) for name, cycle in cycles])
        yield f.counter("marketcore_cycle_skipped_ticks_total",
                        "Cycle ticks skipped because the previous run overran its period.",
                        ["cycle"], [((name,), cycle.skipped_ticks) for name, cycle in cycles])

    def _calculators(self, f: _Families) -> Iterator[Metric]:
        by_cycle = self.info.calculator_stats()
        rows: list[tuple[tuple[str, str], CalculatorStats]] = [
            ((cycle, name), stats) for cycle, calculators in sorted(by_cycle.items())
            for name, stats in calculators.items() if isinstance(stats, CalculatorStats)]
        latency = HistogramMetricFamily(
            "marketcore_calc_latency_seconds",
            "Time one calculator took on one symbol, by cycle and calculator.",
            labels=["node", "cycle", "calculator"])
        bounds_ms = [bound / 1e6 for bound in CALC_BOUNDS_NS]
        for (cycle, name), stats in rows:
            latency.add_metric([self.info.node_id, cycle, name],
                               _seconds_buckets(bounds_ms, stats.buckets), stats.total_ns / 1e9)
        yield latency
        yield f.counter("marketcore_calc_errors_total",
                        "Calculator calls that raised or returned undeclared sections.",
                        ["cycle", "calculator"], [(key, s.errors) for key, s in rows])
        yield f.counter("marketcore_calc_overruns_total",
                        "Calculator calls past their time budget (their sections were dropped).",
                        ["cycle", "calculator"], [(key, s.overruns) for key, s in rows])

    def _freshness(self, f: _Families) -> Iterator[Metric]:
        now_ms = self.clock() * 1000
        ages = [((symbol,), max(0.0, now_ms - last) / 1000)
                for symbol, last in sorted(self.info.last_event_ms().items()) if last is not None]
        yield f.gauge("marketcore_data_age_seconds",
                      "Now minus the latest exchange event time applied, by owned symbol.",
                      ["symbol"], ages)
        yield f.histogram("marketcore_report_data_age_seconds",
                          "Data age of each published report (its data_age_ms).",
                          rows=[((), self.info.stats.data_age)])

    # -- components ----------------------------------------------------------------

    def _coordinator(self, f: _Families, stats: Mapping[str, float]) -> Iterator[Metric]:
        """Fixed names from the coordinator's counters; where it keeps none, the host's own
        count (acquisitions, releases, conflicts), else 0: a local coordinator never loses
        a lease nor rebalances."""
        label = (self.info.coordinator,)
        node = self.info.stats
        fallback = {"acquisitions": node.acquisitions, "releases": node.releases,
                    "lease_conflicts": node.refused}
        for key, (name, doc) in COORDINATOR_COUNTERS.items():
            yield f.counter(name, doc, ["coordinator"],
                            [(label, stats.get(key, fallback.get(key, 0)))])
        fallback_gauges = {"members": 1, "epoch": 0}
        for key, (name, doc) in COORDINATOR_GAUGES.items():
            yield f.gauge(name, doc, ["coordinator"],
                          [(label, stats.get(key, fallback_gauges[key]))])

    def _venue(self, f: _Families, stats: Mapping[str, float]) -> Iterator[Metric]:
        label = (self.info.venue,)
        for key, (name, doc) in VENUE_COUNTERS.items():
            yield f.counter(name, doc, ["venue"], [(label, stats.get(key, 0))])
        yield f.counter("marketcore_venue_malformed_frames_by_kind_total",
                        "Malformed frames by kind (the venue's malformed_<kind> counters).",
                        ["venue", "kind"],
                        [((self.info.venue, key.removeprefix("malformed_")), value)
                         for key, value in sorted(stats.items()) if key.startswith("malformed_")])

    def _sinks(self, f: _Families, components: Mapping[str, Mapping[str, float]],
               ) -> Iterator[Metric]:
        node = self.info.stats
        names = self.info.sinks
        yield f.histogram("marketcore_sink_publish_seconds",
                          "Time one sink took to publish one cycle's batch.", ["sink"],
                          [((name,), node.sink_publish[name]) for name in names
                           if name in node.sink_publish])
        yield f.counter(
            "marketcore_sink_errors_total",
            "Publishes that raised, plus reports a sink counted as failed without raising.",
            ["sink"],
            [((name,), node.sink_errors.get(name, 0)
              + components.get(f"sink.{name}", {}).get("errors", 0)) for name in names])


def make_registry(info: NodeInfo, *, process: bool = True) -> CollectorRegistry:
    """A registry of its own for ``info``'s node (plus ``marketcore_process_*`` metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(info))
    if process:
        with contextlib.suppress(Exception):  # no /proc (not Linux): no process metrics
            ProcessCollector(namespace="marketcore", registry=registry)
    return registry


def render(info: NodeInfo) -> bytes:
    """The node's metrics in Prometheus' text format (for a ``/metrics`` served elsewhere)."""
    return generate_latest(make_registry(info))


# ---------------------------------------------------------------------------
# The HTTP endpoint
# ---------------------------------------------------------------------------

REQUEST_TIMEOUT_S = 10.0
MAX_REQUEST_BYTES = 8192


def parse_bind(bind: str) -> tuple[str, int]:
    """``"host:port"`` → ``(host, port)``; ``[::1]:9101`` for IPv6."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


class MetricsServer:
    """``GET /metrics`` of one node, served on the node's event loop."""

    def __init__(self, registry: CollectorRegistry, server: asyncio.Server) -> None:
        self.registry = registry
        self.server = server
        self.clients: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @classmethod
    async def start(cls, info: NodeInfo, bind: str) -> MetricsServer | None:
        """Serve on ``bind``; on failure log one error and return ``None``: a node without
        metrics is better than no node."""
        registry = make_registry(info)
        holder: list[MetricsServer] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await holder[0]._serve(reader, writer)

        try:
            host, port = parse_bind(bind)
            server = await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_BYTES)
        except (OSError, ValueError) as error:
            log.error("metrics: cannot serve on %s (%s); the node runs on without metrics",
                      bind, getattr(error, "strerror", None) or error,
                      extra={"component": "metrics", "bind": bind})
            return None
        holder.append(cls(registry, server))
        log.info("metrics: serving http://%s/metrics", bind,
                 extra={"component": "metrics", "bind": bind})
        return holder[0]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.clients.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            method, target = _request_line(head)
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, body, headers = "405 Method Not Allowed", b"only GET\n", {"Allow": "GET"}
            elif path != "/metrics":
                status, body, headers = "404 Not Found", b"metrics are at /metrics\n", {}
            else:
                status, headers = "200 OK", {"Content-Type": CONTENT_TYPE_LATEST}
                # the values are read on the loop (one consistent moment); the text is
                # formatted on a worker thread (the costly half, ~15 ms at 1,000 symbols)
                snapshot = _Snapshot(list(self.registry.collect()))
                body = await asyncio.to_thread(generate_latest, snapshot)  # type: ignore[arg-type]
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()),
                     f"Content-Length: {len(body)}", "Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode("latin-1"))
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError, ValueError):
            pass  # a client that sends garbage or nothing is simply hung up on
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self.clients.discard(task)

    async def close(self) -> None:
        """Stop listening and hang up on clients still connected."""
        self.server.close()
        clients = list(self.clients)
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.server.wait_closed()


class _Snapshot:
    """Metric families already collected, in the shape ``generate_latest`` reads."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _request_line(head: bytes) -> tuple[str, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"not an HTTP request line: {line[:80]!r}")
    return parts[0], parts[1]
