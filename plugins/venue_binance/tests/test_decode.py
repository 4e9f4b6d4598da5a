"""Decoding frames: numbers straight from bytes, every bad frame classified."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore_venue_binance.decode import (
    DepthSnapshot,
    DepthUpdate,
    FrameDecoder,
    MalformedFrame,
    grid_of,
    significant_digits,
)

DEPTH = (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,'
         b'"s":"BTCUSDT","U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"],'
         b'["56854.58000000","1.5"]],"a":[["61837.64000000","1.54698000"]]}}')


def frame(stream: str, data: dict) -> bytes:
    return json.dumps({"stream": stream, "data": data}, separators=(",", ":")).encode()


def test_depth_update_decodes_to_floats():
    symbol, kind, event = FrameDecoder().frame(DEPTH)
    assert (symbol, kind) == ("BTCUSDT", "depth")
    assert isinstance(event, DepthUpdate)
    assert (event.first_update_id, event.last_update_id, event.event_ms) == \
        (50093239189, 50093239202, 1723161255208)
    assert event.bids == [(61737.63, 0.0), (56854.58, 1.5)]
    assert event.asks == [(61837.64, 1.54698)]
    assert event.prev_update_id is None


def test_futures_depth_carries_pu():
    data = {"e": "depthUpdate", "E": 1, "T": 1, "s": "BTCUSDT", "U": 10, "u": 20, "pu": 9,
            "b": [["61800.20", "2.909"]], "a": []}
    _, _, event = FrameDecoder().frame(frame("btcusdt@depth@0ms", data))
    assert event.prev_update_id == 9 and event.bids == [(61800.2, 2.909)]


def test_trade_aggtrade_ticker_bookticker():
    decoder = FrameDecoder()
    _, kind, trade = decoder.frame(frame("btcusdt@trade", {
        "e": "trade", "E": 2, "s": "BTCUSDT", "t": 7, "p": "61837.63", "q": "0.02", "T": 1,
        "m": True, "M": True}))
    assert kind == "trade" and (trade.trade_id, trade.price, trade.qty, trade.trade_ms,
                                trade.buyer_is_maker) == (7, 61837.63, 0.02, 1, True)
    _, kind, agg = decoder.frame(frame("btcusdt@aggTrade", {
        "e": "aggTrade", "E": 2, "s": "BTCUSDT", "a": 5, "p": "1.5", "q": "3", "f": 10,
        "l": 12, "T": 1, "m": False}))
    assert kind == "aggTrade" and (agg.agg_id, agg.first_trade_id, agg.last_trade_id) == \
        (5, 10, 12)
    _, kind, ticker = decoder.frame(frame("btcusdt@ticker", {
        "e": "24hrTicker", "E": 3, "s": "BTCUSDT", "p": "-94.99", "P": "-0.15", "w": "1",
        "c": "61800.01", "Q": "1", "o": "61895.00", "h": "62000.00", "l": "61000.00",
        "v": "123.4", "q": "3266598649.94325113", "O": 0, "C": 0, "F": 0, "L": 0,
        "n": 12345}))
    assert kind == "ticker" and (ticker.last, ticker.change_pct, ticker.open,
                                 ticker.quote_volume, ticker.trade_count) == \
        (61800.01, -0.15, 61895.0, 3266598649.943251, 12345)
    _, kind, book_ticker = decoder.frame(frame("btcusdt@bookTicker", {
        "u": 400900217, "s": "BTCUSDT", "b": "25.35190000", "B": "31.21000000",
        "a": "25.36520000", "A": "40.66000000"}))
    assert kind == "bookTicker" and book_ticker.update_id == 400900217
    assert (book_ticker.bid, book_ticker.ask) == (25.3519, 25.3652)


def test_control_frames_and_snapshot_bodies_are_envelopes():
    decoder = FrameDecoder()
    for raw in (b'{"result":null,"id":1}', b'{"e":"serverShutdown","E":1723161255208}',
                b'{"error":{"code":2,"msg":"Invalid request"},"id":3}',
                b'{"lastUpdateId":5,"bids":[],"asks":[]}'):
        symbol, kind, _ = decoder.frame(raw)
        assert symbol is None and kind is None
    assert decoder.frame(b'{"e":"serverShutdown","E":1}')[2].e == "serverShutdown"
    assert bytes(decoder.frame(b'{"error":{"code":2},"id":3}')[2].error) == b'{"code":2}'
    assert decoder.frame(b'{"lastUpdateId":5,"bids":[],"asks":[]}')[2].last_update_id == 5


def test_snapshot_decodes():
    body = b'{"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"]],' \
           b'"asks":[["61837.64000000","1.60520000"]]}'
    snapshot = FrameDecoder().snapshot(body)
    assert isinstance(snapshot, DepthSnapshot)
    assert snapshot.last_update_id == 50093239218
    assert snapshot.bids == [(61837.63, 3.78826)] and snapshot.event_ms is None


DEPTH_DATA = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": [], "a": []}


@pytest.mark.parametrize("raw, kind", [
    (b"not json at all", "garbage"),
    (b'{"stream":"btcusdt@depth@100ms","data":{"U":\xe2\x98\x83}}', "garbage"),
    (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","s":"BTCUSDT"}}',
     "missing_fields"),
    (b'{"hello":"world"}', "missing_fields"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "U": "x"}), "bad_type"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "b": [["1", "2", "3"]]}), "bad_type"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "b": [["-61800.00", "1.0"]]}), "absurd"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "b": [["1e300", "1.0"]]}), "absurd"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "b": [["NaN", "1.0"]]}), "absurd"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "a": [["61800.10", "-3.5"]]}), "absurd"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "a": [["Infinity", "1.0"]]}), "absurd"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "a": [["1", "NaN"]]}), "absurd"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "U": -5}), "absurd"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "b": [["61837.6300000000001", "1"]]}),
     "precision"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "a": [["1", "0.1000000000000000001"]]}),
     "precision"),
    (frame("btcusdt@kline_1m", {"e": "kline"}), "unknown_stream"),
    (frame("btcusdt@depth@100ms", {**DEPTH_DATA, "s": "ETHUSDT"}), "bad_type"),
])
def test_bad_frames_are_classified(raw, kind):
    with pytest.raises(MalformedFrame) as caught:
        FrameDecoder().frame(raw)
    assert caught.value.kind == kind


def test_precision_scan_is_not_misled_by_long_text_between_strings():
    """``:17231612552081234,`` between two strings is 18 characters; the scan must still
    find the long price after it, in the one-pass path as in the first frame's."""
    decoder = FrameDecoder()
    good = {**DEPTH_DATA, "E": 17231612552081234, "b": [["1.5", "2"]]}
    decoder.frame(frame("btcusdt@depth@100ms", good))  # fine, and now a known stream
    bad = {**DEPTH_DATA, "E": 17231612552081234, "b": [["61837.6300000000001", "1"]]}
    for _ in range(2):
        with pytest.raises(MalformedFrame) as caught:
            decoder.frame(frame("btcusdt@depth@100ms", bad))
        assert caught.value.kind == "precision"


