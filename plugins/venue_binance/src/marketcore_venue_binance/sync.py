"""Binance's local-book procedure for one symbol, as a pure state machine (no I/O).

The procedure (Binance, "How to manage a local order book correctly"):

1. open the diff stream and **buffer** its events (here: bounded, oldest dropped first);
2. fetch a REST snapshot (``lastUpdateId`` = L);
3. if the snapshot is older than the first buffered event, fetch again;
4. drop buffered events with ``u <= L``;
5. the first applied event must *bridge* the snapshot: spot ``U <= L + 1 <= u``;
   USDⓈ-M futures ``pu <= L < u`` (futures ids are shared by all symbols, so a
   symbol's own events may skip over L; ``pu`` is the link);
6. afterwards **every** event must continue the chain: spot ``U == previous u + 1``,
   futures ``pu == previous u``. Anything else is a gap: the book is wrong, buffer
   again from this event and rebuild from a new snapshot.

An event entirely at or before the current position (``u <= previous u``) is a
duplicate — it happens when two connections overlap during a rotation — and is dropped
without harm. In real recordings the bridging event often arrives *before* the snapshot
response, which is why buffering is not optional.

:class:`BookSync` never touches a book: it tells its caller what to do with each event
(apply it, or wait) and hands out the snapshot plus the buffered events to apply once a
snapshot bridges. The venue turns those into marketcore events; the replay uses the same
machine, so a recording passes exactly the checks a live feed does.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

__all__ = [
    "APPLY",
    "BUFFERED",
    "DUPLICATE",
    "GAP",
    "HELD",
    "IGNORED",
    "STALE",
    "SYNCED",
    "BookSync",
    "Diff",
    "Snapshot",
]

# Outcomes of BookSync.on_diff / on_snapshot
APPLY = 0
"""Live and in sequence: apply this event."""
BUFFERED = 1
"""Waiting for a snapshot: the event was buffered."""
DUPLICATE = 2
"""Already covered (``u`` at or before the current position): drop it."""
GAP = 3
"""The chain broke: the symbol is resyncing; the event opened a new buffer."""
SYNCED = 4
"""A snapshot bridged: :meth:`BookSync.take_ready` gives the snapshot and the events."""
HELD = 5
"""The snapshot is newer than every buffered event: kept until the bridging event comes."""
STALE = 6
"""The snapshot is older than the buffer: it was discarded, another one is wanted."""
IGNORED = 7
"""Not waiting for a snapshot (or a periodic one that could not be bridged): dropped."""


class Diff(Protocol):
    """What the machine reads from a diff event."""

    @property
    def first_update_id(self) -> int: ...
    @property
    def last_update_id(self) -> int: ...
    @property
    def prev_update_id(self) -> int | None: ...


class Snapshot(Protocol):
    @property
    def last_update_id(self) -> int: ...


class BookSync:
    """Sequencing state of one symbol's book.

    ``futures`` selects the USDⓈ-M rule (``pu``). ``max_buffer`` bounds the events kept
    while waiting for a snapshot; when it overflows the oldest go first, which at worst
    makes the next snapshot look stale and fetched again — memory never grows.
    """

    __slots__ = ("_buffer", "_pending", "_ready", "_recent", "buffer_overflows", "duplicates",
                 "futures", "gaps", "last_update_id", "live", "max_buffer", "refreshes",
                 "requested", "resyncs", "stale_snapshots", "symbol", "synced_once")

    def __init__(self, symbol: str, *, futures: bool = False, max_buffer: int = 300) -> None:
        self.symbol = symbol
        self.futures = futures
        self.max_buffer = max_buffer
        self.live = False
        """In sync: events are applied as they come."""
        self.last_update_id: int | None = None
        """``u`` of the last applied event (or L of the snapshot) while live."""
        self.requested = False
        """A snapshot fetch is under way (set by the caller, cleared by on_snapshot)."""
        self.synced_once = False
        self._buffer: deque[Diff] = deque(maxlen=max_buffer)
        self._pending: Snapshot | None = None
        self._ready: tuple[Snapshot, list[Diff]] | None = None
        self._recent: deque[Diff] | None = None
        self.gaps = 0
        self.resyncs = 0
        self.duplicates = 0
        self.stale_snapshots = 0
        self.buffer_overflows = 0
        self.refreshes = 0

    # ----------------------------------------------------------------- queries

    @property
    def wants_snapshot(self) -> bool:
        """Events are buffered, and no snapshot is held or on its way."""
        return (not self.live and bool(self._buffer) and self._pending is None
                and not self.requested)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def accepts(self, snapshot_id: int) -> bool:
        """Whether a snapshot at ``snapshot_id`` would bridge the buffered events now
        (used to tell which symbol a recorded snapshot body belongs to)."""
        if self.live:
            return False
        for diff in self._buffer:
            if diff.last_update_id > snapshot_id:
                return self._bridges(diff, snapshot_id)
        return False

    def take_ready(self) -> tuple[Snapshot, list[Diff]]:
        """After SYNCED: the snapshot and the events to apply on it, in order."""
        ready = self._ready
        if ready is None:
            raise RuntimeError("take_ready() without a SYNCED outcome")
        self._ready = None
        return ready

    # ----------------------------------------------------------------- inputs

    def on_diff(self, diff: Diff) -> int:
        """One diff event of this symbol, in arrival order; returns an outcome."""
        if self.live:
            last = self.last_update_id
            if (diff.prev_update_id == last if self.futures
                    else diff.first_update_id == last + 1):
                self.last_update_id = diff.last_update_id
                if self._recent is not None:
                    self._recent.append(diff)
                return APPLY
            if diff.last_update_id <= last:
                self.duplicates += 1
                return DUPLICATE
            self.gaps += 1
            self.invalidate()
            self._buffer.append(diff)
            return GAP
        pending = self._pending
        if pending is not None:
            snapshot_id = pending.last_update_id
            if diff.last_update_id <= snapshot_id:
                self.duplicates += 1
                return DUPLICATE
            if self._bridges(diff, snapshot_id):
                self._pending = None
                return self._go_live(pending, [diff])
            self._pending = None
            self.stale_snapshots += 1
        buffer = self._buffer
        if buffer:
            tail = buffer[-1]
            if diff.last_update_id <= tail.last_update_id:
                self.duplicates += 1
                return DUPLICATE
            if not self._continues(diff, tail.last_update_id):
                self.gaps += 1
                buffer.clear()
            elif len(buffer) == self.max_buffer:
                self.buffer_overflows += 1
        buffer.append(diff)
        return BUFFERED

    def on_snapshot(self, snapshot: Snapshot) -> int:
        """A depth snapshot for this symbol arrived; returns an outcome."""
        self.requested = False
        snapshot_id = snapshot.last_update_id
        if self.live:
            return self._refresh(snapshot)
        buffer = self._buffer
        while buffer and buffer[0].last_update_id <= snapshot_id:
            buffer.popleft()
        if not buffer:
            self._pending = snapshot
            return HELD
        if not self._bridges(buffer[0], snapshot_id):
            self.stale_snapshots += 1
            return STALE
        ready = list(buffer)
        buffer.clear()
        return self._go_live(snapshot, ready)

    def invalidate(self) -> None:
        """The book can no longer be trusted (gap, crossed book, lost connection)."""
        if self.live:
            self.resyncs += 1
        self.live = False
        self.last_update_id = None
        self._buffer.clear()
        self._pending = None
        self._recent = None
        self._ready = None

    def reset(self) -> None:
        """Forget everything, as for a new subscription (counters are kept)."""
        self.invalidate()
        self.requested = False

    def begin_refresh(self) -> bool:
        """Start a periodic re-snapshot while live: applied events are remembered (bounded)
        so the new snapshot can be bridged and replayed up to the current position.
        Returns False when not live or already refreshing."""
        if not self.live or self._recent is not None or self.requested:
            return False
        self._recent = deque(maxlen=self.max_buffer)
        self.requested = True
        return True

    # ----------------------------------------------------------------- internals

    def _continues(self, diff: Diff, previous_u: int) -> bool:
        if self.futures:
            return diff.prev_update_id == previous_u
        return diff.first_update_id == previous_u + 1

    def _bridges(self, diff: Diff, snapshot_id: int) -> bool:
        if self.futures:
            pu = diff.prev_update_id
            return pu is not None and pu <= snapshot_id < diff.last_update_id
        return diff.first_update_id <= snapshot_id + 1 <= diff.last_update_id

    def _go_live(self, snapshot: Snapshot, ready: list[Diff]) -> int:
        self.live = True
        self.synced_once = True
        self.last_update_id = ready[-1].last_update_id if ready else snapshot.last_update_id
        self._ready = (snapshot, ready)
        return SYNCED

    def _refresh(self, snapshot: Snapshot) -> int:
        recent = self._recent
        self._recent = None
        if recent is None:
            return IGNORED
        snapshot_id = snapshot.last_update_id
        if snapshot_id > self.last_update_id:
            return IGNORED  # ahead of the stream: the next refresh will do
        if snapshot_id == self.last_update_id:
            replay: list[Diff] = []
        else:
            index = next((i for i, d in enumerate(recent) if d.last_update_id > snapshot_id),
                         None)
            if index is None or not self._bridges(recent[index], snapshot_id):
                return IGNORED
            replay = list(recent)[index:]
        self.refreshes += 1
        self._ready = (snapshot, replay)
        return SYNCED
