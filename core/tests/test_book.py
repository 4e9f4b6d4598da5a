"""Tests of the L2 book: literal examples, a reference model, and the float-key property."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marketcore.book import MAX_TRACKED_BANDS, Book

NAN = float("nan")

# ------------------------------------------------------------------ literal books

BIDS = [(100.0, 1.0), (99.5, 2.0), (99.0, 3.0)]
ASKS = [(100.5, 1.5), (101.0, 2.5), (102.0, 4.0)]


def literal_book() -> Book:
    book = Book()
    book.load_snapshot(BIDS, ASKS)
    return book


def test_best_prices_mid_and_counts() -> None:
    book = literal_book()
    assert book.best_bid() == (100.0, 1.0)
    assert book.best_ask() == (100.5, 1.5)
    assert book.mid() == 100.25
    assert not book.is_crossed()
    assert (book.bid_count, book.ask_count, len(book)) == (3, 3, 6)


def test_top_is_best_first_and_truncated() -> None:
    book = literal_book()
    assert book.top("bid", 2) == [(100.0, 1.0), (99.5, 2.0)]
    assert book.top("ask", 2) == [(100.5, 1.5), (101.0, 2.5)]
    assert book.top("bid", 10) == BIDS
    assert book.top("ask", 0) == []
    assert book.top("ask", -1) == []


def test_band_sums_tracked_and_untracked() -> None:
    book = literal_book()
    # mid 100.25; 50 bps: bids >= 99.74875, asks <= 100.75125
    assert book.band_sums(50) == (1.0, 1.5, 100.0, 150.75)
    # 100 bps: bids >= 99.2475, asks <= 101.2525
    assert book.band_sums(100) == (3.0, 4.0, 299.0, 403.25)
    # 200 bps is not tracked: bids >= 98.245, asks <= 102.255 (every level)
    assert book.band_sums(200) == (6.0, 8.0, 596.0, 811.25)
    # 1 bp holds nothing
    assert book.band_sums(1) == (0.0, 0.0, 0.0, 0.0)
    assert book.band_sums(10) == (0.0, 0.0, 0.0, 0.0)


def test_band_sums_follow_changes_and_the_mid() -> None:
    book = literal_book()
    assert book.band_sums(50) == (1.0, 1.5, 100.0, 150.75)
    book.apply([(100.0, 4.0), (99.75, 1.0)], [])  # mid unchanged, inside the band
    assert book.band_sums(50) == (5.0, 1.5, 499.75, 150.75)
    book.apply([], [(100.5, 0.0)])  # the best ask goes: mid 100.5, bands move up
    # bids >= 99.9975: 100.0 (4.0); asks <= 101.0025: 101.0 (2.5)
    assert book.band_sums(50) == (4.0, 2.5, 400.0, 252.5)
    book.apply([(100.0, 0.0), (99.75, 0.0)], [])  # mid (99.5 + 101) / 2 = 100.25
    assert book.band_sums(50) == (0.0, 0.0, 0.0, 0.0)
    assert book.band_sums(100) == (2.0, 2.5, 199.0, 252.5)


EDGE_STEPS = [
    # (bid changes, ask changes, mid, {bps: (bid qty, ask qty, bid notional, ask notional)})
    (
        [],
        [],
        100.0,
        {
            25: (1.0, 1.0, 99.75, 100.25),
            100: (4.0, 4.0, 397.5, 402.5),
            200: (8.0, 8.0, 791.0, 809.0),
            300: (12.0, 12.0, 1180.5, 1219.5),
        },
    ),
    # a change exactly on every edge while the mid stays: the apply loop's band tests
    (
        [(99.75, 2.0), (99.0, 2.0), (98.0, 2.0), (97.0, 2.0)],
        [(100.25, 2.0), (101.0, 2.0), (102.0, 2.0), (103.0, 2.0)],
        100.0,
        {
            25: (2.0, 2.0, 199.5, 200.5),
            100: (6.0, 6.0, 596.25, 603.75),
            200: (11.0, 11.0, 1087.75, 1112.25),
            300: (16.0, 16.0, 1574.25, 1625.75),
        },
    ),
    # the mid moves up: bid edges leave the edge levels, ask edges move past levels
    (
        [],
        [(100.25, 0.0)],
        100.125,
        {
            25: (0.0, 0.0, 0.0, 0.0),
            100: (4.0, 4.0, 398.25, 403.25),
            200: (9.0, 9.0, 891.75, 911.75),
            300: (14.0, 14.0, 1380.25, 1425.25),
        },
    ),
    # back down: ask edges shrink onto the edge levels, which stay in
    (
        [],
        [(100.25, 2.0)],
        100.0,
        {
            25: (2.0, 2.0, 199.5, 200.5),
            100: (6.0, 6.0, 596.25, 603.75),
            200: (11.0, 11.0, 1087.75, 1112.25),
            300: (16.0, 16.0, 1574.25, 1625.75),
        },
    ),
    (
        [(99.75, 0.0)],
        [],
        99.875,
        {
            25: (0.0, 0.0, 0.0, 0.0),
            100: (4.0, 4.0, 396.75, 401.75),
            200: (9.0, 9.0, 888.25, 908.25),
            300: (14.0, 14.0, 1374.75, 1419.75),
        },
    ),
    # back up: bid edges shrink onto the edge levels, which stay in
    (
        [(99.75, 2.0)],
        [],
        100.0,
        {
            25: (2.0, 2.0, 199.5, 200.5),
            100: (6.0, 6.0, 596.25, 603.75),
            200: (11.0, 11.0, 1087.75, 1112.25),
            300: (16.0, 16.0, 1574.25, 1625.75),
        },
    ),
    # quantities whose running sums leave a rounding residue ...
    ([(99.75, 0.1)], [], 100.0, {100: (4.1, 6.0, 406.725, 603.75)}),
    ([(99.75, 0.3)], [], 100.0, {100: (4.3, 6.0, 426.675, 603.75)}),
    # ... and an emptied band at the same mid, which is an exact zero
    (
        [(99.75, 0.0)],
        [(100.25, 0.0)],
        100.0,
        {
            25: (0.0, 0.0, 0.0, 0.0),
            100: (4.0, 4.0, 396.75, 403.25),
            200: (9.0, 9.0, 888.25, 911.75),
            300: (14.0, 14.0, 1374.75, 1425.25),
        },
    ),
]


def test_levels_exactly_on_band_edges() -> None:
    """At mid 100.0 the 25/100/200/300 bps edges are exactly 99.75/99/98/97 and
    100.25/101/102/103, where levels sit: they are inside the band, whether the sums
    reach them by a walk at a new mid or by a change applied while the mid stays."""
    book = Book(track_bands_bps=(25, 100, 200, 300))
    grid = [97.0 + 0.25 * i for i in range(25)]  # 97.0 .. 103.0
    book.load_snapshot([(p, 1.0) for p in grid if p < 100.0], [(p, 1.0) for p in grid if p > 100])
    for bids, asks, mid, expected in EDGE_STEPS:
        book.apply(bids, asks)
        assert book.mid() == mid
        for bps, sums in expected.items():
            assert book.band_sums(bps) == pytest.approx(sums, rel=1e-12), (bids, asks, bps)
            if 0.0 in sums:
                assert book.band_sums(bps) == sums
    # untracked: the 75 bps edges are 99.25 and 100.75
    assert book.band_sums(75) == (2.0, 2.0, 198.75, 201.25)


def test_removals_and_non_positive_quantities() -> None:
    book = literal_book()
    book.apply([(98.0, 0.0)], [(150.0, 0.0)])  # absent levels: nothing happens
    assert len(book) == 6
    book.apply([(99.5, 0.0), (99.0, -1.0)], [(101.0, NAN)])  # qty not > 0 removes
    assert book.top("bid", 10) == [(100.0, 1.0)]
    assert book.top("ask", 10) == [(100.5, 1.5), (102.0, 4.0)]
    assert book.qty_at("bid", 99.5) == 0.0
    book.apply([(99.5, 7.0), (99.5, 8.0)], [])  # the last change of a price wins
    assert book.qty_at("bid", 99.5) == 8.0


def test_crossed_and_locked_books() -> None:
    book = Book()
    book.load_snapshot([(101.0, 1.0)], [(101.0, 2.0)])
    assert book.is_crossed()
    assert book.mid() == 101.0
    book.apply([(102.0, 1.0)], [])
    assert book.is_crossed()
    assert book.mid() == 101.5
    # bids >= 101.5 * 0.995 = 100.9925 (both); asks <= 102.0075 (the one)
    assert book.band_sums(50) == (2.0, 2.0, 203.0, 202.0)


def test_empty_book_and_empty_side() -> None:
    book = Book()
    assert book.best_bid() is None and book.best_ask() is None and book.mid() is None
    assert not book.is_crossed()
    assert book.band_sums(50) == (0.0, 0.0, 0.0, 0.0)
    assert book.top("bid", 5) == []
    assert book.qty_at("ask", 1.0) == 0.0
    prices, qtys = book.side_arrays("bid")
    assert prices.shape == qtys.shape == (0,)
    assert len(book) == 0
    book.apply([], [(10.0, 1.0)])
    assert book.best_ask() == (10.0, 1.0)
    assert book.mid() is None
    assert book.band_sums(50) == (0.0, 0.0, 0.0, 0.0)


def test_load_snapshot_replaces_everything() -> None:
    book = literal_book()
    book.apply([(99.9, 1.0)], [(100.6, 1.0)])
    book.load_snapshot([(50.0, 1.0), (49.0, 0.0)], [(51.0, 2.0), (52.0, -3.0)])
    assert book.top("bid", 10) == [(50.0, 1.0)]
    assert book.top("ask", 10) == [(51.0, 2.0)]
    assert book.band_sums(100) == (1.0, 2.0, 50.0, 102.0)
    book.clear()
    assert len(book) == 0 and book.best_bid() is None


def test_side_arrays_are_best_first_and_read_only() -> None:
    book = literal_book()
    prices, qtys = book.side_arrays("bid")
    assert prices.dtype == qtys.dtype == np.float64
    assert prices.tolist() == [100.0, 99.5, 99.0] and qtys.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="read-only"):
        prices[:] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        qtys[0] = 0.0
    assert book.side_arrays("bid")[0].tolist() == [100.0, 99.5, 99.0]
    assert book.side_arrays("ask")[0].tolist() == [100.5, 101.0, 102.0]


def test_side_arrays_follow_every_change() -> None:
    book = literal_book()
    assert not book.has_side_arrays("bid")
    assert book.side_arrays("bid") is book.side_arrays("bid")  # cached while unchanged
    assert book.has_side_arrays("bid") and not book.has_side_arrays("ask")
    book.apply([(99.5, 0.0), (99.8, 4.0)], [])
    assert not book.has_side_arrays("bid")
    prices, qtys = book.side_arrays("bid")
    assert prices.tolist() == [100.0, 99.8, 99.0] and qtys.tolist() == [1.0, 4.0, 3.0]
    book.apply([], [(100.5, 7.0)])
    assert book.side_arrays("ask")[1].tolist() == [7.0, 2.5, 4.0]


def test_qty_at() -> None:
    book = literal_book()
    assert book.qty_at("bid", 99.5) == 2.0
    assert book.qty_at("ask", 99.5) == 0.0
    assert book.qty_at("ask", 102.0) == 4.0


def test_bad_arguments() -> None:
    book = literal_book()
    with pytest.raises(ValueError, match="side"):
        book.top("buy", 1)
    with pytest.raises(ValueError, match="side"):
        book.qty_at("BID", 100.0)
    with pytest.raises(ValueError, match="at most"):
        Book(track_bands_bps=range(1, MAX_TRACKED_BANDS + 2))
    with pytest.raises(ValueError, match="bps"):
        Book(track_bands_bps=(0,))


def test_tracked_bands_are_sorted_and_deduplicated() -> None:
    assert Book(track_bands_bps=(50, 10, 50)).tracked_bands_bps == (10.0, 50.0)


def test_prices_at_15_significant_digits_are_distinct_levels() -> None:
    book = Book()
    book.load_snapshot([(12345678.9012345, 1.0), (12345678.9012344, 2.0)], [])
    assert book.bid_count == 2
    assert book.top("bid", 2) == [(12345678.9012345, 1.0), (12345678.9012344, 2.0)]


# -------------------------------------------------------------- reference model


class ReferenceBook:
    """The obvious book: two dicts, every query computed from scratch with ``sorted``."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def load_snapshot(self, bids: list, asks: list) -> None:
        self.bids = {p: q for p, q in bids if q > 0.0}
        self.asks = {p: q for p, q in asks if q > 0.0}

    def apply(self, bids: list, asks: list) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                if q > 0.0:
                    side[p] = q
                else:
                    side.pop(p, None)

    def levels(self, side: str) -> list[tuple[float, float]]:
        if side == "bid":
            return sorted(self.bids.items(), reverse=True)
        return sorted(self.asks.items())

    def best(self, side: str) -> tuple[float, float] | None:
        levels = self.levels(side)
        return levels[0] if levels else None

    def mid(self) -> float | None:
        bid, ask = self.best("bid"), self.best("ask")
        return None if bid is None or ask is None else (bid[0] + ask[0]) / 2

    def band_sums(self, bps: float) -> tuple[float, float, float, float]:
        mid = self.mid()
        if mid is None:
            return (0.0, 0.0, 0.0, 0.0)
        bids = [(p, q) for p, q in self.bids.items() if p >= mid * (1 - bps / 1e4)]
        asks = [(p, q) for p, q in self.asks.items() if p <= mid * (1 + bps / 1e4)]
        return (
            sum(q for _, q in bids),
            sum(q for _, q in asks),
            sum(p * q for p, q in bids),
            sum(p * q for p, q in asks),
        )


