"""marketcore-example-realized-vol: realized volatility from the trade ring.

Every fast cycle, for each symbol, over the trades of the last ``window_s`` seconds:

1. sample the trade price on a grid of ``sample_ms`` (the last trade of each grid
   step; steps without a trade carry the previous price, a zero return);
2. log returns between consecutive samples: ``r_i = ln(p_i / p_{i-1})``;
3. realized variance ``RV = Σ r_i²``, realized volatility ``σ = √RV`` over the span
   the samples cover, ``span_ms = (last step − first step) × sample_ms``;
4. annualized: ``σ_year = √(RV × YEAR_MS / span_ms)`` (a 365-day year: crypto never
   closes).

Sampling on a grid, not trade by trade, keeps the bid–ask bounce (trades hopping
between the two sides of the spread) from inflating the figure. With fewer than
``min_returns`` returns the section is omitted, with the reason in
``health.omitted``.

This is the example plugin of docs/writing-plugins.md: one module, one calculator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
from marketcore import Cycle, CycleContext, Needs, Omitted, SymbolState, hookimpl
from marketcore.components import RegisterCalculator

__all__ = ["YEAR_MS", "RealizedVol", "RealizedVolOptions", "realized_vol"]

YEAR_MS = 365 * 24 * 3600 * 1000


def _between(low: int, high: int) -> Any:
    def check(_instance: Any, attribute: attrs.Attribute, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{attribute.name} must be from {low} to {high}", attribute,
                             f"an integer from {low} to {high}", value)

    return check


@attrs.frozen
class RealizedVolOptions:
    """``[calculators.realized_vol]``."""

    window_s: int = attrs.field(default=60, validator=_between(5, 3600))
    """The rolling window, in seconds."""
    sample_ms: int = attrs.field(default=1000, validator=_between(10, 60_000))
    """The sampling grid step, in milliseconds."""
    min_returns: int = attrs.field(default=10, validator=_between(2, 1_000_000))
    """Fewer returns than this: the section is omitted."""


def realized_vol(ts_ms: np.ndarray, price: np.ndarray, sample_ms: int,
                 ) -> tuple[int, float, float, int]:
    """``(returns, rv, sigma_year, span_ms)`` of trades in time order, on a ``sample_ms`` grid.

    Vectorized: one ``np.diff`` finds the last trade of each grid step.
    """
    if len(ts_ms) < 2:
        return 0, 0.0, 0.0, 0
    steps = ts_ms // sample_ms
    last_of_step = np.append(np.flatnonzero(np.diff(steps)), len(steps) - 1)
    if len(last_of_step) < 2:
        return 0, 0.0, 0.0, 0
    returns = np.diff(np.log(price[last_of_step]))
    rv = float(np.dot(returns, returns))
    span_ms = int(steps[-1] - steps[0]) * sample_ms
    return len(returns), rv, math.sqrt(rv * YEAR_MS / span_ms), span_ms


class RealizedVol:
    """Realized volatility of the trade price over a rolling window."""

    name = "realized_vol"
    cycle = Cycle.FAST
    sections = ("realized_vol",)  # published as ext.realized_vol

    def __init__(self, options: RealizedVolOptions) -> None:
        self.options = options
        self.window_ms = options.window_s * 1000
        self.needs = Needs(trade_window_ms=self.window_ms)

    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        window = state.trades.window(ctx.now_ms - self.window_ms)
        count, rv, sigma_year, span_ms = realized_vol(window.ts_ms, window.price,
                                                      self.options.sample_ms)
        if count < self.options.min_returns:
            return {self.name: Omitted(
                f"{count} returns from {len(window)} trades in {self.options.window_s} s, "
                f"need {self.options.min_returns}")}
        return {self.name: {
            "window_s": self.options.window_s,
            "sample_ms": self.options.sample_ms,
            "returns": count,
            "span_s": span_ms / 1000,
            "rv_bps": math.sqrt(rv) * 1e4,
            "annualized_pct": sigma_year * 100,
        }}


@hookimpl
def marketcore_register_calculators(register: RegisterCalculator) -> None:
    register("realized_vol", RealizedVol, options=RealizedVolOptions)
