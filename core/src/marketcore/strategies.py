"""Hypothesis strategies for books, deltas and trades, for plugin authors' property tests.

A calculator must never crash and never publish NaN, whatever the book looks like:
thin, wide, one level, thousands of levels, after any stream of deltas. These
strategies draw such inputs on a realistic price grid (a tick size, prices as the
exchange would send them), so a property test reads like the claim it checks::

    from hypothesis import given
    from marketcore.strategies import symbol_states
    from marketcore.testing import assert_valid_report, run_cycle

    @given(symbol_states())
    def test_any_state_gives_a_valid_report(state):
        report, _ = run_cycle([MyCalculator(Options())], state)
        assert_valid_report(report)

Importing this module needs ``hypothesis`` (a test dependency, not one of
marketcore's): put it in your plugin's ``dev`` dependency group.
"""

from __future__ import annotations

from decimal import Decimal

try:
    from hypothesis import strategies as st
except ImportError as error:  # pragma: no cover - exercised without hypothesis only
    raise ImportError(
        "marketcore.strategies needs hypothesis, which marketcore does not install: "
        "`pip install hypothesis` (or add it to your plugin's dev dependency group)"
    ) from error

from marketcore.book import Book
from marketcore.components import Needs
from marketcore.events import BookDelta, BookSnapshot, Instrument, Level, Side, Trade
from marketcore.state import SymbolState

__all__ = [
    "BookGrid",
    "book_levels",
    "book_streams",
    "books",
    "deltas",
    "grids",
    "snapshots",
    "symbol_states",
    "trades",
]

START_MS = 1_723_161_254_000
"""Default exchange time of the first drawn event (the bundled recording's start)."""


class BookGrid:
    """Where a drawn book lives: its tick size, lot size and mid, in whole ticks.

    Prices are ``ticks × tick`` computed in decimal and converted once, as a
    venue decoding ``"61837.63"`` does, so they are the floats a real feed gives.
    Bids sit strictly below ``mid_ticks`` and asks strictly above it, so a book
    drawn on a grid is never crossed.
    """

    __slots__ = ("lot", "mid_ticks", "tick")

    def __init__(self, tick: str, lot: str, mid_ticks: int) -> None:
        self.tick = Decimal(tick)
        self.lot = Decimal(lot)
        self.mid_ticks = mid_ticks

    def price(self, ticks: int) -> float:
        return float(self.tick * ticks)

    def qty(self, lots: int) -> float:
        return float(self.lot * lots)

    def __repr__(self) -> str:
        return f"BookGrid(tick={self.tick}, lot={self.lot}, mid={self.price(self.mid_ticks)})"


@st.composite
def grids(draw: st.DrawFn, *, min_price: float = 0.01, max_price: float = 100_000.0) -> BookGrid:
    """A tick size, a lot size and a mid price between ``min_price`` and ``max_price``."""
    tick = draw(st.sampled_from(["0.00001", "0.0001", "0.01", "0.1", "0.5", "1"]))
    lot = draw(st.sampled_from(["0.00001", "0.001", "0.1", "1"]))
    low = max(1_000, int(Decimal(str(min_price)) / Decimal(tick)))
    high = max(low, int(Decimal(str(max_price)) / Decimal(tick)))
    return BookGrid(tick, lot, draw(st.integers(low, high)))


def _side_levels(draw: st.DrawFn, grid: BookGrid, sign: int, min_levels: int, max_levels: int,
                 max_lots: int) -> list[Level]:
    count = draw(st.integers(min_levels, max_levels))
    gaps = draw(st.lists(st.integers(1, 5), min_size=count, max_size=count))
    lots = draw(st.lists(st.integers(1, max_lots), min_size=count, max_size=count))
    levels, distance = [], 0
    for gap, size in zip(gaps, lots, strict=True):
        distance += gap
        levels.append((grid.price(grid.mid_ticks + sign * distance), grid.qty(size)))
    return levels


@st.composite
def book_levels(
    draw: st.DrawFn, *, grid: BookGrid | None = None, min_levels: int = 1,
    max_levels: int = 50, max_lots: int = 10_000,
) -> tuple[list[Level], list[Level]]:
    """``(bids, asks)``: each side ``min_levels``–``max_levels`` levels, best first.

    Levels are spaced 1–5 ticks apart with 1–``max_lots`` lots each; the book is
    never crossed. ``min_levels=0`` allows empty (one-sided) books.
    """
    grid = grid or draw(grids())
    bids = _side_levels(draw, grid, -1, min_levels, max_levels, max_lots)
    asks = _side_levels(draw, grid, +1, min_levels, max_levels, max_lots)
    return bids, asks


@st.composite
def books(draw: st.DrawFn, **levels_options: object) -> Book:
    """A :class:`marketcore.book.Book` loaded from :func:`book_levels` (same options)."""
    bids, asks = draw(book_levels(**levels_options))
    book = Book()
    book.load_snapshot(bids, asks)
    return book


@st.composite
def snapshots(draw: st.DrawFn, *, symbol: str = "BTCUSDT", last_update_id: int = 1_000,
              event_ms: int = START_MS, **levels_options: object) -> BookSnapshot:
    """A :class:`BookSnapshot` of :func:`book_levels` (same options)."""
    bids, asks = draw(book_levels(**levels_options))
    return BookSnapshot(symbol, bids, asks, last_update_id, event_ms)