TRACKED = [(10, 25, 50, 100), (25, 100, 200, 300), (5, 300), (1, 2, 3, 4), (75,), ()]
UNTRACKED = (0.5, 7, 33.3, 50, 250, 2000)


GRIDS = [("0.01", 6_000_000), ("0.00001", 10_000), ("0.25", 400), ("0.25", 400)]
"""Tick sizes with a centre price in ticks: BTC-like, a low-priced coin, and (drawn twice as
often) a coarse grid around 100.0 where band edges often fall exactly on a level
(100 * (1 - 25 / 1e4) is 99.75, for instance), which tests the band boundaries."""


@st.composite
def price_pools(draw: st.DrawFn, step: str, centre: int) -> list[float]:
    """The prices one example draws its levels from, so that levels are often hit again:
    mostly within ±0.2% and ±2% of the centre (bids and asks cross), some far away."""
    near = st.integers(centre - max(1, centre // 500), centre + max(1, centre // 500))
    wide = st.integers(centre - centre // 50, centre + centre // 50)
    far = st.integers(1, centre * 3)
    ticks = draw(st.lists(st.one_of(near, near, wide, far), min_size=2, max_size=40))
    return [decimal_float(t, step) for t in ticks]


def decimal_float(units: int, step: str) -> float:
    """The float of the decimal ``units * step``, as a venue's decimal string decodes."""
    return float(str(Decimal(units) * Decimal(step)))


positive = st.integers(1, 10**7).map(lambda n: decimal_float(n, "0.00001"))
quantities = st.one_of(positive, positive, positive, st.just(0.0), st.sampled_from([-1.0, NAN]))
"""Mostly new or changed levels; removals, including by a negative or NaN quantity."""


def assert_same(book: Book, ref: ReferenceBook, scale: tuple[float, float], bands: list) -> None:
    """Every query of ``book`` against the reference. Band sums may differ by the
    rounding of running sums: ``scale`` bounds the quantity and the notional of
    everything ever added to the book."""
    assert book.best_bid() == ref.best("bid")
    assert book.best_ask() == ref.best("ask")
    assert book.mid() == ref.mid()
    bid, ask = ref.best("bid"), ref.best("ask")
    assert book.is_crossed() == (bid is not None and ask is not None and bid[0] >= ask[0])
    assert (book.bid_count, book.ask_count) == (len(ref.bids), len(ref.asks))
    assert len(book) == len(ref.bids) + len(ref.asks)
    for side in ("bid", "ask"):
        levels = ref.levels(side)
        for n in (1, 3, 20, 1000):
            assert book.top(side, n) == levels[:n]
        prices, qtys = book.side_arrays(side)
        assert prices.tolist() == [p for p, _ in levels]
        assert qtys.tolist() == [q for _, q in levels]
        for p, q in levels[:5]:
            assert book.qty_at(side, p) == q
    assert book.qty_at("bid", 0.123) == ref.bids.get(0.123, 0.0)
    qty_scale, notional_scale = scale
    for bps in bands:
        got, want = book.band_sums(bps), ref.band_sums(bps)
        tolerances = (qty_scale, qty_scale, notional_scale, notional_scale)
        for g, w, tol in zip(got, want, tolerances, strict=True):
            assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9 * tol), (bps, got, want)
            assert w != 0 or g == 0.0, ("an empty band is exactly zero", bps, got, want)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), tracked=st.sampled_from(TRACKED), grid=st.sampled_from(GRIDS))
