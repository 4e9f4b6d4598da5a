"""``Book.levels_within`` against a plain reference: the side as a sorted dict, filtered
by the edge, capped. Every reader (``top`` with doubling, the whole side's arrays, the
choice between them) must answer the same levels, in either form, and the same
``complete``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore.book import Book, SideLevels

READERS = (None, False, True)
"""``whole_side``: choose by the share of the side, only ``top``, only ``side_arrays``."""


def price_of(side: str, k: int) -> float:
    """The ``k``-th tick from the touch: bids 100.00 down, asks 100.01 up."""
    return round(100.00 - 0.01 * k, 2) if side == "bid" else round(100.01 + 0.01 * k, 2)


def book_of(bids: dict[int, float], asks: dict[int, float]) -> Book:
    book = Book()
    book.load_snapshot([(price_of("bid", k), q) for k, q in bids.items()],
                       [(price_of("ask", k), q) for k, q in asks.items()])
    return book


def reference(levels: dict[float, float], side: str, edge: float,
              max_levels: int) -> tuple[list[tuple[float, float]], bool]:
    """The side's levels at ``edge`` or better, best first, at most ``max_levels``; and
    whether these are all of them."""
    ordered = sorted(levels.items(), reverse=side == "bid")
    inside = [(p, q) for p, q in ordered if (p >= edge if side == "bid" else p <= edge)]
    return inside[:max_levels], len(inside) <= max_levels


def check(book: Book, levels: dict[float, float], side: str, edge: float, max_levels: int,
          expect: int) -> None:
    expected, complete = reference(levels, side, edge, max_levels)
    for whole_side in READERS:
        got = book.levels_within(side, edge, max_levels, expect=expect, whole_side=whole_side)
        assert isinstance(got, SideLevels)
        assert len(got) == len(expected)
        assert got.complete == complete
        if whole_side is not None:
            assert got.whole_side == whole_side
        assert got.levels() == expected
        assert all(type(p) is float and type(q) is float for p, q in got.levels())
        prices, qtys = got.arrays()
        assert prices.dtype == qtys.dtype == np.float64
        assert prices.tolist() == [p for p, _ in expected]
        assert qtys.tolist() == [q for _, q in expected]


ticks = st.dictionaries(st.integers(0, 500), st.sampled_from([0.5, 1.0, 3.0, 40.0, 1e-8]),
                        max_size=250)


@given(bids=ticks, asks=ticks, side=st.sampled_from(["bid", "ask"]), data=st.data(),
       max_levels=st.integers(0, 300), expect=st.integers(-5, 400))
def test_every_reader_answers_the_reference(bids, asks, side, data, max_levels, expect):
    book = book_of(bids, asks)
    own = bids if side == "bid" else asks
    levels = {price_of(side, k): q for k, q in own.items()}
    # an edge on a level's own price (a tie: inside), between ticks, or off either end
    edge = data.draw(st.one_of(
        st.sampled_from(sorted(levels) or [100.0]),
        st.floats(90.0, 110.0),
        st.sampled_from([-math.inf, math.inf, 0.0, 1e300])), label="edge")
    check(book, levels, side, edge, max_levels, expect)


@given(bids=ticks, changes=st.lists(st.tuples(st.integers(0, 700), st.sampled_from(
           [0.0, 2.0, 7.5])), max_size=80),
       max_levels=st.integers(0, 300), expect=st.integers(0, 400), edge_tick=st.integers(0, 800))
def test_reads_follow_the_book_across_changes(bids, changes, max_levels, expect, edge_tick):
    """Between reads the book changes: no cached ``top`` or side arrays is answered stale,
    and a read never alters what the next one sees."""
    book = book_of(bids, {0: 1.0})
    levels = {price_of("bid", k): q for k, q in bids.items()}
    edge = price_of("bid", edge_tick)
    check(book, levels, "bid", edge, max_levels, expect)
    for k, q in changes:
        book.apply([(price_of("bid", k), q)], [])
        if q > 0:
            levels[price_of("bid", k)] = q
        else:
            levels.pop(price_of("bid", k), None)
        check(book, levels, "bid", edge, max_levels, expect)


# ------------------------------------------------------------------ edge cases, by name

SIDE_LEVELS = {k: float(k + 1) for k in range(0, 200, 2)}  # 100 levels, every other tick
DEEP_SIDE = {k: 1.0 for k in range(0, 2000, 2)}  # 1000 levels, every other tick


@pytest.mark.parametrize("whole_side", READERS)
@pytest.mark.parametrize("side", ["bid", "ask"])
def test_an_empty_side(side, whole_side):
    book = book_of({}, SIDE_LEVELS) if side == "bid" else book_of(SIDE_LEVELS, {})
    got = book.levels_within(side, 100.0, 10, whole_side=whole_side)
    assert len(got) == 0 and got.complete
    assert got.levels() == []
    assert [a.tolist() for a in got.arrays()] == [[], []]


@pytest.mark.parametrize("whole_side", READERS)
@pytest.mark.parametrize("side", ["bid", "ask"])
def test_exactly_max_levels_inside_is_complete(side, whole_side):
    book = book_of(SIDE_LEVELS, SIDE_LEVELS)
    edge = price_of(side, 2 * 9)  # the 10th level, on the edge
    got = book.levels_within(side, edge, 10, whole_side=whole_side)
    assert len(got) == 10 and got.complete
    assert got.levels()[-1][0] == edge
    one_less = book.levels_within(side, edge, 9, whole_side=whole_side)
    assert len(one_less) == 9 and not one_less.complete


@pytest.mark.parametrize("whole_side", READERS)
@pytest.mark.parametrize("side", ["bid", "ask"])
def test_all_levels_inside(side, whole_side):
    book = book_of(SIDE_LEVELS, SIDE_LEVELS)
    edge = 0.0 if side == "bid" else 1e9
    got = book.levels_within(side, edge, 1000, expect=3, whole_side=whole_side)
    assert len(got) == 100 and got.complete
    assert got.levels() == book.top(side, 100)
    capped = book.levels_within(side, edge, 100, whole_side=whole_side)
    assert len(capped) == 100 and capped.complete


@pytest.mark.parametrize("whole_side", READERS)
@pytest.mark.parametrize("side", ["bid", "ask"])
def test_no_level_inside(side, whole_side):
    book = book_of(SIDE_LEVELS, SIDE_LEVELS)
    best = book.top(side, 1)[0][0]
    edge = best + 0.005 if side == "bid" else best - 0.005  # just short of the best level
    got = book.levels_within(side, edge, 50, whole_side=whole_side)
    assert len(got) == 0 and got.complete
    assert book.levels_within(side, edge, 0, whole_side=whole_side).complete


@pytest.mark.parametrize("whole_side", READERS)
@pytest.mark.parametrize("side", ["bid", "ask"])
def test_a_level_on_the_edge_price_is_inside(side, whole_side):
    book = book_of(SIDE_LEVELS, SIDE_LEVELS)
    edge = price_of(side, 2 * 70)  # the 71st level
    got = book.levels_within(side, edge, 1000, whole_side=whole_side)
    assert len(got) == 71 and got.levels()[-1] == (edge, 141.0)
    beyond = np.nextafter(edge, math.inf if side == "bid" else -math.inf)
    assert len(book.levels_within(side, beyond, 1000, whole_side=whole_side)) == 70


def test_the_reader_follows_whole_side():
    book = book_of(DEEP_SIDE, DEEP_SIDE)
    near, far = price_of("ask", 10), price_of("ask", 1900)
    assert not book.levels_within("ask", near, 1000).whole_side  # 6 levels: a top read
    assert book.levels_within("ask", far, 1000).whole_side  # 951 of 1000: the whole side
    assert not book.levels_within("ask", far, 1000, whole_side=False).whole_side
    assert book.levels_within("ask", near, 1000, whole_side=True).whole_side


class CountingBook(Book):
    """A book that records the reads ``levels_within`` makes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int | str] = []

    def top(self, side: str, n: int) -> list[tuple[float, float]]:
        self.reads.append(n)
        return super().top(side, n)

    def side_arrays(self, side: str):
        self.reads.append("arrays")
        return super().side_arrays(side)


