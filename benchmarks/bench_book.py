"""Benchmark the L2 book against the usual alternatives on Binance-shaped depth streams.

One command writes ``book.json`` and ``book.md`` (see ``--help``)::

    python benchmarks/bench_book.py [--levels 2000] [--changes 500000] [--seed 1]
                                    [--out benchmarks/results]

Streams: a deterministic synthetic BTCUSDT-like stream (tick 0.01, price about 60000,
``--levels`` levels a side, 10-40 level changes per frame in the change mix of the real
recording, most changes near the top, the mid drifting), encoded as real Binance
combined-stream frames; and the real recording
``../shared/data/binance/hftbacktest_spot_btcusdt_20240808.gz`` when it is present.

Implementations, on the same stream in one run:

* ``marketcore Book`` from the raw frame bytes (msgspec decode included), and from
  pre-decoded floats;
* ``sortedcontainers.SortedDict`` (two, float keys), from pre-decoded strings;
* the ``order-book`` package (C extension), from pre-decoded strings;
* a numpy tick-indexed array over a fixed price window, from pre-decoded strings;
* NautilusTrader's Rust L2 book through its pyo3 bindings, from pre-decoded strings
  (in the ``bench`` dependency group where NautilusTrader ships wheels; a contender
  whose package is missing is reported as unavailable).

For each: the apply rate (level changes per second) and the mean latency of the "fast
query" (best bid and ask, the ±50 bps bid/ask quantity and notional sums, the top 20
levels of both sides) issued right after applying a frame, i.e. on a dirty book. Every
figure is the best of ``--reps`` repetitions, block by block of frames; the final query
results of all implementations are cross-checked.
"""

from __future__ import annotations

import os

# Single-threaded BLAS, set before numpy loads: on a small busy machine a threaded
# OpenBLAS dot product of the numpy reference's band slice took milliseconds.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import gzip
import math
import random
import sys
import time
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from _common import REPO_ROOT, SHARED_DATA, machine, machine_line, markdown_table, write_results

# The book of this checkout, also when the script runs outside the workspace environment.
sys.path.insert(0, str(REPO_ROOT / "core" / "src"))
from marketcore.book import Book

REAL_RECORDING = SHARED_DATA / "binance" / "hftbacktest_spot_btcusdt_20240808.gz"
BAND_BPS = 50
TOP_N = 20

# ------------------------------------------------------------------------ streams


@dataclass
class Stream:
    """A depth stream: a REST-like snapshot, then combined-stream frames as raw bytes."""

    name: str
    snapshot_bids: list[list[str]]
    snapshot_asks: list[list[str]]
    frames: list[bytes]
    ticks_per_unit: int
    """The price grid the numpy reference indexes by (100 for a 0.01 tick)."""


class DepthUpdate(msgspec.Struct, gc=False):
    """The Binance ``depthUpdate`` event; lax decoding turns decimal strings into floats.

    ``gc=False``: decoded frames hold no reference cycles, so the cyclic garbage collector
    need not track them (a few percent of the decode-and-apply time here).
    """

    E: int
    U: int
    u: int
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]


class DepthFrame(msgspec.Struct, gc=False):
    """A combined-stream frame ``{"stream": ..., "data": depthUpdate}``."""

    stream: str
    data: DepthUpdate


FRAME_DECODER = msgspec.json.Decoder(DepthFrame, strict=False)


def decode_strings(frames: list[bytes]) -> list[tuple[list[list[str]], list[list[str]]]]:
    """Frames decoded to their level strings, as a client without a typed decoder has them."""
    out = []
    for frame in frames:
        data = msgspec.json.decode(frame)["data"]
        out.append((data["b"], data["a"]))
    return out


def decode_floats(frames: list[bytes]) -> list[tuple[list, list]]:
    """Frames decoded to ``(price, qty)`` float pairs."""
    out = []
    for frame in frames:
        data = FRAME_DECODER.decode(frame).data
        out.append((data.b, data.a))
    return out


