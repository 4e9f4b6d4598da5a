"""Calculator ``flow``: trade activity and aggressor flow over rolling windows.

For each window of ``w`` seconds (defaults 10 and 30) ending at the cycle's time
``now``, over the trades with ``now - w <= ts``:

* ``trades`` and ``trades_per_sec = trades / w``;
* ``buy_volume`` / ``sell_volume`` — base quantity whose aggressor bought / sold;
* ``net_flow = buy_volume - sell_volume``;
* ``vwap = Σ price·qty / Σ qty`` (``null`` without trades);
* ``acceleration`` — the change of net flow from the window before, i.e. net flow
  of ``[now - w, now]`` minus net flow of ``[now - 2w, now - w)``. It is ``null``
  until this node has watched the symbol's trades for ``2w`` (a previous window it
  did not see would make it up).

One read of the trade ring for twice the longest window, then numpy slice sums per
window (the three sums of a window in one call): no Python loop over trades.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from marketcore import Cycle, CycleContext, Needs, Omitted, SymbolState

from marketcore_calc_liquidity.options import FlowOptions

__all__ = ["FlowCalculator"]

_QUIET = np.errstate(over="ignore", invalid="ignore")
"""Non-finite numbers from a venue are caught and reported as omissions; numpy need not
warn on the way."""


def _columns(qty: np.ndarray, price: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Rows ``buy``, ``sell`` and ``notional`` of the trades, one (3, n) array.

    ``buy`` is the quantity of buyer-aggressed trades and 0.0 elsewhere (exactly
    ``np.where(sign > 0, qty, 0.0)``), ``sell = qty - buy``, ``notional = price * qty``.
    Kept in one array so that a window's three sums are one numpy call, not three: a
    fast-cycle calculator on small arrays pays more in calls than in arithmetic.
    """
    out = np.zeros((3, len(qty)))
    np.copyto(out[0], qty, where=sign > 0)
    np.subtract(qty, out[0], out=out[1])
    np.multiply(price, qty, out=out[2])
    return out


class FlowCalculator:
    """Aggressor flow per window; needs the trades of twice the longest window."""

    name = "flow"
    cycle = Cycle.FAST
    sections = ("flow",)

    def __init__(self, options: FlowOptions | None = None) -> None:
        options = options or FlowOptions()
        self.windows_s = options.windows_s
        self.windows_ms = tuple(round(w * 1000) for w in options.windows_s)
        self.needs = Needs(trade_window_ms=2 * max(self.windows_ms))
        self._offsets = np.array([(2 * w, w) for w in self.windows_ms], dtype=np.int64).ravel()

    @_QUIET
    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        now = ctx.now_ms
        trades = state.trades.window(now - 2 * self.windows_ms[-1])
        watched_since = self._watched_since(state, now)
        columns = _columns(trades.qty, trades.price, trades.sign)
        buy, sell = columns[0], columns[1]
        total = np.add.reduce
        n = len(trades.ts_ms)
        bounds = trades.ts_ms.searchsorted(self._bounds(now), side="left").tolist()
        windows = []
        for index, (seconds, w) in enumerate(zip(self.windows_s, self.windows_ms, strict=True)):
            start, middle = bounds[2 * index], bounds[2 * index + 1]
            count = n - middle
            # one reduction for the three sums; each row is summed alone, in the same
            # (pairwise) order as a reduction of that row by itself
            buy_volume, sell_volume, spent = total(columns[:, middle:], axis=1).tolist()
            volume = buy_volume + sell_volume
            net = buy_volume - sell_volume
            acceleration = None
            if watched_since <= now - 2 * w:
                acceleration = net - float(total(buy[start:middle] - sell[start:middle]))
            if not math.isfinite(volume + spent + (acceleration or 0.0)):
                return {"flow": Omitted(f"non-finite trade price or quantity in the last "
                                        f"{2 * seconds:g} s")}
            windows.append({
                "window_s": seconds,
                "trades": count,
                "trades_per_sec": count / seconds,
                "buy_volume": buy_volume,
                "sell_volume": sell_volume,
                "net_flow": net,
                "vwap": spent / volume if volume > 0 else None,
                "acceleration": acceleration,
            })
        return {"flow": {"windows": windows}}

    def _bounds(self, now: int) -> np.ndarray:
        """``[now - 2w, now - w]`` for each window ``w``, flattened (one searchsorted).

        One subtraction from offsets built once: a fresh array from a list of tuples
        each call cost more than the search itself."""
        return now - self._offsets

    def _watched_since(self, state: SymbolState, now: int) -> int:
        """Since when the trade ring holds every trade of this symbol.

        From the first cycle that saw the symbol (or its oldest trade then, if older);
        if the ring ever dropped trades for lack of room, from its oldest trade now.
        """
        scratch = state.scratch(self.name)
        since = scratch.get("since_ms")
        if since is None:
            oldest = state.trades.window(-(2**62)).ts_ms
            since = scratch["since_ms"] = min(now, int(oldest[0])) if len(oldest) else now
        if state.trades.overflowed:
            oldest = state.trades.window(-(2**62)).ts_ms
            if len(oldest):
                since = max(since, int(oldest[0]))
        return since
