"""Calculator ``health``: one 0–100 score of how far a report can be trusted.

The score is a weighted mean of four components, each in [0, 1]:

* ``freshness`` — 1 while ``data_age_ms`` ≤ 1000, falling linearly to 0 at
  5000; 0 without data or when the venue is down; at most 0.5 while the venue
  resyncs the book;
* ``book`` — 0 when a side is empty or the book is crossed or locked, else
  ``min(1, levels on the thinner side / min_levels)``;
* ``spread`` — the current spread against the median of its own recent
  history: 1 up to ``spread_tolerance`` × median, falling linearly to 0 at
  ``spread_zero_at`` × median (1 until ``min_spread_samples`` were seen);
* ``anomalies`` — 1 − the weight of the worst anomaly in the report (high 1.0,
  medium 0.5, low 0.2).

``score = round(100 · Σ wᵢ·cᵢ / Σ wᵢ)``; default weights 0.40 / 0.25 / 0.20 /
0.15. The report carries the components, the weights and ``flags`` naming what
pulled the score down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from marketcore import hookimpl
from marketcore.components import Cycle, CycleContext, Needs, RegisterCalculator
from marketcore.events import VenueState
from marketcore.report import FRESH_MS, STALE_MS
from marketcore.state import RollingMedian, SymbolState

SEVERITY_WEIGHT = {"low": 0.2, "medium": 0.5, "high": 1.0}


def _weight(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be within [0, 1], not {value}")


@attrs.frozen
class HealthOptions:
    freshness_weight: float = attrs.field(default=0.40, validator=_weight)
    book_weight: float = attrs.field(default=0.25, validator=_weight)
    spread_weight: float = attrs.field(default=0.20, validator=_weight)
    anomalies_weight: float = attrs.field(default=0.15, validator=_weight)
    min_levels: int = 20
    spread_history: int = 240
    """Fast cycles of spread history for the median (240 × 250 ms = 1 min)."""
    min_spread_samples: int = 20
    spread_tolerance: float = 1.5
    spread_zero_at: float = 5.0


def freshness(data_age_ms: int | None, venue_state: VenueState) -> float:
    if data_age_ms is None or venue_state is VenueState.DOWN or data_age_ms >= STALE_MS:
        return 0.0
    value = 1.0 if data_age_ms <= FRESH_MS else (STALE_MS - data_age_ms) / (STALE_MS - FRESH_MS)
    return min(value, 0.5) if venue_state is VenueState.RESYNCING else value


class HealthCalculator:
    name = "health"
    cycle = Cycle.FAST
    sections = ("health",)
    needs = Needs()
    order = 1000  # last: it grades what the other calculators produced

    def __init__(self, options: HealthOptions) -> None:
        self.options = options
        self.weights = {
            "freshness": options.freshness_weight, "book": options.book_weight,
            "spread": options.spread_weight, "anomalies": options.anomalies_weight,
        }
        total = sum(self.weights.values())
        if total <= 0:
            raise ValueError("at least one health weight must be > 0")
        self._total = total

    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        flags: list[str] = []
        fresh = freshness(ctx.report.get("data_age_ms"), state.venue_state)
        if fresh < 1:
            flags.append("stale data" if state.venue_state is not VenueState.RESYNCING
                         else "resyncing")
        book, spread_bps = self._book(state, flags)
        components = {
            "freshness": fresh,
            "book": book,
            "spread": self._spread(state, spread_bps, flags),
            "anomalies": self._anomalies(ctx.report, flags),
        }
        score = sum(self.weights[k] * v for k, v in components.items()) / self._total
        return {"health": {
            "score": round(100 * score),
            "components": {k: round(v, 4) for k, v in components.items()},
            "weights": dict(self.weights),
            "flags": flags,
        }}

    def _book(self, state: SymbolState, flags: list[str]) -> tuple[float, float | None]:
        book = state.book
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            flags.append("empty book side")
            return 0.0, None
        if bid[0] >= ask[0]:
            flags.append("crossed book" if bid[0] > ask[0] else "locked book")
            return 0.0, None
        thinner = min(book.bid_count, book.ask_count)
        if thinner < self.options.min_levels:
            flags.append("thin book")
        mid = (bid[0] + ask[0]) / 2
        return min(1.0, thinner / self.options.min_levels), (ask[0] - bid[0]) / mid * 1e4

    def _spread(self, state: SymbolState, spread_bps: float | None, flags: list[str]) -> float:
        if spread_bps is None:
            return 0.0
        history: RollingMedian = state.scratch(self.name).get("spreads")
        if history is None:
            history = state.scratch(self.name)["spreads"] = RollingMedian(
                self.options.spread_history)
        value = 1.0
        if len(history) >= self.options.min_spread_samples:
            median = history.median()
            if median > 0:
                ratio = spread_bps / median
                tolerance, zero_at = self.options.spread_tolerance, self.options.spread_zero_at
                if ratio > tolerance:
                    value = max(0.0, 1 - (ratio - tolerance) / (zero_at - tolerance))
                    flags.append("wide spread")
        history.append(spread_bps)
        return value

    @staticmethod
    def _anomalies(report: Mapping[str, Any], flags: list[str]) -> float:
        worst = 0.0
        for anomaly in report.get("anomalies") or ():
            worst = max(worst, SEVERITY_WEIGHT.get(anomaly.get("severity"), 0.0))
        if worst:
            flags.append("anomalies")
        return 1.0 - worst


@hookimpl
def marketcore_register_calculators(register: RegisterCalculator) -> None:
    register("health", HealthCalculator, options=HealthOptions)
