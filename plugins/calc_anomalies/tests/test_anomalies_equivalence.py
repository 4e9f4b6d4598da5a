"""The fast paths observe exactly what the straightforward code they replaced did.

The scan reads its band from either of the book's readers and compares it with the
previous band through a few look-ups; followed levels and fill runs that did not move
are skipped; the percentile partitions at one rank. Each is checked here against the
plain version on random books and random event streams: same levels, same placements,
same figures, bit for bit.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np
from anomaly_scenarios import ASKS, BIDS, SYMBOL, T0, OperationFeed
from hypothesis import given
from hypothesis import strategies as st
from marketcore.book import Book
from marketcore.events import VenueState
from marketcore.testing import make_state
from marketcore_calc_anomalies import AnomaliesOptions
from marketcore_calc_anomalies.band import Band, read_band
from marketcore_calc_anomalies.stats import quantile
from marketcore_calc_anomalies.tracker import _RESOLVED, FillRun, Observer

# ------------------------------------------------------------------ quantile


def reference_quantile(values: np.ndarray, q: float) -> float:
    """The former two-rank partition (numpy's ``linear`` percentile)."""
    n = len(values)
    position = (n - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, n - 1)
    ranked = np.partition(values, (low, high)) if high != low else np.partition(values, low)
    below, above = float(ranked[low]), float(ranked[high])
    return below + (above - below) * (position - low)


awkward = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, -0.0, 1.0, 1.0, 2.0]))


@given(st.lists(awkward, min_size=1, max_size=60), st.floats(0, 100))
def test_quantile_is_bit_identical_to_the_two_rank_partition(values, q):
    array = np.asarray(values, dtype=np.float64)
    assert repr(quantile(array, q)) == repr(reference_quantile(array, q))


# ------------------------------------------------------------------ reading the band

grid_levels = st.lists(st.tuples(st.integers(0, 400), st.sampled_from([0.5, 1.0, 3.0, 40.0])),
                       max_size=120)


def book_of(bid_levels, ask_levels) -> Book:
    book = Book()
    book.load_snapshot([(round(100.00 - 0.01 * k, 2), q) for k, q in bid_levels],
                       [(round(100.01 + 0.01 * k, 2), q) for k, q in ask_levels])
    return book


def reference_band(book: Book, side: str, mid: float, reach: float,
                   limit: int) -> list[tuple[float, float]]:
    """Every level of the side, sorted, those within reach, the best ``limit`` of them."""
    levels = sorted(book.top(side, len(book) + 1), key=lambda lv: -lv[0] if side == "bid"
                    else lv[0])
    if side == "bid":
        inside = [lv for lv in levels if lv[0] >= mid * (1 - reach)]
    else:
        inside = [lv for lv in levels if lv[0] <= mid * (1 + reach)]
    return inside[:limit]


def original_band(book: Book, side: str, mid: float, reach: float, cap: int,
                  expect: int) -> tuple[list[tuple[float, float]], int]:
    """``Observer._band`` as it was: Book.top, doubling the read until past the reach."""
    is_bid = side == "bid"
    n = expect
    while True:
        levels = book.top(side, n)
        if len(levels) < n or n >= cap:
            break
        last = levels[-1][0]
        if (last < mid * (1 - reach)) if is_bid else (last > mid * (1 + reach)):
            break
        n = min(2 * n, cap)
    if is_bid:
        inside = bisect.bisect_right(levels, -mid * (1 - reach), key=lambda lv: -lv[0])
    else:
        inside = bisect.bisect_right(levels, mid * (1 + reach), key=lambda lv: lv[0])
    return levels[:inside], min(cap, max(64, 2 * inside))


@given(bids=grid_levels, asks=grid_levels, bps=st.floats(0.5, 300), cap=st.integers(16, 200),
       expect=st.integers(16, 200), side=st.sampled_from(["bid", "ask"]))
def test_both_readers_read_the_band_the_original_read(bids, asks, bps, cap, expect, side):
    book = book_of(bids, asks)
    mid = book.mid()
    if mid is None:
        return
    reach = bps / 1e4
    expect = min(expect, cap) if expect % 2 else 64  # after the first read, at most cap
    expected, next_expected = original_band(book, side, mid, reach, cap, expect)
    assert expected == reference_band(book, side, mid, reach, max(cap, expect))
    for whole_side in (False, True):
        band, next_expect = read_band(book, side, mid, reach, cap, expect, whole_side=whole_side)
        assert band.levels() == expected
        assert len(band) == len(expected)
        assert next_expect == next_expected