def test_matches_reference_model(
    data: st.DataObject, tracked: tuple[float, ...], grid: tuple[str, int]
) -> None:
    book, ref = Book(track_bands_bps=tracked), ReferenceBook()
    if data.draw(st.booleans(), label="rebuild often"):
        book.REBUILD_EVERY_CHANGES = data.draw(st.integers(1, 20), label="rebuild every")
    pool = sorted(set(data.draw(price_pools(*grid), label="prices")))
    # Bids mostly below asks, with an overlap: books cross now and then.
    third = len(pool) // 3
    bid_levels = st.lists(st.tuples(st.sampled_from(pool[: len(pool) - third]), quantities))
    ask_levels = st.lists(st.tuples(st.sampled_from(pool[third:]), quantities))
    qty_scale = notional_scale = 1.0
    ops = ["snapshot"] + ["apply"] * 8 + ["empty side", "clear"]
    for step in range(data.draw(st.integers(1, 25), label="steps")):
        op = "snapshot" if step == 0 else data.draw(st.sampled_from(ops))
        if op == "clear":
            book.clear()
            ref = ReferenceBook()
            continue
        if op == "empty side":
            side = data.draw(st.sampled_from(["bid", "ask"]))
            removals = [(p, 0.0) for p in (ref.bids if side == "bid" else ref.asks)]
            bids, asks = (removals, []) if side == "bid" else ([], removals)
        else:
            bids, asks = data.draw(bid_levels, label="bids"), data.draw(ask_levels, label="asks")
        qty_scale += sum(q for _, q in bids + asks if q > 0.0)
        notional_scale += sum(p * q for p, q in bids + asks if q > 0.0)
        if op == "snapshot":
            book.load_snapshot(bids, asks)
            ref.load_snapshot(bids, asks)
        else:
            book.apply(bids, asks)
            ref.apply(bids, asks)
        # Band queries are skipped now and then, so the bands' anchor sometimes has to
        # move across many changes and a large move of the mid.
        bands = data.draw(
            st.lists(st.sampled_from([*tracked, *UNTRACKED]), max_size=4), label="bands"
        )
        assert_same(book, ref, (qty_scale, notional_scale), bands)


