"""The simulator's parts without sockets: timeline preparation, prices, limits, names."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _sim_fixtures import (
    depth,
    head,
    snapshot,
    spot_source,
    synthetic_spot,
    synthetic_usdm,
    trade,
    write,
)
from hypothesis import given
from hypothesis import strategies as st
from marketcore_venue_binance.recording import RecordingError
from marketcore_venue_binance.simulator import SimulatorConfig
from marketcore_venue_binance.simulator.engine import Engine, clone_name
from marketcore_venue_binance.simulator.limits import (
    AttemptLimit,
    MessageRate,
    WeightBudget,
    depth_weight,
)
from marketcore_venue_binance.simulator.prices import ClonePrices, PriceScale
from marketcore_venue_binance.simulator.streams import StreamNameError, Variant, parse_stream
from marketcore_venue_binance.simulator.timeline import (
    AGG,
    DEPTH,
    RESET,
    TICK,
    TRADE,
    load_recordings,
)

NS = 1_700_000_000_000_000_000
MS = 1_700_000_000_000


# -- timeline ---------------------------------------------------------------------------


def test_the_book_starts_at_the_snapshot_and_the_bridging_diff_is_replayed_first(tmp_path):
    rec = load_recordings([synthetic_spot(tmp_path / "s.gz")], "spot")
    (symbol,) = rec.symbols
    assert symbol.start.L == 1004
    assert (symbol.first_U, symbol.depth[0].u) == (1003, 1006)  # U <= L+1 <= u
    assert all(a.u + 1 == b.U for a, b in zip(symbol.depth, symbol.depth[1:], strict=False))
    depth_items = [item for item in rec.items if item[1] == DEPTH]
    assert len(depth_items) == 41  # the held diff (u 1002 <= 1004) is not replayed
    assert symbol.scale == PriceScale(2, 2)
    assert symbol.first_trade_id == 5000 and symbol.last_trade_id == 5079


def test_aggregate_trades_group_same_price_side_and_time(tmp_path):
    rec = load_recordings([synthetic_spot(tmp_path / "s.gz")], "spot")
    aggs = [item[3] for item in rec.items if item[1] == AGG]
    trades = [item[3] for item in rec.items if item[1] == TRADE]
    assert len(trades) == 80 and len(aggs) == 40  # two trades per ms, same price and side
    assert [(a.f, a.l) for a in aggs[:2]] == [(5000, 5001), (5002, 5003)]
    assert aggs[0].q == "0.75"
    assert [a.a for a in aggs] == list(range(aggs[0].a, aggs[0].a + 40))
    ticks = [item for item in rec.items if item[1] == TICK]
    assert len(ticks) == 4  # one 24 h ticker per recorded second


def test_merged_speeds_span_their_window_and_keep_the_last_quantity(tmp_path):
    rec = load_recordings([synthetic_spot(tmp_path / "s.gz")], "spot")
    (symbol,) = rec.symbols
    assert symbol.native_interval == 100 and symbol.merged_intervals == (1000,)
    merged = [m for ev in symbol.depth for iv, m in ev.closes if iv == 1000]
    assert symbol.first_U == merged[0].U
    assert all(a.u + 1 == b.U for a, b in itertools.pairwise(merged))
    assert merged[-1].u == symbol.last_u
    window = [ev for ev in symbol.depth if ev.E // 1000 == merged[1].E // 1000]
    expected: dict[int, str] = {}
    for ev in window:
        expected.update(zip(ev.b_t, ev.b_q, strict=True))
    assert dict(zip(merged[1].b_t, merged[1].b_q, strict=True)) == expected
    assert list(merged[1].b_t) == sorted(expected, reverse=True)


def test_futures_bridge_with_u_at_least_the_snapshot_id_and_chain_by_pu(tmp_path):
    rec = load_recordings([synthetic_usdm(tmp_path / "u.gz")], "usdm")
    (symbol,) = rec.symbols
    assert symbol.start.L == 1020
    first = symbol.depth[0]
    assert first.U <= 1020 <= first.u
    assert all(b.pu == a.u for a, b in zip(symbol.depth, symbol.depth[1:], strict=False))
    assert symbol.merged_intervals == (100, 250, 500)
    for interval in (100, 250, 500):
        merged = [m for ev in symbol.depth for iv, m in ev.closes if iv == interval]
        assert all(b.pu == a.u for a, b in itertools.pairwise(merged)), interval


def test_auto_market_and_a_mismatched_market_is_refused(tmp_path):
    path = synthetic_usdm(tmp_path / "u.gz")
    assert load_recordings([path], "auto").market == "usdm"
    with pytest.raises(RecordingError, match="looks like usdm"):
        load_recordings([path], "spot")


def test_a_recorded_gap_keeps_the_gap_and_restarts_from_the_next_snapshot(tmp_path):
    lines = [
        (NS, snapshot(10, [("1.00", "1.0")], [("1.10", "1.0")])),
        (NS + 1, depth("AAAUSDT", 11, 12, [("1.01", "1.0")], [], MS)),
        (NS + 2, depth("AAAUSDT", 20, 21, [("0.99", "1.0")], [], MS + 1)),  # gap
        (NS + 3, depth("AAAUSDT", 22, 24, [("0.98", "2.0")], [], MS + 2)),  # held by 25
        (NS + 4, snapshot(25, [("1.00", "5.0")], [("1.10", "5.0")])),
        (NS + 5, depth("AAAUSDT", 25, 27, [("0.97", "1.0")], [], MS + 3)),  # bridges 25
        (NS + 6, depth("AAAUSDT", 28, 28, [("0.96", "1.0")], [], MS + 4)),
    ]
    rec = load_recordings([write(tmp_path / "g.gz", lines)], "spot")
    (symbol,) = rec.symbols
    assert symbol.recorded_gaps == 1
    assert [(ev.U, ev.u) for ev in symbol.depth] == [(11, 12), (25, 27), (28, 28)]
    resets = [item[3] for item in rec.items if item[1] == RESET]
    assert len(resets) == 1 and resets[0].L == 25 and resets[0].bids == {100: "5.0"}


def test_a_snapshot_older_than_the_diffs_is_skipped_for_a_later_one(tmp_path):
    lines = [
        (NS, depth("AAAUSDT", 50, 52, [("1.01", "1.0")], [], MS)),
        (NS + 1, snapshot(10, [("1.00", "1.0")], [("1.10", "1.0")])),  # too old
        (NS + 2, snapshot(51, [("1.00", "2.0")], [("1.10", "1.0")])),
        (NS + 3, depth("AAAUSDT", 53, 54, [("1.02", "1.0")], [], MS + 1)),
    ]
    (symbol,) = load_recordings([write(tmp_path / "o.gz", lines)], "spot").symbols
    assert symbol.start.L == 51 and symbol.first_U == 50


def test_a_recording_without_a_usable_snapshot_is_a_clear_error(tmp_path):
    lines = [(NS, depth("AAAUSDT", 50, 52, [("1.01", "1.0")], [], MS)),
             (NS + 1, trade("AAAUSDT", 1, "1.01", "1.0", MS))]
    with pytest.raises(RecordingError, match="no depth snapshot"):
        load_recordings([write(tmp_path / "n.gz", lines)], "spot")
    with pytest.raises(RecordingError, match="no recording"):
        load_recordings([], "spot")


def test_files_that_continue_each_other_replay_as_one(tmp_path):
    source = spot_source()
    whole = head(source, tmp_path / "whole.gz", 3000)
    first = head(source, tmp_path / "first.gz", 1500)
    rest = write(tmp_path / "rest.gz", _tail(whole, 1500))
    one = load_recordings([whole], "spot")
    two = load_recordings([first, rest], "spot")
    assert [(i[0], i[1]) for i in one.items] == [(i[0], i[1]) for i in two.items]
    assert one.symbols[0].last_u == two.symbols[0].last_u


def _tail(path, skip):
    from marketcore_venue_binance.recording import read_recording

    return [item for i, item in enumerate(read_recording(path)) if i >= skip]


# -- prices -----------------------------------------------------------------------------


@given(st.integers(0, 10**12), st.integers(0, 8), st.integers(0, 4))
def test_price_scale_round_trips_exactly(ticks, tick_decimals, extra):
    scale = PriceScale(tick_decimals + extra, tick_decimals)
    text = scale.format(ticks)
    assert scale.ticks(text) == ticks
    assert len(text.partition(".")[2]) == tick_decimals + extra


def test_price_scale_refuses_finer_prices_and_garbage():
    scale = PriceScale(8, 2)
    assert scale.ticks("61837.63000000") == 6183763
    assert scale.format(6183763) == "61837.63000000"
    with pytest.raises(ValueError, match="finer"):
        scale.ticks("1.001")
    with pytest.raises(ValueError, match="not a decimal"):
        scale.ticks("-1.00")


@given(st.lists(st.integers(1, 10**9), min_size=2, max_size=50, unique=True),
       st.integers(1000, 3000))
def test_clone_prices_are_strictly_increasing_so_levels_never_merge(ticks, num):
    prices = ClonePrices(PriceScale(8, 2), num, 1000)
    mapped = [prices.ticks(t) for t in sorted(ticks)]
    assert all(a < b for a, b in itertools.pairwise(mapped))
    for t in ticks:  # half-up rounding of t * factor, exactly
        assert abs(prices.ticks(t) * 1000 - t * num) <= 500


@given(ticks=st.lists(st.integers(1, 10**9), min_size=1, max_size=20))
def test_vectorized_clone_prices_equal_the_exact_ones(ticks, tmp_path_factory):
    rec = load_recordings([synthetic_spot(tmp_path_factory.mktemp("v") / "s.gz")], "spot")
    engine = Engine(rec, SimulatorConfig(("x",), clone=7))
    base = engine.bases[0]
    rows = base.mapped(np.array(ticks, dtype=np.int64), base.served)
    assert rows is not None
    for served, row in zip(base.served, rows, strict=True):
        texts = [base.price_fmt % (row[i], row[i + 1]) for i in range(0, len(row), 2)]
        assert texts == [served.prices.text(t) for t in ticks]


def test_clone_names_put_the_number_between_base_and_quote():
    assert clone_name("BTCUSDT", 7, 4) == "BTC0007USDT"
    assert clone_name("ETHBTC", 12, 4) == "ETH0012BTC"
    assert clone_name("XYZ", 1, 5) == "XYZ00001"


# -- stream names -----------------------------------------------------------------------


def test_stream_names():
    assert parse_stream("btcusdt@depth@100ms", "spot") == ("btcusdt", Variant("depth", 100))
    assert parse_stream("btcusdt@depth", "spot") == ("btcusdt", Variant("depth", 1000))
    assert parse_stream("btcusdt@depth", "usdm") == ("btcusdt", Variant("depth", 250))
    assert parse_stream("btcusdt@depth@0ms", "usdm")[1] == Variant("depth", 0)
    assert parse_stream("btcusdt@depth10@100ms", "spot")[1] == Variant("partial", 100, 10)
    assert parse_stream("btcusdt@aggTrade", "spot")[1] == Variant("aggTrade")
    assert parse_stream("btcusdt@kline_1m", "spot")[1] == Variant("other", suffix="kline_1m")
    for bad, why in [("BTCUSDT@trade", "lower case"), ("btcusdt", "expected <symbol>@"),
                     ("btcusdt@depth@0ms", "update speed"), ("btcusdt@depth7", "levels"),
                     ("btcusdt@trades", "unknown stream"), ("b@trade", "bad symbol")]:
        with pytest.raises(StreamNameError, match=why):
            parse_stream(bad, "spot")


# -- limits -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_depth_weights_follow_binances_tables():
    assert [depth_weight("spot", n) for n in (1, 100, 101, 500, 501, 1000, 1001, 5000)] == \
        [5, 5, 25, 25, 50, 50, 250, 250]
    assert [depth_weight("usdm", n) for n in (5, 50, 100, 500, 1000)] == [2, 2, 5, 10, 20]


def test_weight_budget_429_then_418_with_retry_after():
    clock = FakeClock(120.0)
    budget = WeightBudget(100, window_s=60, ban_after_429s=2, ban_s=120, clock=clock)
    assert [budget.charge("ip", 50).status for _ in range(2)] == [200, 200]
    clock.now = 150.0
    refused = budget.charge("ip", 50)
    assert (refused.status, refused.retry_after_s, refused.used) == (429, 30, 100)
    assert budget.charge("ip", 50).status == 429
    banned = budget.charge("ip", 50)
    assert (banned.status, banned.retry_after_s) == (418, 120)
    clock.now = 200.0  # a new window, but still banned
    assert budget.charge("ip", 5).status == 418
    assert budget.charge("other-ip", 5).status == 200
    clock.now = 271.0
    assert budget.charge("ip", 5).status == 200
    assert budget.used("ip") == 5


def test_message_rate_allows_five_per_rolling_second():
    clock = FakeClock()
    rate = MessageRate(5, clock)
    assert all(rate.allow() for _ in range(5))
    clock.now += 0.5
    assert not rate.allow()
    clock.now += 0.6
    assert rate.allow()


def test_connection_attempts_per_window():
    clock = FakeClock()
    attempts = AttemptLimit(3, 300.0, clock)
    assert [attempts.allow("ip") for _ in range(4)] == [True, True, True, False]
    clock.now += 300.0
    assert attempts.allow("ip")


def test_a_malformed_event_in_a_recording_names_its_file_and_frame(tmp_path):
    lines = [(NS, snapshot(10, [("1.00", "1.0")], [("1.10", "1.0")])),
             (NS + 1, depth("AAAUSDT", 11, 12, [("1.01", "1.0")], [], MS)),
             (NS + 2, b'{"stream":"aaausdt@depth@100ms","data":{"e":"depthUpdate","E":1,'
                      b'"s":"AAAUSDT","u":13,"b":[],"a":[]}}')]
    path = write(tmp_path / "m.gz", lines)
    with pytest.raises(RecordingError, match=r"m\.gz: frame 3: malformed depthUpdate: KeyError"):
        load_recordings([path], "spot")
