"""The ``spread`` calculator: every field against hand-computed books, and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore.testing import make_state, run_cycle, validate_report
from marketcore_calc_spread import SpreadCalculator, SpreadOptions

SPREAD_FIELDS = ("best_bid", "best_ask", "book_state", "mid_price", "spread_bps", "micro_price")


def spread_report(bids, asks):
    report, omitted = run_cycle([SpreadCalculator(SpreadOptions())],
                                make_state(bids=bids, asks=asks), now_ms=1_000)
    validate_report(report)
    return report, omitted


def test_normal_book_every_field_by_hand():
    report, omitted = spread_report(bids=[(100.0, 2.0), (99.5, 1.0)],
                                    asks=[(100.5, 3.0), (101.0, 4.0)])
    assert report["best_bid"] == {"price": 100.0, "qty": 2.0}
    assert report["best_ask"] == {"price": 100.5, "qty": 3.0}
    assert report["book_state"] == "normal"
    assert report["mid_price"] == 100.25                              # (100 + 100.5) / 2
    assert report["spread_bps"] == pytest.approx(49.87531172069825)   # 0.5 / 100.25 * 1e4
    # (100 * 3 + 100.5 * 2) / (2 + 3) = 501 / 5
    assert report["micro_price"] == pytest.approx(100.2, rel=1e-15)
    assert omitted == {}


def test_micro_price_leans_towards_the_thin_side():
    # A big bid and a small ask: the next trade is likelier up, the micro price sits near the ask.
    report, _ = spread_report(bids=[(10.0, 9.0)], asks=[(10.2, 1.0)])
    assert report["micro_price"] == pytest.approx((10.0 * 1.0 + 10.2 * 9.0) / 10.0)  # 10.18
    assert report["micro_price"] == pytest.approx(10.18)


def test_locked_book_is_flagged_with_a_zero_spread():
    report, omitted = spread_report(bids=[(100.0, 1.0)], asks=[(100.0, 3.0)])
    assert report["book_state"] == "locked"
    assert report["spread_bps"] == 0.0
    assert report["mid_price"] == 100.0
    assert report["micro_price"] == 100.0
    assert omitted == {}


def test_crossed_book_publishes_no_spread_and_no_micro_price():
    report, omitted = spread_report(bids=[(100.2, 1.0)], asks=[(100.1, 2.0)])
    assert report["book_state"] == "crossed"
    assert report["best_bid"] == {"price": 100.2, "qty": 1.0}
    assert report["best_ask"] == {"price": 100.1, "qty": 2.0}
    assert report["mid_price"] == pytest.approx(100.15)
    assert "spread_bps" not in report and "micro_price" not in report
    assert omitted["spread_bps"].startswith("crossed book: best bid 100.2 > best ask 100.1")
    assert omitted["micro_price"] == omitted["spread_bps"]


@pytest.mark.parametrize(("bids", "asks", "missing"), [
    ([(100.0, 1.0)], [], "asks"),
    ([], [(100.0, 1.0)], "bids"),
])
def test_one_sided_book_omits_what_needs_both_sides(bids, asks, missing):
    report, omitted = spread_report(bids=bids, asks=asks)
    assert report["book_state"] == "one-sided"
    present = "best_bid" if bids else "best_ask"
    assert report[present] == {"price": 100.0, "qty": 1.0}
    absent = "best_ask" if bids else "best_bid"
    assert absent not in report and omitted[absent] == f"no {missing} in the book"
    for field in ("mid_price", "spread_bps", "micro_price"):
        assert field not in report
        assert omitted[field] == f"one-sided book: no {missing}"


def test_empty_book():
    report, omitted = spread_report(bids=[], asks=[])
    assert report["book_state"] == "empty"
    for field in ("best_bid", "best_ask", "mid_price", "spread_bps", "micro_price"):
        assert field not in report
    assert omitted["mid_price"] == "empty book: no bids and no asks"
    assert omitted["best_bid"] == "no bids in the book"


def test_reasons_reach_health_when_the_profile_runs_health(make_state, run_cycle):
    from marketcore.testing import make_plugin_manager

    health_factory = make_plugin_manager().registries.calculators["health"]
    health = health_factory.factory(health_factory.options())
    report, _ = run_cycle([SpreadCalculator(), health], make_state(bids=[(1.0, 1.0)]),
                          now_ms=0)
    validate_report(report)
    assert report["health"]["omitted"]["spread_bps"] == "one-sided book: no asks"


prices = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False)
qtys = st.floats(min_value=1e-8, max_value=1e9, allow_nan=False, allow_infinity=False)
sides = st.lists(st.tuples(prices, qtys), max_size=8, unique_by=lambda level: level[0])


@given(bids=sides, asks=sides)
def test_properties_on_random_books(bids, asks):
    report, omitted = spread_report(bids=bids, asks=asks)
    for field in SPREAD_FIELDS:  # each field is published or its omission explained
        assert (field in report) != (field in omitted), field
    state = report["book_state"]
    if "spread_bps" in report:
        assert report["spread_bps"] >= 0.0          # never negative unless flagged crossed
        assert state in ("normal", "locked")
    if state == "crossed":
        assert "spread_bps" not in report and "micro_price" not in report
        assert report["best_bid"]["price"] > report["best_ask"]["price"]
    if "micro_price" in report:
        assert report["best_bid"]["price"] <= report["micro_price"] <= report["best_ask"]["price"]
    if "mid_price" in report:
        assert math.isfinite(report["mid_price"])
        low = min(report["best_bid"]["price"], report["best_ask"]["price"])
        high = max(report["best_bid"]["price"], report["best_ask"]["price"])
        assert low <= report["mid_price"] <= high
    if bids and asks:
        best_bid, best_ask = max(p for p, _ in bids), min(p for p, _ in asks)
        expected = ("crossed" if best_bid > best_ask else
                    "locked" if best_bid == best_ask else "normal")
        assert state == expected
        if expected == "normal":
            assert report["spread_bps"] > 0.0


def test_a_non_finite_quantity_never_reaches_the_report():
    report, omitted = spread_report(bids=[(100.0, math.inf)], asks=[(100.5, 1.0)])
    assert "best_bid" not in report and "micro_price" not in report
    assert omitted["best_bid"] == "non-finite best bid in the book"
    assert omitted["micro_price"] == "micro price is not finite"
    assert report["spread_bps"] == pytest.approx(0.5 / 100.25 * 1e4)