# ---------------------------------------------------------- prices as float keys

significant = st.integers(1, 10**15 - 1)  # at most 15 significant digits
exponent = st.integers(-20, 20)


def decimal_string(digits: int, exp: int) -> str:
    return str(Decimal(digits).scaleb(exp))


@given(a=significant, b=significant, exp_a=exponent, exp_b=exponent)
def test_distinct_decimals_of_15_digits_are_distinct_floats(
    a: int, b: int, exp_a: int, exp_b: int
) -> None:
    sa, sb = decimal_string(a, exp_a), decimal_string(b, exp_b)
    assert (float(sa) == float(sb)) == (Decimal(sa) == Decimal(sb))


@given(digits=significant, exp=exponent)
def test_neighbouring_15_digit_decimals_are_distinct_floats(digits: int, exp: int) -> None:
    """The hardest pair: decimals one unit apart in the 15th significant digit."""
    assert float(decimal_string(digits, exp)) != float(decimal_string(digits + 1, exp))


@given(digits=significant, exp=exponent, trailing_zeros=st.integers(0, 8))
def test_15_digit_decimals_round_trip_through_float(
    digits: int, exp: int, trailing_zeros: int
) -> None:
    """``float(s)`` printed with 15 significant digits gives ``s`` back, so no two such
    strings share a float; Binance pads prices with zeros ("61737.63000000")."""
    text = decimal_string(digits, exp)
    if "E" not in text and "." in text:
        text += "0" * trailing_zeros
    assert Decimal(format(float(text), ".15g")) == Decimal(text)


