"""Reading the book for the slow-cycle scans: bounded level windows, tick, percentiles.

Walls and vacuums look at the levels near the mid. :func:`levels_within` asks the
book for them (:meth:`marketcore.book.Book.levels_within`): its best levels, as many
as the previous cycle needed plus a margin (:func:`expect_next`), doubling until the
distance is covered or the level cap is reached, so the work follows the levels near
the mid; or, when that would be a large share of the side, the whole side as sorted
numpy arrays, which is cheaper per level. Either way it is bounded by the side's size,
in the slow cycle.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
from marketcore import Book, Omitted, SymbolState
from marketcore.book import SideLevels

__all__ = [
    "decimals_of", "expect_next", "grid_tick", "infer_tick", "levels_within", "size_percentile",
    "size_reference",
]

_TICK_SAMPLE = 64
"""Levels per side whose price gaps reveal the tick when the venue did not give it."""


def levels_within(book: Book, side: str, mid: float, bps: float, max_levels: int, *,
                  expect: int = 0) -> SideLevels:
    """Levels of ``side`` priced within ``bps`` of ``mid``, best first (at most
    ``max_levels``): :meth:`Book.levels_within` at the edge ``bps`` from ``mid``, reading
    the best ``expect`` levels first (from :func:`expect_next` of the previous cycle's
    read, so that the first read usually suffices)."""
    edge = mid * (1 - bps / 1e4) if side == "bid" else mid * (1 + bps / 1e4)
    return book.levels_within(side, edge, max_levels, expect=expect)


def expect_next(levels: SideLevels) -> int:
    """Levels to read next cycle after this cycle's ``levels``: what this read needed to
    cover the distance (these levels, and the first beyond), plus a margin for a moving
    book."""
    needed = len(levels) + 1
    return needed + needed // 4 + 16


def infer_tick(book: Book) -> float | None:
    """The smallest positive price gap between neighbouring levels near the top.

    A lower bound's best guess of the tick when the venue sent no instrument: near
    the touch most neighbouring levels sit one tick apart. Rounded to 6 significant
    digits (``60000.02 - 60000.01`` is ``0.010000000002037``). ``None`` when neither
    side has two levels.
    """
    gaps = []
    for side in ("bid", "ask"):
        prices = np.array([p for p, _ in book.top(side, _TICK_SAMPLE)], dtype=np.float64)
        if len(prices) > 1:
            diffs = np.abs(np.diff(prices))
            diffs = diffs[diffs > 0]
            if len(diffs):
                gaps.append(float(diffs.min()))
    if not gaps:
        return None
    tick = float(f"{min(gaps):.6g}")
    return tick if math.isfinite(tick) and tick > 0 else None


def decimals_of(step: float) -> int:
    """Decimal places of a grid step (``0.01`` → 2, ``5e-08`` → 8, ``10.0`` → 0)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def size_percentile(state: SymbolState, q: float, min_samples: int) -> float | Omitted:
    """The ``q``-th percentile of the symbol's level-size history, or why there is none."""
    history = state.level_history
    if history is None:
        return Omitted("no level-size history is kept for this symbol")
    samples = len(history)
    if samples < min_samples:
        return Omitted(f"level-size history holds {samples} samples, needs at least "
                       f"{min_samples}")
    value = history.percentile(q)
    if value is None or not math.isfinite(value) or value <= 0:
        return Omitted(f"P{q:g} of level sizes is not a positive number ({value!r})")
    return value


def size_reference(state: SymbolState, q: float, min_samples: int
                   ) -> tuple[float, float] | Omitted:
    """``(P{q} of level sizes, mid)`` — what walls and vacuums measure a level against
    and where they measure from — or why either is missing."""
    size = size_percentile(state, q, min_samples)
    if isinstance(size, Omitted):
        return size
    mid = state.book.mid()
    if mid is None:
        return Omitted("no mid price: a side of the book is empty")
    return size, mid


def grid_tick(state: SymbolState, scratch: dict) -> float | None:
    """The instrument's tick, else the smallest gap seen so far in this symbol's book.

    An inferred tick only ever shrinks (no gap is smaller than the true tick), so it
    settles instead of flapping when the top of the book thins out for a moment.
    """
    if state.tick_size:
        return state.tick_size
    seen = infer_tick(state.book)
    known = scratch.get("inferred_tick")
    if seen is not None and (known is None or seen < known):
        scratch["inferred_tick"] = known = seen
    return known