_START_TICK = 6_000_000  # 60000.00 at 100 ticks per unit
_REMOVED = "0.00000000"


def _price(tick: int) -> str:
    return f"{tick // 100}.{tick % 100:02d}000000"


def _qty(rng: random.Random) -> str:
    return f"{max(round(rng.lognormvariate(-2.5, 1.6), 5), 0.00001):.8f}"


class _SideModel:
    """The generator's own book side: sorted keys (best last) and quantity strings."""

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.keys: list[int] = []  # bids: tick, asks: -tick; ascending, so best is last
        self.qty: dict[int, str] = {}

    def tick_at(self, rank: int) -> int:
        """The tick of the ``rank``-th best level (0 is the best)."""
        key = self.keys[-1 - rank]
        return key if self.is_bid else -key

    def best(self) -> int:
        return self.tick_at(0)

    def worse(self, tick: int, by: int) -> int:
        """The tick ``by`` ticks further from the mid than ``tick``."""
        return tick - by if self.is_bid else tick + by

    def is_at_or_better(self, tick: int, than: int) -> bool:
        return tick >= than if self.is_bid else tick <= than

    def set(self, tick: int, qty: str) -> None:
        key = tick if self.is_bid else -tick
        if qty == _REMOVED:
            if self.qty.pop(tick, None) is not None:
                del self.keys[bisect_left(self.keys, key)]
        else:
            if tick not in self.qty:
                insort(self.keys, key)
            self.qty[tick] = qty


def synthetic_stream(levels: int, changes: int, seed: int) -> Stream:
    """A deterministic BTCUSDT-like depth stream of at least ``changes`` level changes.

    The change mix copies the real recording (40% new levels, 39% removals, 12.5%
    changed quantities, 8.5% removals of absent levels); the rank of a changed level
    from the top is exponential (mean 120) for most changes and uniform for 12% (far
    insertions and removals); level spacing widens with depth (about 25 ticks at the
    top); a third of the frames move the price by sweeping one side's top levels,
    refilled by the other side, with a persistent random trend.
    """
    rng = random.Random(seed)
    bids, asks = _SideModel(is_bid=True), _SideModel(is_bid=False)
    for side, tick in ((bids, _START_TICK), (asks, _START_TICK + 1)):
        for i in range(levels):
            side.set(tick, _qty(rng))
            tick = side.worse(tick, 1 + int(rng.expovariate(1 / (24 + i * 0.02))))
    snapshot_bids = [[_price(t), q] for t, q in sorted(bids.qty.items(), reverse=True)]
    snapshot_asks = [[_price(t), q] for t, q in sorted(asks.qty.items())]
    frames: list[bytes] = []
    total, update_id, event_ms, trend = 0, 1_000_000, 1_723_161_255_208, 0.0
    while total < changes:
        out: dict[bool, dict[int, str]] = {True: {}, False: {}}

        def emit(side: _SideModel, tick: int, qty: str, out: dict = out) -> None:
            out[side.is_bid][tick] = qty
            side.set(tick, qty)

        trend = 0.9 * trend + rng.gauss(0, 1)
        if rng.random() < 0.35:
            up = rng.random() < 0.5 + 0.1 * max(-4.0, min(4.0, trend))
            taken, maker = (asks, bids) if up else (bids, asks)
            edge = taken.worse(taken.best(), 1 + int(rng.expovariate(1 / 12)))
            while taken.keys and taken.is_at_or_better(taken.best(), edge):
                emit(taken, taken.best(), _REMOVED)
            tick = maker.worse(taken.best() if taken.keys else edge, 1)
            for _ in range(rng.randint(1, 3)):
                emit(maker, tick, _qty(rng))
                tick = maker.worse(tick, 1 + int(rng.expovariate(1 / 6)))
        n = rng.randint(10, 40)
        while len(out[True]) + len(out[False]) < n:
            side = bids if rng.random() < 0.5 else asks
            count = len(side.keys)
            far = rng.random() < 0.12
            rank = rng.randrange(count) if far else min(int(rng.expovariate(1 / 120)), count - 1)
            p_insert = 0.40 + 0.2 * max(-1.0, min(1.0, (levels - count) / 50))
            p_remove = 0.79 - p_insert
            r = rng.random()
            tick = side.tick_at(rank)
            if r < p_remove:
                emit(side, tick, _REMOVED)
            elif r < p_remove + 0.125:
                emit(side, tick, _qty(rng))
            else:  # a new level, or the removal of an absent one, in the gap below `rank`
                below = side.tick_at(rank + 1) if rank + 1 < count else side.worse(tick, 50)
                gap = abs(below - tick)
                if gap > 1:
                    qty = _qty(rng) if r < p_remove + 0.125 + p_insert else _REMOVED
                    emit(side, side.worse(tick, rng.randrange(1, gap)), qty)
        b = ",".join(f'["{_price(t)}","{q}"]' for t, q in sorted(out[True].items(), reverse=True))
        a = ",".join(f'["{_price(t)}","{q}"]' for t, q in sorted(out[False].items()))
        k = len(out[True]) + len(out[False])
        frames.append(
            b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":%d,'
            b'"s":"BTCUSDT","U":%d,"u":%d,"b":[%s],"a":[%s]}}'
            % (event_ms, update_id, update_id + k - 1, b.encode(), a.encode())
        )
        total, update_id, event_ms = total + k, update_id + k, event_ms + 100
    return Stream("synthetic", snapshot_bids, snapshot_asks, frames, ticks_per_unit=100)


