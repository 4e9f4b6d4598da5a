"""The L2 order book of one symbol: levels, best prices, top of book and depth bands.

Prices and quantities are ``float``. A venue's decimal strings become floats once, in
the decoder, and are used as dict keys from then on. That is safe because a float64
carries 53 bits (``DBL_DIG`` = 15): every decimal number of at most 15 significant
digits converts to a float that converts back to the same decimal, so two different
such decimals never become the same float. Binance prices have at most 15 significant
digits (the tests check the property on random decimal strings). Floats keep the hot
path free of ``Decimal`` and of a per-symbol tick size that the book would have to know.

Layout (why it is fast in pure Python): a sorted list of prices costs a ``bisect`` of
about eleven Python-level comparisons per inserted or removed level, and on Binance
streams four changes in five insert or remove a level. So each side instead keeps its
levels in *buckets*: a dict ``bucket id -> {price: qty}`` where the bucket id is
``price / width`` rounded to an integer, for a power-of-two ``width``. The rounding is
``price * (1 / width) + 1.5 * 2**52 - 1.5 * 2**52``: three float operations that
CPython runs as specialised instructions (a floor division is a slower generic call),
exact because ``1 / width`` is a power of two, and monotonic for every price — far from
the snapshot's range the rounding only gets coarser (or ``price / width`` overflows to
infinity), so more prices share a bucket, and every query stays exact because it only
relies on a bucket holding a contiguous price range. Updating a level is then three
float operations and three dict operations; only the rare creation or removal of a
whole bucket touches the sorted list of bucket ids. Order inside a bucket is produced
at query time, where only the few buckets at the top of the book (or at a band edge)
are looked at. The width is chosen when a snapshot is loaded so that the top of the
book has a few dozen levels per bucket: fewer buckets mean fewer creations and removals
of buckets, larger ones more sorting per query.

Depth bands: :meth:`Book.band_sums` for the tracked bands is incremental. Each tracked
band keeps running sums of quantity and notional for the levels inside its *anchored*
edge, computed from the mid of the last band query; every applied change adds its
quantity difference to the innermost band that contains it (the bands are nested). A
query at a new mid moves each edge by walking only the levels between the old and the
new edge. Running float sums carry rounding residue, so a band with no level (its edge
is beyond the best price) answers an exact zero, and all running sums are rebuilt from
the levels every :attr:`Book.REBUILD_EVERY_CHANGES` applied changes.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain, pairwise
from operator import mul

import numpy as np

__all__ = ["MAX_TRACKED_BANDS", "Book", "SideLevels"]

MAX_TRACKED_BANDS = 4
"""The apply loop keeps the running band sums in local variables, one per tracked band."""

_LEVELS_PER_BUCKET = 32
"""Target bucket occupancy near the top of the book: few enough to sort at query time,
enough that most new levels land in an existing bucket."""

_TOP_LEVELS_FOR_WIDTH = 64
"""How many levels from the top of a side measure its density when choosing the width."""

_INF = math.inf

_ROUND = 1.5 * 2.0**52
"""Adding and subtracting it rounds a float below 2**51 to an integer (ties to even)."""

_FIRST_READ = 64
"""Levels :meth:`Book.levels_within` reads first via :meth:`Book.top`, at least."""

_WHOLE_SIDE_SHARE = 0.3
"""Past this share of a side, :meth:`Book.side_arrays` (numpy, about 0.08 µs a level of
the whole side) beats :meth:`Book.top` (sorting its buckets, about 0.3 µs a level read)."""


class _Side:
    """One side of the book: bucketed levels plus the anchored band state.

    ``buckets`` maps a bucket id (:func:`_bucket_of`) to that bucket's ``{price: qty}``;
    ``ids`` holds the bucket ids in ascending order; ``count`` is the number of levels;
    ``best`` caches the best level until the side changes; ``top`` the longest
    :meth:`Book.top` answered since it last changed, and whether that was every level;
    ``arrays`` the read-only :meth:`Book.side_arrays` since it last changed.

    ``edges[j]`` is the price edge of tracked band ``j`` at the anchor mid (``±inf``
    before the first anchoring and for unused slots, so that no level matches).
    ``band_qty[j]`` and ``band_notional[j]`` hold the sums of the levels that are in
    band ``j`` but not in band ``j - 1``; the band totals are their prefix sums.
    """

    __slots__ = ("arrays", "band_notional", "band_qty", "best", "buckets", "count", "edges",
                 "ids", "top")

    def __init__(self, unanchored_edge: float) -> None:
        self.buckets: dict[float, dict[float, float]] = {}
        self.ids: list[float] = []
        self.count = 0
        self.best: tuple[float, float] | None = None
        self.top: tuple[list[tuple[float, float]], bool] | None = None
        self.arrays: tuple[np.ndarray, np.ndarray] | None = None
        self.edges = (unanchored_edge,) * MAX_TRACKED_BANDS
        self.band_qty = (0.0,) * MAX_TRACKED_BANDS
        self.band_notional = (0.0,) * MAX_TRACKED_BANDS


class SideLevels:
    """One side's levels within an edge price, best first, as :meth:`Book.levels_within`
    read them: a list of ``(price, qty)`` tuples from :meth:`Book.top`, or a pair of
    numpy arrays from :meth:`Book.side_arrays` (``whole_side``).

    Each form converts to the other on request, at a cost (about 35 µs for 500 levels),
    so a reader that can work on either asks :attr:`whole_side` which one it holds.
    """

    __slots__ = ("_levels", "_prices", "_qtys", "complete", "whole_side")

    def __init__(self, levels: list[tuple[float, float]] | None, prices: np.ndarray | None,
                 qtys: np.ndarray | None, complete: bool) -> None:
        self._levels = levels
        self._prices = prices
        self._qtys = qtys
        self.whole_side = levels is None
        """Whether the levels were read as arrays from :meth:`Book.side_arrays` (else as
        a list from :meth:`Book.top`)."""
        self.complete = complete
        """``False`` when ``max_levels`` stopped the read before the edge: the side holds
        more levels within the edge than these."""

    def __len__(self) -> int:
        return len(self._levels) if self._levels is not None else len(self._prices)

    def __repr__(self) -> str:
        return (f"SideLevels({len(self)} levels, complete={self.complete}, "
                f"whole_side={self.whole_side})")

    def levels(self) -> list[tuple[float, float]]:
        """The levels as ``(price, qty)`` tuples of Python floats, best first.

        Read via :meth:`Book.top`: this result's own list, not a copy (``top`` answers a
        fresh list, so it is the caller's to keep or trim). Read as arrays: a new list.
        """
        if self._levels is not None:
            return self._levels
        return list(zip(self._prices.tolist(), self._qtys.tolist(), strict=True))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(prices, qtys)`` as float64 arrays, best first.

        Read as arrays: read-only views of :meth:`Book.side_arrays`, which keep the whole
        cached side alive (copy them to keep them past the book's next change). Read via
        :meth:`Book.top`: new arrays.
        """
        if self._levels is None:
            return self._prices, self._qtys
        levels = self._levels
        flat = np.fromiter(chain.from_iterable(levels), np.float64, 2 * len(levels))
        return flat[0::2], flat[1::2]


