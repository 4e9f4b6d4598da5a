"""The synthetic market: determinism, sequencing, a valid book, exact wire bytes, realism.

Most tests replay the generated events into a plain dict model of each book (what any
venue adapter or SymbolState does) and check the stream against it.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tracemalloc
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marketcore.events import BookDelta, BookSnapshot, Event, Side, Ticker, Trade
from marketcore.synthetic import SyntheticConfig, SyntheticMarket

SYMBOLS = ("BTCUSDT", "ETHUSDT", "DOGEUSDT", "XRPUSDT")
START = SyntheticConfig().start_ms
MINUTE = 60_000
QUIET = {"jump_every_s": 0, "iceberg_every_s": 0}  # features that bend the touch rules


@cache
def _run(symbols: tuple[str, ...], until: int, config: SyntheticConfig) -> tuple[Event, ...]:
    return tuple(SyntheticMarket(symbols, config).events(until_ms=START + until))


def run(symbols: Sequence[str] = SYMBOLS, until: int = MINUTE, **config: Any) -> list[Event]:
    """The events of ``symbols`` over ``until`` ms (cached: many tests read the same run)."""
    return list(_run(tuple(symbols), until, SyntheticConfig(**config)))


class Book:
    """The reference model: price -> qty per side, fed with snapshots and deltas."""

    def __init__(self, snapshot: BookSnapshot) -> None:
        self.bids = dict(snapshot.bids)
        self.asks = dict(snapshot.asks)
        self.last_update_id = snapshot.last_update_id

    def apply(self, delta: BookDelta) -> None:
        for side, levels in ((self.bids, delta.bids), (self.asks, delta.asks)):
            for price, qty in levels:
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)
        self.last_update_id = delta.last_update_id

    def best_bid(self) -> float:
        return max(self.bids)

    def best_ask(self) -> float:
        return min(self.asks)

    def mid(self) -> float:
        return (self.best_bid() + self.best_ask()) / 2


def replay(events: Iterable[Event]) -> Iterator[tuple[Event, Book | None]]:
    """Each event with its symbol's book as it stands *after* the event."""
    books: dict[str, Book] = {}
    for event in events:
        if isinstance(event, BookSnapshot):
            books[event.symbol] = Book(event)
        elif isinstance(event, BookDelta):
            books[event.symbol].apply(event)
        yield event, books.get(getattr(event, "symbol", None) or "")


def final_books(events: Iterable[Event]) -> dict[str, Book]:
    books: dict[str, Book] = {}
    for event, book in replay(events):
        if book is not None:
            books[event.symbol] = book  # type: ignore[union-attr]
    return books


def of(kind: type, events: Iterable[Event], symbol: str | None = None) -> list[Any]:
    return [e for e in events if isinstance(e, kind) and symbol in (None, e.symbol)]


def on_grid(value: float, step: float) -> bool:
    units = value / step
    return abs(units - round(units)) < 1e-6


# -- determinism ----------------------------------------------------------------------


def test_same_symbols_and_config_give_identical_events() -> None:
    config = SyntheticConfig(seed=5)
    first = list(SyntheticMarket(SYMBOLS, config).events(until_ms=START + 20_000))
    second = list(SyntheticMarket(SYMBOLS, config).events(until_ms=START + 20_000))
    assert first == second
    assert len(first) > 1000


def test_frames_are_byte_identical_across_runs() -> None:
    def frames() -> list[tuple[int, bytes]]:
        market = SyntheticMarket(SYMBOLS, SyntheticConfig(seed=5))
        return list(market.binance_frames(until_ms=START + 20_000))

    assert frames() == frames()


