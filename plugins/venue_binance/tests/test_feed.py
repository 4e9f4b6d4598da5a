"""The feed: decoded frames of subscribed symbols → marketcore events, per symbol."""

from __future__ import annotations

import json

from conftest import Collector
from marketcore.events import BookDelta, BookSnapshot, Instrument, Ticker, Trade, VenueState
from marketcore_venue_binance import BinanceOptions
from marketcore_venue_binance.feed import Feed
from marketcore_venue_binance.stats import VenueStats


def depth(symbol, first, last, bids=(), asks=(), pu=None):
    data = {"e": "depthUpdate", "E": last, "s": symbol, "U": first, "u": last,
            "b": [list(map(str, b)) for b in bids], "a": [list(map(str, a)) for a in asks]}
    if pu is not None:
        data["pu"] = pu
    return json.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data}).encode()


def trade(symbol, trade_id, price=100.0, qty=1.0, maker=True, order_type=None):
    data = {"e": "trade", "E": 1, "s": symbol, "t": trade_id, "p": str(price), "q": str(qty),
            "T": 5, "m": maker}
    if order_type:
        data["X"] = order_type
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data}).encode()


def snapshot(last, bids, asks):
    return json.dumps({"lastUpdateId": last, "bids": [list(map(str, b)) for b in bids],
                       "asks": [list(map(str, a)) for a in asks]}).encode()


class Harness:
    def __init__(self, symbols=("AAA", "BBB"), **options):
        self.collector = Collector(futures=options.get("market") == "usdm")
        self.requested: list[str] = []
        self.stats = VenueStats()
        self.feed = Feed(BinanceOptions(**options), self.collector, self.stats,
                         request_snapshot=self._request)
        for symbol in symbols:
            self.feed.add(symbol)

    def _request(self, symbol):
        self.requested.append(symbol)
        return True

    def frame(self, raw, recv_ns=1):
        decoded = self.feed.decode(raw)
        if decoded is not None and decoded[1] is not None:
            self.feed.dispatch(decoded[0], decoded[1], decoded[2], recv_ns)

    def snapshot(self, symbol, raw, recv_ns=1):
        self.feed.snapshot(symbol, self.feed.decoder.snapshot(raw), recv_ns)

    def sync(self, symbol="AAA"):
        self.frame(depth(symbol, 10, 12, bids=[(99, 1)], asks=[(101, 1)]))
        self.snapshot(symbol, snapshot(11, [(99, 2), (98, 1)], [(101, 3), (102, 1)]))


def test_snapshot_is_requested_once_the_first_event_is_buffered_and_instrument_comes_first():
    h = Harness()
    assert h.requested == []
    h.frame(depth("AAA", 10, 12, bids=[(99.5, 1)]))
    h.frame(depth("AAA", 13, 14))
    assert h.requested == ["AAA"]  # once, though two events were buffered
    h.snapshot("AAA", snapshot(11, [(99.25, 2)], [(101.5, 3)]))
    kinds = [type(e) for e in h.collector.events]
    assert kinds == [Instrument, BookSnapshot, BookDelta, BookDelta]
    # inferred from the decimals: the finest decimal place among 99.5, 99.25, 101.5
    assert h.collector.events[0].tick_size == 0.01
    assert h.collector.books["AAA"][0] == {99.5: 1.0, 99.25: 2.0}


def test_a_lost_connection_says_down_once_and_connected_when_data_continues():
    h = Harness()
    h.sync("AAA")
    h.feed.connection_lost(["AAA", "BBB"], "connection lost: test", 5)
    h.feed.connection_lost(["AAA"], "again", 6)
    assert h.collector.states("AAA") == [VenueState.DOWN]
    h.frame(depth("AAA", 13, 15, bids=[(97, 1)]))  # the chain continues: nothing was lost
    assert h.collector.states("AAA") == [VenueState.DOWN, VenueState.CONNECTED]
    assert h.feed.refresh_stats().resyncs == 0


def test_a_gap_resyncs_only_that_symbol():
    h = Harness()
    h.sync("AAA")
    h.sync("BBB")
    h.frame(depth("AAA", 20, 21))
    assert h.collector.states("AAA") == [VenueState.RESYNCING]
    assert h.collector.states("BBB") == []
    h.frame(depth("BBB", 13, 13, bids=[(99, 5)]))
    assert h.collector.books["BBB"][0][99.0] == 5.0
    assert h.requested == ["AAA", "BBB", "AAA"]
    stats = h.feed.refresh_stats()
    assert (stats.gaps, stats.resyncs) == (1, 1)


def test_a_delta_that_crosses_the_book_is_not_emitted_and_resyncs():
    h = Harness()
    h.sync("AAA")
    deltas = h.collector.deltas["AAA"]
    h.frame(depth("AAA", 13, 13, bids=[(105, 1)]))  # bid above the best ask (101)
    assert h.collector.deltas["AAA"] == deltas
    assert h.stats.malformed == {"crossed": 1}
    assert h.collector.states("AAA") == [VenueState.RESYNCING]
    h.frame(depth("AAA", 14, 14))
    assert h.requested[-1] == "AAA"