@given(st.lists(st.tuples(st.integers(1, 400), st.integers(0, 50)), min_size=1, max_size=400),
       st.lists(st.tuples(st.integers(401, 800), st.integers(0, 50)), min_size=1, max_size=400))
def test_wider_tracked_bands_never_sum_to_less_than_narrower(bid_steps, ask_steps):
    """Running sums carry rounding residue; nesting must survive it (a report shows the
    10 bps band next to the 50 bps one)."""
    book = Book()
    book.load_snapshot([(100.0 + i * 0.01, 1.0) for i in range(1, 300)],
                       [(104.0 + i * 0.01, 1.0) for i in range(1, 300)])
    for (b_tick, b_qty), (a_tick, a_qty) in zip(bid_steps, ask_steps, strict=False):
        book.apply([(100.0 + b_tick * 0.01, b_qty / 7.0)], [(100.0 + a_tick * 0.01, a_qty / 3.0)])
        if book.mid() is None:
            continue
        sums = [book.band_sums(bps) for bps in book.tracked_bands_bps]
        for narrow, wide in itertools.pairwise(sums):
            assert all(n <= w for n, w in zip(narrow, wide, strict=True)), (narrow, wide)


# ------------------------------------------------------------ bucket keys at the extremes


EXTREME_BOOKS = [
    # (snapshot bids, snapshot asks, later changes): the bucket width comes from the
    # snapshot's density; later prices land far outside the range it was chosen for
    (
        [(1.00000001e-6 - i * 1e-14, 1.0) for i in range(64)],
        [(1.00000002e-6 + i * 1e-14, 1.0) for i in range(64)],
        [(9.0e8, 2.0), (8.99999999e8, 3.0), (1.0, 4.0), (1e-6 - 5e-14, 5.0)],
    ),
    # a snapshot this dense makes ``price / width`` overflow to infinity for large prices
    (
        [(3e-300 - i * 1e-310, 1.0) for i in range(10)],
        [(4e-300 + i * 1e-310, 1.0) for i in range(10)],
        [(5e8, 2.0), (6e8, 3.0), (1e9 - 1, 4.0), (2.5e-300, 1.5)],
    ),
]