def test_oversized_frames_are_rejected_before_decoding():
    decoder = FrameDecoder(max_frame_bytes=1024)
    with pytest.raises(MalformedFrame) as caught:
        decoder.frame(b'{"stream":"x","data":"' + b"x" * 2000 + b'"}')
    assert caught.value.kind == "oversized"


def test_long_strings_with_few_significant_digits_pass():
    data = {**DEPTH_DATA, "b": [["1000000.00000000", "0.00012345000000"]]}
    _, _, event = FrameDecoder().frame(frame("btcusdt@depth@100ms", data))
    assert event.bids == [(1000000.0, 0.00012345)]


def test_ticker_volumes_may_carry_more_digits():
    data = {"e": "24hrTicker", "E": 3, "s": "BTCUSDT", "P": "1", "c": "2", "o": "1", "h": "2",
            "l": "1", "v": "12345678.123456789", "q": "3266598649.94325113", "n": 1}
    symbol, kind, ticker = FrameDecoder().frame(frame("btcusdt@ticker", data))
    # volumes are sums, not prices: more digits than a float's precision check allows
    # for prices are accepted and decoded, not refused as malformed
    assert (symbol, kind) == ("BTCUSDT", "ticker")
    assert ticker.volume == 12345678.123456789
    assert ticker.quote_volume == 3266598649.94325113


def test_significant_digits():
    assert significant_digits("61837.63000000") == 7
    assert significant_digits("0.00012300") == 3
    assert significant_digits(b'"1000000.00000000"') == 1
    assert significant_digits("61837.6300000000001") == 18


def test_grid_inference_from_prices():
    assert grid_of([(61837.63, 0.00105), (61837.6, 1.0), (5000.0, 2.301)], 0) == 0.01
    assert grid_of([(61837.63, 0.00105), (61837.6, 1.0)], 1) == 0.00001
    assert grid_of([(0.00001234, 100.0)], 0) == 1e-8
    assert grid_of([(5000.0, 1.0)], 0) == 1.0
    assert grid_of([], 0) == 0.0


# ---------------------------------------------------------------------------
# Floats as book keys: 15 significant digits round-trip, distinct stay distinct
# ---------------------------------------------------------------------------

decimals = st.builds(  # up to 15 significant digits, below the absurd-price bound (1e9)
    lambda digits, exponent: Decimal(digits).scaleb(exponent),
    st.integers(1, 10**15 - 1), st.integers(-20, -6))


@given(decimals, decimals)
def test_prices_of_at_most_15_digits_are_distinct_floats(a, b):
    text_a, text_b = format(a, "f"), format(b, "f")
    decoder = FrameDecoder()
    data = {**DEPTH_DATA, "b": [[text_a, "1"], [text_b, "1"]]}
    _, _, event = decoder.frame(frame("btcusdt@depth@100ms", data))
    (price_a, _), (price_b, _) = event.bids
    assert Decimal(repr(price_a)) == a  # the float prints back as the decimal sent
    assert (price_a == price_b) == (a == b)
