"""Per-symbol state: the book, recent trades, level-size history, last ticker.

One :class:`SymbolState` exists for each symbol this node owns. The venue's
events are applied to it as they arrive; calculators read it once per cycle.
Every buffer in it is bounded, so a flood cannot grow memory without limit.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from marketcore.book import Book
from marketcore.components import Needs
from marketcore.events import (
    BookDelta,
    BookSnapshot,
    Event,
    Instrument,
    Side,
    Ticker,
    Trade,
    VenueState,
    VenueStatus,
)

__all__ = ["LevelHistory", "RollingMedian", "SymbolState", "TradeRing", "TradeWindow"]


@attrs.frozen(slots=True)
class TradeWindow:
    """Trades of one window as parallel numpy arrays, oldest first.

    The arrays are read-only views into the ring; copy them to keep them past
    the current cycle.
    """

    ts_ms: np.ndarray
    """Exchange trade time, int64 ms."""
    price: np.ndarray
    qty: np.ndarray
    sign: np.ndarray
    """``+1`` when the aggressor bought, ``-1`` when it sold (int8)."""

    def __len__(self) -> int:
        return len(self.ts_ms)


class TradeRing:
    """Recent trades in columnar arrays, evicted by age and capped in count.

    Appends go to the end of preallocated arrays; when they fill up, trades
    older than ``window_ms`` are dropped and the live part moves to the front,
    growing the arrays (doubling, up to ``max_trades``) only when the window
    really holds that many. Past ``max_trades`` the oldest trades are dropped
    and counted in ``overflowed``. Window queries are contiguous slices, found
    by binary search on time: no copy, no Python loop.
    """

    __slots__ = ("_end", "_price", "_qty", "_sign", "_start", "_ts", "max_trades", "overflowed",
                 "window_ms")

    def __init__(self, window_ms: int, *, max_trades: int = 65_536, initial: int = 256) -> None:
        self.window_ms = window_ms
        self.max_trades = max_trades
        self.overflowed = 0
        capacity = max(1, min(initial, max_trades))
        self._ts = np.zeros(capacity, dtype=np.int64)
        self._price = np.zeros(capacity, dtype=np.float64)
        self._qty = np.zeros(capacity, dtype=np.float64)
        self._sign = np.zeros(capacity, dtype=np.int8)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def capacity(self) -> int:
        return len(self._ts)

    def append(self, ts_ms: int, price: float, qty: float, sign: int) -> None:
        if self._end == len(self._ts):
            self._make_room(ts_ms)
        i = self._end
        self._ts[i] = ts_ms
        self._price[i] = price
        self._qty[i] = qty
        self._sign[i] = sign
        self._end = i + 1

    def _make_room(self, now_ms: int) -> None:
        """Drop expired trades, then compact to the front, growing if still crowded."""
        live = self._ts[self._start : self._end]
        start = self._start + int(np.searchsorted(live, now_ms - self.window_ms, side="left"))
        count = self._end - start
        capacity = len(self._ts)
        if count >= capacity // 2 and capacity < self.max_trades:
            capacity = min(capacity * 2, self.max_trades)
        if count >= capacity:  # at the cap: drop the oldest quarter, counted
            dropped = count - capacity * 3 // 4
            self.overflowed += dropped
            start += dropped
            count -= dropped
        for name in ("_ts", "_price", "_qty", "_sign"):
            old = getattr(self, name)
            new = old if capacity == len(old) else np.zeros(capacity, dtype=old.dtype)
            new[:count] = old[start : self._end]
            setattr(self, name, new)
        self._start, self._end = 0, count

    def window(self, since_ms: int) -> TradeWindow:
        """Trades with ``ts_ms >= since_ms``."""
        ts = self._ts[self._start : self._end]
        i = self._start + int(np.searchsorted(ts, since_ms, side="left"))
        j = self._end
        return TradeWindow(self._ts[i:j], self._price[i:j], self._qty[i:j], self._sign[i:j])

    def last(self) -> tuple[int, float, float, int] | None:
        """The latest trade as ``(ts_ms, price, qty, sign)``."""
        if self._end == self._start:
            return None
        i = self._end - 1
        return int(self._ts[i]), float(self._price[i]), float(self._qty[i]), int(self._sign[i])


class LevelHistory:
    """A ring of observed level sizes, for percentiles (walls, vacuums).

    Filled once per fast cycle from the top of the book; holds the last
    ``capacity`` samples.
    """

    __slots__ = ("_filled", "_next", "_values")

    def __init__(self, capacity: int) -> None:
        self._values = np.zeros(max(1, capacity), dtype=np.float64)
        self._next = 0
        self._filled = 0

    def __len__(self) -> int:
        return self._filled

    def record(self, sizes: np.ndarray | list[float]) -> None:
        values = np.asarray(sizes, dtype=np.float64)
        capacity = len(self._values)
        if len(values) >= capacity:
            self._values[:] = values[-capacity:]
            self._next, self._filled = 0, capacity
            return
        end = self._next + len(values)
        if end <= capacity:
            self._values[self._next : end] = values
        else:
            split = capacity - self._next
            self._values[self._next :] = values[:split]
            self._values[: end - capacity] = values[split:]
        self._next = end % capacity
        self._filled = min(capacity, self._filled + len(values))

    def samples(self) -> np.ndarray:
        """The recorded samples (a copy, in no particular order)."""
        return self._values[: self._filled].copy()

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0–100) of the samples, ``None`` when empty.

        Linear interpolation between the closest ranks, as ``numpy.percentile``'s
        default, but with a partial sort (``np.partition``): several times faster on
        the thousands of samples walls and vacuums read every slow cycle.
        """
        n = self._filled
        if n == 0:
            return None
        rank = min(max(q, 0.0), 100.0) / 100.0 * (n - 1)
        low = int(rank)
        high = min(low + 1, n - 1)
        part = np.partition(self._values[:n], (low, high))
        return float(part[low] + (part[high] - part[low]) * (rank - low))