@pytest.mark.parametrize(("bids", "asks", "changes"), EXTREME_BOOKS)
def test_prices_far_outside_the_snapshot_range_stay_exact(bids, asks, changes) -> None:
    """Bucket ids are a monotonic rounding of ``price / width``: far from the snapshot
    the rounding gets coarse (or ``price / width`` overflows to infinity) and many prices
    share a bucket, which must not change any answer."""
    book, ref = Book(), ReferenceBook()
    book.load_snapshot(bids, asks)
    ref.load_snapshot(bids, asks)
    book.apply(changes, changes)
    ref.apply(changes, changes)
    assert_same(book, ref, (100.0, 1e10), [10, 50, 200, 2000])
    removals = [(p, 0.0) for p, _ in changes[:2]]
    book.apply(removals, removals)
    ref.apply(removals, removals)
    assert_same(book, ref, (100.0, 1e10), [10, 50, 200, 2000])


def test_many_applies_of_the_same_levels_keep_counts_and_order() -> None:
    """Levels inserted, changed and removed over and over (buckets created and dropped)."""
    book, ref = Book(), ReferenceBook()
    grid = [100.0 + 0.01 * i for i in range(-300, 300)]
    book.load_snapshot([(p, 1.0) for p in grid if p < 100.0], [(p, 1.0) for p in grid if p > 100])
    ref.load_snapshot([(p, 1.0) for p in grid if p < 100.0], [(p, 1.0) for p in grid if p > 100])
    for step in range(40):
        qty = 0.0 if step % 3 == 0 else 1.0 + step
        bids = [(p, qty) for p in grid[step::7] if p < 100.0]
        asks = [(p, qty) for p in grid[step::5] if p > 100.0]
        book.apply(bids, asks)
        ref.apply(bids, asks)
        assert_same(book, ref, (1e6, 1e8), [10, 25, 50, 100, 300])


def test_top_answers_stay_right_across_its_cache():
    """Short, long, then short again, across changes and on a side shorter than asked:
    every answer equals a fresh sort of the levels, and a caller may keep or change
    what it got without touching the book."""
    book = Book()
    book.load_snapshot([(100.0 - i * 0.5, 1.0 + i) for i in range(30)],
                       [(101.0 + i * 0.5, 2.0 + i) for i in range(3)])
    bids = sorted(((100.0 - i * 0.5, 1.0 + i) for i in range(30)), reverse=True)
    assert book.top("bid", 5) == bids[:5]
    assert book.top("bid", 12) == bids[:12]
    got = book.top("bid", 3)
    assert got == bids[:3]
    got.clear()  # the caller's list, not the cache
    assert book.top("bid", 3) == bids[:3]
    assert book.top("ask", 10) == [(101.0, 2.0), (101.5, 3.0), (102.0, 4.0)]
    assert book.top("ask", 20) == [(101.0, 2.0), (101.5, 3.0), (102.0, 4.0)]
    book.apply([(100.25, 7.0), (100.0, 0.0)], [(101.5, 0.0)])
    assert book.top("bid", 3) == [(100.25, 7.0), (99.5, 2.0), (99.0, 3.0)]
    assert book.top("ask", 5) == [(101.0, 2.0), (102.0, 4.0)]
    book.apply([], [(100.75, 1.0)])
    assert book.top("ask", 1) == [(100.75, 1.0)]
    assert book.top("bid", 1) == [(100.25, 7.0)]