def both_forms(levels: list[tuple[float, float]], is_bid: bool) -> list[Band]:
    prices = np.array([p for p, _ in levels], dtype=np.float64)
    qtys = np.array([q for _, q in levels], dtype=np.float64)
    return [Band(is_bid, levels=list(levels)), Band(is_bid, prices=prices, qtys=qtys)]


@given(prices=st.sets(st.integers(0, 300), min_size=1, max_size=80),
       qtys=st.lists(st.floats(0.0, 100.0), min_size=80, max_size=80),
       asked=st.lists(st.integers(0, 320), max_size=30), threshold=st.floats(0.0, 120.0),
       is_bid=st.booleans())
def test_band_look_ups_match_a_plain_walk(prices, qtys, asked, threshold, is_bid):
    ordered = sorted(prices)  # best first: k from the touch outwards
    levels = [(round(100.0 + 0.01 * (k if not is_bid else -k), 2), qtys[i])
              for i, k in enumerate(ordered)]
    wanted = [round(100.0 + 0.01 * (k if not is_bid else -k), 2) for k in asked]
    sizes = dict(levels)
    for band in both_forms(levels, is_bid):
        assert band.edge == levels[-1][0]
        assert band.at_least(threshold) == [lv for lv in levels if lv[1] >= threshold]
        assert band.sizes_at(wanted) == [sizes.get(p, 0.0) for p in wanted]
        assert all(type(p) is float and type(q) is float for p, q in band.at_least(0.0))


# ------------------------------------------------------------------ the whole observer


class ReferenceObserver(Observer):
    """The observer as it was: Book.top lists, a bisect per level at or above the
    threshold, every followed level and fill run recomputed at every observation."""

    def _scan(self, state, mid, now_ms, *, whole_side):
        self.scans += 1
        options = self.options
        history = state.level_history
        threshold = None
        if history is not None and len(history) >= options.min_level_samples:
            p95 = reference_quantile(history.samples(), 95)
            if p95 > 0:
                self.level_p95 = p95
                threshold = p95 * options.wall_multiplier
        self.threshold = threshold
        for side in ("bid", "ask"):
            levels, self.scan_levels[side] = original_band(
                state.book, side, mid, options.max_distance_bps / 1e4, options.max_scan_levels,
                self.scan_levels[side])
            previous = self.previous_band[side]
            if threshold is not None and previous:
                is_bid = side == "bid"

                def rank(level, is_bid=is_bid):
                    return -level[0] if is_bid else level[0]

                edge = previous[-1][0]
                for price, qty in [level for level in levels if level[1] >= threshold]:
                    if (side, price) in self.tracked:
                        continue
                    if price < edge if is_bid else price > edge:
                        continue
                    i = bisect.bisect_left(previous, rank((price, qty)), key=rank)
                    before = previous[i][1] if i < len(previous) and previous[i][0] == price \
                        else 0.0
                    distance = abs(price - mid) / mid * 1e4
                    if qty - before >= threshold and distance >= options.min_distance_bps:
                        self._place(side, price, qty - before, qty, distance, threshold, now_ms)
            self.previous_band[side] = levels

    def _follow_placements(self, book, fills, mid, now_ms):
        threshold = self.threshold
        for key, placement in list(self.tracked.items()):
            side, price = key
            qty = book.qty_at(side, price)
            hit = fills.get(key)
            traded = hit[1] if hit is not None else 0.0
            remaining = placement.remaining
            took = min(traded, remaining)
            placement.traded += took
            remaining -= took
            fall = placement.level_qty - qty
            if fall > traded:
                pulled = min(fall - traded, remaining)
                placement.cancelled += pulled
                remaining -= pulled
                if (placement.pulled_ms is None and placement.cancelled
                        >= self.options.pulled_fraction * placement.placed_qty):
                    placement.pulled_ms = now_ms
                    placement.pulled_distance_bps = abs(price - mid) / mid * 1e4
            rise = qty - placement.level_qty
            placement.level_qty = qty
            if remaining <= placement.placed_qty * _RESOLVED or qty <= 0.0:
                placement.followed = False
                del self.tracked[key]
            elif threshold is not None and rise >= threshold:
                placement.followed = False
                del self.tracked[key]
                distance = abs(price - mid) / mid * 1e4
                if distance >= self.options.min_distance_bps:
                    self._place(side, price, rise, qty, distance, threshold, now_ms)

    def _follow_runs(self, book, fills, now_ms):
        tolerance = self.options.iceberg_tolerance
        for key, run in list(self.runs.items()):
            qty = book.qty_at(*key)
            hit = fills.get(key)
            if qty <= 0.0:
                del self.runs[key]
                continue
            if abs(qty - run.reference_qty) > tolerance * run.reference_qty:
                run.reference_qty, run.started_ms = qty, now_ms
                run.fills.clear()
            elif hit is not None:
                run.fills.append((hit[2], hit[0], hit[1]))
            if hit is not None and hit[2] > run.last_fill_ms:
                run.last_fill_ms = hit[2]
            run.visible_qty = qty
        fresh = [(key, hit) for key, hit in fills.items() if key not in self.runs]
        if len(fresh) > self.options.max_iceberg_prices:
            fresh.sort(key=lambda item: item[1][1], reverse=True)
            del fresh[self.options.max_iceberg_prices :]
        for key, hit in fresh:
            qty = book.qty_at(*key)
            if qty <= 0.0:
                continue
            run = FillRun(key[0], key[1], qty, now_ms, qty, hit[2], deque(maxlen=self.run_cap))
            touch = self.touch[key[0]]
            if touch is not None and touch[0] == key[1] and (
                    abs(qty - touch[1]) <= tolerance * touch[1]):
                run.reference_qty = touch[1]
                run.fills.append((hit[2], hit[0], hit[1]))
            self._add_run(key, run)