_SIGN = {Side.BUY: 1, Side.SELL: -1}


class SymbolState:
    """Everything marketcore knows about one owned symbol.

    Attributes a calculator reads:

    * ``book`` — the L2 :class:`marketcore.book.Book`;
    * ``trades`` — a :class:`TradeRing` kept for the longest trade window the
      profile's calculators declared;
    * ``level_history`` — a :class:`LevelHistory` (or ``None`` if no calculator
      asked for one);
    * ``ticker`` — the last :class:`marketcore.events.Ticker`, or ``None``;
    * ``tick_size`` / ``lot_size`` — the instrument's grid from the venue's
      :class:`marketcore.events.Instrument`, or ``None`` while unknown;
    * ``last_event_ms`` — the latest exchange time of any applied event;
    * ``last_recv_ns`` — local receive time of the latest event;
    * ``last_update_id`` — the venue sequence id of the last applied book event;
    * ``venue_state`` / ``venue_reason`` — the feed state the venue last reported;
    * ``counts`` — events applied, by kind, and resyncs.
    """

    __slots__ = ("_apply", "_scratch", "book", "counts", "last_event_ms", "last_recv_ns",
                 "last_update_id", "level_history", "lot_size", "symbol", "tick_size", "ticker",
                 "trades", "venue", "venue_reason", "venue_state")

    def __init__(self, symbol: str, venue: str, needs: Needs = Needs(), *,
                 book: Book | None = None, max_trades: int = 65_536) -> None:
        self.symbol = symbol
        self.venue = venue
        self.book = book if book is not None else Book()
        self.trades = TradeRing(needs.trade_window_ms, max_trades=max_trades)
        self.level_history = LevelHistory(needs.level_history) if needs.level_history else None
        self.ticker: Ticker | None = None
        self.tick_size: float | None = None
        self.lot_size: float | None = None
        self.last_event_ms: int | None = None
        self.last_recv_ns: int | None = None
        self.last_update_id: int | None = None
        self.venue_state = VenueState.DOWN
        self.venue_reason = "no data yet"
        self.counts = {"snapshots": 0, "deltas": 0, "trades": 0, "tickers": 0, "resyncs": 0}
        self._scratch: dict[str, dict[str, Any]] = {}
        self._apply: dict[type, Callable[[Any], None]] = {
            BookDelta: self._apply_delta,
            Trade: self._apply_trade,
            BookSnapshot: self._apply_snapshot,
            Ticker: self._apply_ticker,
            VenueStatus: self._apply_status,
            Instrument: self._apply_instrument,
        }

    def apply(self, event: Event) -> None:
        """Apply one event of this symbol. The venue has already sequenced it."""
        self._apply[type(event)](event)
        if event.recv_ns:
            self.last_recv_ns = event.recv_ns

    def scratch(self, owner: str) -> dict[str, Any]:
        """A dict private to ``owner`` (a calculator's name), dropped with the symbol."""
        found = self._scratch.get(owner)
        if found is None:
            found = self._scratch[owner] = {}
        return found

    def _seen(self, event_ms: int | None) -> None:
        if event_ms is not None and (self.last_event_ms is None or event_ms > self.last_event_ms):
            self.last_event_ms = event_ms

    def _apply_snapshot(self, event: BookSnapshot) -> None:
        self.book.load_snapshot(event.bids, event.asks)
        self.last_update_id = event.last_update_id
        self._seen(event.event_ms)
        self.venue_state, self.venue_reason = VenueState.CONNECTED, ""
        self.counts["snapshots"] += 1

    def _apply_delta(self, event: BookDelta) -> None:
        self.book.apply(event.bids, event.asks)
        self.last_update_id = event.last_update_id
        self._seen(event.event_ms)
        self.counts["deltas"] += 1

    def _apply_trade(self, event: Trade) -> None:
        self.trades.append(event.event_ms, event.price, event.qty, _SIGN[event.side])
        self._seen(event.event_ms)
        self.counts["trades"] += 1

    def _apply_ticker(self, event: Ticker) -> None:
        self.ticker = event
        self._seen(event.event_ms)
        self.counts["tickers"] += 1

    def _apply_status(self, event: VenueStatus) -> None:
        if event.state is VenueState.RESYNCING and self.venue_state is not VenueState.RESYNCING:
            self.counts["resyncs"] += 1
        self.venue_state, self.venue_reason = event.state, event.reason

    def _apply_instrument(self, event: Instrument) -> None:
        self.tick_size = event.tick_size
        self.lot_size = event.lot_size or None

    def sample_levels(self, depth: int = 20) -> None:
        """Record the sizes of the top ``depth`` levels of each side in the history."""
        if self.level_history is None:
            return
        sizes = [qty for _, qty in self.book.top("bid", depth)]
        sizes.extend(qty for _, qty in self.book.top("ask", depth))
        if sizes:
            self.level_history.record(sizes)


class RollingMedian:
    """The median of the last ``window`` values, kept in order as they come and go.

    For a calculator that compares a value with its own recent history every cycle
    (``health`` does with the spread): ``statistics.median`` of the window sorts it
    each time (about 40 µs for 240 values); this keeps a sorted copy beside the arrival
    order instead, so a step is two bisections and a list shift. The median is computed exactly as
    ``statistics.median`` does it (the mean of the two middle values for an even count).
    """

    __slots__ = ("_arrived", "_sorted")

    def __init__(self, window: int) -> None:
        self._arrived: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._arrived)

    def append(self, value: float) -> None:
        arrived = self._arrived
        if len(arrived) == arrived.maxlen:
            del self._sorted[bisect.bisect_left(self._sorted, arrived[0])]
        arrived.append(value)
        bisect.insort(self._sorted, value)

    def median(self) -> float:
        ordered = self._sorted
        n = len(ordered)
        if n == 0:
            raise ValueError("no values")
        half = n // 2
        return ordered[half] if n % 2 else (ordered[half - 1] + ordered[half]) / 2
