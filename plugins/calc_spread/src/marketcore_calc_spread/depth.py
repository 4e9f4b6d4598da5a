"""Calculator ``depth``: quantity and notional near the mid, imbalance, top levels.

For each band of ``bps`` basis points around the mid (bids priced at or above
``mid * (1 - bps/1e4)``, asks at or below ``mid * (1 + bps/1e4)``)::

    bid_qty, ask_qty            base quantity on each side
    bid_notional, ask_notional  quote notional (sum of price * qty)
    imbalance = (bid_qty - ask_qty) / (bid_qty + ask_qty)   in [-1, 1]; null when both are 0

The sums come from the book's incrementally maintained band sums
(:meth:`marketcore.book.Book.band_sums`), so a 2,000-level book costs no more than a
20-level one; the fast path never walks the levels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from marketcore import Cycle, CycleContext, Needs, Omitted, SymbolState

from marketcore_calc_spread.options import DepthOptions

__all__ = ["DepthCalculator"]


class DepthCalculator:
    """Depth bands and the top of each side, from the book's running sums."""

    name = "depth"
    cycle = Cycle.FAST
    sections = ("depth",)
    needs = Needs()

    def __init__(self, options: DepthOptions | None = None) -> None:
        options = options or DepthOptions()
        self.bands_bps = options.bands_bps
        self.top_n = options.top_n

    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        book = state.book
        if book.mid() is None:
            missing = "bids and asks" if len(book) == 0 else (
                "bids" if book.bid_count == 0 else "asks")
            return {"depth": Omitted(f"no mid price to measure bands from: no {missing}")}
        bands = []
        for bps in self.bands_bps:
            bid_qty, ask_qty, bid_notional, ask_notional = book.band_sums(bps)
            if not math.isfinite(bid_qty + ask_qty + bid_notional + ask_notional):
                return {"depth": Omitted("non-finite level quantities in the book")}
            # Running sums carry rounding residue; a sum of positive levels is never < 0.
            bid_qty, ask_qty = max(bid_qty, 0.0), max(ask_qty, 0.0)
            total = bid_qty + ask_qty
            bands.append({
                "bps": bps,
                "bid_qty": bid_qty,
                "ask_qty": ask_qty,
                "bid_notional": max(bid_notional, 0.0),
                "ask_notional": max(ask_notional, 0.0),
                "imbalance": (bid_qty - ask_qty) / total if total > 0.0 else None,
            })
        top_bids = book.top("bid", self.top_n)
        top_asks = book.top("ask", self.top_n)
        if not math.isfinite(sum(q for _, q in top_bids) + sum(q for _, q in top_asks)):
            return {"depth": Omitted("non-finite level quantities in the book")}
        return {"depth": {"bands": bands, "top_bids": top_bids, "top_asks": top_asks}}