def fingerprint(observer: Observer) -> tuple:
    """Everything the rules read, as plain values."""
    band_sizes = {side: len(band) if band else 0 for side, band in observer.previous_band.items()}
    return (
        observer.observations, observer.scans, observer.threshold, observer.level_p95,
        dict(observer.scan_levels),
        [(p.side, p.price, p.placed_ms, p.placed_qty, p.distance_bps, p.threshold, p.level_qty,
          p.touch_qty, p.traded, p.cancelled, p.followed, p.void, p.pulled_ms,
          p.pulled_distance_bps) for p in observer.placements],
        sorted(observer.tracked),
        [(k, r.reference_qty, r.started_ms, r.visible_qty, r.last_fill_ms, list(r.fills))
         for k, r in observer.runs.items()],
        [c.tolist() for c in observer.samples.columns()],
        band_sizes,
    )


OPTIONS = AnomaliesOptions(
    min_level_samples=1, level_history=20, scan_every_ms=0, max_scan_levels=16,
    max_tracked_levels=3, max_placements=5, max_iceberg_prices=2, max_baseline_samples=8,
    min_baseline_samples=2, flow_window_s=0.5, baseline_s=2.0, min_distance_bps=1.0,
    max_distance_bps=200.0,
)
# Few prices, mostly inside the 16-level band, so that walls come, shrink, trade and
# come back at the same prices: placements, pulls and fill runs all happen.
bid_price = st.integers(0, 10).map(lambda k: round(100.00 - 0.01 * k, 2))
ask_price = st.integers(0, 10).map(lambda k: round(100.01 + 0.01 * k, 2))
qty = st.one_of(st.just(0.0), st.sampled_from([1.0, 5.0, 20.0]), st.floats(0.01, 2.0),
                st.floats(5.0, 100.0))
size = st.floats(1e-3, 30.0)
trade = st.one_of(st.tuples(bid_price, size, st.just("s")),  # a sell hits a bid
                  st.tuples(ask_price, size, st.just("b")))
OPERATIONS = {
    "delta": st.tuples(st.just("delta"), st.lists(st.tuples(bid_price, qty), max_size=4),
                       st.lists(st.tuples(ask_price, qty), max_size=4)),
    "look": st.tuples(st.just("look"), st.integers(1, 600), st.booleans()),
    "trades": st.tuples(st.just("trades"), st.lists(trade, min_size=1, max_size=4)),
    "snapshot": st.tuples(st.just("snapshot")),
    "status": st.tuples(st.just("status"), st.sampled_from(list(VenueState))),
}
# Drawn by index, so the repeated kinds come more often and resets seldom.
operation = st.sampled_from(
    ["delta"] * 8 + ["look"] * 6 + ["trades"] * 6 + ["snapshot", "status", "status"]
).flatmap(OPERATIONS.__getitem__)


@given(sizes=st.lists(st.sampled_from([0.5, 1.0, 1.0, 2.0]), min_size=1, max_size=20),
       operations=st.lists(operation, min_size=30, max_size=120))
def test_the_observer_sees_what_the_plain_observer_sees(sizes, operations):
    state = make_state(symbol=SYMBOL, bids=BIDS, asks=ASKS, event_ms=T0)
    state.level_history.record(sizes)
    fast, plain = Observer(OPTIONS), ReferenceObserver(OPTIONS)
    feed = OperationFeed(state, T0)
    for op in [("look", 0, True), *operations]:
        if not feed.apply(op):
            now = feed.now = feed.now + op[1]
            fast.observe(state, now, whole_side=op[2])
            plain.observe(state, now)
            assert fingerprint(fast) == fingerprint(plain)
            assert all(math.isfinite(p.level_qty) for p in fast.placements)
