"""The two calculators: ``anomaly_tracker`` (fast, observes) and ``anomalies`` (slow, judges).

Inferring placements and cancellations from L2 needs a finer look at level quantities
than the slow cycle's 2 s, while judging them belongs in the slow cycle (SPEC §6). So
the work is split: the slow ``anomalies`` calculator owns the options and the
per-symbol :class:`~marketcore_calc_anomalies.tracker.Observer` (in
``state.scratch("anomalies")``), observes once itself and evaluates the rules; the
fast ``anomaly_tracker`` only feeds that observer at every fast cycle and writes no
section. Without the tracker in the profile the rules still run, on observations two
seconds apart (orders placed and pulled between two slow cycles are then missed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marketcore.book import Book
from marketcore.components import Cycle, CycleContext, Needs, Omitted
from marketcore.events import VenueState
from marketcore.state import SymbolState

from marketcore_calc_anomalies.options import AnomaliesOptions, TrackerOptions
from marketcore_calc_anomalies.rules import flash_crash_risk, icebergs, spoofing
from marketcore_calc_anomalies.tracker import SCRATCH, Observer

__all__ = ["AnomaliesCalculator", "AnomalyTracker"]


class AnomaliesCalculator:
    """The ``anomalies`` section: spoofing, icebergs and flash-crash risk (slow cycle)."""

    name = "anomalies"
    cycle = Cycle.SLOW
    sections = ("anomalies",)

    def __init__(self, options: AnomaliesOptions | None = None) -> None:
        options = options if options is not None else AnomaliesOptions()
        problems = options.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.options = options
        flow_ms = int(2 * options.flow_window_s * 1000)
        self.needs = Needs(trade_window_ms=max(flow_ms, int(options.baseline_s * 1000)),
                           level_history=options.level_history)

    def observer(self, state: SymbolState) -> Observer:
        """This symbol's observer, created on first use with this calculator's options."""
        scratch = state.scratch(SCRATCH)
        observer = scratch.get("observer")
        if observer is None or observer.options is not self.options:
            observer = scratch["observer"] = Observer(self.options)
        return observer

    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        observer = self.observer(state)
        observer.observe(state, ctx.now_ms, whole_side=_whole_sides_read(state.book))
        waiting = _warming_up(state, observer)
        if waiting:
            return {"anomalies": Omitted(f"anomalies: {waiting}")}
        now = ctx.now_ms
        found = spoofing(observer, now) + icebergs(observer, now)
        found += flash_crash_risk(observer, state, now)
        return {"anomalies": found}


def _whole_sides_read(book: Book) -> bool:
    """Whether both sides of the book are already built as arrays since it last changed
    (in a slow cycle, by ``walls`` or ``vacuums`` of ``calc_liquidity``).

    Then a scan reads its band from those cached arrays for free; else
    :meth:`Book.top` of the band costs half of building them (BTCUSDT, 500 of ~1,200
    levels a side). Only the cost depends on it, never what is observed.
    """
    return book.has_side_arrays("bid") and book.has_side_arrays("ask")


def _warming_up(state: SymbolState, observer: Observer) -> str:
    """Why the rules cannot all be judged yet ("" when they can): never a false all-clear."""
    book = state.book
    if state.venue_state is not VenueState.CONNECTED:
        return f"feed is {state.venue_state.value}"
    if book.mid() is None or book.is_crossed():
        return "book is one-sided or crossed"
    options = observer.options
    if observer.threshold is None:
        have = len(state.level_history) if state.level_history is not None else 0
        return f"level-size history has {have} of {options.min_level_samples} samples"
    baseline = len(observer.samples) - 1
    if baseline < options.min_baseline_samples:
        return f"{max(0, baseline)} of {options.min_baseline_samples} baseline samples"
    return ""


class AnomalyTracker:
    """Feeds the ``anomalies`` observer at every fast cycle; writes no section.

    It does nothing for a symbol until the ``anomalies`` calculator has run once for
    it (that creates the observer with its options), and nothing at all in a profile
    without ``anomalies``.
    """

    name = "anomaly_tracker"
    cycle = Cycle.FAST
    sections: tuple[str, ...] = ()
    needs = Needs()

    def __init__(self, options: TrackerOptions | None = None) -> None:
        self.options = options

    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        observer = state.scratch(SCRATCH).get("observer")
        if observer is not None:
            observer.observe(state, ctx.now_ms, whole_side=_whole_sides_read(state.book))
        return {}
