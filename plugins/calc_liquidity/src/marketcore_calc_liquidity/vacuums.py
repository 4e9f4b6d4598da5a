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

__all__ = ["VacuumsCalculator", "thin_runs"]

_QUIET = np.errstate(over="ignore", invalid="ignore")
"""Non-finite numbers from a venue are caught and reported as omissions; numpy need not
warn on the way."""

SEVERITIES = ("low", "medium", "high")
_NUDGE = 1e-6
"""Added before flooring a price's cell index, so a level exactly on a cell edge is not
pushed into the next cell by the rounding of ``distance / cell``."""


def thin_runs(cells: np.ndarray, below: float, min_run: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of the runs of ``cells < below`` at least ``min_run`` long.

    ``ends`` are exclusive.
    """
    thin = np.concatenate(([0], (cells < below).view(np.int8), [0]))
    edges = np.diff(thin)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    keep = ends - starts >= min_run
    return starts[keep], ends[keep]


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
        rank, distance, near, far, length, qty, at_edge = (np.concatenate(column)
                                                           for column in zip(*runs, strict=True))
        # most severe first, then nearest the mid (to 1e-6 bps: float noise is no order),
        # then bids before asks (their runs come first: lexsort is stable)
        order = np.lexsort((np.round(distance, 6), -rank))[: options.max_vacuums]
        digits = decimals_of(tick)
        sides = len(runs[0][0])
        out = []
        for i in order.tolist():
            near_price, far_price = round(float(near[i]), digits), round(float(far[i]), digits)
            out.append({
                "side": "bid" if i < sides else "ask",
                "from": min(near_price, far_price),
                "to": max(near_price, far_price),
                "levels": int(length[i]),
                "severity": SEVERITIES[rank[i]],
                "distance_bps": float(distance[i]),
                "qty": float(qty[i]),
                "at_scan_edge": bool(at_edge[i]),
            })
        return {"vacuums": out}

    def _scan(self, state: SymbolState, side: str, mid: float, tick: float,
              below: float) -> tuple[np.ndarray, ...] | None:
        """The runs of one side as columns ``(rank, distance, near, far, length, qty,
        at_edge)``; ``None`` when the side holds a non-finite quantity."""
        options = self.options
        cell = tick * options.bucket_ticks
        # Read a cell further than the scan goes, so that the last cell is fully known
        # whichever way rounding decides whether it is inside the distance.
        reach = options.max_distance_bps + 2 * cell / mid * 1e4
        expect = state.scratch(self.name)
        levels = levels_within(state.book, side, mid, reach, options.max_levels,
                               expect=expect.get(side, 0))
        expect[side] = expect_next(levels.needed)
        if not len(levels.prices):
            return _NO_RUNS
        is_bid = side == "bid"
        touch = float(levels.prices[0])
        edge = mid * (1 - options.max_distance_bps / 1e4) if is_bid else \
            mid * (1 + options.max_distance_bps / 1e4)
        index = np.floor(np.abs(touch - levels.prices) / cell + _NUDGE).astype(np.int64)
        span = math.floor(abs(touch - edge) / cell + _NUDGE) + 1
        if not levels.complete:  # beyond the last level read the book is unknown, and so
            # is the rest of that level's cell when a cell spans several ticks
            span = min(span, int(index[-1]) + (1 if options.bucket_ticks == 1 else 0))
        if is_bid:  # every cell priced above zero
            span = min(span, max(1, math.ceil(touch / cell - _NUDGE)))
        span = min(span, options.max_cells)
        inside = index < span
        cells = np.bincount(index[inside], weights=levels.qtys[inside], minlength=span)
        if not np.isfinite(cells).all():
            return None
        starts, ends = thin_runs(cells, below, options.min_levels)
        lengths = ends - starts
        outward = -1.0 if is_bid else 1.0
        near = touch + outward * starts * cell
        held = _NO_RUNS[5]
        if len(starts):  # what rests in each run, summed directly (no prefix-sum residue)
            bounds = np.column_stack((starts, ends)).ravel()
            held = np.add.reduceat(np.append(cells, 0.0), bounds)[0::2]
        return (
            np.searchsorted(self._steps, lengths, side="right"),
            np.abs(near - mid) / mid * 1e4,
            near,
            touch + outward * (ends * cell - tick),
            lengths,
            held,
            ends == span,
        )


_NO_RUNS = tuple(np.empty(0, dtype=dtype) for dtype in (
    np.int64, np.float64, np.float64, np.float64, np.int64, np.float64, np.bool_))
