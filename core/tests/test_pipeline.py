"""Pipelines: order, isolation of failing or slow calculators, section placement."""

from __future__ import annotations

import time

from marketcore import Cycle, Needs, Omitted, Pipeline
from marketcore.testing import make_state, run_cycle


class Calc:
    """A configurable test calculator."""

    needs = Needs()

    def __init__(self, name, sections, compute, cycle=Cycle.FAST, order=0):
        self.name, self.sections, self._compute, self.cycle, self.order = (
            name, sections, compute, cycle, order)

    def compute(self, state, ctx):
        return self._compute(state, ctx)


def boom(state, ctx):
    raise RuntimeError("division by zero somewhere")


def test_a_raising_calculator_loses_only_its_section():
    state = make_state(bids=[(100.0, 1.0)], asks=[(101.0, 1.0)], event_ms=1000)
    good = Calc("good", ("spread_bps",), lambda s, c: {"spread_bps": 99.5})
    bad = Calc("bad", ("depth",), boom)
    pipeline = Pipeline(Cycle.FAST, [bad, good])
    report, omitted = {}, {}
    pipeline.run(state, 1000, report, omitted)
    assert report == {"spread_bps": 99.5}
    assert omitted == {"depth": "bad raised RuntimeError: division by zero somewhere"}
    assert pipeline.stats["bad"].errors == 1
    assert pipeline.stats["good"].errors == 0


def test_an_overrunning_calculator_loses_its_section_with_the_reason():
    state = make_state(event_ms=1000)

    def slow(state, ctx):
        time.sleep(0.02)
        return {"depth": {"bands": []}}

    pipeline = Pipeline(Cycle.FAST, [Calc("slow", ("depth",), slow),
                                     Calc("quick", ("spread_bps",), lambda s, c: {"spread_bps": 1.0})],
                        budget_ms=5)
    report, omitted = {}, {}
    pipeline.run(state, 1000, report, omitted)
    assert "depth" not in report and report["spread_bps"] == 1.0
    assert omitted["depth"].startswith("slow overran its budget (")
    assert pipeline.stats["slow"].overruns == 1


def test_undeclared_sections_are_refused():
    pipeline = Pipeline(Cycle.FAST, [Calc("sneaky", ("depth",), lambda s, c: {"depth": {}, "flow": {}})])
    report, omitted = {}, {}
    pipeline.run(make_state(), 0, report, omitted)
    assert report == {}
    assert omitted == {"depth": "sneaky returned undeclared sections 'flow'"}


def test_omitted_values_carry_their_reason_and_third_party_sections_go_under_ext():
    calc = Calc("mine", ("volume_profile", "my_metric"),
                lambda s, c: {"volume_profile": Omitted("fewer than 10 trades"), "my_metric": {"x": 1}})
    report, omitted = run_cycle([calc], make_state())
    assert report["ext"] == {"my_metric": {"x": 1}}
    assert "liquidity" not in report
    assert report["omitted"] == {"volume_profile": "fewer than 10 trades"}
    assert omitted == {"volume_profile": "fewer than 10 trades"}


def test_liquidity_parts_are_placed_inside_liquidity():
    calc = Calc("liq", ("walls", "vacuums"), lambda s, c: {"walls": [], "vacuums": []})
    report, _ = run_cycle([calc], make_state())
    assert report["liquidity"] == {"walls": [], "vacuums": []}


def test_order_runs_lower_first_and_later_ones_see_earlier_sections():
    seen = []
    first = Calc("first", ("spread_bps",), lambda s, c: {"spread_bps": 3.0}, order=0)
    last = Calc("last", ("my_view",),
                lambda s, c: seen.append(c.report.get("spread_bps")) or {"my_view": 1}, order=10)
    pipeline = Pipeline(Cycle.FAST, [last, first])
    assert pipeline.names == ("first", "last")
    pipeline.run(make_state(), 0, {}, {})
    assert seen == [3.0]


def test_stats_count_calls_and_time():
    calc = Calc("c", ("x",), lambda s, c: {"x": 1})
    pipeline = Pipeline(Cycle.SLOW, [calc])
    for _ in range(5):
        pipeline.run(make_state(), 0, {}, {})
    stats = pipeline.stats["c"]
    assert stats.calls == 5 and stats.total_ns > 0 and stats.max_ns <= stats.total_ns


def test_a_failing_calculator_without_sections_still_leaves_a_reason():
    tracker = Calc("tracker", (), boom)
    report, omitted = {}, {}
    Pipeline(Cycle.FAST, [tracker]).run(make_state(), 0, report, omitted)
    assert report == {}
    assert omitted == {"tracker": "tracker raised RuntimeError: division by zero somewhere"}
