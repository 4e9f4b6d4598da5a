"""The band a scan reads: one side's levels within ``max_distance_bps`` of mid, best first.

A scan compares the band with the previous scan's to spot levels that rose by the wall
threshold. Reading the band is the costly part of a scan, and which of the book's two
readers is cheaper depends on who else read the book since it last changed:

* :meth:`Book.top` sorts only the buckets the band reaches (about 0.3 µs a level read):
  the cheaper reader on its own, as in the fast cycle, where nobody else reads that far;
* :meth:`Book.side_arrays` builds the whole side (2-3× the cost of ``top(500)`` on
  BTCUSDT) but is cached until the side changes, and the slow cycle's liquidity
  calculators (walls, vacuums) read it anyway: there it is free, or paid once for all.

:meth:`Book.levels_within` reads the band with the reader the scan picks
(``whole_side``) and answers it in the form it was read in, a list of ``(price, qty)``
tuples or a pair of numpy arrays (:class:`marketcore.book.SideLevels`); a :class:`Band`
keeps that form. Converting one into the other costs about as much as a whole
comparison (~35 µs for 500 levels), and a comparison only needs the few levels at or
above the wall threshold, and the previous size of each.
"""

from __future__ import annotations

import bisect

import numpy as np
from marketcore.book import Book

__all__ = ["Band", "read_band"]

MIN_READ = 64
"""Levels a side the first read takes before it learns the band's size."""


class Band:
    """One side's levels within the distance from mid, best first (bids descending)."""

    __slots__ = ("_levels", "_prices", "_qtys", "is_bid")

    def __init__(self, is_bid: bool, levels: list[tuple[float, float]] | None = None,
                 prices: np.ndarray | None = None, qtys: np.ndarray | None = None) -> None:
        self.is_bid = is_bid
        self._levels = levels
        """The levels as :meth:`Book.top` gave them (``None`` when read as arrays)."""
        self._prices = prices
        self._qtys = qtys

    def __len__(self) -> int:
        return len(self._levels) if self._levels is not None else len(self._prices)

    @property
    def edge(self) -> float:
        """The worst price of the band (the band must not be empty)."""
        if self._levels is not None:
            return self._levels[-1][0]
        return float(self._prices[-1])

    def levels(self) -> list[tuple[float, float]]:
        """Every level as ``(price, qty)``, best first (tests, introspection)."""
        if self._levels is not None:
            return list(self._levels)
        return list(zip(self._prices.tolist(), self._qtys.tolist(), strict=True))

    def at_least(self, threshold: float) -> list[tuple[float, float]]:
        """The levels whose qty is >= ``threshold``, best first, as Python floats."""
        if self._levels is not None:
            return [level for level in self._levels if level[1] >= threshold]
        # A mask and a gather instead of a loop: a dozen levels out of 500 pass.
        where = np.flatnonzero(self._qtys >= threshold)
        return list(zip(self._prices[where].tolist(), self._qtys[where].tolist(), strict=True))

    def sizes_at(self, prices: list[float]) -> list[float]:
        """The qty of the band's level at each of ``prices`` (``0.0`` where it has none)."""
        if not prices:
            return []
        if self._levels is not None:
            # Ascending tuples, searched with ``(price,)``: it sorts just before every
            # ``(price, qty)``, so the search runs in C without a key function.
            ascending = self._levels[::-1] if self.is_bid else self._levels
            n = len(ascending)
            out = []
            for price in prices:
                i = bisect.bisect_left(ascending, (price,))
                out.append(ascending[i][1] if i < n and ascending[i][0] == price else 0.0)
            return out
        asc_prices = (self._prices[::-1] if self.is_bid else self._prices).tolist()
        asc_qtys = self._qtys[::-1] if self.is_bid else self._qtys
        n = len(asc_prices)
        out = []
        for price in prices:
            i = bisect.bisect_left(asc_prices, price)
            out.append(float(asc_qtys[i]) if i < n and asc_prices[i] == price else 0.0)
        return out


def read_band(book: Book, side: str, mid: float, reach: float, cap: int, expect: int, *,
              whole_side: bool) -> tuple[Band, int]:
    """The levels of ``side`` priced within ``reach`` (a fraction) of ``mid``, best first,
    at most ``cap``; and how many levels the next read should take (``expect`` next time).

    :meth:`Book.levels_within` with ``whole_side`` (see the module docstring): from
    :meth:`Book.side_arrays`, or from :meth:`Book.top`, as few levels as the band needs,
    ``expect`` first. Either way the band is the same: the best
    ``min(levels within reach, max(cap, expect))`` levels (a first read of
    :data:`MIN_READ` may exceed a smaller ``cap``).
    """
    is_bid = side == "bid"
    edge = mid * (1 - reach) if is_bid else mid * (1 + reach)
    levels = book.levels_within(side, edge, max(cap, expect), expect=expect,
                                whole_side=whole_side)
    if levels.whole_side:
        prices, qtys = levels.arrays()
        # Copies: a view would keep the whole cached side alive until the next scan.
        band = Band(is_bid, prices=prices.copy(), qtys=qtys.copy())
    else:
        band = Band(is_bid, levels=levels.levels())  # a fresh list, ours to keep
    return band, min(cap, max(MIN_READ, 2 * len(band)))
