"""Calculator ``vacuums``: runs of thin price levels next to the touch.

The book near the mid is laid on a grid of cells, one tick wide (``bucket_ticks``
ticks with a coarser bucket), counted outward from each side's best price: cell
``i`` of the bids holds the levels priced ``touch - (i+1)·cell < p <= touch - i·cell``
(mirrored for asks). A cell is *thin* when its quantity is below ``P10`` of the
symbol's level-size history; a cell without any level holds 0 and is thin. A run of
at least 3 consecutive thin cells is a vacuum: ``severity`` high from 10 cells,
medium from 6, low from 3.

Fields: ``side``; ``from`` ≤ ``to``, the lowest and the highest grid price inside the
run; ``levels``, the run's length in cells; ``severity``; and
``distance_bps`` (of the run's near end from the mid), ``qty`` (what rests in it)
and ``at_scan_edge`` (the run reaches the end of the scanned range and may go on).

Bounds: cells from the touch out to ``max_distance_bps`` (50) from the mid, at most
``max_cells`` per side, and only as far as the ``max_levels`` best levels of the side
reach. The tick is the instrument's; without one it is inferred from the book's
smallest gap between neighbouring levels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from marketcore import Cycle, CycleContext, Needs, Omitted, SymbolState

from marketcore_calc_liquidity.levels import (
    decimals_of,
    expect_next,
    grid_tick,
    levels_within,
    size_reference,
)
from marketcore_calc_liquidity.options import VacuumsOptions

__all__ = ["SparseCells", "VacuumsCalculator", "run_quantities", "thin_runs"]

_QUIET = np.errstate(over="ignore", invalid="ignore")
"""Non-finite numbers from a venue are caught and reported as omissions; numpy need not
warn on the way."""

SEVERITIES = ("low", "medium", "high")
_NUDGE = 1e-6
"""Added before flooring a price's cell index, so a level exactly on a cell edge is not
pushed into the next cell by the rounding of ``distance / cell``."""


def thin_runs(cells: np.ndarray, below: float, min_run: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of the runs of ``cells < below`` at least ``min_run`` long.

    ``ends`` are exclusive. The dense reference of the scan: :class:`SparseCells` finds
    the same runs without laying out every cell.
    """
    thin = np.concatenate(([0], (cells < below).view(np.int8), [0]))
    edges = np.diff(thin)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    keep = ends - starts >= min_run
    return starts[keep], ends[keep]