def recorded_stream(path: Path) -> Stream:
    """The REST snapshot and the depth frames that follow it, by Binance's book procedure.

    Lines are ``<recv_ns> <json>``; trade and bookTicker frames are skipped, depth
    frames before the snapshot are buffered and those with ``u <= lastUpdateId`` dropped.
    """
    snapshot: dict[str, Any] | None = None
    frames: list[bytes] = []
    last_id = None
    with gzip.open(path, "rb") as f:
        for line in f:
            raw = line.split(b" ", 1)[1].strip()
            if raw.startswith(b'{"lastUpdateId"'):
                snapshot = msgspec.json.decode(raw)
                last_id = snapshot["lastUpdateId"]
                frames = [fr for fr in frames if FRAME_DECODER.decode(fr).data.u > last_id]
            elif b"@depth" in raw[:40]:
                frames.append(raw)
    if snapshot is None:
        raise ValueError(f"{path}: no REST snapshot line")
    expected_first = None
    for frame in frames:
        data = FRAME_DECODER.decode(frame).data
        if expected_first is None and not data.U <= last_id + 1 <= data.u:
            raise ValueError(f"{path}: first depth event does not bridge the snapshot")
        if expected_first is not None and expected_first != data.U:
            raise ValueError(f"{path}: sequence gap before update id {data.U}")
        expected_first = data.u + 1
    return Stream(path.name, snapshot["bids"], snapshot["asks"], frames, ticks_per_unit=100)


# ------------------------------------------------------------------ implementations

Query = tuple[Any, Any, tuple[float, float, float, float], list, list]


@dataclass
class Contender:
    """One implementation: a fresh ``apply(frame)`` and ``query()`` per repetition."""

    name: str
    source: str
    """What ``apply`` receives: frame bytes, pre-decoded floats or strings."""
    make: Callable[[Stream], tuple[Callable[[Any], None], Callable[[], Query]]]


def _floats(levels: list[list[str]]) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in levels]


def make_book_bytes(stream: Stream) -> tuple[Callable, Callable]:
    book = Book()
    book.load_snapshot(_floats(stream.snapshot_bids), _floats(stream.snapshot_asks))
    decode = FRAME_DECODER.decode

    def apply(frame: bytes) -> None:
        data = decode(frame).data
        book.apply(data.b, data.a)

    return apply, _book_query(book)


