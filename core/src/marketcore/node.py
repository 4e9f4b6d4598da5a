"""Public, read-only facts about a running node: what lifecycle hooks receive."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs

from marketcore.profile import Profile

__all__ = ["CycleStats", "NodeInfo", "NodeStats"]


@attrs.define
class CycleStats:
    """Counters of one cycle (fast or slow) on one node."""

    runs: int = 0
    skipped_ticks: int = 0
    """Ticks not run because the previous cycle overran its period."""
    last_ms: float = 0.0
    max_ms: float = 0.0
    recent_ms: deque[float] = attrs.field(factory=lambda: deque(maxlen=1024))

    def record(self, elapsed_ms: float) -> None:
        self.runs += 1
        self.last_ms = elapsed_ms
        self.max_ms = max(self.max_ms, elapsed_ms)
        self.recent_ms.append(elapsed_ms)

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
    component_restarts: dict[str, int] = attrs.field(factory=dict)


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