def run_quantities(cells: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """What rests in each run ``cells[start:end]``, summed directly (no prefix-sum residue).

    The dense reference of :meth:`SparseCells.held`, which must give the same floats.
    """
    if not len(starts):
        return _NO_RUNS[5]
    bounds = np.column_stack((starts, ends)).ravel()
    return np.add.reduceat(np.append(cells, 0.0), bounds)[0::2]


class SparseCells:
    """The occupied cells of one side's grid: their numbers (ascending) and quantities.

    Why: within 50 bps of a BTCUSDT mid lie ~31,000 one-tick cells but only ~1,000
    levels, so the dense grid (:func:`thin_runs` over a ``bincount``) spent most of its
    time on empty cells. Every empty cell is thin (it holds 0, and the threshold is
    positive), so the thin runs are exactly the gaps between consecutive *thick* occupied
    cells, found from the ~1,000 occupied ones alone.
    """

    __slots__ = ("ids", "qtys")

    def __init__(self, ids: np.ndarray, qtys: np.ndarray) -> None:
        self.ids = ids
        """Cell numbers holding at least one level, ascending, unique."""
        self.qtys = qtys
        """Each cell's quantity, summed level by level in book order, as ``np.bincount``
        sums a dense grid (so the floats are the same)."""

    @classmethod
    def of(cls, index: np.ndarray, qtys: np.ndarray, span: int) -> SparseCells | None:
        """The occupied cells among ``0 … span - 1`` of levels in cells ``index`` (best
        first), or ``None`` when ``index`` is not ascending (a non-finite price): the
        caller then takes the dense path, whose behaviour on such books is the reference.
        """
        steps = np.diff(index)
        if len(steps) and steps.min() < 0:
            return None
        # ascending, so the levels inside the scan are a prefix: slices, not masks
        inside = int(np.searchsorted(index, span, side="left"))
        index, qtys, steps = index[:inside], qtys[:inside], steps[: max(0, inside - 1)]
        if not len(steps) or steps.min() > 0:  # the usual case: one level per cell
            return cls(index, qtys + 0.0)  # + 0.0 as bincount's 0.0 + q
        opens = np.concatenate(([True], steps > 0))
        # bincount adds a cell's levels one by one in book order, as the dense bincount
        # does, so each cell's sum is bit-identical to the dense grid's.
        return cls(index[opens], np.bincount(np.cumsum(opens) - 1, weights=qtys))

    def finite(self) -> bool:
        """Whether every cell's quantity is finite (empty cells hold 0, so only these can
        fail the dense grid's check)."""
        return bool(np.isfinite(self.qtys).all())

    def runs(self, below: float, min_run: int, span: int) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ends)`` of the thin runs of cells ``0 … span - 1``, as
        :func:`thin_runs` finds them on the dense grid (``below`` must be positive and
        the quantities finite, so ``>= below`` is exactly "not thin")."""
        bounds = np.concatenate(([-1], self.ids[self.qtys >= below], [span]))
        keep = np.flatnonzero(np.diff(bounds) > min_run)  # gap - 1 cells >= min_run
        return bounds[keep] + 1, bounds[1:][keep]

    def held(self, starts: np.ndarray, ends: np.ndarray) -> list[float]:
        """What rests in each run of cells ``start … end - 1`` (all thin), bit-identical
        to :func:`run_quantities` on the dense grid.

        The dense sum is numpy's pairwise sum over the run, zeros included. Adding 0.0
        is exact, so with at most two occupied cells in the run the grouping cannot
        matter (``a + b`` whichever way); with three or more it can, and the run is laid
        out densely and summed by the same ``reduceat`` call.
        """
        first = np.searchsorted(self.ids, starts).tolist()
        stop = np.searchsorted(self.ids, ends).tolist()
        return [self._held(start, end, lo, hi) for start, end, lo, hi
                in zip(starts.tolist(), ends.tolist(), first, stop, strict=True)]

    def _held(self, start: int, end: int, lo: int, hi: int) -> float:
        """What rests in cells ``start … end - 1``, which hold occupied cells ``lo … hi - 1``."""
        if hi == lo:
            return 0.0
        if hi - lo == 1:
            return float(self.qtys[lo])
        if hi - lo == 2:
            return float(self.qtys[lo] + self.qtys[lo + 1])
        dense = np.zeros(end - start + 1)
        dense[self.ids[lo:hi] - start] = self.qtys[lo:hi]
        return float(np.add.reduceat(dense, [0, end - start])[0])


class VacuumsCalculator:
    """Thin stretches of the book near the mid, on the instrument's price grid."""

    name = "vacuums"
    cycle = Cycle.SLOW
    sections = ("vacuums",)

    def __init__(self, options: VacuumsOptions | None = None) -> None:
        self.options = options = options or VacuumsOptions()
        self.needs = Needs(level_history=options.history_samples)
        self._steps = np.array([options.medium_levels, options.high_levels])

    @_QUIET
    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        options = self.options
        reference = size_reference(state, options.percentile, options.min_samples)
        if isinstance(reference, Omitted):
            return {"vacuums": reference}
        below, mid = reference
        tick = grid_tick(state, state.scratch(self.name))
        if tick is None:
            return {"vacuums": Omitted("tick size unknown: no instrument and too few levels "
                                       "to infer it")}
        runs = []
        for side in ("bid", "ask"):
            found = self._scan(state, side, mid, tick, below)
            if found is None:
                return {"vacuums": Omitted(f"non-finite level quantities on the {side} side")}
            runs.append(found)
        entries = listed(*runs, mid, options.max_vacuums)
        held = {}  # what rests in each listed run, one pass per side
        for side_runs in runs:
            numbers = [k for found, k, _, _ in entries if found is side_runs]
            held.update(zip(((side_runs.side, k) for k in numbers),
                            side_runs.quantities(numbers), strict=True))
        digits = decimals_of(tick)
        out = []
        for found, k, near, distance in entries:
            near_price = round(near, digits)
            far_price = round(found.far(k, tick), digits)
            out.append({
                "side": found.side,
                "from": min(near_price, far_price),
                "to": max(near_price, far_price),
                "levels": int(found.length[k]),
                "severity": SEVERITIES[found.rank[k]],
                "distance_bps": distance,
                "qty": held[found.side, k],
                "at_scan_edge": bool(found.ends[k] == found.span),
            })
        return {"vacuums": out}

    def _scan(self, state: SymbolState, side: str, mid: float, tick: float,
              below: float) -> _SideRuns | None:
        """The runs of one side; ``None`` when the side holds a non-finite quantity."""
        options = self.options
        cell = tick * options.bucket_ticks
        # Read a cell further than the scan goes, so that the last cell is fully known
        # whichever way rounding decides whether it is inside the distance.
        reach = options.max_distance_bps + 2 * cell / mid * 1e4
        expect = state.scratch(self.name)
        levels = levels_within(state.book, side, mid, reach, options.max_levels,
                               expect=expect.get(side, 0))
        expect[side] = expect_next(levels)
        if not len(levels):
            return _SideRuns.empty(side)
        prices, qtys = levels.arrays()
        is_bid = side == "bid"
        touch = float(prices[0])
        edge = mid * (1 - options.max_distance_bps / 1e4) if is_bid else \
            mid * (1 + options.max_distance_bps / 1e4)
        index = np.floor(np.abs(touch - prices) / cell + _NUDGE).astype(np.int64)
        span = math.floor(abs(touch - edge) / cell + _NUDGE) + 1
        if not levels.complete:  # beyond the last level read the book is unknown, and so
            # is the rest of that level's cell when a cell spans several ticks
            span = min(span, int(index[-1]) + (1 if options.bucket_ticks == 1 else 0))
        if is_bid:  # every cell priced above zero
            span = min(span, max(1, math.ceil(touch / cell - _NUDGE)))
        span = min(span, options.max_cells)
        cells = SparseCells.of(index, qtys, span) if below > 0 else None
        if cells is not None:
            if not cells.finite():
                return None
            starts, ends = cells.runs(below, options.min_levels, span)
            held: SparseCells | np.ndarray = cells
        else:  # the dense grid: odd books (non-finite prices, a non-positive threshold)
            inside = index < span
            dense = np.bincount(index[inside], weights=qtys[inside], minlength=span)
            if not np.isfinite(dense).all():
                return None
            starts, ends = thin_runs(dense, below, options.min_levels)
            held = run_quantities(dense, starts, ends)
        lengths = ends - starts
        return _SideRuns(side, np.searchsorted(self._steps, lengths, side="right"), lengths,
                         starts, ends, touch, cell, span, held)


