"""A pipeline runs one cycle's calculators over one SymbolState.

The host builds one :class:`Pipeline` per cycle. It is also what
``marketcore.testing`` uses to run a single cycle in a plugin's tests, so a
calculator behaves the same in a test, in a replay and live.

Isolation: a calculator that raises, returns a section it did not declare, or
runs past its budget loses only its own sections for that symbol and cycle.
The reason is recorded in ``omitted`` (published as ``health.omitted``) and
counted in :attr:`Pipeline.stats`; every other section is published.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from marketcore.components import Calculator, Cycle, CycleContext, Needs, Omitted
from marketcore.report import place_section
from marketcore.state import SymbolState

__all__ = ["CALC_BOUNDS_NS", "CalculatorStats", "Pipeline", "merge_needs"]

CALC_BOUNDS_NS = tuple(int(us * 1000) for us in (
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000))
"""Buckets of one calculator's time on one symbol (10 µs … 250 ms), for the latency histogram."""


@attrs.define
class CalculatorStats:
    """Counters of one calculator in one pipeline."""

    calls: int = 0
    total_ns: int = 0
    max_ns: int = 0
    errors: int = 0
    overruns: int = 0
    buckets: list[int] = attrs.field(factory=lambda: [0] * (len(CALC_BOUNDS_NS) + 1))
    """Calls by duration: ``buckets[i]`` counts those ``<= CALC_BOUNDS_NS[i]`` (and above
    the bound before); the last, those above every bound. One binary search per call."""

    @property
    def mean_us(self) -> float:
        return self.total_ns / self.calls / 1e3 if self.calls else 0.0


def merge_needs(calculators: Sequence[Calculator]) -> Needs:
    """The largest need of each kind: what every SymbolState must keep."""
    return Needs(
        trade_window_ms=max((c.needs.trade_window_ms for c in calculators), default=0),
        level_history=max((c.needs.level_history for c in calculators), default=0),
    )


class Pipeline:
    """The calculators of one cycle, in run order, with their stats."""

    def __init__(self, cycle: Cycle, calculators: Sequence[Calculator], *,
                 budget_ms: float | None = None) -> None:
        self.cycle = cycle
        self.calculators = tuple(
            sorted(calculators, key=lambda c: getattr(c, "order", 0))  # stable: profile order
        )
        self.budget_ns = None if budget_ms is None else int(budget_ms * 1e6)
        self.stats = {c.name: CalculatorStats() for c in self.calculators}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.calculators)

    def run(self, state: SymbolState, now_ms: int, report: dict[str, Any],
            omitted: dict[str, str]) -> None:
        """Add this cycle's sections of ``state`` to ``report``; reasons to ``omitted``."""
        ctx = CycleContext(now_ms=now_ms, cycle=self.cycle, report=report)
        budget = self.budget_ns
        clock = time.perf_counter_ns
        for calculator in self.calculators:
            stats = self.stats[calculator.name]
            started = clock()
            try:
                sections = calculator.compute(state, ctx)
            except Exception as error:  # isolation: one calculator never sinks a report
                elapsed = clock() - started
                stats.errors += 1
                self._lose(calculator, f"{calculator.name} raised {type(error).__name__}: {error}",
                           omitted)
                self._time(stats, elapsed)
                continue
            elapsed = clock() - started
            self._time(stats, elapsed)
            if budget is not None and elapsed > budget:
                stats.overruns += 1
                self._lose(calculator, f"{calculator.name} overran its budget "
                           f"({elapsed / 1e6:.1f} ms > {budget / 1e6:.1f} ms)", omitted)
                continue
            self._place(calculator, sections, report, omitted, stats)

    @staticmethod
    def _time(stats: CalculatorStats, elapsed: int) -> None:
        stats.calls += 1
        stats.total_ns += elapsed
        stats.buckets[bisect_left(CALC_BOUNDS_NS, elapsed)] += 1
        if elapsed > stats.max_ns:
            stats.max_ns = elapsed

    @staticmethod
    def _lose(calculator: Calculator, reason: str, omitted: dict[str, str]) -> None:
        """Record the lost sections; a calculator without sections is named instead."""
        for section in calculator.sections or (calculator.name,):
            omitted[section] = reason

    def _place(self, calculator: Calculator, sections: Mapping[str, Any], report: dict[str, Any],
               omitted: dict[str, str], stats: CalculatorStats) -> None:
        declared = calculator.sections
        undeclared = [key for key in sections if key not in declared]
        if undeclared:
            stats.errors += 1
            self._lose(calculator, f"{calculator.name} returned undeclared sections "
                       f"{', '.join(map(repr, undeclared))}", omitted)
            return
        for section, value in sections.items():
            if isinstance(value, Omitted):
                omitted[section] = value.reason
            else:
                place_section(report, section, value)
                omitted.pop(section, None)