def test_frames_do_not_depend_on_the_process_hash_seed() -> None:
    script = (
        "import hashlib, sys\n"
        "from marketcore.synthetic import SyntheticMarket\n"
        "digest = hashlib.sha256()\n"
        f"for recv, frame in SyntheticMarket({list(SYMBOLS)!r}).binance_frames({START + 5_000}):\n"
        "    digest.update(b'%d %s' % (recv, frame))\n"
        "print(digest.hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1


def test_a_different_seed_gives_a_different_stream() -> None:
    assert run(until=5_000, seed=1) != run(until=5_000, seed=2)


def test_a_symbol_does_not_depend_on_the_other_symbols() -> None:
    alone = run(("ETHUSDT",), until=20_000)
    among = [e for e in run(until=20_000) if getattr(e, "symbol", None) == "ETHUSDT"]
    assert alone == among


def test_price_and_grid_depend_on_the_name_and_start_price_only() -> None:
    market = SyntheticMarket(SYMBOLS, SyntheticConfig(seed=1))
    other = SyntheticMarket(SYMBOLS, SyntheticConfig(seed=99))
    for symbol in SYMBOLS:
        assert market.tick_size(symbol) == other.tick_size(symbol)
        assert market.lot_size(symbol) == other.lot_size(symbol)
    names = [f"S{i}USDT" for i in range(300)]
    many = SyntheticMarket(names)
    mids = [Book(e).mid() for e in of(BookSnapshot, many.events(until_ms=START))]
    assert min(mids) >= 60000 * 1e-6 and max(mids) <= 60000 * 1.001
    assert max(mids) / min(mids) > 1e4, "prices spread over decades"
    for name, mid in zip(names, mids, strict=True):
        tick = many.tick_size(name)
        assert 1e-8 <= tick <= 0.01
        assert tick / mid < 2e-4, "a tick is at most a couple of bps"


# -- sequencing -------------------------------------------------------------------------


def test_the_stream_opens_with_one_snapshot_per_symbol() -> None:
    events = run()
    heads = events[: len(SYMBOLS)]
    assert [type(e) for e in heads] == [BookSnapshot] * len(SYMBOLS)
    assert [e.symbol for e in heads] == list(SYMBOLS)
    assert all(e.event_ms is None and e.recv_ns == START * 1_000_000 for e in heads)
    assert not of(BookSnapshot, events[len(SYMBOLS) :])
    assert {len(e.bids) for e in heads} == {len(e.asks) for e in heads} == {200}


def test_recv_ns_never_goes_back_and_trails_exchange_time_by_a_little() -> None:
    events = run()
    stamps = [e.recv_ns for e in events]
    assert stamps == sorted(stamps)
    for event in events[len(SYMBOLS) :]:
        latency_ms = event.recv_ns / 1e6 - event.event_ms
        assert 1.0 <= latency_ms <= 31.0


def test_events_stop_at_until_ms() -> None:
    times = [e.event_ms for e in run(until=5_000) if e.event_ms]
    assert START + 4_800 < max(times) <= START + 5_000


def test_update_ids_are_contiguous_from_the_snapshot() -> None:
    last: dict[str, int] = {}
    for event in run():
        if isinstance(event, BookSnapshot):
            last[event.symbol] = event.last_update_id
        elif isinstance(event, BookDelta):
            assert event.first_update_id == last[event.symbol] + 1
            assert event.last_update_id >= event.first_update_id
            last[event.symbol] = event.last_update_id


def test_trade_ids_are_contiguous_per_symbol() -> None:
    for symbol in SYMBOLS:
        ids = [t.trade_id for t in of(Trade, run(), symbol)]
        assert ids == list(range(ids[0], ids[0] + len(ids)))


# -- the book ---------------------------------------------------------------------------


def test_the_book_is_never_crossed_and_keeps_about_levels_per_side() -> None:
    sizes = []
    for event, book in replay(run(levels=120)):
        if isinstance(event, BookDelta):
            assert book.best_bid() < book.best_ask()
            assert len(book.bids) <= 126 and len(book.asks) <= 126
            sizes += [len(book.bids), len(book.asks)]
    assert statistics.median(sizes) >= 114
    assert min(sizes) >= 20, "even a jump's sweep leaves a book"


def test_the_spread_is_one_to_three_ticks_outside_jumps() -> None:
    market = SyntheticMarket(SYMBOLS)
    spreads = []
    for event, book in replay(run(jump_every_s=0)):
        if isinstance(event, BookDelta):
            spreads.append(
                round((book.best_ask() - book.best_bid()) / market.tick_size(event.symbol))
            )
    assert min(spreads) >= 1
    assert sum(1 <= s <= 3 for s in spreads) / len(spreads) > 0.99
    assert {1, 2, 3} <= set(spreads)


def test_prices_and_quantities_sit_on_the_grid() -> None:
    market = SyntheticMarket(SYMBOLS)
    for event in run():
        if isinstance(event, (BookSnapshot, BookDelta)):
            tick, lot = market.tick_size(event.symbol), market.lot_size(event.symbol)
            for price, qty in [*event.bids, *event.asks]:
                assert price > 0 and on_grid(price, tick)
                assert qty >= 0 and on_grid(qty, lot)
        elif isinstance(event, Trade):
            assert on_grid(event.price, market.tick_size(event.symbol))
            assert event.qty > 0 and on_grid(event.qty, market.lot_size(event.symbol))


def test_deltas_change_insert_and_remove_levels_mostly_near_the_top() -> None:
    changes = removals = inserts = near = 0
    books = {}
    for event in run():
        if isinstance(event, BookSnapshot):
            books[event.symbol] = Book(event)
        elif isinstance(event, BookDelta):
            book = books[event.symbol]
            mid = book.mid()
            for side, levels in ((book.bids, event.bids), (book.asks, event.asks)):
                for price, qty in levels:
                    changes += 1
                    removals += qty == 0
                    inserts += qty > 0 and price not in side
                    near += abs(price - mid) / mid < 10e-4
            book.apply(event)
    assert changes / len(of(BookDelta, run())) > 5
    assert 0.2 < removals / changes < 0.6 and 0.2 < inserts / changes < 0.6
    assert near / changes > 0.5, "most changes within 10 bps of the mid"


def test_the_replayed_book_equals_the_stream_snapshot_at_the_end() -> None:
    stream = SyntheticMarket(SYMBOLS).events(until_ms=START + 30_000)
    books = final_books(stream)
    for symbol in SYMBOLS:
        snapshot = stream.snapshot(symbol)
        assert snapshot.last_update_id == books[symbol].last_update_id
        assert dict(snapshot.bids) == books[symbol].bids
        assert dict(snapshot.asks) == books[symbol].asks


# -- trades -----------------------------------------------------------------------------


def test_trades_hit_the_side_their_aggressor_takes() -> None:
    market = SyntheticMarket(SYMBOLS)
    buys = sells = 0
    for trade, book in replay(run(**QUIET)):
        if not isinstance(trade, Trade):
            continue
        if trade.side is Side.BUY:
            buys += 1
            assert trade.price in book.asks and trade.price >= book.best_ask()
        else:
            sells += 1
            assert trade.price in book.bids and trade.price <= book.best_bid()
        assert trade.price - book.best_ask() < 50 * market.tick_size(trade.symbol) or (
            book.best_bid() - trade.price < 50 * market.tick_size(trade.symbol)
        ), "at or near the touch"
    assert 0.4 < buys / (buys + sells) < 0.6


def test_trades_consume_the_touch_in_the_following_delta() -> None:
    traded: dict[str, dict[tuple[Side, float], float]] = defaultdict(dict)
    before: dict[str, Book] = {}
    checked = 0
    for event in run(**QUIET):
        if isinstance(event, BookSnapshot):
            before[event.symbol] = Book(event)
        elif isinstance(event, Trade):
            key = (event.side, event.price)
            traded[event.symbol][key] = traded[event.symbol].get(key, 0.0) + event.qty
        elif isinstance(event, BookDelta):
            book = before[event.symbol]
            shown = {(Side.SELL, p): q for p, q in event.bids}
            shown |= {(Side.BUY, p): q for p, q in event.asks}
            for (side, price), qty in traded.pop(event.symbol, {}).items():
                resting = (book.asks if side is Side.BUY else book.bids)[price]
                assert (side, price) in shown, "a traded level always shows in the next delta"
                assert shown[side, price] <= resting - qty + 1e-9
                checked += 1
            book.apply(event)
    assert checked > 500


def test_the_aggressor_leans_with_the_mid_move() -> None:
    flows, moves = [], []
    for symbol in SYMBOLS:
        flow, mid = 0, None
        for event, book in replay(run(**QUIET)):
            if getattr(event, "symbol", None) != symbol:
                continue
            if isinstance(event, Trade):
                flow += 1 if event.side is Side.BUY else -1
            elif isinstance(event, BookDelta):
                if mid is not None:
                    flows.append(flow)
                    moves.append(math.log(book.mid() / mid))
                flow, mid = 0, book.mid()
    assert statistics.correlation(flows, moves) > 0.2


def test_rates_match_the_config_over_a_simulated_minute() -> None:
    events = run(jump_every_s=0)
    for symbol in SYMBOLS:
        assert len(of(BookDelta, events, symbol)) == pytest.approx(600, rel=0.02)
        assert len(of(Trade, events, symbol)) == pytest.approx(1200, rel=0.15)
        assert len(of(Ticker, events, symbol)) in (59, 60)


def test_rates_follow_other_settings() -> None:
    events = run(until=2 * MINUTE, deltas_per_sec=2, trades_per_sec=5, ticker_every_ms=5000)
    for symbol in SYMBOLS:
        assert len(of(BookDelta, events, symbol)) == pytest.approx(240, abs=3)
        assert len(of(Trade, events, symbol)) == pytest.approx(600, rel=0.2)
        assert len(of(Ticker, events, symbol)) in (23, 24)
    assert not of(Trade, run(until=10_000, trades_per_sec=0))
    assert not of(Ticker, run(until=10_000, ticker_every_ms=0))


# -- faults -----------------------------------------------------------------------------


def test_gap_every_skips_the_ids_of_every_nth_delta() -> None:
    last: dict[str, int] = {}
    gaps = deltas = 0
    for event in run(until=20_000, gap_every=7):
        if isinstance(event, BookSnapshot):
            last[event.symbol] = event.last_update_id
        elif isinstance(event, BookDelta):
            deltas += 1
            gaps += event.first_update_id != last[event.symbol] + 1
            assert event.first_update_id > last[event.symbol]
            last[event.symbol] = event.last_update_id
    assert gaps == pytest.approx(deltas / 6, abs=len(SYMBOLS))


def test_a_venue_recovers_from_gaps_with_the_stream_snapshot() -> None:
    # Binance's procedure: on a gap take a snapshot, drop deltas it already contains,
    # continue from the one that bridges it. The books end equal to the generator's.
    stream = SyntheticMarket(SYMBOLS, SyntheticConfig(gap_every=7)).events(START + 20_000)
    books: dict[str, Book] = {}
    resyncs = 0
    for event in stream:
        if isinstance(event, BookSnapshot):
            books[event.symbol] = Book(event)
        elif isinstance(event, BookDelta):
            book = books[event.symbol]
            if event.last_update_id <= book.last_update_id:
                continue
            if event.first_update_id > book.last_update_id + 1:
                books[event.symbol] = book = Book(stream.snapshot(event.symbol))
                resyncs += 1
                if event.last_update_id <= book.last_update_id:
                    continue
                assert event.first_update_id <= book.last_update_id + 1
            book.apply(event)
    assert resyncs >= 2 * len(SYMBOLS)
    for symbol in SYMBOLS:
        assert dict(stream.snapshot(symbol).bids) == books[symbol].bids
        assert dict(stream.snapshot(symbol).asks) == books[symbol].asks


def test_crossed_every_crosses_the_book_for_one_delta() -> None:
    crossed = []
    for event, book in replay(run(until=20_000, crossed_every=10)):
        if isinstance(event, BookDelta) and event.symbol == "ETHUSDT":
            crossed.append(book.best_bid() > book.best_ask())
    assert sum(crossed) == pytest.approx(len(crossed) / 10, abs=2)
    assert not any(a and b for a, b in itertools.pairwise(crossed))


# -- ticker -----------------------------------------------------------------------------


def test_the_ticker_counts_the_generated_trades() -> None:
    # The 24 h window moves in 5-minute buckets, aligned with START: within the first
    # four minutes nothing leaves it, so its sums grow by exactly the trades between.
    for symbol in SYMBOLS:
        previous, trades = None, []
        for event in run(until=4 * MINUTE):
            if getattr(event, "symbol", None) != symbol:
                continue
            if isinstance(event, Trade):
                trades.append(event)
            elif isinstance(event, Ticker):
                if previous is not None and trades:
                    assert event.trade_count - previous.trade_count == len(trades)
                    volume = sum(t.qty for t in trades)
                    quote = sum(t.price * t.qty for t in trades)
                    assert event.volume - previous.volume == pytest.approx(volume, rel=1e-9)
                    assert event.quote_volume - previous.quote_volume == pytest.approx(
                        quote, rel=1e-6
                    )
                    assert event.last == trades[-1].price
                    assert event.high >= max(t.price for t in trades)
                    assert event.low <= min(t.price for t in trades)
                    assert event.open == previous.open
                previous, trades = event, []


def test_the_ticker_is_a_plausible_day() -> None:
    for ticker in of(Ticker, run(until=6 * MINUTE)):
        assert ticker.low <= min(ticker.open, ticker.last) <= max(ticker.open, ticker.last)
        assert max(ticker.open, ticker.last) <= ticker.high
        assert ticker.change_pct == round((ticker.last - ticker.open) / ticker.open * 100, 3)
        assert abs(ticker.change_pct) < 50
        assert ticker.trade_count == pytest.approx(20 * 86_400, rel=0.1)
        vwap = ticker.quote_volume / ticker.volume
        assert ticker.low <= vwap <= ticker.high


# -- the wire ---------------------------------------------------------------------------


def _decode(frame: bytes, recv_ns: int, symbol: str) -> Event:
    """An independent reading of the Binance frames, back into events."""

    def levels(pairs: list[list[str]]) -> list[tuple[float, float]]:
        return [(float(p), float(q)) for p, q in pairs]

    body = json.loads(frame)
    if "lastUpdateId" in body:
        return BookSnapshot(
            symbol, levels(body["bids"]), levels(body["asks"]), body["lastUpdateId"], None, recv_ns
        )
    stream, data = body["stream"], body["data"]
    assert stream.split("@")[0] == data["s"].lower()
    if data["e"] == "depthUpdate":
        return BookDelta(
            data["s"],
            levels(data["b"]),
            levels(data["a"]),
            data["U"],
            data["u"],
            data["E"],
            recv_ns,
        )
    if data["e"] == "trade":
        side = Side.SELL if data["m"] else Side.BUY
        return Trade(
            data["s"], float(data["p"]), float(data["q"]), side, data["t"], data["T"], recv_ns
        )
    assert data["e"] == "24hrTicker"
    assert data["L"] - data["F"] + 1 == data["n"]
    assert float(data["b"]) < float(data["a"])
    return Ticker(
        data["s"],
        last=float(data["c"]),
        change_pct=float(data["P"]),
        high=float(data["h"]),
        low=float(data["l"]),
        volume=float(data["v"]),
        quote_volume=float(data["q"]),
        open=float(data["o"]),
        trade_count=data["n"],
        event_ms=data["E"],
        recv_ns=recv_ns,
    )


def test_frames_decode_back_to_the_events() -> None:
    market = SyntheticMarket(SYMBOLS)
    frames = list(market.binance_frames(until_ms=START + 20_000))
    events = run(until=20_000)
    assert len(frames) == len(events)
    for (recv_ns, frame), event in zip(frames, events, strict=True):
        assert _decode(frame, recv_ns, event.symbol) == event


def test_frames_use_the_real_stream_names_and_fields() -> None:
    frames = [f for _, f in SyntheticMarket(["BTCUSDT"]).binance_frames(START + 3_000)]
    streams = {json.loads(f).get("stream") for f in frames}
    assert streams == {None, "btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@ticker"}
    ticker = next(json.loads(f)["data"] for f in frames if b"24hrTicker" in f)
    assert set("pPwxcQbBaAohlvqOCFLn") <= set(ticker)
    trade = next(json.loads(f)["data"] for f in frames if b'"trade"' in f)
    assert trade["E"] >= trade["T"] and trade["M"] is True
    slow = SyntheticMarket(["BTCUSDT"], SyntheticConfig(deltas_per_sec=1))
    assert b"btcusdt@depth" in next(
        f for _, f in slow.binance_frames(START + 2_000) if b"depth" in f
    )


def test_decimal_strings_have_the_grid_precision_and_round_trip() -> None:
    market = SyntheticMarket(SYMBOLS)
    number = re.compile(rb'"(-?\d+(?:\.\d+)?)"')
    for recv_ns, frame in market.binance_frames(until_ms=START + 10_000):
        if b'"e":"depthUpdate"' not in frame and b'"e":"trade"' not in frame:
            continue
        symbol = json.loads(frame)["data"]["s"]
        decimals = {
            round(-math.log10(market.tick_size(symbol))),
            round(-math.log10(market.lot_size(symbol))),
        }
        for text in number.findall(frame):
            digits = text.split(b".")[1] if b"." in text else b""
            assert len(digits) in decimals, text
            value = float(text)
            assert b"e" not in text.lower()
            assert f"{value:.{len(digits)}f}".encode() == text, "float -> string is exact"
        assert recv_ns > 0


def test_snapshot_body_is_a_rest_depth_response() -> None:
    stream = SyntheticMarket(["ETHUSDT"]).binance_frames(until_ms=START + 5_000)
    list(stream)
    body = json.loads(stream.snapshot_body("ETHUSDT"))
    assert set(body) == {"lastUpdateId", "bids", "asks"}
    assert body["lastUpdateId"] == stream.snapshot("ETHUSDT").last_update_id
    assert float(body["bids"][0][0]) < float(body["asks"][0][0])
    with pytest.raises(KeyError, match="BTCUSDT"):
        stream.snapshot("BTCUSDT")


# -- realism: the raw material of the reports ---------------------------------------------


def _walls(events: list[Event]) -> tuple[int, int]:
    """What a spoofing detector sees: (placed, pulled within 20 s without trading).

    Placed: a level 10+ bps from the mid rising by a wall's size (1.5 x the P95 of
    level sizes); pulled: it drops to 0 with no trade at that price meanwhile.
    """
    sizes = [q for e in of(BookSnapshot, events) for _, q in [*e.bids, *e.asks]]
    threshold = statistics.quantiles(sizes, n=20)[-1] * 1.5
    walls: dict[tuple[str, float], tuple[float, int]] = {}
    traded: set[float] = set()
    books: dict[str, Book] = {}
    placed = pulled = 0
    for event in events:
        if isinstance(event, BookSnapshot):
            books[event.symbol] = Book(event)
        elif isinstance(event, Trade):
            traded.add(event.price)
        elif isinstance(event, BookDelta):
            book = books[event.symbol]
            mid = book.mid()
            for side, before, levels in (
                ("b", book.bids, event.bids),
                ("a", book.asks, event.asks),
            ):
                for price, qty in levels:
                    if abs(price - mid) / mid >= 10e-4 and qty - before.get(price, 0) >= threshold:
                        walls[side, price] = (qty, event.event_ms)
                        traded.discard(price)
                        placed += 1
                    elif (side, price) in walls and qty < walls[side, price][0]:
                        fast = event.event_ms - walls.pop((side, price))[1] <= 20_000
                        pulled += qty == 0 and fast and price not in traded
            book.apply(event)
    return placed, pulled


# Known-ratio symbols on a 0.01 tick (BTC ~60000 and ETH ~3000: dense books, the window's
# far end inside the detector's band) and hash-priced ones (QQQ ~74, tick 0.13 bps; AAA
# ~0.12, tick 0.8 bps: a sparse book where nearly every level is 10+ bps from the mid).
WALL_SYMBOLS = ("BTCUSDT", "ETHUSDT", "QQQUSDT", "AAAUSDT")
WALLS_ON = {"wall_every_s": 5, "spoof_ratio": 0.8, **QUIET}
WALLS_OFF = {"wall_every_s": 0, **QUIET}


@pytest.mark.parametrize("symbol", WALL_SYMBOLS)
def test_walls_stand_far_from_the_mid_and_most_are_pulled_untraded(symbol: str) -> None:
    # Big resting sizes occur naturally too (the log-normal tail): the feature adds
    # walls on top, and spoof-like ones are pulled within seconds. The same seed gives
    # the same market with or without them, so the difference is the walls: about 120
    # in 10 minutes, 80 % of them spoof-like.
    on = _walls(run((symbol,), until=10 * MINUTE, **WALLS_ON))
    off = _walls(run((symbol,), until=10 * MINUTE, **WALLS_OFF))
    placed, pulled = on[0] - off[0], on[1] - off[1]
    assert placed >= 60, (on, off)
    assert pulled >= 0.5 * placed, (on, off)


@pytest.mark.parametrize("symbol", WALL_SYMBOLS)
def test_walls_leave_the_rest_of_the_market_as_it_was(symbol: str) -> None:
    # Features draw from generators of their own: switching walls on adds them to the
    # same market (the same taker orders at the same times) instead of drawing another.
    on = of(Trade, run((symbol,), until=10 * MINUTE, **WALLS_ON))
    off = of(Trade, run((symbol,), until=10 * MINUTE, **WALLS_OFF))
    assert [(t.event_ms, t.side) for t in on] == [(t.event_ms, t.side) for t in off]


def test_thin_stretches_appear_inside_the_book() -> None:
    stream = SyntheticMarket(["XRPUSDT"], SyntheticConfig(vacuum_every_s=2)).events()
    book = None
    longest = 0
    for event in stream:
        if isinstance(event, BookSnapshot):
            book = Book(event)
            sizes = sorted(q for _, q in [*event.bids, *event.asks])
            p10 = sizes[len(sizes) // 10]
        elif isinstance(event, BookDelta):
            book.apply(event)
            run_length = 0
            for price in sorted(book.bids, reverse=True)[:100]:
                run_length = run_length + 1 if book.bids[price] < p10 else 0
                longest = max(longest, run_length)
        if event.recv_ns > (START + 30_000) * 1_000_000:
            break
    assert longest >= 8, "natural runs of small levels stay shorter"


def test_icebergs_refill_while_they_are_hit() -> None:
    # An iceberg: 5+ fills at one price within 10 s, more volume traded there than was
    # ever visible, while the visible size stays within +-10 %.
    events = run(("DOGEUSDT",), until=2 * MINUTE, iceberg_every_s=15, jump_every_s=0)
    fills: dict[float, list[Trade]] = defaultdict(list)
    for trade in of(Trade, events):
        fills[trade.price].append(trade)
    shown: dict[float, list[tuple[int, float]]] = defaultdict(list)
    for event in of(BookDelta, events):
        for price, qty in [*event.bids, *event.asks]:
            shown[price].append((event.event_ms, qty))
    icebergs = set()
    for price, trades in fills.items():
        for first, fifth in zip(trades, trades[4:], strict=False):
            if fifth.event_ms - first.event_ms > 10_000:
                continue
            window = [q for t, q in shown[price] if first.event_ms <= t <= fifth.event_ms + 100]
            volume = sum(t.qty for t in trades if first.event_ms <= t.event_ms <= fifth.event_ms)
            refills = len(window) >= 2 and min(window) > 0
            if refills and max(window) <= 1.1 * min(window) and volume > max(window):
                icebergs.add(price)
    assert icebergs


def test_jumps_move_the_mid_by_many_ticks_in_one_step() -> None:
    events = run(("ETHUSDT",), until=2 * MINUTE, jump_every_s=20)
    mids = [book.mid() for event, book in replay(events) if isinstance(event, BookDelta)]
    steps = [abs(math.log(b / a)) * 1e4 for a, b in itertools.pairwise(mids)]
    assert max(steps) >= 8, "a jump"
    assert statistics.median(steps) < 1.5


def test_depth_imbalance_drifts_both_ways() -> None:
    imbalances = []
    for event, book in replay(run(("ETHUSDT",), until=5 * MINUTE)):
        if isinstance(event, BookDelta):
            bid = sum(q for _, q in sorted(book.bids.items(), reverse=True)[:20])
            ask = sum(q for _, q in sorted(book.asks.items())[:20])
            imbalances.append((bid - ask) / (bid + ask))
    assert min(imbalances) < -0.3 and max(imbalances) > 0.3


# -- configuration and limits -----------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("seed", -1),
        ("levels", 5),
        ("deltas_per_sec", 0),
        ("trades_per_sec", -1.0),
        ("ticker_every_ms", -5),
        ("spoof_ratio", 1.5),
        ("gap_every", -1),
        ("start_price", 0.0),
    ],
)
def test_bad_config_values_are_refused(field: str, value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        SyntheticConfig(**{field: value})


@pytest.mark.parametrize(
    "symbols", [[], ["btcusdt"], ["BTCUSDT", "BTCUSDT"], ['BTC"USDT'], "BTCUSDT"]
)
def test_bad_symbols_are_refused(symbols: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        SyntheticMarket(symbols)


def test_unknown_symbols_are_a_key_error() -> None:
    with pytest.raises(KeyError, match="SOLUSDT"):
        SyntheticMarket(SYMBOLS).tick_size("SOLUSDT")


def test_memory_stays_flat_as_the_stream_runs() -> None:
    stream = iter(SyntheticMarket(["ETHUSDT"]).events())
    warm_until = (START + MINUTE) * 1_000_000
    tracemalloc.start()
    try:
        for event in stream:
            if event.recv_ns > warm_until:
                break
        warm = tracemalloc.get_traced_memory()[0]
        for event in stream:
            if event.recv_ns > warm_until + 5 * MINUTE * 1_000_000:  # across a 24 h bucket
                break
        assert tracemalloc.get_traced_memory()[0] - warm < 256 * 1024
    finally:
        tracemalloc.stop()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    levels=st.integers(10, 60),
    deltas_per_sec=st.sampled_from([1.0, 3.0, 10.0, 20.0]),
    trades_per_sec=st.floats(0, 80),
    volatility_bps=st.floats(0, 30),
    jump_every_s=st.sampled_from([0.0, 1.0, 30.0]),
    start_price=st.floats(0.01, 1e6),
)
def test_invariants_hold_for_any_config(**config: Any) -> None:
    market = SyntheticMarket(["AAAUSDT", "ZZZBTC"], SyntheticConfig(**config))
    last_id: dict[str, int] = {}
    recv = 0
    for event, book in replay(market.events(until_ms=START + 8_000)):
        assert event.recv_ns >= recv
        recv = event.recv_ns
        if isinstance(event, BookDelta):
            assert event.first_update_id == last_id[event.symbol] + 1
            assert book.best_bid() < book.best_ask()
            assert on_grid(book.best_bid(), market.tick_size(event.symbol))
        if isinstance(event, (BookSnapshot, BookDelta)):
            last_id[event.symbol] = event.last_update_id
