"""Public, read-only facts about a running node: what lifecycle hooks receive."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping

import attrs

from marketcore.profile import Profile

__all__ = ["CycleStats", "Durations", "NodeInfo", "NodeStats"]


@attrs.define(slots=True)
class Durations:
    """Durations (or ages) counted into fixed buckets, in milliseconds.

    Recording is one binary search and two additions, so the host keeps these on
    every cycle and every publish for free, and a metrics exporter reads them as a
    histogram at scrape time. ``counts[i]`` holds the values ``<= bounds_ms[i]``
    (not cumulative); the last entry counts the values above every bound.
    """

    bounds_ms: tuple[float, ...]
    counts: list[int] = attrs.field()
    count: int = 0
    sum_ms: float = 0.0

    @counts.default
    def _zeros(self) -> list[int]:
        return [0] * (len(self.bounds_ms) + 1)

    def record(self, value_ms: float) -> None:
        self.counts[bisect_left(self.bounds_ms, value_ms)] += 1
        self.count += 1
        self.sum_ms += value_ms


CYCLE_BOUNDS_MS = (1, 2.5, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000)
"""Buckets of a cycle's duration: SPEC's fast (20 ms) and slow (500 ms) targets are bounds."""
PUBLISH_BOUNDS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
"""Buckets of one sink's publish of one cycle's batch."""
DATA_AGE_BOUNDS_MS = (50, 100, 250, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000)
"""Buckets of a published report's data age: 1000 ms is SPEC's P95 objective."""


@attrs.define
class CycleStats:
    """Counters of one cycle (fast or slow) on one node."""

    runs: int = 0
    skipped_ticks: int = 0
    """Ticks not run because the previous cycle overran its period."""
    last_ms: float = 0.0
    max_ms: float = 0.0
    recent_ms: deque[float] = attrs.field(factory=lambda: deque(maxlen=1024))
    durations: Durations = attrs.field(factory=lambda: Durations(CYCLE_BOUNDS_MS))
    last_end_s: float = 0.0
    """Wall-clock time (UNIX seconds) the latest run ended: the node's heartbeat."""

    def record(self, elapsed_ms: float) -> None:
        self.runs += 1
        self.last_ms = elapsed_ms
        self.max_ms = max(self.max_ms, elapsed_ms)
        self.recent_ms.append(elapsed_ms)
        self.durations.record(elapsed_ms)
        self.last_end_s = time.time()

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0–1) of the last 1024 durations, in ms."""
        if not self.recent_ms:
            return 0.0
        ordered = sorted(self.recent_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@attrs.define
class NodeStats:
    """Counters of a node; read by sinks and, later, metrics."""

    fast: CycleStats = attrs.field(factory=CycleStats)
    slow: CycleStats = attrs.field(factory=CycleStats)
    reports_published: int = 0
    sink_errors: dict[str, int] = attrs.field(factory=dict)
    refused: int = 0
    """Writes refused by a fencing sink."""
    unowned_events: int = 0
    """Events for symbols this node does not own (late events after a release)."""
    acquisitions: int = 0
    """Symbols the coordinator granted this node (a renewal is not counted)."""
    releases: int = 0
    """Symbols this node stopped writing (reassigned, refused, shutdown)."""
    component_restarts: dict[str, int] = attrs.field(factory=dict)
    sink_publish: dict[str, Durations] = attrs.field(factory=dict)
    """How long each sink took to publish a cycle's batch, by sink name."""
    data_age: Durations = attrs.field(factory=lambda: Durations(DATA_AGE_BOUNDS_MS))
    """``data_age_ms`` of every published report that had data."""
    started_s: float = attrs.field(factory=time.time)
    """Wall-clock time (UNIX seconds) the node was made."""

    def record_publish(self, sink: str, elapsed_ms: float) -> None:
        durations = self.sink_publish.get(sink)
        if durations is None:
            durations = self.sink_publish[sink] = Durations(PUBLISH_BOUNDS_MS)
        durations.record(elapsed_ms)


@attrs.frozen
class NodeInfo:
    """What a node is made of. Handed to ``marketcore_startup`` / ``_shutdown``."""

    node_id: str
    mode: str
    """``"live"`` or ``"replay"``."""
    profile: Profile
    venue: str
    coordinator: str
    sinks: tuple[str, ...]
    fast_calculators: tuple[str, ...]
    slow_calculators: tuple[str, ...]
    stats: NodeStats
    owned: Callable[[], tuple[str, ...]]
    """The symbols this node writes now, sorted."""
    component_stats: Callable[[], dict[str, dict[str, float]]] = lambda: {}
    """Counters of the node's components now, keyed ``venue``, ``coordinator`` and
    ``sink.<name>`` (see :func:`marketcore.components.stats_of`)."""
    components: Callable[[], dict[str, object]] = lambda: {}
    """The node's component objects, keyed as in :attr:`component_stats`; lets a
    built-in sink find a sibling sink that is a ``ReportReader``."""
    calculator_stats: Callable[[], Mapping[str, Mapping[str, object]]] = lambda: {}
    """Each pipeline's :class:`marketcore.pipeline.CalculatorStats` by calculator
    name, keyed by cycle (``"fast"``, ``"slow"``)."""
    last_event_ms: Callable[[], dict[str, int | None]] = lambda: {}
    """Each owned symbol's latest exchange event time (UTC ms; ``None`` before its
    first event): what a report's ``data_age_ms`` is measured from."""