def make_book_floats(stream: Stream) -> tuple[Callable, Callable]:
    book = Book()
    book.load_snapshot(_floats(stream.snapshot_bids), _floats(stream.snapshot_asks))

    def apply(frame: tuple[list, list]) -> None:
        book.apply(frame[0], frame[1])

    return apply, _book_query(book)


def _book_query(book: Book) -> Callable[[], Query]:
    def query() -> Query:
        return (
            book.best_bid(),
            book.best_ask(),
            book.band_sums(BAND_BPS),
            book.top("bid", TOP_N),
            book.top("ask", TOP_N),
        )

    return query


def make_sorted_dict(stream: Stream) -> tuple[Callable, Callable]:
    from sortedcontainers import SortedDict

    bids = SortedDict(_floats(stream.snapshot_bids))
    asks = SortedDict(_floats(stream.snapshot_asks))

    def apply(frame: tuple[list, list]) -> None:
        for side, levels in ((bids, frame[0]), (asks, frame[1])):
            for p, q in levels:
                price, qty = float(p), float(q)
                if qty > 0.0:
                    side[price] = qty
                else:
                    side.pop(price, None)

    def query() -> Query:
        best_bid, best_ask = bids.peekitem(-1), asks.peekitem(0)
        mid = (best_bid[0] + best_ask[0]) / 2
        bid_qty = bid_notional = ask_qty = ask_notional = 0.0
        for p in bids.irange(minimum=mid * (1 - BAND_BPS / 1e4)):
            q = bids[p]
            bid_qty += q
            bid_notional += q * p
        for p in asks.irange(maximum=mid * (1 + BAND_BPS / 1e4)):
            q = asks[p]
            ask_qty += q
            ask_notional += q * p
        return (
            best_bid,
            best_ask,
            (bid_qty, ask_qty, bid_notional, ask_notional),
            list(islice(reversed(bids.items()), TOP_N)),
            list(islice(asks.items(), TOP_N)),
        )

    return apply, query


def make_order_book(stream: Stream) -> tuple[Callable, Callable]:
    from order_book import OrderBook

    book = OrderBook()
    for price, qty in _floats(stream.snapshot_bids):
        book.bids[price] = qty
    for price, qty in _floats(stream.snapshot_asks):
        book.asks[price] = qty

    def apply(frame: tuple[list, list]) -> None:
        for side, levels in ((book.bids, frame[0]), (book.asks, frame[1])):
            for p, q in levels:
                price, qty = float(p), float(q)
                if qty > 0.0:
                    side[price] = qty
                elif price in side:
                    del side[price]

    def band(side: Any, keys: tuple, inside: Callable[[float], bool]) -> tuple[float, float]:
        qty = notional = 0.0
        for p in keys:
            if not inside(p):
                break
            q = side[p]
            qty += q
            notional += q * p
        return qty, notional

    def query() -> Query:
        # keys() is the sorted key tuple, best first: the fastest way through the
        # levels that the package offers (faster than index(i) or to_list()).
        bids, asks = book.bids, book.asks
        bid_keys, ask_keys = bids.keys(), asks.keys()
        mid = (bid_keys[0] + ask_keys[0]) / 2
        lo, hi = mid * (1 - BAND_BPS / 1e4), mid * (1 + BAND_BPS / 1e4)
        bid_qty, bid_notional = band(bids, bid_keys, lambda p: p >= lo)
        ask_qty, ask_notional = band(asks, ask_keys, lambda p: p <= hi)
        return (
            (bid_keys[0], bids[bid_keys[0]]),
            (ask_keys[0], asks[ask_keys[0]]),
            (bid_qty, ask_qty, bid_notional, ask_notional),
            [(p, bids[p]) for p in bid_keys[:TOP_N]],
            [(p, asks[p]) for p in ask_keys[:TOP_N]],
        )

    return apply, query


