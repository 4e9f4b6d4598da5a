"""Reading the book for the scans: level windows by either path, tick inference, decimals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore import Book
from marketcore_calc_liquidity.levels import decimals_of, infer_tick, levels_within


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
    assert list(zip(got.prices.tolist(), got.qtys.tolist(), strict=True)) == expected
    assert got.complete == complete
    assert got.needed == len(expected) + 1


def test_a_small_read_uses_the_top_of_the_book():
    # 5 bps of 100 is 0.05: a handful of levels, found by the first read of 64
    got = levels_within(BOOK, "bid", MID, 5, 1000)
    assert 0 < len(got.prices) < 64 and got.complete
    assert got.prices[0] == BOOK.best_bid()[0]


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
