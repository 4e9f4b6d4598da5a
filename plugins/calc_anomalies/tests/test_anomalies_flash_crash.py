"""Flash-crash risk, hand-computed: two of three signals against the recent past.

The quiet book: spread 0.01 / 100.005 = 0.99995 bps; all 80 levels lie within 50 bps
of mid, so the depth is the sum of the prices, 4000 + 4000.4 = 8000.4 (quote). Taking
away the two best levels of each side leaves 99.98 / 100.03: spread 4.99975 bps (5×
the median), depth 8000.4 − 400.02 = 7600.38 (below the P10, 8000.4).
"""

from __future__ import annotations

import pytest
from anomaly_scenarios import Market
from marketcore_calc_anomalies.rules import _flash_figures

QUIET_SPREAD = 0.01 / 100.005 * 1e4
QUIET_DEPTH = 8000.4
GONE = {"bids": [(100.00, 0.0), (99.99, 0.0)], "asks": [(100.01, 0.0), (100.02, 0.0)]}


def figures(market: Market) -> dict:
    return _flash_figures(market.observer, market.state, market.now)


def test_a_wide_spread_and_a_thin_book_are_medium_risk():
    market = Market()
    market.warm_up()
    market.book(**GONE)
    market.fast()
    [risk] = market.found("flash_crash_risk")
    assert risk["severity"] == "medium"
    assert risk["signals"] == ["spread", "thin_book"]
    assert risk["evaluated"] == ["spread", "thin_book"]  # too few trades for the flow
    assert risk["spread_bps"] == pytest.approx(0.05 / 100.005 * 1e4)
    assert risk["median_spread_bps"] == pytest.approx(QUIET_SPREAD)
    assert risk["spread_ratio"] == pytest.approx(5.0)
    assert risk["depth_notional"] == pytest.approx(7600.38)
    assert risk["depth_floor_notional"] == pytest.approx(QUIET_DEPTH)
    assert risk["baseline_samples"] == 22  # the first look, 21 warm-up cycles; not the current
    assert "flow_acceleration" not in risk
    assert risk["note"].startswith("2 of 3 signals: spread 5 bps = 5x its median 1")


def test_a_wide_spread_alone_is_no_risk():
    market = Market()
    market.warm_up()
    market.book(bids=[(100.00, 0.0), (99.99, 0.0), (99.98, 4.0)],
                asks=[(100.01, 0.0), (100.02, 0.0), (100.03, 4.0)])
    market.fast()
    seen = figures(market)
    assert (seen["spread"], seen["thin_book"]) == (True, False)
    assert seen["depth_notional"] == pytest.approx(8200.41)
    assert market.found("flash_crash_risk") == []


def test_a_thin_book_alone_is_no_risk():
    market = Market()
    market.warm_up()
    market.book(bids=[(round(99.70 - 0.01 * i, 2), 0.1) for i in range(10)])
    market.fast()
    seen = figures(market)
    assert (seen["spread"], seen["thin_book"]) == (False, True)
    assert market.found("flash_crash_risk") == []


def test_spread_at_exactly_k_times_the_median_does_not_fire():
    market = Market()
    market.warm_up()
    market.book(bids=[(100.00, 0.0)], asks=[(100.01, 0.0)])  # 99.99 / 100.02: 3 ticks
    market.fast()
    seen = figures(market)
    assert seen["spread_ratio"] == pytest.approx(3.0)
    assert seen["spread"] is False


def test_selling_acceleration_completes_three_signals_for_high_risk():
    market = Market()
    for _ in range(280):  # 70 s of balanced flow at 100.005 (between levels)
        market.trade(100.005, 0.1, "buy")
        market.trade(100.005, 0.1, "sell")
        market.fast()
    for cycle in range(40):  # then 10 s of selling only
        market.trade(100.005, 0.3, "sell")
        if cycle == 39:
            market.book(**GONE)
        market.fast()
    [risk] = market.found("flash_crash_risk")
    # current window (last 10 s): 40 sells of 0.3; the window before: balanced
    assert risk["net_flow"] == pytest.approx(-12.0)
    assert risk["net_flow_before"] == pytest.approx(0.0, abs=1e-9)
    assert risk["flow_acceleration"] == pytest.approx(-12.0)
    # baseline: the last 60 s hold 200 balanced cycles (40.0) and the 12.0 sold
    assert risk["volume_per_window"] == pytest.approx(52.0 / 6)
    assert risk["flow_acceleration_ratio"] == pytest.approx(-12.0 / (52.0 / 6), abs=1e-4)
    assert risk["signals"] == ["spread", "thin_book", "selling_acceleration"]
    assert risk["severity"] == "high"
    assert risk["note"].startswith("3 of 3 signals")


def test_selling_acceleration_alone_is_no_risk():
    market = Market()
    for _ in range(280):
        market.trade(100.005, 0.1, "buy")
        market.trade(100.005, 0.1, "sell")
        market.fast()
    for _ in range(40):
        market.trade(100.005, 0.3, "sell")
        market.fast()
    seen = figures(market)
    assert seen["selling_acceleration"] is True
    assert (seen["spread"], seen["thin_book"]) == (False, False)
    assert market.found("flash_crash_risk") == []


def test_buying_acceleration_is_not_a_crash_signal():
    market = Market()
    for _ in range(280):
        market.trade(100.005, 0.1, "buy")
        market.trade(100.005, 0.1, "sell")
        market.fast()
    for _ in range(40):
        market.trade(100.005, 0.3, "buy")
        market.fast()
    seen = figures(market)
    assert seen["flow_acceleration_ratio"] == pytest.approx(12.0 / (52.0 / 6), abs=1e-4)
    assert seen["selling_acceleration"] is False


def test_flow_needs_two_windows_of_observation():
    market = Market()
    for _ in range(79):  # 19.75 s: less than two 10 s windows since the first look
        market.trade(100.005, 1.0, "sell")
        market.fast()
    assert "flow_acceleration" not in figures(market)
    market.fast()
    assert "flow_acceleration" in figures(market)


def test_warm_up_is_an_omission_not_an_all_clear():
    market = Market()
    market.fast(5)
    anomalies, omitted = market.slow()
    assert anomalies is None
    assert omitted == {"anomalies": "anomalies: 5 of 20 baseline samples"}
