"""Calculator ``walls``: resting levels far larger than this symbol's usual level.

``threshold = P95(level sizes) × multiplier`` (defaults 95 and 1.5), the percentile
taken over the symbol's level-size history, which the host samples every fast cycle
from the top levels of each side. A level with ``qty >= threshold`` is a wall; its
``severity`` is ``high`` at ``qty >= 3 × threshold``, ``medium`` at ``>= 2×``,
``low`` otherwise. ``distance_bps = |price - mid| / mid × 1e4``.

Scanned: the levels within ``max_distance_bps`` (100) of the mid, at most
``max_levels`` (1000) per side. Listed: the most severe first, then the largest,
at most ``max_walls`` (20).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from marketcore import Cycle, CycleContext, Needs, Omitted, SymbolState

from marketcore_calc_liquidity.levels import expect_next, levels_within, size_reference
from marketcore_calc_liquidity.options import WallsOptions

__all__ = ["WallsCalculator"]

_QUIET = np.errstate(over="ignore", invalid="ignore")
"""Non-finite numbers from a venue are caught and reported as omissions; numpy need not
warn on the way."""

SEVERITIES = ("low", "medium", "high")


class WallsCalculator:
    """Walls near the mid, graded by how many thresholds they hold."""

    name = "walls"
    cycle = Cycle.SLOW
    sections = ("walls",)

    def __init__(self, options: WallsOptions | None = None) -> None:
        self.options = options = options or WallsOptions()
        self.needs = Needs(level_history=options.history_samples)
        self._steps = np.array([options.medium_at, options.high_at])

    @_QUIET
    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        options = self.options
        reference = size_reference(state, options.percentile, options.min_samples)
        if isinstance(reference, Omitted):
            return {"walls": reference}
        base, mid = reference
        threshold = base * options.multiplier
        sides, prices, qtys = [], [], []
        expect = state.scratch(self.name)
        for side in ("bid", "ask"):
            levels = levels_within(state.book, side, mid, options.max_distance_bps,
                                   options.max_levels, expect=expect.get(side, 0))
            expect[side] = expect_next(levels)
            side_prices, side_qtys = levels.arrays()
            big = side_qtys >= threshold
            prices.append(side_prices[big])
            qtys.append(side_qtys[big])
            sides.append(np.full(int(big.sum()), side == "ask"))
        price = np.concatenate(prices)
        qty = np.concatenate(qtys)
        if not np.isfinite(qty).all():
            return {"walls": Omitted("non-finite level quantities in the book")}
        is_ask = np.concatenate(sides)
        ratio = qty / threshold
        rank = np.searchsorted(self._steps, ratio, side="right")  # 0 low, 1 medium, 2 high
        order = np.lexsort((-qty, -rank))[: options.max_walls]
        distance = np.abs(price - mid) / mid * 1e4
        return {"walls": [
            {
                "side": "ask" if is_ask[i] else "bid",
                "price": float(price[i]),
                "qty": float(qty[i]),
                "distance_bps": float(distance[i]),
                "severity": SEVERITIES[rank[i]],
                "ratio": float(ratio[i]),
            }
            for i in order.tolist()
        ]}
