"""The ``walls`` calculator: threshold, severities, distances and bounds by hand; properties."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore import Needs
from marketcore.testing import make_state, run_cycle, validate_report
from marketcore_calc_liquidity import WallsCalculator, WallsOptions

# mid = (100.0 + 100.1) / 2 = 100.05. Level-size history: 40 samples of 2.0, so
# P95 = 2.0 and the wall threshold is 2.0 × 1.5 = 3.0 (medium from 6.0, high from 9.0).
BIDS = [(100.0, 1.0), (99.9, 3.0), (99.5, 6.0), (99.2, 9.5), (98.0, 50.0)]
ASKS = [(100.1, 2.9), (100.3, 12.0), (100.6, 4.5)]
MID = 100.05


def state_with_history(bids=BIDS, asks=ASKS, samples=(2.0,) * 40, **kwargs):
    state = make_state(bids=bids, asks=asks, **kwargs)
    if state.level_history is not None and samples:
        state.level_history.record(list(samples))
    return state


def walls_of(state, options=None):
    report, omitted = run_cycle([WallsCalculator(options or WallsOptions())], state, now_ms=0,
                                cycle="slow")
    validate_report(report)
    return report.get("liquidity", {}).get("walls"), omitted


def bps(price):
    return abs(price - MID) / MID * 1e4


def test_walls_by_hand():
    walls, _ = walls_of(state_with_history())
    # 98.0 is 204.9 bps away: beyond the 100 bps scan. 2.9 < 3.0 and 1.0 are no walls.
    assert walls == [
        {"side": "ask", "price": 100.3, "qty": 12.0, "distance_bps": pytest.approx(bps(100.3)),
         "severity": "high", "ratio": 4.0},
        {"side": "bid", "price": 99.2, "qty": 9.5, "distance_bps": pytest.approx(bps(99.2)),
         "severity": "high", "ratio": pytest.approx(9.5 / 3)},
        {"side": "bid", "price": 99.5, "qty": 6.0, "distance_bps": pytest.approx(bps(99.5)),
         "severity": "medium", "ratio": 2.0},
        {"side": "ask", "price": 100.6, "qty": 4.5, "distance_bps": pytest.approx(bps(100.6)),
         "severity": "low", "ratio": 1.5},
        {"side": "bid", "price": 99.9, "qty": 3.0, "distance_bps": pytest.approx(bps(99.9)),
         "severity": "low", "ratio": 1.0},
    ]
    assert walls[0]["distance_bps"] == pytest.approx(24.98750624687656)   # 0.25 / 100.05 * 1e4
    assert walls[4]["distance_bps"] == pytest.approx(14.992503748125937)  # 0.15 / 100.05 * 1e4


def test_options_move_the_threshold_the_scan_and_the_cap():
    # multiplier 1 -> threshold 2.0: 2.9 joins (low) and 6.0 becomes high (3x)
    walls, _ = walls_of(state_with_history(), WallsOptions(multiplier=1.0))
    assert [(w["price"], w["severity"]) for w in walls] == [
        (100.3, "high"), (99.2, "high"), (99.5, "high"), (100.6, "medium"), (99.9, "low"),
        (100.1, "low")]
    # a wider scan reaches 98.0 (204.9 bps); the cap keeps the two most severe
    walls, _ = walls_of(state_with_history(), WallsOptions(max_distance_bps=250, max_walls=2))
    assert [(w["price"], w["qty"]) for w in walls] == [(98.0, 50.0), (100.3, 12.0)]
    # only the best two levels per side are read: 99.9 (low) and 100.3 (high)
    walls, _ = walls_of(state_with_history(), WallsOptions(max_levels=2))
    assert [w["price"] for w in walls] == [100.3, 99.9]
    # severity steps
    walls, _ = walls_of(state_with_history(), WallsOptions(medium_at=1.5, high_at=4.0))
    assert [w["severity"] for w in walls] == ["high", "medium", "medium", "medium", "low"]
    # a different percentile: P50 of 1..40 is 20.5 -> threshold 30.75: no wall
    walls, _ = walls_of(state_with_history(samples=range(1, 41)), WallsOptions(percentile=50))
    assert walls == []


def test_too_little_history_omits_walls_with_the_reason():
    walls, omitted = walls_of(state_with_history(samples=(2.0,) * 19))
    assert walls is None
    assert omitted["walls"] == "level-size history holds 19 samples, needs at least 20"
    walls, omitted = walls_of(state_with_history(needs=Needs(trade_window_ms=1000)))
    assert omitted["walls"] == "no level-size history is kept for this symbol"
    _, omitted = walls_of(state_with_history(samples=(2.0,) * 5), WallsOptions(min_samples=5))
    assert "walls" not in omitted


def test_a_one_sided_book_has_no_mid_to_measure_from():
    walls, omitted = walls_of(state_with_history(asks=[]))
    assert walls is None and omitted["walls"] == "no mid price: a side of the book is empty"


def test_needs_ask_the_host_for_the_history():
    assert WallsCalculator(WallsOptions(history_samples=1000)).needs == Needs(level_history=1000)


@pytest.mark.parametrize(("options", "message"), [
    ({"multiplier": 0}, "multiplier must be a number in (0, 1000000.0]"),
    ({"percentile": 101}, "percentile must be a number in (0, 100]"),
    ({"medium_at": 3.5}, "medium_at <= high_at"),
    ({"min_samples": 50, "history_samples": 40}, "min_samples <= history_samples"),
    ({"max_walls": -1}, "max_walls must be an integer from 0 to 1000"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        WallsOptions(**options)


levels = st.dictionaries(st.integers(min_value=1, max_value=400),
                         st.integers(min_value=1, max_value=10_000), min_size=1, max_size=40)


@given(bid_ticks=levels, ask_ticks=levels,
       samples=st.lists(st.floats(min_value=0.01, max_value=100.0), min_size=20, max_size=200),
       multiplier=st.floats(min_value=0.5, max_value=3.0))
def test_properties_on_random_books(bid_ticks, ask_ticks, samples, multiplier):
    # bids below 100, asks above 100.01, on a 0.01 grid; sizes in lots of 0.01
    bids = [(round(100 - t / 100, 2), q / 100) for t, q in bid_ticks.items()]
    asks = [(round(100.01 + t / 100, 2), q / 100) for t, q in ask_ticks.items()]
    state = state_with_history(bids=bids, asks=asks, samples=samples)
    walls, _ = walls_of(state, WallsOptions(multiplier=multiplier))
    threshold = float(np.percentile(samples, 95)) * multiplier
    mid = (max(p for p, _ in bids) + min(p for p, _ in asks)) / 2
    scanned = [(p, q) for p, q in bids + asks if abs(p - mid) / mid * 1e4 <= 100]
    expected = sorted(q for _, q in scanned if q >= threshold)
    assert sorted(w["qty"] for w in walls) == expected[-20:]       # the 20 largest
    rank = {"low": 0, "medium": 1, "high": 2}
    by_qty = sorted(walls, key=lambda w: w["qty"])
    for smaller, larger in pairwise(by_qty):  # severity monotone in size
        assert rank[smaller["severity"]] <= rank[larger["severity"]]
    for wall in walls:
        ratio = wall["qty"] / threshold
        assert wall["severity"] == ("high" if ratio >= 3 else "medium" if ratio >= 2 else "low")
        assert wall["distance_bps"] == pytest.approx(abs(wall["price"] - mid) / mid * 1e4)
    keys = [(-rank[w["severity"]], -w["qty"]) for w in walls]
    assert keys == sorted(keys)                                     # most severe, then largest
