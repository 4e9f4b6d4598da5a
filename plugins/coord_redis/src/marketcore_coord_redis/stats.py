"""Counters of the coordinator and the sink, and the reconnect backoff they share.

The counters are plain attributes (``coordinator.stats.lease_conflicts``), read
by tests and by whatever exports metrics; the README maps them to the
``marketcore_*`` Prometheus names.
"""

from __future__ import annotations

import random

import attrs

__all__ = ["Backoff", "CoordinatorStats", "SinkStats"]


@attrs.define
class CoordinatorStats:
    members: int = 0
    """Live members at the last look-up (this node included)."""
    symbols_assigned: int = 0
    """Symbols the assignment gives this node."""
    symbols_held: int = 0
    """Symbols whose lease this node holds."""
    acquisitions: int = 0
    """Leases acquired (a new token for a symbol)."""
    losses: int = 0
    """Leases found held by another node at renewal."""
    releases: int = 0
    """Leases given back (reassignment or shutdown)."""
    rebalances: int = 0
    """Times the assignment changed this node's share."""
    lease_conflicts: int = 0
    """Writes a fencing sink refused (``refused`` calls)."""
    read_backs: int = 0
    """Acquires whose reply was lost and whose outcome was read back."""
    notices: int = 0
    """Peers' join and leave notices received on the fleet channel."""
    redis_errors: int = 0
    """Redis commands that failed (timeouts, refused connections)."""
    outages: int = 0
    """Times Redis became unreachable."""
    epoch: int = 0
    """The highest token epoch seen."""


@attrs.define
class SinkStats:
    batches: int = 0
    """Batches written (one round trip each)."""
    written: int = 0
    """Reports accepted by the fencing script."""
    refused: int = 0
    """Refused because another node holds the lease (``lease_conflicts``)."""
    unproven: int = 0
    """Not written: no lease in Redis (expired, or lost in a restart)."""
    stale: int = 0
    """Not written: built with a token older than the writer's current one."""
    errors: int = 0
    """Reports not written because of an error (no writer, a failed call, Redis down)."""
    skipped: int = 0
    """Batches not sent because Redis was unreachable and the reconnect backoff ran."""
    last_batch_ms: float = 0.0
    """Round trip of the last batch written (ms)."""
    reads: int = 0
    """``latest`` and ``index`` calls answered (the read API and ``marketcore report``)."""
    read_errors: int = 0
    """``latest`` and ``index`` calls that failed because Redis was unreachable."""
    read_skipped: int = 0
    """Report keys ``index`` skipped because their value was not a JSON object."""


@attrs.define
class Backoff:
    """Jittered exponential backoff that resets after a success."""

    first_s: float = 0.05
    cap_s: float = 2.0
    _next: float = attrs.field(default=0.0, init=False)

    def delay(self) -> float:
        """The next wait: doubles each time up to ``cap_s``, ±50 % jitter."""
        self._next = min(self.cap_s, self._next * 2 if self._next else self.first_s)
        return self._next * random.uniform(0.5, 1.5)

    def reset(self) -> None:
        self._next = 0.0

    @property
    def failing(self) -> bool:
        return self._next > 0