class TickArrayBook:
    """The numpy reference: quantity arrays indexed by tick over a fixed price window.

    Levels outside the window are dropped (and counted); the best prices are tracked
    indexes, rescanned with ``flatnonzero`` over growing slices when the best level goes.
    """

    def __init__(self, center: float, ticks_per_unit: int, half_window: int) -> None:
        self.ticks_per_unit = ticks_per_unit
        self.base = round(center * ticks_per_unit) - half_window
        size = 2 * half_window + 1
        self.prices = (np.arange(size, dtype=np.float64) + self.base) / ticks_per_unit
        self.bid = np.zeros(size)
        self.ask = np.zeros(size)
        self.best_bid = -1
        self.best_ask = size
        self.dropped = 0

    def apply(self, bids: list, asks: list) -> None:
        """Apply level changes given as decimal strings."""
        tpu, base, size = self.ticks_per_unit, self.base, self.bid.size
        arr, best = self.bid, self.best_bid
        for p, q in bids:
            i = int(float(p) * tpu + 0.5) - base
            if not 0 <= i < size:
                self.dropped += 1
                continue
            qty = float(q)
            arr[i] = qty
            if qty > 0.0:
                if i > best:
                    best = i
            elif i == best:
                best = self._below(i)
        self.best_bid = best
        arr, best = self.ask, self.best_ask
        for p, q in asks:
            i = int(float(p) * tpu + 0.5) - base
            if not 0 <= i < size:
                self.dropped += 1
                continue
            qty = float(q)
            arr[i] = qty
            if qty > 0.0:
                if i < best:
                    best = i
            elif i == best:
                best = self._above(i)
        self.best_ask = best

    def _below(self, i: int) -> int:
        span = 256
        while i > 0:
            lo = max(0, i - span)
            nz = np.flatnonzero(self.bid[lo:i])
            if nz.size:
                return lo + int(nz[-1])
            i, span = lo, span * 4
        return -1

    def _above(self, i: int) -> int:
        span, size = 256, self.ask.size
        while i + 1 < size:
            hi = min(size, i + 1 + span)
            nz = np.flatnonzero(self.ask[i + 1 : hi])
            if nz.size:
                return i + 1 + int(nz[0])
            i, span = hi - 1, span * 4
        return size

    def top(self, is_bid: bool, n: int) -> list[tuple[float, float]]:
        arr, span = (self.ask, self.bid)[is_bid], 1024
        while True:
            if is_bid:
                lo = max(0, self.best_bid + 1 - span)
                idx = np.flatnonzero(arr[lo : self.best_bid + 1])[::-1] + lo
                done = lo == 0
            else:
                hi = min(arr.size, self.best_ask + span)
                idx = np.flatnonzero(arr[self.best_ask : hi]) + self.best_ask
                done = hi == arr.size
            if idx.size >= n or done:
                idx = idx[:n]
                return list(zip(self.prices[idx].tolist(), arr[idx].tolist(), strict=True))
            span *= 4

    def query(self) -> Query:
        prices, bid, ask = self.prices, self.bid, self.ask
        bb, ba = self.best_bid, self.best_ask
        mid = (prices[bb] + prices[ba]) / 2
        lo = int(np.searchsorted(prices, mid * (1 - BAND_BPS / 1e4), "left"))
        hi = int(np.searchsorted(prices, mid * (1 + BAND_BPS / 1e4), "right"))
        return (
            (float(prices[bb]), float(bid[bb])),
            (float(prices[ba]), float(ask[ba])),
            (
                float(bid[lo : bb + 1].sum()),
                float(ask[ba:hi].sum()),
                float(np.dot(bid[lo : bb + 1], prices[lo : bb + 1])),
                float(np.dot(ask[ba:hi], prices[ba:hi])),
            ),
            self.top(True, TOP_N),
            self.top(False, TOP_N),
        )


