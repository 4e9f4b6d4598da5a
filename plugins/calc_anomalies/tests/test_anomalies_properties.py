"""Properties: bounded memory under floods, monotone severities, finite figures."""

from __future__ import annotations

import json
import math

import numpy as np
from anomaly_scenarios import ASKS, BIDS, SYMBOL, T0, OperationFeed
from hypothesis import given
from hypothesis import strategies as st
from marketcore.components import Cycle
from marketcore.events import BookDelta, BookSnapshot, Side, Trade, VenueState
from marketcore.testing import make_state, run_cycle, validate_report
from marketcore_calc_anomalies import AnomaliesCalculator, AnomaliesOptions, AnomalyTracker
from marketcore_calc_anomalies.rules import (
    flash_crash_severity,
    iceberg_severity,
    spoofing_severity,
)
from marketcore_calc_anomalies.stats import quantile

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}

SMALL = AnomaliesOptions(
    min_level_samples=1, level_history=20, scan_every_ms=0, max_scan_levels=16,
    max_tracked_levels=3, max_placements=5, min_placements=1, min_cancel_rate=0.1,
    spoof_medium_rate=0.5, spoof_high_rate=0.9, max_iceberg_prices=2, iceberg_min_fills=1,
    min_baseline_samples=2, max_baseline_samples=8, flow_window_s=0.5, baseline_s=2.0,
    min_flow_trades=1, min_distance_bps=1.0, max_distance_bps=200.0,
    min_approach_bps=float("-inf"), max_pull_lifetime_s=float("inf"), min_touch_ratio=0.0,
)
CAPS = {"tracked": 3, "placements": 5, "runs": 2, "run_fills": 30_000 // 100 + 2,
        "previous_band": 16, "samples": 8}

bid_price = st.integers(0, 250).map(lambda k: round(100.00 - 0.01 * k, 2))
ask_price = st.integers(0, 250).map(lambda k: round(100.01 + 0.01 * k, 2))
# sizes around the history's (0.5-2: threshold about 3) and walls well above it
qty = st.one_of(st.just(0.0), st.floats(0.01, 2.0), st.floats(5.0, 100.0), st.floats(1e-8, 1e6))
near_bid = st.integers(0, 20).map(lambda k: round(100.00 - 0.01 * k, 2))
near_ask = st.integers(0, 20).map(lambda k: round(100.01 + 0.01 * k, 2))
trade = st.tuples(st.one_of(near_bid, near_ask, bid_price), st.floats(1e-8, 1e4),
                  st.sampled_from("bs"))
delta = st.tuples(st.just("delta"), st.lists(st.tuples(bid_price, qty), max_size=8),
                  st.lists(st.tuples(ask_price, qty), max_size=8))
trades = st.tuples(st.just("trades"), st.lists(trade, max_size=5))
fast = st.tuples(st.just("fast"), st.integers(1, 1000))
operation = st.one_of(  # repeated branches are drawn more often
    delta, delta, delta, trades, trades, fast, fast, fast,
    st.tuples(st.just("burst"), st.lists(trade, min_size=64, max_size=200)),
    st.tuples(st.just("slow"), st.integers(1, 3000)),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("status"), st.sampled_from(list(VenueState))),
)


def finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


@given(sizes=st.lists(st.floats(0.5, 2.0), min_size=1, max_size=40),
       operations=st.lists(operation, max_size=80))
def test_floods_stay_within_the_caps_and_publish_only_finite_figures(sizes, operations):
    state = make_state(symbol=SYMBOL, bids=BIDS, asks=ASKS, event_ms=T0)
    state.level_history.record(sizes)
    anomalies, tracker = AnomaliesCalculator(SMALL), AnomalyTracker()
    feed = OperationFeed(state, T0)
    run_cycle([anomalies], state, now_ms=feed.now, cycle=Cycle.SLOW)
    observer = state.scratch("anomalies")["observer"]
    for op in operations:
        kind = op[0]
        if not feed.apply(op):
            now = feed.now = feed.now + op[1]
            calculator, cycle = (tracker, Cycle.FAST) if kind == "fast" else (anomalies, Cycle.SLOW)
            report, omitted = run_cycle([calculator], state, now_ms=now, cycle=cycle)
            assert "non-finite value" not in omitted.values()
            if report.get("anomalies"):
                validate_report(report)
            for anomaly in report.get("anomalies") or []:
                assert finite(anomaly)
                json.dumps(anomaly, allow_nan=False)
            sizes_now = observer.sizes()
            assert all(sizes_now[k] <= cap for k, cap in CAPS.items()), sizes_now
            assert len(observer.samples) <= SMALL.max_baseline_samples
            assert observer.placements.maxlen == SMALL.max_placements