class _SideRuns:
    """The runs of one side, in start order (nearest the touch first), as columns.

    Only what picks the runs to list is computed for all of them (hundreds on a deep
    book): their severity. Prices, distances and quantities are computed for the runs
    that may be listed (see :func:`listed`).
    """

    __slots__ = ("cell", "ends", "held", "length", "outward", "rank", "side", "span",
                 "starts", "touch")

    def __init__(self, side: str, rank: np.ndarray, length: np.ndarray, starts: np.ndarray,
                 ends: np.ndarray, touch: float, cell: float, span: int,
                 held: SparseCells | np.ndarray) -> None:
        self.side, self.rank, self.length, self.starts, self.ends = side, rank, length, starts, ends
        self.touch, self.cell, self.span, self.held = touch, cell, span, held
        self.outward = -1.0 if side == "bid" else 1.0

    @classmethod
    def empty(cls, side: str) -> _SideRuns:
        none = np.empty(0, dtype=np.int64)
        return cls(side, none, none, none, none, 0.0, 1.0, 0, np.empty(0))

    def near(self, runs: np.ndarray) -> np.ndarray:
        """The near prices of ``runs`` (run numbers): ``touch ± start·cell``."""
        return self.touch + self.outward * self.starts[runs] * self.cell

    def far(self, k: int, tick: float) -> float:
        """The far price of run ``k``: ``touch ± (end·cell - tick)``, the same float
        operations as numpy's on a column."""
        return self.touch + self.outward * (float(self.ends[k]) * self.cell - tick)

    def quantities(self, runs: list[int]) -> list[float]:
        """What rests in each of ``runs`` (run numbers)."""
        if isinstance(self.held, SparseCells):
            return self.held.held(self.starts[runs], self.ends[runs])
        return self.held[runs].tolist()

    def moves_away(self, mid: float) -> bool:
        """Whether the distance from the mid can only grow along the runs: the touch is
        on this side of the mid (not a crossed book), so the near prices move away from
        it, and every float operation of the distance is monotonic."""
        return mid > 0 and (self.touch <= mid if self.side == "bid" else self.touch >= mid)

    def first(self, severity: int, limit: int) -> np.ndarray:
        """The first ``limit`` runs of ``severity`` (nearest the touch)."""
        return np.flatnonzero(self.rank == severity)[:limit]