def make_tick_array(stream: Stream) -> tuple[Callable, Callable]:
    bids, asks = stream.snapshot_bids, stream.snapshot_asks
    center = (max(float(p) for p, _ in bids) + min(float(p) for p, _ in asks)) / 2
    # A window of ±5% of the price: wide enough for these streams (2 x 4.8 MB here).
    half_window = round(center * 0.05 * stream.ticks_per_unit)
    book = TickArrayBook(center, stream.ticks_per_unit, half_window)
    book.apply(bids, asks)

    def apply(frame: tuple[list, list]) -> None:
        book.apply(frame[0], frame[1])

    return apply, book.query


def make_nautilus(stream: Stream) -> tuple[Callable, Callable]:
    """NautilusTrader's Rust L2 book through its pyo3 bindings (``nautilus_pyo3.OrderBook``).

    Every level change crosses into Rust as a ``BookOrder`` of fixed-point ``Price`` and
    ``Quantity`` built from the level's strings, as a Nautilus data client would hand it
    over. The query uses the book's own native sums: ``get_quantity_for_price`` (the size
    at or better than a price) and ``get_avg_px_for_quantity`` for the notional.
    """
    from nautilus_trader.core import nautilus_pyo3 as nt

    book = nt.OrderBook(nt.InstrumentId.from_str("BTCUSDT.BINANCE"), nt.BookType.L2_MBP)
    price_of, qty_of, order = nt.Price.from_str, nt.Quantity.from_str, nt.BookOrder
    buy, sell = nt.OrderSide.BUY, nt.OrderSide.SELL
    sequence = 0

    def apply(frame: tuple[list, list]) -> None:
        nonlocal sequence
        sequence += 1
        for side, levels in ((buy, frame[0]), (sell, frame[1])):
            for p, q in levels:
                level = order(side, price_of(p), qty_of(q), 0)
                if float(q) > 0.0:
                    book.update(level, 0, sequence, 0)
                else:
                    book.delete(level, 0, sequence, 0)

    apply((stream.snapshot_bids, stream.snapshot_asks))

    def band(edge: float, against: Any) -> tuple[float, float]:
        qty = book.get_quantity_for_price(nt.Price(edge, 8), against)
        if qty <= 0.0:
            return 0.0, 0.0
        return qty, qty * book.get_avg_px_for_quantity(nt.Quantity(qty, 8), against)

    def levels(found: list) -> list[tuple[float, float]]:
        # fixed-point prices come back as the nearest double of price / 10**9: round them
        return [(round(level.price.as_double(), 8), level.size()) for level in found]

    def query() -> Query:
        best_bid = round(book.best_bid_price().as_double(), 8)
        best_ask = round(book.best_ask_price().as_double(), 8)
        mid = (best_bid + best_ask) / 2
        bid_qty, bid_notional = band(mid * (1 - BAND_BPS / 1e4), sell)
        ask_qty, ask_notional = band(mid * (1 + BAND_BPS / 1e4), buy)
        return (
            (best_bid, book.best_bid_size().as_double()),
            (best_ask, book.best_ask_size().as_double()),
            (bid_qty, ask_qty, bid_notional, ask_notional),
            levels(book.bids(TOP_N)),
            levels(book.asks(TOP_N)),
        )

    return apply, query


CONTENDERS = [
    Contender("marketcore Book", "frame bytes (msgspec decode included)", make_book_bytes),
    Contender("marketcore Book", "pre-decoded floats", make_book_floats),
    Contender("sortedcontainers.SortedDict", "pre-decoded strings", make_sorted_dict),
    Contender("order-book (C extension)", "pre-decoded strings", make_order_book),
    Contender("numpy tick array (fixed window)", "pre-decoded strings", make_tick_array),
    Contender("NautilusTrader OrderBook (Rust, pyo3)", "pre-decoded strings", make_nautilus),
]

# ------------------------------------------------------------------------ measuring


BLOCK_FRAMES = 50
"""Frames per timed block: the best of the repetitions is taken block by block."""


