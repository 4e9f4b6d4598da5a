"""Reading the book for the scans: level windows by either path, tick inference, decimals."""

from __future__ import annotations

from itertools import chain

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore import Book
from marketcore_calc_liquidity.levels import decimals_of, expect_next, infer_tick, levels_within


def big_book(levels: int = 3000) -> Book:
    """Bids 100.00 down and asks 100.01 up, every other tick near the top, sparser out."""
    rng = np.random.default_rng(7)
    ticks = np.cumsum(rng.integers(1, 4, size=levels))
    book = Book()
    book.load_snapshot([(round(100.0 - t / 100, 2), float(q)) for t, q in
                        zip(ticks, rng.integers(1, 100, size=levels), strict=True)],
                       [(round(100.01 + t / 100, 2), float(q)) for t, q in
                        zip(ticks, rng.integers(1, 100, size=levels), strict=True)])
    return book


BOOK = big_book()
MID = BOOK.mid()


def reference(side: str, bps: float, max_levels: int) -> tuple[list, bool]:
    prices, qtys = BOOK.side_arrays(side)
    edge = MID * (1 - bps / 1e4) if side == "bid" else MID * (1 + bps / 1e4)
    inside = [(p, q) for p, q in zip(prices, qtys, strict=True)
              if (p >= edge if side == "bid" else p <= edge)]
    return inside[:max_levels], len(inside) <= max_levels


@given(side=st.sampled_from(["bid", "ask"]), bps=st.floats(min_value=0.5, max_value=800),
       max_levels=st.integers(min_value=1, max_value=4000),
       expect=st.integers(min_value=0, max_value=4000))
def test_levels_within_matches_a_filter_of_the_whole_side(side, bps, max_levels, expect):
    """Whichever way it reads (top levels, doubling, or the whole side), the answer is one."""
    got = levels_within(BOOK, side, MID, bps, max_levels, expect=expect)
    expected, complete = reference(side, bps, max_levels)
    prices, qtys = got.arrays()
    assert list(zip(prices.tolist(), qtys.tolist(), strict=True)) == expected
    assert got.complete == complete
    assert len(got) == len(expected)


def test_a_small_read_uses_the_top_of_the_book():
    # 5 bps of 100 is 0.05: a handful of levels, found by the first read of 64
    got = levels_within(BOOK, "bid", MID, 5, 1000)
    assert not got.whole_side
    assert 0 < len(got) < 64 and got.complete
    assert got.arrays()[0][0] == BOOK.best_bid()[0]


def test_a_large_read_takes_the_whole_side():
    # 3000 bps of 100 is 30.00: about half of the side's 3000 levels
    got = levels_within(BOOK, "ask", MID, 3000, 4000)
    assert got.whole_side
    assert len(got) > 0.3 * BOOK.ask_count and got.complete


# ---------------------------------------------------------------- the former reader

def former_levels_within(book, side, mid, bps, max_levels, *, expect=0):
    """``levels_within`` as it was before it moved into ``Book.levels_within``:
    ``(prices, qtys, complete, needed)``."""
    is_bid = side == "bid"
    edge = mid * (1 - bps / 1e4) if is_bid else mid * (1 + bps / 1e4)
    count = book.bid_count if is_bid else book.ask_count
    wanted = min(count, max_levels + 1)
    n = min(wanted, max(64, expect))
    while True:
        if n > count * 0.3:
            prices, qtys = book.side_arrays(side)
            break
        levels = book.top(side, n)
        if n >= wanted or ((levels[-1][0] < edge) if is_bid else (levels[-1][0] > edge)):
            flat = np.fromiter(chain.from_iterable(levels), np.float64, 2 * len(levels))
            prices, qtys = flat[0::2], flat[1::2]
            break
        n = min(wanted, 2 * n)
    inside = int(np.searchsorted(-prices, -edge, side="right") if is_bid
                 else np.searchsorted(prices, edge, side="right"))
    covered = inside < len(prices) or len(prices) == count
    kept = min(inside, max_levels)
    return prices[:kept], qtys[:kept], covered and inside <= max_levels, kept + 1


grid_levels = st.dictionaries(st.integers(0, 600), st.sampled_from([0.5, 1.0, 3.0, 40.0]),
                              max_size=300)


@given(bids=grid_levels, asks=grid_levels, side=st.sampled_from(["bid", "ask"]),
       bps=st.one_of(st.floats(0.0, 700), st.integers(0, 700).map(float)),
       max_levels=st.integers(0, 400), expect=st.integers(0, 400))
def test_levels_within_is_bit_identical_to_the_former_reader(bids, asks, side, bps,
                                                             max_levels, expect):
    book = Book()
    book.load_snapshot([(round(100.00 - 0.01 * k, 2), q) for k, q in bids.items()],
                       [(round(100.01 + 0.01 * k, 2), q) for k, q in asks.items()])
    mid = book.mid()
    if mid is None:
        mid = 100.005
    prices, qtys, complete, needed = former_levels_within(book, side, mid, bps, max_levels,
                                                          expect=expect)
    got = levels_within(book, side, mid, bps, max_levels, expect=expect)
    got_prices, got_qtys = got.arrays()
    assert got_prices.tobytes() == prices.tobytes()
    assert got_qtys.tobytes() == qtys.tobytes()
    assert got.complete == complete
    assert expect_next(got) == needed + needed // 4 + 16


@pytest.mark.parametrize(("prices", "tick"), [
    ([60000.01, 60000.02, 60000.05], 0.01),
    ([0.10415, 0.10416, 0.1042], 1e-05),
    ([100.0, 100.5, 102.0], 0.5),
])
def test_infer_tick_is_the_smallest_gap_rounded(prices, tick):
    book = Book()
    book.load_snapshot([(p, 1.0) for p in prices], [(max(prices) * 1.01, 1.0)])
    assert infer_tick(book) == tick


def test_infer_tick_needs_two_levels_on_a_side():
    book = Book()
    book.load_snapshot([(100.0, 1.0)], [(101.0, 1.0)])
    assert infer_tick(book) is None


@pytest.mark.parametrize(("step", "digits"), [(0.01, 2), (5e-08, 8), (10.0, 0), (0.5, 1),
                                              (1e-05, 5), (1.0, 0)])
def test_decimals_of(step, digits):
    assert decimals_of(step) == digits