class Book:
    """An L2 order book: absolute quantities per price, bids and asks.

    ``track_bands_bps`` names up to :data:`MAX_TRACKED_BANDS` depth bands (in basis
    points around the mid) whose :meth:`band_sums` are maintained incrementally; any
    other band is computed on demand by walking its levels.

    Prices must be finite and positive; the venue validates its input (a quantity that
    is not ``> 0``, including NaN, removes the level).
    """

    REBUILD_EVERY_CHANGES = 1 << 20
    """Applied level changes after which the next band query recomputes the running band
    sums from the levels, which bounds their rounding drift (about 0.1 ms per rebuild)."""

    def __init__(self, *, track_bands_bps: Sequence[float] = (10, 25, 50, 100)) -> None:
        bands = sorted({float(bps) for bps in track_bands_bps})
        if len(bands) > MAX_TRACKED_BANDS:
            raise ValueError(f"at most {MAX_TRACKED_BANDS} tracked bands, got {len(bands)}")
        if any(not 0.0 < bps < 1e4 for bps in bands):
            raise ValueError(f"tracked bands must be in (0, 10000) bps, got {bands}")
        self._bands = tuple(bands)
        self._band_index = {bps: j for j, bps in enumerate(bands)}
        self.clear()

    # ----------------------------------------------------------------- updates

    def clear(self) -> None:
        """Remove every level."""
        self._bids = _Side(_INF)
        self._asks = _Side(-_INF)
        self._inv: float | None = None
        self._anchor_mid: float | None = None
        self._changes_since_rebuild = 0

    def load_snapshot(
        self, bids: Iterable[tuple[float, float]], asks: Iterable[tuple[float, float]]
    ) -> None:
        """Replace the whole book with a snapshot; levels with qty ``<= 0`` are skipped.

        The bucket width is chosen again from the snapshot's density.
        """
        bid_levels = [(p, q) for p, q in bids if q > 0.0]
        ask_levels = [(p, q) for p, q in asks if q > 0.0]
        self.clear()
        self._inv = inv = _inverse_width(
            heapq.nlargest(_TOP_LEVELS_FOR_WIDTH, (p for p, _ in bid_levels)),
            heapq.nsmallest(_TOP_LEVELS_FOR_WIDTH, (p for p, _ in ask_levels)),
        )
        for side, levels in ((self._bids, bid_levels), (self._asks, ask_levels)):
            buckets = side.buckets
            for p, q in levels:
                k = p * inv + _ROUND - _ROUND
                bucket = buckets.get(k)
                if bucket is None:
                    buckets[k] = {p: q}
                else:
                    bucket[p] = q
            side.ids = sorted(buckets)
            side.count = sum(map(len, buckets.values()))

    def apply(self, bids: Sequence[Sequence[float]], asks: Sequence[Sequence[float]]) -> None:
        """Apply one batch of level changes: ``(price, qty)`` with absolute quantities.

        A qty that is not ``> 0`` removes the level; removing an absent level is a no-op.
        """
        inv = self._inv
        if inv is None:
            first = bids[0][0] if bids else asks[0][0] if asks else None
            if first is None:
                return
            inv = self._inv = _inverse_width([first], [])
        if bids:
            _apply_bids(self._bids, bids, inv)
            self._bids.top = self._bids.arrays = None
        if asks:
            _apply_asks(self._asks, asks, inv)
            self._asks.top = self._asks.arrays = None
        self._changes_since_rebuild += len(bids) + len(asks)

    # ----------------------------------------------------------------- queries

    @property
    def bid_count(self) -> int:
        """Number of bid levels."""
        return self._bids.count

    @property
    def ask_count(self) -> int:
        """Number of ask levels."""
        return self._asks.count

    def __len__(self) -> int:
        return self._bids.count + self._asks.count

    @property
    def tracked_bands_bps(self) -> tuple[float, ...]:
        """The bands whose sums are maintained incrementally, ascending."""
        return self._bands

    def best_bid(self) -> tuple[float, float] | None:
        """The highest bid ``(price, qty)``, or ``None`` when there are no bids."""
        side = self._bids
        if side.best is None and side.ids:
            bucket = side.buckets[side.ids[-1]]
            price = max(bucket)
            side.best = (price, bucket[price])
        return side.best

    def best_ask(self) -> tuple[float, float] | None:
        """The lowest ask ``(price, qty)``, or ``None`` when there are no asks."""
        side = self._asks
        if side.best is None and side.ids:
            bucket = side.buckets[side.ids[0]]
            price = min(bucket)
            side.best = (price, bucket[price])
        return side.best

    def mid(self) -> float | None:
        """``(best bid + best ask) / 2``, or ``None`` when a side is empty."""
        bid = self.best_bid()
        ask = self.best_ask()
        if bid is None or ask is None:
            return None
        return (bid[0] + ask[0]) / 2

    def is_crossed(self) -> bool:
        """Whether the best bid is at or above the best ask (a locked book counts)."""
        bid = self.best_bid()
        ask = self.best_ask()
        return bid is not None and ask is not None and bid[0] >= ask[0]

    def top(self, side: str, n: int) -> list[tuple[float, float]]:
        """The best ``n`` levels of ``side`` (``"bid"`` or ``"ask"``), best first.

        Answers are cached until the side changes: a cycle's calculators and the level
        sampling ask the same book for its top levels several times.
        """
        book_side = self._side(side)
        if n <= 0:
            return []
        cached = book_side.top
        if cached is not None and (len(cached[0]) >= n or cached[1]):
            return cached[0][:n]
        buckets = book_side.buckets
        is_bid = book_side is self._bids
        out: list[tuple[float, float]] = []
        for k in reversed(book_side.ids) if is_bid else book_side.ids:
            bucket = buckets[k]
            prices = sorted(bucket, reverse=is_bid)
            wanted = n - len(out)
            if len(prices) >= wanted:
                del prices[wanted:]
                out += zip(prices, map(bucket.__getitem__, prices), strict=True)
                break
            out += zip(prices, map(bucket.__getitem__, prices), strict=True)
        book_side.top = (out, len(out) < n)
        return out[:]

    def band_sums(self, bps: float) -> tuple[float, float, float, float]:
        """``(bid_qty, ask_qty, bid_notional, ask_notional)`` within ``bps`` of the mid.

        Bids count when ``price >= mid * (1 - bps / 1e4)``, asks when
        ``price <= mid * (1 + bps / 1e4)``. All zeros when there is no mid. Tracked bands
        are answered from running sums; other bands walk their levels.
        """
        bid, ask = self.best_bid(), self.best_ask()
        if bid is None or ask is None:
            return (0.0, 0.0, 0.0, 0.0)
        mid = (bid[0] + ask[0]) / 2
        j = self._band_index.get(bps)
        if j is None:
            inv = self._inv
            bid_qty, bid_notional = _range_sums(
                self._bids, mid * (1 - bps / 1e4), _INF, inv, lo_closed=True
            )
            ask_qty, ask_notional = _range_sums(
                self._asks, -_INF, mid * (1 + bps / 1e4), inv, lo_closed=False
            )
            return (bid_qty, ask_qty, bid_notional, ask_notional)
        if mid != self._anchor_mid or self._changes_since_rebuild >= self.REBUILD_EVERY_CHANGES:
            self._anchor(mid)
        bids, asks = self._bids, self._asks
        # A band with no level is an exact zero, not the rounding residue of its sums.
        bid_qty = bid_notional = ask_qty = ask_notional = 0.0
        if bid[0] >= bids.edges[j]:
            bid_qty = _nested_total(bids.band_qty, j)
            bid_notional = _nested_total(bids.band_notional, j)
        if ask[0] <= asks.edges[j]:
            ask_qty = _nested_total(asks.band_qty, j)
            ask_notional = _nested_total(asks.band_notional, j)
        return (bid_qty, ask_qty, bid_notional, ask_notional)

    def side_arrays(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """``(prices, qtys)`` of every level of ``side``, best first, as read-only float64 arrays.

        The pair is cached until the side changes: the slow cycle's calculators (walls,
        vacuums, …) each ask for the whole side of the same book, and building it is the
        costly part (about 0.1 µs a level). Read-only, so one caller cannot alter what the
        next one reads; copy them to modify.
        """
        book_side = self._side(side)
        cached = book_side.arrays
        if cached is not None:
            return cached
        buckets = book_side.buckets.values()
        n = book_side.count
        prices = np.fromiter(chain.from_iterable(buckets), np.float64, count=n)
        qtys = np.fromiter(chain.from_iterable(b.values() for b in buckets), np.float64, count=n)
        order = np.argsort(prices)
        if book_side is self._bids:
            order = order[::-1]
        prices, qtys = prices[order], qtys[order]
        prices.flags.writeable = qtys.flags.writeable = False
        book_side.arrays = (prices, qtys)
        return book_side.arrays

    def levels_within(self, side: str, edge: float, max_levels: int, *, expect: int = 0,
                      whole_side: bool | None = None) -> SideLevels:
        """The levels of ``side`` priced at ``edge`` or better (bids ``>= edge``, asks
        ``<= edge``), best first, at most ``max_levels``.

        Levels within ``bps`` of the mid: ``edge = mid * (1 - bps / 1e4)`` for bids,
        ``mid * (1 + bps / 1e4)`` for asks. ``edge`` must not be NaN.

        How it reads the side, by ``whole_side``:

        * ``False``: :meth:`top`, as few levels as needed: the best ``expect`` first (at
          least 64), twice as many again while the last one read is still within the
          edge, up to ``max_levels + 1`` (the one past the cap tells whether the cap cut
          the side short; a read that reaches the cap takes it too). The cheaper reader
          when nobody else reads the whole side: it sorts only the buckets it reaches.
          ``expect``: what the previous read of the same distance needed, plus a
          margin, so that the first read suffices.
        * ``True``: :meth:`side_arrays`, cached until the side changes: free when
          another reader already built it.
        * ``None`` (default): like ``False`` until a read would take more than 30 % of
          the side, then like ``True``, which costs less per level.

        Every way answers the same levels (in one form or the other, see
        :class:`SideLevels`). Bounded by the side's size.
        """
        if edge != edge:
            raise ValueError("edge must be a price, got NaN")
        if max_levels < 0:
            raise ValueError(f"max_levels must be >= 0, got {max_levels}")
        book_side = self._side(side)
        is_bid = book_side is self._bids
        if whole_side is not True:  # (True: straight to the whole side's arrays)
            count = book_side.count
            top_up_to = count * _WHOLE_SIDE_SHARE if whole_side is None else _INF
            # one past the cap: whether it is inside tells if the cap cut the edge short
            wanted = min(count, max_levels + 1)
            n = max(_FIRST_READ, expect)
            # A read of the cap takes the one past it at once: a second top() of one more
            # level than its cache holds would sort the buckets again.
            n = wanted if n >= max_levels else min(wanted, n)
            while n <= top_up_to:
                levels = self.top(side, n)
                if n >= wanted or ((levels[-1][0] < edge) if is_bid
                                   else (levels[-1][0] > edge)):
                    if is_bid:
                        inside = bisect_right(levels, -edge, key=_neg_price)
                    else:
                        inside = bisect_right(levels, edge, key=_price)
                    # no unread level is inside: the last one read is beyond, or none is left
                    read = len(levels)
                    covered = inside < read or read == count
                    kept = min(inside, max_levels)
                    if kept < read:
                        del levels[kept:]  # a fresh list: ours to trim
                    return SideLevels(levels, None, None, covered and inside <= max_levels)
                n = wanted if 2 * n >= max_levels else min(wanted, 2 * n)
        prices, qtys = self.side_arrays(side)
        if is_bid:  # descending: count the prices below the edge in the ascending view
            inside = len(prices) - int(np.searchsorted(prices[::-1], edge, side="left"))
        else:
            inside = int(np.searchsorted(prices, edge, side="right"))
        kept = min(inside, max_levels)
        return SideLevels(None, prices[:kept], qtys[:kept], inside <= max_levels)

    def has_side_arrays(self, side: str) -> bool:
        """Whether :meth:`side_arrays` of ``side`` is built and cached, i.e. free to ask
        for until the side changes (a reader choosing between it and :meth:`top`)."""
        return self._side(side).arrays is not None

    def qty_at(self, side: str, price: float) -> float:
        """The quantity at ``price`` on ``side``; ``0.0`` when there is no such level."""
        book_side = self._side(side)
        inv = self._inv
        if inv is None:
            return 0.0
        bucket = book_side.buckets.get(_bucket_of(price, inv))
        return 0.0 if bucket is None else bucket.get(price, 0.0)

    # ----------------------------------------------------------------- internals

    def _side(self, side: str) -> _Side:
        if side == "bid":
            return self._bids
        if side == "ask":
            return self._asks
        raise ValueError(f'side must be "bid" or "ask", got {side!r}')

    def _anchor(self, mid: float) -> None:
        """Move every tracked band edge to ``mid``, walking the levels between edges."""
        if self._changes_since_rebuild >= self.REBUILD_EVERY_CHANGES:
            _forget_bands(self._bids, _INF)
            _forget_bands(self._asks, -_INF)
            self._changes_since_rebuild = 0
        bid_edges = [mid * (1 - bps / 1e4) for bps in self._bands]
        ask_edges = [mid * (1 + bps / 1e4) for bps in self._bands]
        _move_edges(self._bids, bid_edges, self._inv, is_bid=True)
        _move_edges(self._asks, ask_edges, self._inv, is_bid=False)
        self._anchor_mid = mid


def _price(level: tuple[float, float]) -> float:
    return level[0]


def _neg_price(level: tuple[float, float]) -> float:
    return -level[0]


def _nested_total(segments: tuple[float, ...], j: int) -> float:
    """Band ``j``'s total from its nested segments. A segment holds positive quantities,
    so rounding residue below zero is dropped: wider bands then never sum to less than
    narrower ones."""
    total = 0.0
    for value in segments[: j + 1]:
        if value > 0.0:
            total += value
    return total


def _apply_bids(side: _Side, levels: Sequence[Sequence[float]], inv: float) -> None:
    """The apply loop for bids. It mirrors :func:`_apply_asks` except for the band test
    (``price >= edge`` here); the two are written out because the loop is the hot path.
    ``inv`` is ``1 / width``; the bucket test comes first because most changes land in
    an existing bucket."""
    buckets = side.buckets
    get_bucket = buckets.get
    ids = side.ids
    count = side.count
    e0, e1, e2, e3 = side.edges
    q0, q1, q2, q3 = side.band_qty
    n0, n1, n2, n3 = side.band_notional
    for p, q in levels:
        k = p * inv + _ROUND - _ROUND
        bucket = get_bucket(k)
        if bucket is not None:
            if q > 0.0:
                old = bucket.get(p, 0.0)
                bucket[p] = q
                if not old:
                    count += 1
                dq = q - old
            else:
                dq = -bucket.pop(p, 0.0)
                if not dq:
                    continue
                count -= 1
                if not bucket:
                    del buckets[k]
                    ids.pop(bisect_left(ids, k))
        elif q > 0.0:
            buckets[k] = {p: q}
            ids.insert(bisect_left(ids, k), k)
            count += 1
            dq = q
        else:
            continue
        if p >= e0:
            q0 += dq
            n0 += dq * p
        elif p >= e1:
            q1 += dq
            n1 += dq * p
        elif p >= e2:
            q2 += dq
            n2 += dq * p
        elif p >= e3:
            q3 += dq
            n3 += dq * p
    side.count = count
    side.best = None
    side.band_qty = (q0, q1, q2, q3)
    side.band_notional = (n0, n1, n2, n3)


def _apply_asks(side: _Side, levels: Sequence[Sequence[float]], inv: float) -> None:
    """The apply loop for asks; see :func:`_apply_bids` (band test ``price <= edge``)."""
    buckets = side.buckets
    get_bucket = buckets.get
    ids = side.ids
    count = side.count
    e0, e1, e2, e3 = side.edges
    q0, q1, q2, q3 = side.band_qty
    n0, n1, n2, n3 = side.band_notional
    for p, q in levels:
        k = p * inv + _ROUND - _ROUND
        bucket = get_bucket(k)
        if bucket is not None:
            if q > 0.0:
                old = bucket.get(p, 0.0)
                bucket[p] = q
                if not old:
                    count += 1
                dq = q - old
            else:
                dq = -bucket.pop(p, 0.0)
                if not dq:
                    continue
                count -= 1
                if not bucket:
                    del buckets[k]
                    ids.pop(bisect_left(ids, k))
        elif q > 0.0:
            buckets[k] = {p: q}
            ids.insert(bisect_left(ids, k), k)
            count += 1
            dq = q
        else:
            continue
        if p <= e0:
            q0 += dq
            n0 += dq * p
        elif p <= e1:
            q1 += dq
            n1 += dq * p
        elif p <= e2:
            q2 += dq
            n2 += dq * p
        elif p <= e3:
            q3 += dq
            n3 += dq * p
    side.count = count
    side.best = None
    side.band_qty = (q0, q1, q2, q3)
    side.band_notional = (n0, n1, n2, n3)


def _range_sums(
    side: _Side, lo: float, hi: float, inv: float | None, *, lo_closed: bool
) -> tuple[float, float]:
    """``(qty, notional)`` of the levels in ``[lo, hi)`` (``lo_closed``) or ``(lo, hi]``.

    Buckets strictly between the buckets of ``lo`` and ``hi`` are summed whole; the two
    end buckets are filtered level by level. ``lo``/``hi`` may be infinite.
    """
    if inv is None:
        return 0.0, 0.0
    ids = side.ids
    buckets = side.buckets
    k_lo = _bucket_of(lo, inv)  # infinities stay infinite
    k_hi = _bucket_of(hi, inv)
    qty = notional = 0.0
    for i in range(bisect_left(ids, k_lo), bisect_right(ids, k_hi)):
        k = ids[i]
        bucket = buckets[k]
        if k_lo < k < k_hi:
            qty += sum(bucket.values())
            notional += sum(map(mul, bucket, bucket.values()))
        elif lo_closed:
            for p, q in bucket.items():
                if lo <= p < hi:
                    qty += q
                    notional += q * p
        else:
            for p, q in bucket.items():
                if lo < p <= hi:
                    qty += q
                    notional += q * p
    return qty, notional


def _move_edges(side: _Side, edges: list[float], inv: float | None, *, is_bid: bool) -> None:
    """Re-anchor the running band sums of ``side`` at new band ``edges``.

    A band total depends only on its own edge, so each edge moves on its own: the
    levels between the old and the new edge join the band when it grows (bids: the
    edge moves down, asks: up) and leave it otherwise.
    """
    totals_qty = list(accumulate(side.band_qty))
    totals_notional = list(accumulate(side.band_notional))
    for j, new in enumerate(edges):
        old = side.edges[j]
        if new == old:
            continue
        lo, hi = (new, old) if new < old else (old, new)
        qty, notional = _range_sums(side, lo, hi, inv, lo_closed=is_bid)
        if new < old if is_bid else new > old:
            totals_qty[j] += qty
            totals_notional[j] += notional
        else:
            totals_qty[j] -= qty
            totals_notional[j] -= notional
    side.edges = (*edges, *side.edges[len(edges) :])
    side.band_qty = _differences(totals_qty)
    side.band_notional = _differences(totals_notional)


def _forget_bands(side: _Side, unanchored_edge: float) -> None:
    """Drop the running band sums of ``side`` so that the next anchoring rebuilds them."""
    side.edges = (unanchored_edge,) * MAX_TRACKED_BANDS
    side.band_qty = side.band_notional = (0.0,) * MAX_TRACKED_BANDS


def _differences(totals: list[float]) -> tuple[float, ...]:
    """Inverse of a prefix sum: the per-band-ring sums from the band totals."""
    return (totals[0], *(b - a for a, b in pairwise(totals)))


def _width_for(top_bids: list[float], top_asks: list[float]) -> float | None:
    """A power-of-two bucket width for levels this dense, or ``None`` without levels.

    ``top_bids``/``top_asks`` are the best prices of each side, best first. The width
    aims at :data:`_LEVELS_PER_BUCKET` levels per bucket at the top of the denser side;
    with a single level it falls back to one basis point of its price.
    """
    gaps = [abs(top[0] - top[-1]) / (len(top) - 1) for top in (top_bids, top_asks) if len(top) > 1]
    gaps = [gap for gap in gaps if gap > 0.0]
    prices = top_bids or top_asks
    if not prices:
        return None
    target = min(gaps) * _LEVELS_PER_BUCKET if gaps else abs(prices[0]) * 1e-4
    if not 0.0 < target < _INF:
        return 1.0
    return math.ldexp(0.5, math.frexp(target)[1])


def _bucket_of(price: float, inv: float) -> float:
    """The bucket id of ``price``: ``price / width`` rounded to an integer. The snapshot
    and apply loops write the expression out (there a call would cost more than it)."""
    return price * inv + _ROUND - _ROUND


def _inverse_width(top_bids: list[float], top_asks: list[float]) -> float | None:
    """``1 / width`` for :func:`_width_for`'s width: exact, the width is a power of two
    (for a width below 2**-1023 it is infinite, which puts every price in one bucket)."""
    width = _width_for(top_bids, top_asks)
    return None if width is None else 1.0 / width