def counting_book() -> CountingBook:
    book = CountingBook()
    book.load_snapshot([(price_of("bid", k), q) for k, q in DEEP_SIDE.items()], [])
    return book


def test_the_reads_it_makes():
    book = counting_book()
    inside_all = 0.0
    book.levels_within("bid", inside_all, 200, expect=10, whole_side=False)
    assert book.reads == [64, 128, 201]  # doubling, and a read reaching the cap takes one past it
    book.reads.clear()
    book.levels_within("bid", inside_all, 200, expect=200, whole_side=False)
    assert book.reads == [201]  # not 200, then 201: top() would sort its buckets again
    book.reads.clear()
    book.levels_within("bid", price_of("bid", 100), 1000, expect=64, whole_side=False)
    assert book.reads == [64]  # 51 levels inside: the first read ends beyond the edge
    book.reads.clear()
    book.levels_within("bid", inside_all, 1000, whole_side=True)
    assert book.reads == ["arrays"]
    book.reads.clear()
    book.levels_within("bid", inside_all, 1000, expect=400)  # 400 > 30 % of 1000 levels
    assert book.reads == ["arrays"]


def test_what_a_read_answers_is_the_callers():
    book = book_of(SIDE_LEVELS, SIDE_LEVELS)
    listed = book.levels_within("bid", 0.0, 20, whole_side=False).levels()
    listed.clear()  # a fresh list: the book's cached top is untouched
    assert len(book.levels_within("bid", 0.0, 20, whole_side=False).levels()) == 20
    assert book.top("bid", 20)[0] == (100.0, 1.0)
    prices, qtys = book.levels_within("bid", 0.0, 20, whole_side=True).arrays()
    assert not prices.flags.writeable and not qtys.flags.writeable  # views of side_arrays
    prices, qtys = book.levels_within("bid", 0.0, 20, whole_side=False).arrays()
    assert prices.tolist() == [p for p, _ in book.top("bid", 20)]


def test_bad_arguments():
    book = book_of(SIDE_LEVELS, SIDE_LEVELS)
    with pytest.raises(ValueError, match="side"):
        book.levels_within("mid", 100.0, 10)
    with pytest.raises(ValueError, match="NaN"):
        book.levels_within("bid", math.nan, 10)
    with pytest.raises(ValueError, match="max_levels"):
        book.levels_within("bid", 100.0, -1)