def measure(
    stream: Stream, reps: int, query_every: int
) -> tuple[list[dict[str, Any]], dict[str, Query]]:
    """Apply rate and dirty-query latency of every contender, best of ``reps``.

    The best is taken per block of :data:`BLOCK_FRAMES` frames (and the contenders
    alternate within a repetition), so that a moment of contention on a shared machine
    spoils one block of one repetition rather than a whole figure. The best whole
    repetition is reported too.
    """
    inputs = {
        "frame bytes (msgspec decode included)": stream.frames,
        "pre-decoded floats": decode_floats(stream.frames),
        "pre-decoded strings": decode_strings(stream.frames),
    }
    changes = sum(len(b) + len(a) for b, a in inputs["pre-decoded strings"])
    blocks: dict[int, tuple[list[int], list[int]]] = {}
    whole: dict[int, tuple[int, int]] = {}
    unavailable: dict[int, str] = {}
    queries = 0
    finals: dict[str, Query] = {}
    for _ in range(reps):
        for i, contender in enumerate(CONTENDERS):
            try:
                apply, query = contender.make(stream)
            except ImportError as exc:
                unavailable[i] = str(exc)
                continue
            apply_ns, query_ns, queries = _run(apply, query, inputs[contender.source], query_every)
            finals[f"{contender.name} / {contender.source}"] = query()
            if i in blocks:
                best_apply, best_query = blocks[i]
                blocks[i] = (
                    list(map(min, best_apply, apply_ns)),
                    list(map(min, best_query, query_ns)),
                )
                whole[i] = (min(whole[i][0], sum(apply_ns)), min(whole[i][1], sum(query_ns)))
            else:
                blocks[i] = (apply_ns, query_ns)
                whole[i] = (sum(apply_ns), sum(query_ns))
    results = []
    for i, contender in enumerate(CONTENDERS):
        row: dict[str, Any] = {"name": contender.name, "source": contender.source}
        if i in unavailable:
            row.update(available=False, reason=unavailable[i])
        else:
            row.update(
                available=True,
                apply_changes_per_s=changes / sum(blocks[i][0]) * 1e9,
                query_us=sum(blocks[i][1]) / queries / 1e3,
                whole_run_apply_changes_per_s=changes / whole[i][0] * 1e9,
                whole_run_query_us=whole[i][1] / queries / 1e3,
            )
        results.append(row)
    return results, finals


def _run(
    apply: Callable[[Any], None], query: Callable[[], Query], frames: list, query_every: int
) -> tuple[list[int], list[int], int]:
    """Apply every frame, query after every ``query_every``-th: ns per block, and queries."""
    clock = time.perf_counter_ns
    query()  # a query right after the snapshot, as the first fast cycle would issue
    apply_blocks, query_blocks = [], []
    queries = 0
    for start in range(0, len(frames), BLOCK_FRAMES):
        apply_ns = query_ns = 0
        for i, frame in enumerate(frames[start : start + BLOCK_FRAMES], start + 1):
            t0 = clock()
            apply(frame)
            t1 = clock()
            apply_ns += t1 - t0
            if i % query_every == 0:
                query()
                query_ns += clock() - t1
                queries += 1
        apply_blocks.append(apply_ns)
        query_blocks.append(query_ns)
    return apply_blocks, query_blocks, queries


def cross_check(finals: dict[str, Query]) -> list[str]:
    """Differences between the contenders' final queries (empty when they all agree)."""
    problems = []
    (ref_name, ref), *others = finals.items()
    for name, other in others:
        same = (
            tuple(ref[0]) == tuple(other[0])
            and tuple(ref[1]) == tuple(other[1])
            and all(math.isclose(x, y, rel_tol=1e-9) for x, y in zip(ref[2], other[2], strict=True))
            and [tuple(x) for x in ref[3]] == [tuple(x) for x in other[3]]
            and [tuple(x) for x in ref[4]] == [tuple(x) for x in other[4]]
        )
        if not same:
            problems.append(f"{name} disagrees with {ref_name}: {other[:3]} vs {ref[:3]}")
    return problems