def listed(bids: _SideRuns, asks: _SideRuns, mid: float,
           limit: int) -> list[tuple[_SideRuns, int, float, float]]:
    """``(side, run, near price, distance_bps)`` of the runs to list, in order: most
    severe first, then nearest the mid (to 1e-6 bps: float noise is no order), then
    bids before asks, then nearest the touch.

    The reference is a ``lexsort`` of every run (hundreds to thousands on a deep book).
    When the distance grows along each side (:meth:`_SideRuns.moves_away`), the first
    ``limit`` runs of a severity on a side are its nearest, and a run outside them has
    ``limit`` runs before it in that order: only those candidates are sorted, taken
    from the highest severity down until ``limit`` are in hand.
    """
    if limit <= 0:
        return []
    if bids.moves_away(mid) and asks.moves_away(mid):
        chosen: list[list[np.ndarray]] = [[], []]
        found = 0
        for severity in range(len(SEVERITIES) - 1, -1, -1):
            for picks, runs in zip(chosen, (bids, asks), strict=True):
                picks.append(runs.first(severity, limit))
                found += len(picks[-1])
            if found >= limit:
                break
        # ascending run numbers within a side, as the reference's tie order needs
        picked = [np.sort(np.concatenate(picks)) for picks in chosen]
    else:
        picked = [np.arange(len(bids.rank)), np.arange(len(asks.rank))]
    near = np.concatenate((bids.near(picked[0]), asks.near(picked[1])))
    distance = np.abs(near - mid) / mid * 1e4
    rank = np.concatenate((bids.rank[picked[0]], asks.rank[picked[1]]))
    order = np.lexsort((np.round(distance, 6), -rank))[:limit].tolist()
    sides = len(picked[0])
    runs = picked[0].tolist() + picked[1].tolist()
    return [(bids if i < sides else asks, runs[i], float(near[i]), float(distance[i]))
            for i in order]


_NO_RUNS = tuple(np.empty(0, dtype=dtype) for dtype in (
    np.int64, np.float64, np.float64, np.float64, np.int64, np.float64, np.bool_))
