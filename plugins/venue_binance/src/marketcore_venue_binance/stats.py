"""The venue's counters, and logging of bad input that cannot flood the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs

__all__ = ["BadInputLog", "VenueStats"]


@attrs.define
class VenueStats:
    """Counters of one venue instance (live or replay), readable at any time as
    ``venue.stats``; :meth:`as_dict` flattens them for metrics."""

    frames: int = 0
    """Frames received (live) or read (replay), market data or not."""
    frame_bytes: int = 0
    events: int = 0
    """marketcore events emitted."""
    connects: int = 0
    reconnects: int = 0
    """Connections opened again after one was lost (not counting rotations)."""
    connect_failures: int = 0
    watchdog_timeouts: int = 0
    rotations: int = 0
    """Planned replacements (age or ``serverShutdown``) that overlapped old and new."""
    server_shutdowns: int = 0
    breaker_opens: int = 0
    messages_sent: int = 0
    """Client messages sent (SUBSCRIBE / UNSUBSCRIBE), all through the rate limiter."""
    subscribe_errors: int = 0
    gaps: int = 0
    """Sequence breaks (``U != previous u + 1``, futures ``pu != previous u``)."""
    resyncs: int = 0
    """Times a synced book was declared wrong and rebuilt (gap, crossed, lost connection)."""
    duplicates: int = 0
    """Events at or before the book's position (overlapping connections), dropped."""
    stale_snapshots: int = 0
    """Snapshots older than the buffered stream, fetched again."""
    buffer_overflows: int = 0
    snapshots_requested: int = 0
    snapshots_applied: int = 0
    snapshot_failures: int = 0
    snapshot_weight_used: int = 0
    """REST weight spent (depth snapshots and exchangeInfo)."""
    rate_limited: int = 0
    """HTTP 429 answers (the scheduler waited ``Retry-After``)."""
    banned: int = 0
    """HTTP 418 answers (IP ban; the scheduler waited ``Retry-After``)."""
    snapshots_unattributed: int = 0
    """Recorded snapshot bodies that could not be tied to one symbol (skipped)."""
    refreshes: int = 0
    """Periodic re-snapshots applied."""
    trade_gaps: int = 0
    """Trades missing by id (lost while disconnected)."""
    book_ticker_checks: int = 0
    book_ticker_mismatches: int = 0
    unowned_frames: int = 0
    """Frames of symbols not (or no longer) subscribed."""
    malformed: dict[str, int] = attrs.field(factory=dict)
    """Skipped frames by kind: garbage, missing_fields, bad_type, absurd, precision,
    oversized, crossed, unknown_stream."""

    def count_malformed(self, kind: str) -> None:
        self.malformed[kind] = self.malformed.get(kind, 0) + 1

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def as_dict(self) -> dict[str, int]:
        """Flat ``{name: value}``; malformed kinds appear as ``malformed_<kind>``."""
        flat = {a.name: getattr(self, a.name) for a in attrs.fields(VenueStats)
                if a.name != "malformed"}
        flat["malformed"] = self.malformed_total
        flat.update({f"malformed_{kind}": n for kind, n in sorted(self.malformed.items())})
        return flat


class BadInputLog:
    """Logs bad input once per kind per interval, with how many were not logged."""

    def __init__(self, logger: logging.Logger, interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def report(self, kind: str, detail: str, symbol: str | None = None) -> None:
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval_s:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        self._last[kind] = now
        quiet = self._quiet.pop(kind, 0)
        more = f" (+{quiet} more since the last report)" if quiet else ""
        self.logger.warning("skipped %s input%s%s: %s", kind,
                            f" for {symbol}" if symbol else "", more, detail[:200],
                            extra={"component": "venue.binance", "symbol": symbol,
                                   "kind": kind})