def table(results: list[dict[str, Any]]) -> str:
    ours = results[0]
    rows = []
    for row in results:
        if not row["available"]:
            rows.append([row["name"], row["source"], "unavailable", "", "", ""])
            continue
        rows.append(
            [
                row["name"],
                row["source"],
                f"{row['apply_changes_per_s'] / 1e6:.2f} M",
                f"{row['query_us']:.1f}",
                f"{ours['apply_changes_per_s'] / row['apply_changes_per_s']:.2f}x",
                f"{row['query_us'] / ours['query_us']:.2f}x",
            ]
        )
    header = [
        "implementation",
        "input",
        "apply, level changes/s",
        "dirty fast query, µs",
        "ours (bytes) apply speed-up",
        "ours (bytes) query speed-up",
    ]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, default=2000, help="levels a side (synthetic)")
    parser.add_argument("--changes", type=int, default=500_000, help="level changes (synthetic)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3, help="repetitions; the best counts")
    parser.add_argument("--query-every", type=int, default=1, help="query after every k frames")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--real", type=Path, default=REAL_RECORDING, help="recording (optional)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    streams = [synthetic_stream(args.levels, args.changes, args.seed)]
    if args.real.exists():
        streams.append(recorded_stream(args.real))
    else:
        print(f"{args.real} not found: synthetic stream only", file=sys.stderr)

    info = machine()
    payload: dict[str, Any] = {
        "benchmark": "book",
        "machine": info,
        "parameters": {
            "levels": args.levels,
            "changes": args.changes,
            "seed": args.seed,
            "reps": args.reps,
            "query_every": args.query_every,
            "block_frames": BLOCK_FRAMES,
            "query": f"best bid/ask, ±{BAND_BPS} bps sums, top {TOP_N} both sides",
        },
        "streams": [],
    }
    tables = []
    for stream in streams:
        results, finals = measure(stream, args.reps, args.query_every)
        problems = cross_check(finals)
        changes = sum(len(b) + len(a) for b, a in decode_strings(stream.frames))
        payload["streams"].append(
            {
                "name": stream.name,
                "frames": len(stream.frames),
                "level_changes": changes,
                "snapshot_levels": [len(stream.snapshot_bids), len(stream.snapshot_asks)],
                "results": results,
                "final_queries_agree": not problems,
                "disagreements": problems,
            }
        )
        title = (
            f"## {stream.name}: {len(stream.frames):,} frames, {changes:,} level changes, "
            f"snapshot {len(stream.snapshot_bids):,}/{len(stream.snapshot_asks):,} levels"
        )
        agree = "all implementations agree" if not problems else "; ".join(problems)
        tables += ["", title, "", table(results), "", f"Final query cross-check: {agree}."]
    load_after = os.getloadavg()[0]
    payload["load_average_1min"] = {"start": load_before, "end": load_after}
    markdown = "\n".join(
        [
            "# Book benchmark",
            "",
            f"{machine_line(info)} 1-minute load average {load_before:.2f} at the start and "
            f"{load_after:.2f} at the end (when it exceeds the number of cores, other "
            f"processes competed for them and every figure is slower).",
            "",
            f"Apply rate: level changes per second, the best of {args.reps} repetitions "
            f"taken per block of {BLOCK_FRAMES} frames (the JSON also has the best whole "
            f"repetition). Dirty fast query: mean µs of best bid/ask + ±{BAND_BPS} bps bid/ask "
            f"quantity and notional + top {TOP_N} both sides, issued after every "
            f"{args.query_every} applied frame(s). Speed-up: how many times faster "
            f"`marketcore Book` from frame bytes is than the row.",
            *tables,
        ]
    )
    write_results(args.out, "book", payload, markdown)
    print(markdown)
    print(f"\n{time.perf_counter() - started:.0f} s; wrote {args.out}/book.json and book.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
