"""A step-by-step market for the hand-computed tests: a book, deltas, trades, cycles.

The book is 40 levels a side of 1.0 around 100.005 (bids 100.00 … 99.61, asks
100.01 … 100.40), the level-size history is 40 samples of 1.0, so P95 = 1.0 and the
wall threshold is 1.5. Each ``fast()`` advances the clock by 250 ms and runs the
tracker; ``slow()`` runs ``anomalies`` and returns its section (or the omission).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jsonschema
from marketcore.components import Cycle
from marketcore.events import BookDelta, BookSnapshot, Side, Trade, VenueStatus
from marketcore.report import json_schema
from marketcore.testing import make_state, run_cycle
from marketcore_calc_anomalies import AnomaliesCalculator, AnomaliesOptions, AnomalyTracker
from marketcore_calc_anomalies.tracker import Observer

SYMBOL = "BTCUSDT"
MID = 100.005
BIDS = [(round(100.00 - 0.01 * i, 2), 1.0) for i in range(40)]
ASKS = [(round(100.01 + 0.01 * i, 2), 1.0) for i in range(40)]
T0 = 1_700_000_000_000


@cache
class OperationFeed:
    """Applies the market operations the property tests draw to a SymbolState.

    ``("delta", bids, asks)``, ``("trades" | "burst", [(price, size, "b" | "s"), …])``,
    ``("snapshot",)`` (back to :data:`BIDS`/:data:`ASKS`) and ``("status", state)``, all
    stamped at :attr:`now`, with update and trade ids counted up. Any other operation is
    a cycle of the test's own: :meth:`apply` leaves it to the caller, who advances
    :attr:`now`.
    """

    def __init__(self, state: Any, now: int) -> None:
        self.state = state
        self.now = now
        self.update_id = 1
        self.trade_id = 0

    def apply(self, op: tuple) -> bool:
        """Apply a market operation; ``False`` (nothing done) for a cycle operation."""
        kind, state = op[0], self.state
        if kind == "delta":
            self.update_id += 1
            state.apply(BookDelta(SYMBOL, op[1], op[2], self.update_id, self.update_id,
                                  self.now))
        elif kind in ("trades", "burst"):
            for price, size, side in op[1]:
                self.trade_id += 1
                state.apply(Trade(SYMBOL, price, size, Side.BUY if side == "b" else Side.SELL,
                                  self.trade_id, self.now))
        elif kind == "snapshot":
            self.update_id += 1
            state.apply(BookSnapshot(SYMBOL, BIDS, ASKS, self.update_id, self.now))
        elif kind == "status":
            state.apply(VenueStatus(op[1], SYMBOL))
        else:
            return False
        return True


def _validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(json_schema())
    return jsonschema.Draft202012Validator(json_schema())


def check_report(report: Mapping[str, Any]) -> None:
    """What ``marketcore.testing.validate_report`` checks, with the schema checked once.

    ``validate_report`` re-checks the schema itself on every call (about 0.1 s), which
    thousands of reports cannot afford; this is the same draft and the same schema.
    """
    _validator().validate(report)


def bps(price: float, mid: float = MID) -> float:
    return abs(price - mid) / mid * 1e4


class Market:
    def __init__(self, options: AnomaliesOptions | None = None, *,
                 bids: list[tuple[float, float]] = BIDS, asks: list[tuple[float, float]] = ASKS,
                 level_sizes: list[float] | None = None) -> None:
        self.state = make_state(symbol=SYMBOL, bids=bids, asks=asks, event_ms=T0)
        assert self.state.level_history is not None
        self.state.level_history.record(level_sizes if level_sizes is not None else [1.0] * 40)
        self.anomalies = AnomaliesCalculator(options)
        self.tracker = AnomalyTracker()
        self.now = T0
        self.update_id = 1
        self.trade_id = 0
        self.slow()  # creates the observer and takes the first look

    @property
    def observer(self) -> Observer:
        return self.state.scratch("anomalies")["observer"]

    def book(self, bids: list[tuple[float, float]] = (), asks: list[tuple[float, float]] = ()) -> None:
        self.update_id += 1
        self.state.apply(BookDelta(SYMBOL, list(bids), list(asks), self.update_id,
                                   self.update_id, self.now))

    def snapshot(self, bids: list[tuple[float, float]] = BIDS,
                 asks: list[tuple[float, float]] = ASKS) -> None:
        self.update_id += 1
        self.state.apply(BookSnapshot(SYMBOL, bids, asks, self.update_id, self.now))

    def trade(self, price: float, qty: float, side: str) -> None:
        self.trade_id += 1
        self.state.apply(Trade(SYMBOL, price, qty, Side(side), self.trade_id, self.now))

    def toward(self, side: str, ticks: int = 5) -> None:
        """Move the price ``ticks`` ticks towards ``side`` (down for bids, up for asks):
        the best ``ticks`` levels of that side are taken away and the other side's
        quotes follow into the gap, so the spread stays one tick and mid moves by
        ``ticks`` ticks (5 ticks: about 5 bps nearer every order on that side)."""
        if side == "bid":
            gone = [(price, 0.0) for price, _ in BIDS[:ticks]]
            self.book(bids=gone, asks=[(price, 1.0) for price, _ in BIDS[:ticks]])
        else:
            gone = [(price, 0.0) for price, _ in ASKS[:ticks]]
            self.book(asks=gone, bids=[(price, 1.0) for price, _ in ASKS[:ticks]])

    def back(self, side: str, ticks: int = 5) -> None:
        """Undo :meth:`toward`: the price returns to the starting book."""
        if side == "bid":
            self.book(asks=[(price, 0.0) for price, _ in BIDS[:ticks]], bids=BIDS[:ticks])
        else:
            self.book(bids=[(price, 0.0) for price, _ in ASKS[:ticks]], asks=ASKS[:ticks])

    def fast(self, steps: int = 1, dt_ms: int = 250) -> None:
        for _ in range(steps):
            self.now += dt_ms
            report, omitted = run_cycle([self.tracker], self.state, now_ms=self.now)
            assert omitted == {}
            assert "anomalies" not in report

    def warm_up(self) -> None:
        """Enough quiet fast cycles for the spread/depth baseline (20 samples)."""
        self.fast(21)

    def slow(self) -> tuple[list[dict[str, Any]] | None, dict[str, str]]:
        report, omitted = run_cycle([self.anomalies], self.state, now_ms=self.now,
                                    cycle=Cycle.SLOW)
        check_report(report)
        return report.get("anomalies"), omitted

    def found(self, kind: str) -> list[dict[str, Any]]:
        anomalies, omitted = self.slow()
        assert anomalies is not None, omitted
        return [a for a in anomalies if a["type"] == kind]
