"""Calculator ``spread``: best bid and ask, book state, mid, spread and micro price.

The formulas (SPEC §6)::

    mid_price   = (bid + ask) / 2
    spread_bps  = (ask - bid) / mid * 1e4
    micro_price = (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty)

``micro_price`` is evaluated as ``bid + (ask - bid) * bid_qty / (bid_qty + ask_qty)``,
the same number rearranged so that rounding can never put it outside ``[bid, ask]``.

A book that is not normal is never published as if it were: ``book_state`` says
``locked`` (bid == ask: spread 0, micro price = that price), ``crossed`` (bid > ask:
no spread and no micro price, the reason in ``health.omitted``), ``one-sided`` or
``empty`` (whatever needs the missing side is omitted, with the reason).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from marketcore import Cycle, CycleContext, Needs, Omitted, SymbolState

from marketcore_calc_spread.options import SpreadOptions

__all__ = ["SpreadCalculator"]


def _touch(level: tuple[float, float] | None, side: str) -> Any:
    if level is None:
        return Omitted(f"no {side}s in the book")
    price, qty = level
    if not (math.isfinite(price) and math.isfinite(qty)):
        return Omitted(f"non-finite best {side} in the book")
    return {"price": price, "qty": qty}


def _finite(value: float, name: str) -> float | Omitted:
    return value if math.isfinite(value) else Omitted(f"{name} is not finite")


class SpreadCalculator:
    """The top of the book: a handful of float operations per symbol and cycle."""

    name = "spread"
    cycle = Cycle.FAST
    sections = ("best_bid", "best_ask", "book_state", "mid_price", "spread_bps", "micro_price")
    needs = Needs()

    def __init__(self, options: SpreadOptions | None = None) -> None:
        self.options = options or SpreadOptions()

    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        book = state.book
        bid, ask = book.best_bid(), book.best_ask()
        out: dict[str, Any] = {"best_bid": _touch(bid, "bid"), "best_ask": _touch(ask, "ask")}
        if bid is None or ask is None:
            if bid is None and ask is None:
                out["book_state"] = "empty"
                reason = "empty book: no bids and no asks"
            else:
                out["book_state"] = "one-sided"
                reason = f"one-sided book: no {'bids' if bid is None else 'asks'}"
            out["mid_price"] = out["spread_bps"] = out["micro_price"] = Omitted(reason)
            return out
        bid_price, bid_qty = bid
        ask_price, ask_qty = ask
        mid = bid_price * 0.5 + ask_price * 0.5  # == (bid + ask) / 2, without overflow
        out["mid_price"] = _finite(mid, "mid price")
        if bid_price > ask_price:
            out["book_state"] = "crossed"
            reason = f"crossed book: best bid {bid_price!r} > best ask {ask_price!r}"
            out["spread_bps"] = out["micro_price"] = Omitted(reason)
            return out
        out["book_state"] = "locked" if bid_price == ask_price else "normal"
        out["spread_bps"] = _finite((ask_price - bid_price) / mid * 1e4, "spread")
        weight = bid_qty / (bid_qty + ask_qty)
        micro = bid_price + (ask_price - bid_price) * weight
        out["micro_price"] = _finite(min(max(micro, bid_price), ask_price), "micro price")
        return out