@given(st.integers(0, 100), st.integers(0, 100), st.floats(0, 1), st.floats(0, 1))
def test_spoofing_severity_never_falls_as_either_figure_rises(a, b, r, s):
    options = AnomaliesOptions()
    low = spoofing_severity(min(a, b), min(r, s), options)
    high_count = spoofing_severity(max(a, b), min(r, s), options)
    high_rate = spoofing_severity(min(a, b), max(r, s), options)
    assert SEVERITY_RANK[low] <= SEVERITY_RANK[high_count]
    assert SEVERITY_RANK[low] <= SEVERITY_RANK[high_rate]


@given(st.floats(0, 1e6), st.floats(0, 1e6))
def test_iceberg_severity_never_falls_as_the_ratio_rises(x, y):
    options = AnomaliesOptions()
    assert (SEVERITY_RANK[iceberg_severity(min(x, y), options)]
            <= SEVERITY_RANK[iceberg_severity(max(x, y), options)])


def test_severity_thresholds():
    options = AnomaliesOptions()
    assert [spoofing_severity(n, 1.0, options) for n in (3, 4, 7, 8)] == [
        "low", "medium", "medium", "high"]
    assert [spoofing_severity(8, r, options) for r in (0.7, 0.85, 0.95)] == [
        "low", "medium", "high"]
    assert [iceberg_severity(x, options) for x in (0.2, 1.0, 2.99, 3.0)] == [
        "low", "medium", "medium", "high"]
    assert [flash_crash_severity(n) for n in (2, 3)] == ["medium", "high"]


@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=300), st.floats(0, 100))
def test_quantile_matches_numpy(values, q):
    array = np.asarray(values)
    expected = float(np.percentile(array, q))
    assert math.isclose(quantile(array, q), expected, rel_tol=1e-9, abs_tol=1e-6)
    assert list(array) == values  # not modified


def test_a_long_random_flood_reaches_every_cap_and_never_passes_it():
    rng = np.random.default_rng(7)
    state = make_state(symbol=SYMBOL, bids=BIDS, asks=ASKS, event_ms=T0)
    state.level_history.record([1.0] * 20)
    anomalies, tracker = AnomaliesCalculator(SMALL), AnomalyTracker()
    now, update_id, trade_id = T0, 1, 0
    run_cycle([anomalies], state, now_ms=now, cycle=Cycle.SLOW)
    observer = state.scratch("anomalies")["observer"]
    most = dict.fromkeys(CAPS, 0)
    kinds = set()

    def level_qty() -> float:
        return float(rng.choice([0.0, rng.uniform(0.1, 2.0), rng.uniform(5.0, 50.0)]))

    for step in range(3000):
        update_id += 1
        bids = [(round(100.00 - 0.01 * int(rng.integers(0, 120)), 2), level_qty())
                for _ in range(int(rng.integers(0, 6)))]
        asks = [(round(100.01 + 0.01 * int(rng.integers(0, 120)), 2), level_qty())
                for _ in range(int(rng.integers(0, 6)))]
        state.apply(BookDelta(SYMBOL, bids, asks, update_id, update_id, now))
        count = 150 if step % 97 == 0 else int(rng.integers(0, 6))
        for _ in range(count):
            trade_id += 1
            buy = bool(rng.integers(0, 2))
            price = round(100.01 + 0.01 * int(rng.integers(0, 3)), 2) if buy else round(
                100.00 - 0.01 * int(rng.integers(0, 3)), 2)
            state.apply(Trade(SYMBOL, price, float(rng.uniform(0.01, 1.0)),
                              Side.BUY if buy else Side.SELL, trade_id, now))
        if step % 500 == 499:
            update_id += 1
            state.apply(BookSnapshot(SYMBOL, BIDS, ASKS, update_id, now))
        now += 250
        run_cycle([tracker], state, now_ms=now)
        if step % 8 == 0:
            report, omitted = run_cycle([anomalies], state, now_ms=now, cycle=Cycle.SLOW)
            assert "non-finite value" not in omitted.values()
            found = {a["type"] for a in report.get("anomalies") or []}
            if found - kinds:  # the schema check is slow: once per newly seen kind
                validate_report(report)
            kinds |= found
        for key, value in observer.sizes().items():
            assert value <= CAPS[key], (key, value)
            most[key] = max(most[key], value)
    assert {k: most[k] for k in CAPS if k != "run_fills"} == {
        k: v for k, v in CAPS.items() if k != "run_fills"}
    assert {"spoofing", "iceberg"} <= kinds