@st.composite
def deltas(
    draw: st.DrawFn, *, grid: BookGrid | None = None, symbol: str = "BTCUSDT",
    first_update_id: int = 1_001, start_ms: int = START_MS, max_batches: int = 30,
    max_changes: int = 10, span_ticks: int = 60, max_lots: int = 10_000,
) -> list[BookDelta]:
    """A venue-sequenced stream of :class:`BookDelta` batches on ``grid``.

    Each batch changes 1–``max_changes`` levels within ``span_ticks`` of the mid:
    a new quantity, or ``0`` to remove the level (about one change in four).
    Bids stay below the mid and asks above it, so the book never crosses.
    Update ids are contiguous from ``first_update_id``, event times increase.
    """
    grid = grid or draw(grids())
    change = st.tuples(st.integers(1, span_ticks),
                       st.one_of(st.just(0), st.integers(1, max_lots), st.integers(1, max_lots),
                                 st.integers(1, max_lots)))
    batch = st.tuples(st.lists(change, max_size=max_changes),
                      st.lists(change, max_size=max_changes), st.integers(1, 500))
    stream, update_id, now_ms = [], first_update_id, start_ms
    for bid_changes, ask_changes, step_ms in draw(st.lists(batch, max_size=max_batches)):
        if not bid_changes and not ask_changes:
            continue
        now_ms += step_ms
        bids = [(grid.price(grid.mid_ticks - d), grid.qty(lots)) for d, lots in bid_changes]
        asks = [(grid.price(grid.mid_ticks + d), grid.qty(lots)) for d, lots in ask_changes]
        last = update_id + len(bids) + len(asks) - 1
        stream.append(BookDelta(symbol, bids, asks, update_id, last, now_ms))
        update_id = last + 1
    return stream


@st.composite
def book_streams(draw: st.DrawFn, *, symbol: str = "BTCUSDT", grid: BookGrid | None = None,
                 max_batches: int = 30, **levels_options: object,
                 ) -> tuple[BookSnapshot, list[BookDelta]]:
    """``(snapshot, deltas)`` on one grid: what a venue emits after subscribing.

    Apply the snapshot, then the deltas in order (``make_state(bids=snapshot.bids,
    asks=snapshot.asks, deltas=deltas)``), and compare with a plain dict model.
    """
    grid = grid or draw(grids())
    snapshot = draw(snapshots(symbol=symbol, grid=grid, **levels_options))
    stream = draw(deltas(grid=grid, symbol=symbol, first_update_id=snapshot.last_update_id + 1,
                         max_batches=max_batches))
    return snapshot, stream


@st.composite
def trades(
    draw: st.DrawFn, *, grid: BookGrid | None = None, symbol: str = "BTCUSDT",
    start_ms: int = START_MS, min_size: int = 0, max_size: int = 200, span_ticks: int = 50,
    max_gap_ms: int = 2_000, max_lots: int = 1_000, first_trade_id: int = 1,
) -> list[Trade]:
    """A tape of :class:`Trade` events in time order (equal times allowed, as on an
    exchange), ids counting up, prices within ``span_ticks`` of the grid's mid."""
    grid = grid or draw(grids())
    row = st.tuples(st.integers(0, max_gap_ms), st.integers(-span_ticks, span_ticks),
                    st.integers(1, max_lots), st.sampled_from([Side.BUY, Side.SELL]))
    tape, now_ms = [], start_ms
    rows = draw(st.lists(row, min_size=min_size, max_size=max_size))
    for index, (gap_ms, offset, lots, side) in enumerate(rows):
        now_ms += gap_ms
        price = grid.price(max(1, grid.mid_ticks + offset))
        tape.append(Trade(symbol, price, grid.qty(lots), side, first_trade_id + index, now_ms))
    return tape


@st.composite
def symbol_states(
    draw: st.DrawFn, *, symbol: str = "BTCUSDT", min_levels: int = 0, max_levels: int = 50,
    max_trades: int = 200, max_batches: int = 10,
    needs: Needs = Needs(trade_window_ms=3_600_000, level_history=4096),
) -> SymbolState:
    """A :class:`SymbolState` after a snapshot, deltas and a trade tape on one grid.

    Its ``last_event_ms`` is the latest event's time, the ``now_ms``
    :func:`marketcore.testing.run_cycle` uses by default. Books may be empty or
    one-sided (``min_levels=0``), the cases calculators most often get wrong.
    """
    grid = draw(grids())
    snapshot, stream = draw(book_streams(symbol=symbol, grid=grid, min_levels=min_levels,
                                         max_levels=max_levels, max_batches=max_batches))
    state = SymbolState(symbol, "test", needs)
    state.apply(Instrument(symbol, float(grid.tick), float(grid.lot)))
    state.apply(snapshot)
    for delta in stream:
        state.apply(delta)
    start_ms = stream[-1].event_ms if stream else START_MS
    for trade in draw(trades(grid=grid, symbol=symbol, start_ms=start_ms, max_size=max_trades)):
        state.apply(trade)
    return state