def test_a_crossed_snapshot_is_rejected():
    h = Harness()
    h.frame(depth("AAA", 10, 12))
    h.snapshot("AAA", snapshot(11, [(102, 1)], [(101, 1)]))
    assert h.stats.malformed == {"crossed": 1}
    assert "AAA" not in h.collector.books
    assert h.requested == ["AAA", "AAA"]


def test_trades_are_deduplicated_and_gaps_counted():
    h = Harness()
    for trade_id in (1, 2, 2, 1, 5):
        h.frame(trade("AAA", trade_id, maker=trade_id % 2 == 0))
    trades = [e for e in h.collector.events if isinstance(e, Trade)]
    assert [t.trade_id for t in trades] == [1, 2, 5]
    assert [t.side.value for t in trades] == ["buy", "sell", "buy"]
    assert (h.stats.duplicates, h.stats.trade_gaps) == (2, 2)


def test_futures_non_market_trades_are_not_order_book_trades():
    h = Harness(market="usdm")
    h.frame(trade("AAA", 1, order_type="MARKET"))
    h.frame(trade("AAA", 2, order_type="INSURANCE_FUND"))
    h.frame(trade("AAA", 3, order_type="MARKET"))
    assert [e.trade_id for e in h.collector.events if isinstance(e, Trade)] == [1, 3]
    assert h.stats.trade_gaps == 0


def test_futures_depth_without_pu_is_malformed():
    h = Harness(market="usdm")
    h.frame(depth("AAA", 10, 12))
    assert h.stats.malformed == {"missing_fields": 1}


def test_ticker_repeats_are_dropped():
    h = Harness()
    data = {"e": "24hrTicker", "E": 10, "s": "AAA", "P": "1.5", "c": "101", "o": "100",
            "h": "102", "l": "99", "v": "5", "q": "500", "n": 7}
    for event_ms in (10, 10, 9, 11):
        h.frame(json.dumps({"stream": "aaa@ticker",
                            "data": {**data, "E": event_ms}}).encode())
    tickers = [e for e in h.collector.events if isinstance(e, Ticker)]
    assert [t.event_ms for t in tickers] == [10, 11]
    assert (tickers[0].last, tickers[0].change_pct, tickers[0].trade_count) == (101.0, 1.5, 7)


def test_exchange_info_grid_replaces_an_inferred_one():
    h = Harness()
    h.sync("AAA")
    h.feed.set_grids({"AAA": (0.5, 0.001), "BBB": (0.01, 0.1)}, 9)
    instruments = [e for e in h.collector.events if isinstance(e, Instrument)]
    assert [(i.tick_size, i.lot_size) for i in instruments] == [(1.0, 1.0), (0.5, 0.001)]
    h.sync("BBB")  # not synced before: announced once, from exchangeInfo
    assert [(i.symbol, i.tick_size) for i in h.collector.events
            if isinstance(i, Instrument)][-1] == ("BBB", 0.01)


def test_book_ticker_is_a_cross_check_only():
    h = Harness()
    h.sync("AAA")
    book_ticker = {"u": 12, "s": "AAA", "b": "99", "B": "1", "a": "101", "A": "1"}
    h.frame(json.dumps({"stream": "aaa@bookTicker", "data": book_ticker}).encode())
    assert (h.stats.book_ticker_checks, h.stats.book_ticker_mismatches) == (1, 0)
    wrong = {**book_ticker, "u": 13, "b": "98.5"}
    h.frame(json.dumps({"stream": "aaa@bookTicker", "data": wrong}).encode())
    assert h.stats.book_ticker_checks == 1  # ahead of the book: checked when it gets there
    h.frame(depth("AAA", 13, 13))
    assert (h.stats.book_ticker_checks, h.stats.book_ticker_mismatches) == (2, 1)
    assert not any(type(e).__name__ == "BookTicker" for e in h.collector.events)


def test_periodic_refresh_re_emits_the_book_consistently():
    h = Harness()
    h.sync("AAA")
    assert h.feed.begin_refresh("AAA")
    h.frame(depth("AAA", 13, 14, bids=[(97, 4)]))
    h.frame(depth("AAA", 15, 16, asks=[(103, 2)]))
    before = h.collector.books["AAA"]
    # the exchange's book at id 14: the old book plus the first delta
    h.snapshot("AAA", snapshot(14, [(99, 1), (98, 1), (97, 4)], [(101, 1), (102, 1)]))
    assert h.collector.snapshots["AAA"] == 2
    assert h.collector.books["AAA"] == before
    assert h.feed.refresh_stats().refreshes == 1


def test_events_of_symbols_not_subscribed_are_counted_not_emitted():
    h = Harness(symbols=("AAA",))
    h.frame(depth("ZZZ", 1, 2))
    assert h.collector.events == [] and h.stats.unowned_frames == 1
    h.feed.remove("AAA")
    h.frame(depth("AAA", 1, 2))
    assert h.stats.unowned_frames == 2
