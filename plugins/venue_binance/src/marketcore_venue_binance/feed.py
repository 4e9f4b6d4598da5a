"""Decoded Binance events of the subscribed symbols → marketcore events, per symbol.

Live and replay share this class: the live venue feeds it frames from its connections
and snapshots from the REST scheduler; the replay feeds it the lines of a recording.
So a recording passes through exactly the sequence checks a live feed does.

Per symbol it keeps a :class:`~marketcore_venue_binance.sync.BookSync`, the last trade
id and ticker time (to drop the duplicates two overlapping connections deliver), and,
with ``verify_books``, a :class:`marketcore.book.Book` of its own: a frame that would
cross the book is not emitted and the symbol is resynced, and ``bookTicker`` frames are
compared with it whenever both describe the same update id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from marketcore.book import Book
from marketcore.components import Emit
from marketcore.events import (
    BookDelta,
    BookSnapshot,
    Instrument,
    Side,
    Ticker,
    Trade,
    VenueState,
    VenueStatus,
)

from marketcore_venue_binance.decode import (
    AggTrade,
    BookTicker,
    DepthSnapshot,
    DepthUpdate,
    FrameDecoder,
    MalformedFrame,
    TradeEvent,
    TwentyFourHourTicker,
    grid_of,
)
from marketcore_venue_binance.options import BinanceOptions
from marketcore_venue_binance.stats import BadInputLog, VenueStats
from marketcore_venue_binance.sync import APPLY, GAP, STALE, SYNCED, BookSync

__all__ = ["Feed", "SymbolFeed"]

log = logging.getLogger("marketcore.venue.binance")

_GRID_SAMPLE = 200
"""Levels per side a tick / lot size is inferred from when exchangeInfo is unavailable."""
_SYNC_COUNTERS = ("gaps", "resyncs", "duplicates", "stale_snapshots", "buffer_overflows",
                  "refreshes")


class SymbolFeed:
    """What the feed keeps for one subscribed symbol."""

    __slots__ = ("book", "down", "grid", "last_ticker_ms", "last_trade_id",
                 "pending_book_ticker", "symbol", "sync")

    def __init__(self, symbol: str, options: BinanceOptions) -> None:
        self.symbol = symbol
        self.sync = BookSync(symbol, futures=options.futures,
                             max_buffer=options.max_buffered_events)
        self.book = Book(track_bands_bps=()) if options.verify_books else None
        self.last_trade_id: int | None = None
        self.last_ticker_ms = 0
        self.pending_book_ticker: BookTicker | None = None
        self.grid: tuple[float, float] | None = None
        """The ``(tick, lot)`` last announced in an Instrument event."""
        self.down = False
        """A DOWN status was emitted; the next applied event announces CONNECTED."""


class Feed:
    """Turns one venue's decoded events into marketcore events through ``emit``.

    ``request_snapshot(symbol)`` is called when a symbol needs a REST snapshot and
    returns whether a fetch was scheduled (the replay returns False: its snapshots
    come from the file).
    """

    def __init__(self, options: BinanceOptions, emit: Emit, stats: VenueStats, *,
                 request_snapshot: Callable[[str], bool] | None = None,
                 bad_input: BadInputLog | None = None) -> None:
        self.options = options
        self.emit = emit
        self.stats = stats
        self.decoder = FrameDecoder(max_frame_bytes=options.max_frame_bytes,
                                    check_precision=options.check_precision)
        self.request_snapshot = request_snapshot or (lambda _symbol: False)
        self.bad_input = bad_input or BadInputLog(log, options.malformed_log_interval_s)
        self.symbols: dict[str, SymbolFeed] = {}
        self.grids: dict[str, tuple[float, float]] = {}
        """Tick and lot sizes from ``exchangeInfo``, by symbol."""
        self._retired = dict.fromkeys(_SYNC_COUNTERS, 0)
        self._futures = options.futures

    # ----------------------------------------------------------------- symbols

    def add(self, symbol: str) -> SymbolFeed:
        found = self.symbols.get(symbol)
        if found is None:
            found = self.symbols[symbol] = SymbolFeed(symbol, self.options)
        return found

    def remove(self, symbol: str) -> None:
        found = self.symbols.pop(symbol, None)
        if found is not None:
            for name in _SYNC_COUNTERS:
                self._retired[name] += getattr(found.sync, name)

    def refresh_stats(self) -> VenueStats:
        """Fold the per-symbol sequencing counters into :attr:`stats` and return it."""
        for name in _SYNC_COUNTERS:
            total = self._retired[name] + sum(getattr(f.sync, name) for f in self.symbols.values())
            setattr(self.stats, name, total)
        return self.stats

    # ----------------------------------------------------------------- input

    def malformed(self, error: MalformedFrame, symbol: str | None = None) -> None:
        self.stats.count_malformed(error.kind)
        self.bad_input.report(error.kind, error.detail, symbol)

    def decode(self, raw: bytes) -> tuple[str | None, str | None, Any] | None:
        """Decode one frame; a malformed one is counted, logged (rate-limited) and
        ``None`` is returned."""
        self.stats.frames += 1
        self.stats.frame_bytes += len(raw)
        try:
            return self.decoder.frame(raw)
        except MalformedFrame as error:
            self.malformed(error)
            return None

    def dispatch(self, symbol: str, kind: str, event: Any, recv_ns: int) -> None:
        """Apply one decoded stream event of ``symbol``."""
        feed = self.symbols.get(symbol)
        if feed is None:
            self.stats.unowned_frames += 1
            return
        if kind == "depth":
            self._depth(feed, event, recv_ns)
        elif kind == "trade":
            self._trade(feed, event, recv_ns)
        elif kind == "aggTrade":
            self._agg_trade(feed, event, recv_ns)
        elif kind == "ticker":
            self._ticker(feed, event, recv_ns)
        elif kind == "bookTicker":
            self._book_ticker(feed, event)

    def snapshot(self, symbol: str, snapshot: DepthSnapshot, recv_ns: int) -> None:
        """A REST depth snapshot of ``symbol`` (from the scheduler or a recording)."""
        feed = self.symbols.get(symbol)
        if feed is None:
            return
        if snapshot.bids and snapshot.asks and snapshot.bids[0][0] >= snapshot.asks[0][0]:
            feed.sync.requested = False
            self.malformed(MalformedFrame("crossed", f"snapshot {snapshot.last_update_id} "
                                          "is crossed"), symbol)
            self._want_snapshot(feed)
            return
        outcome = feed.sync.on_snapshot(snapshot)
        if outcome == SYNCED:
            self._apply_ready(feed, recv_ns)
        elif outcome == STALE:
            self._want_snapshot(feed)

    def want_snapshot(self, symbol: str) -> None:
        """Ask for a snapshot if ``symbol`` needs one and none is on its way."""
        feed = self.symbols.get(symbol)
        if feed is not None:
            self._want_snapshot(feed)

    def snapshot_failed(self, symbol: str) -> None:
        """The scheduler gave up on a fetch (symbol removed meanwhile, or shutdown)."""
        feed = self.symbols.get(symbol)
        if feed is not None:
            feed.sync.requested = False

    def connection_lost(self, symbols: Iterable[str], reason: str, recv_ns: int) -> None:
        """The connection carrying ``symbols`` is gone: say so for each of them.

        Their books stay as they are: if the new connection's first event continues the
        chain nothing was lost; otherwise the gap rule resyncs the symbol.
        """
        for symbol in symbols:
            feed = self.symbols.get(symbol)
            if feed is None or feed.down:
                continue
            feed.down = True
            self._emit(VenueStatus(VenueState.DOWN, symbol, reason, recv_ns))

    def begin_refresh(self, symbol: str) -> bool:
        """Start a periodic re-snapshot of a synced symbol."""
        feed = self.symbols.get(symbol)
        if feed is None or not feed.sync.begin_refresh():
            return False
        if not self.request_snapshot(symbol):
            feed.sync.requested = False
            return False
        return True

    def set_grids(self, grids: dict[str, tuple[float, float]], recv_ns: int) -> None:
        """Tick and lot sizes from ``exchangeInfo``; re-announces symbols whose grid differs
        from the one inferred earlier."""
        self.grids.update(grids)
        for symbol, feed in self.symbols.items():
            grid = grids.get(symbol)
            if feed.grid is not None and grid is not None and grid != feed.grid:
                feed.grid = grid
                self._emit(Instrument(symbol, grid[0], grid[1], recv_ns))

    def awaiting(self) -> list[str]:
        """Symbols waiting for a snapshot, in subscription order."""
        return [s for s, f in self.symbols.items() if not f.sync.live]

    # ----------------------------------------------------------------- per kind

    def _emit(self, event: Any) -> None:
        self.stats.events += 1
        self.emit(event)

    def _want_snapshot(self, feed: SymbolFeed) -> None:
        sync = feed.sync
        if sync.wants_snapshot and self.request_snapshot(feed.symbol):
            sync.requested = True
            self.stats.snapshots_requested += 1

    def _depth(self, feed: SymbolFeed, event: DepthUpdate, recv_ns: int) -> None:
        if self._futures and event.prev_update_id is None:
            self.malformed(MalformedFrame("missing_fields", "futures depth event without pu"),
                           feed.symbol)
            return
        sync = feed.sync
        previous = sync.last_update_id
        outcome = sync.on_diff(event)
        if outcome == APPLY:
            book = feed.book
            if book is not None:
                book.apply(event.bids, event.asks)
                if book.is_crossed():
                    self._crossed(feed, event.last_update_id, recv_ns)
                    return
            if feed.down:
                feed.down = False
                self._emit(VenueStatus(VenueState.CONNECTED, feed.symbol, "", recv_ns))
            self._emit(BookDelta(feed.symbol, event.bids, event.asks, event.first_update_id,
                                 event.last_update_id, event.event_ms, recv_ns,
                                 event.prev_update_id))
            pending = feed.pending_book_ticker
            if pending is not None and event.last_update_id >= pending.update_id:
                feed.pending_book_ticker = None
                if event.last_update_id == pending.update_id:
                    self._compare_top(feed, pending)
            return
        if outcome == GAP:
            reason = (f"sequence gap: expected pu={previous}, got pu={event.prev_update_id}"
                      if self._futures else f"sequence gap: expected U={previous + 1}, "
                      f"got U={event.first_update_id}")
            feed.down = False
            self._emit(VenueStatus(VenueState.RESYNCING, feed.symbol, reason, recv_ns))
        elif outcome == SYNCED:
            self._apply_ready(feed, recv_ns)
            return
        self._want_snapshot(feed)

    def _crossed(self, feed: SymbolFeed, update_id: int, recv_ns: int) -> None:
        self.malformed(MalformedFrame("crossed", f"the book is crossed after update {update_id}"),
                       feed.symbol)
        feed.sync.invalidate()
        feed.down = False
        self._emit(VenueStatus(VenueState.RESYNCING, feed.symbol,
                               "crossed book after an update", recv_ns))

    def _apply_ready(self, feed: SymbolFeed, recv_ns: int) -> None:
        snapshot, diffs = feed.sync.take_ready()
        book = feed.book
        if book is not None:
            book.load_snapshot(snapshot.bids, snapshot.asks)
            for diff in diffs:
                book.apply(diff.bids, diff.asks)
            if book.is_crossed():
                last = diffs[-1].last_update_id if diffs else snapshot.last_update_id
                self._crossed(feed, last, recv_ns)
                self._want_snapshot(feed)
                return
        symbol = feed.symbol
        if feed.grid is None:
            grid = self.grids.get(symbol)
            if grid is None:  # inferred from the top of the book (once per symbol)
                sample = snapshot.bids[:_GRID_SAMPLE] + snapshot.asks[:_GRID_SAMPLE]
                grid = (grid_of(sample, 0), grid_of(sample, 1))
            feed.grid = grid
            self._emit(Instrument(symbol, grid[0], grid[1], recv_ns))
        self._emit(BookSnapshot(symbol, snapshot.bids, snapshot.asks, snapshot.last_update_id,
                                snapshot.event_ms, recv_ns))
        for diff in diffs:
            self._emit(BookDelta(symbol, diff.bids, diff.asks, diff.first_update_id,
                                 diff.last_update_id, diff.event_ms, recv_ns,
                                 diff.prev_update_id))
        feed.down = False
        self.stats.snapshots_applied += 1

    def _trade(self, feed: SymbolFeed, event: TradeEvent, recv_ns: int) -> None:
        if not self._new_trade_id(feed, event.trade_id):
            return
        if event.order_type != "MARKET":
            return  # futures insurance-fund / ADL fills are not order-book trades
        self._emit(Trade(feed.symbol, event.price, event.qty,
                         Side.SELL if event.buyer_is_maker else Side.BUY,
                         event.trade_id, event.trade_ms, recv_ns))

    def _agg_trade(self, feed: SymbolFeed, event: AggTrade, recv_ns: int) -> None:
        if not self._new_trade_id(feed, event.agg_id):
            return
        self._emit(Trade(feed.symbol, event.price, event.qty,
                         Side.SELL if event.buyer_is_maker else Side.BUY,
                         event.agg_id, event.trade_ms, recv_ns))

    def _new_trade_id(self, feed: SymbolFeed, trade_id: int) -> bool:
        last = feed.last_trade_id
        if last is not None:
            if trade_id <= last:
                self.stats.duplicates += 1
                return False
            if trade_id > last + 1:
                self.stats.trade_gaps += trade_id - last - 1
        feed.last_trade_id = trade_id
        return True

    def _ticker(self, feed: SymbolFeed, event: TwentyFourHourTicker, recv_ns: int) -> None:
        if event.event_ms <= feed.last_ticker_ms:
            return  # the same second again, from an overlapping connection
        feed.last_ticker_ms = event.event_ms
        self._emit(Ticker(feed.symbol, event.last, event.change_pct, event.high, event.low,
                          event.volume, event.quote_volume, event.open, event.trade_count,
                          event.event_ms, recv_ns))

    def _book_ticker(self, feed: SymbolFeed, event: BookTicker) -> None:
        """Cross-check only: compare with the book when both are at the same update id."""
        if feed.book is None or not feed.sync.live:
            return
        position = feed.sync.last_update_id
        if event.update_id == position:
            self._compare_top(feed, event)
        elif event.update_id > position:
            feed.pending_book_ticker = event

    def _compare_top(self, feed: SymbolFeed, event: BookTicker) -> None:
        book = feed.book
        self.stats.book_ticker_checks += 1
        bid, ask = book.best_bid(), book.best_ask()
        if bid != (event.bid, event.bid_qty) or ask != (event.ask, event.ask_qty):
            self.stats.book_ticker_mismatches += 1
            self.bad_input.report(
                "book_ticker_mismatch",
                f"book {bid}/{ask} vs bookTicker {event.bid, event.bid_qty}/"
                f"{event.ask, event.ask_qty} at update {event.update_id}", feed.symbol)

