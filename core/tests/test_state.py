"""SymbolState and its bounded buffers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore import (
    BookDelta,
    BookSnapshot,
    LevelHistory,
    Needs,
    Side,
    SymbolState,
    Ticker,
    Trade,
    TradeRing,
    VenueState,
    VenueStatus,
)
from marketcore.state import RollingMedian


def test_trade_window_returns_exactly_the_trades_in_time():
    ring = TradeRing(window_ms=10_000)
    for ts in range(0, 20_000, 1000):
        ring.append(ts, 100.0 + ts / 1000, 1.0, 1 if ts % 2000 else -1)
    window = ring.window(since_ms=15_000)
    assert window.ts_ms.tolist() == [15_000, 16_000, 17_000, 18_000, 19_000]
    assert window.price.tolist() == [115.0, 116.0, 117.0, 118.0, 119.0]
    assert window.sign.tolist() == [1, -1, 1, -1, 1]
    assert ring.last() == (19_000, 119.0, 1.0, 1)


def test_trade_ring_evicts_by_age_before_growing():
    ring = TradeRing(window_ms=1000, initial=8, max_trades=1024)
    for ts in range(0, 100_000, 100):  # 10 trades live in any 1 s window
        ring.append(ts, 1.0, 1.0, 1)
    assert ring.capacity <= 32  # never grew beyond what the window needs
    assert len(ring.window(since_ms=99_000 - 1)) == 10
    assert ring.overflowed == 0


def test_trade_ring_is_capped_and_counts_what_it_drops():
    ring = TradeRing(window_ms=10**9, initial=4, max_trades=64)
    for ts in range(1000):
        ring.append(ts, float(ts), 1.0, 1)
    assert ring.capacity == 64
    assert len(ring) <= 64
    assert ring.overflowed == 1000 - len(ring)
    assert ring.last() == (999, 999.0, 1.0, 1)
    kept = ring.window(0).ts_ms
    assert kept.tolist() == list(range(1000 - len(ring), 1000))  # the newest, in order


@given(st.lists(st.tuples(st.integers(0, 50), st.floats(0.01, 1e6)), max_size=300),
       st.integers(1, 200), st.integers(4, 128))
def test_trade_ring_window_matches_a_plain_list(steps, window_ms, max_trades):
    ring = TradeRing(window_ms=window_ms, initial=2, max_trades=max_trades)
    reference: list[tuple[int, float]] = []
    ts = 0
    for gap, price in steps:
        ts += gap
        ring.append(ts, price, 1.0, 1)
        reference.append((ts, price))
    since = ts - window_ms
    expected = [r for r in reference if r[0] >= since]
    got = ring.window(since)
    # the ring keeps at least the window (unless capped), and never reorders
    kept = list(zip(got.ts_ms.tolist(), got.price.tolist(), strict=True))
    assert kept == expected[len(expected) - len(kept):]
    assert len(kept) == len(expected) or ring.overflowed > 0


def test_level_history_percentiles_over_the_last_samples():
    history = LevelHistory(capacity=100)
    history.record(np.arange(1, 101, dtype=float))
    assert history.percentile(50) == 50.5
    history.record([1000.0] * 50)  # the oldest 50 are overwritten
    assert len(history) == 100
    assert sorted(history.samples().tolist()) == list(range(51, 101)) + [1000.0] * 50
    assert LevelHistory(10).percentile(95) is None


def test_level_history_wraps_around():
    history = LevelHistory(capacity=5)
    for value in range(12):
        history.record([float(value)])
    assert sorted(history.samples().tolist()) == [7.0, 8.0, 9.0, 10.0, 11.0]


def test_symbol_state_applies_every_event_kind():
    state = SymbolState("BTCUSDT", "test", Needs(trade_window_ms=60_000, level_history=100))
    assert state.venue_state is VenueState.DOWN
    state.apply(BookSnapshot("BTCUSDT", [(100.0, 1.0)], [(101.0, 2.0)], 10, None, 5_000_000))
    assert state.venue_state is VenueState.CONNECTED
    assert state.last_update_id == 10
    state.apply(BookDelta("BTCUSDT", [(100.5, 3.0)], [(101.0, 0.0)], 11, 12, 1_000, 6_000_000))
    assert state.book.best_bid() == (100.5, 3.0)
    assert state.book.best_ask() is None
    assert (state.last_update_id, state.last_event_ms, state.last_recv_ns) == (12, 1_000, 6_000_000)
    state.apply(Trade("BTCUSDT", 100.7, 0.5, Side.SELL, 1, 1_100))
    assert state.trades.last() == (1_100, 100.7, 0.5, -1)
    state.apply(Trade("BTCUSDT", 100.8, 0.5, Side.BUY, 2, 900))  # late: age keeps the newest
    assert state.last_event_ms == 1_100
    ticker = Ticker("BTCUSDT", 100.8, 1.5, 110.0, 90.0, 1000.0, 1e5, 99.0, 5000, 1_200)
    state.apply(ticker)
    assert state.ticker is ticker
    state.apply(VenueStatus(VenueState.RESYNCING, "BTCUSDT", "gap"))
    state.apply(VenueStatus(VenueState.RESYNCING, "BTCUSDT", "still"))
    assert state.counts == {"snapshots": 1, "deltas": 1, "trades": 2, "tickers": 1, "resyncs": 1}
    assert state.venue_reason == "still"


def test_sample_levels_feeds_the_history():
    state = SymbolState("X", "test", Needs(level_history=1000))
    state.apply(BookSnapshot("X", [(10.0 - i, float(i + 1)) for i in range(30)],
                             [(11.0 + i, float(100 + i)) for i in range(30)], 1))
    state.sample_levels(depth=5)
    assert sorted(state.level_history.samples().tolist()) == [1, 2, 3, 4, 5, 100, 101, 102, 103, 104]
    assert SymbolState("Y", "test").level_history is None  # nobody asked: nothing kept


def test_scratch_is_per_owner_and_persistent():
    state = SymbolState("X", "test")
    state.scratch("a")["n"] = 1
    assert state.scratch("a") == {"n": 1}
    assert state.scratch("b") == {}


@given(st.lists(st.floats(0, 1e9, allow_nan=False), min_size=1, max_size=500),
       st.floats(0, 100))
def test_level_history_percentile_equals_numpy(values, q):
    history = LevelHistory(capacity=1000)
    history.record(values)
    assert history.percentile(q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-9)


@given(st.integers(min_value=1, max_value=12),
       st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), max_size=80))
def test_rolling_median_is_statistics_median_of_the_window(window: int,
                                                            values: list[float]) -> None:
    import statistics

    rolling = RollingMedian(window)
    for k, value in enumerate(values):
        rolling.append(value)
        last = values[max(0, k + 1 - window):k + 1]
        assert len(rolling) == len(last)
        assert rolling.median() == statistics.median(last)
