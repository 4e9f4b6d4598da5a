"""Icebergs, hand-computed: repeated fills at one price while its visible size holds.

The best ask is 100.01 with 1.0 visible; the tests set it to 2.0 first. Fills are
buys at 100.01 (they lift the ask); a refill puts the visible size back.
"""

from __future__ import annotations

import pytest
from anomaly_scenarios import Market
from marketcore_calc_anomalies import AnomaliesOptions


def ready() -> Market:
    market = Market()
    market.book(asks=[(100.01, 2.0)])
    market.warm_up()
    return market


def fill_and_refill(market: Market, fills: list[float], visible: list[float]) -> None:
    """One fast cycle per fill: a buy at 100.01, then the visible size as given."""
    for qty, shown in zip(fills, visible, strict=True):
        market.trade(100.01, qty, "buy")
        market.book(asks=[(100.01, shown)])
        market.fast()


def test_five_fills_while_the_size_holds_is_a_medium_iceberg():
    market = ready()
    fill_and_refill(market, [0.5] * 5, [2.0, 1.95, 2.05, 2.0, 1.9])
    [iceberg] = market.found("iceberg")
    assert iceberg["side"] == "ask"
    assert iceberg["price"] == 100.01
    assert iceberg["fills"] == 5
    assert iceberg["executed_qty"] == pytest.approx(2.5)
    assert iceberg["reference_qty"] == 2.0  # the touch size before the first fill
    assert iceberg["visible_qty"] == 1.9
    assert iceberg["refilled_qty"] == pytest.approx(2.4)  # 2.5 executed − (2.0 − 1.9) shown less
    assert iceberg["executed_to_visible"] == 1.25
    assert iceberg["severity"] == "medium"  # 1 <= 1.25 < 3
    assert iceberg["window_s"] == 30.0
    assert "5 fills, 2.5 executed (1.25x the visible 2)" in iceberg["note"]


def test_four_fills_are_not_enough():
    market = ready()
    fill_and_refill(market, [0.5] * 4, [2.0] * 4)
    assert market.found("iceberg") == []


def test_several_fills_in_one_cycle_count_each():
    market = ready()
    for _ in range(2):
        for _ in range(3):
            market.trade(100.01, 0.2, "buy")
        market.book(asks=[(100.01, 2.0)])
        market.fast()
    [iceberg] = market.found("iceberg")
    assert (iceberg["fills"], iceberg["executed_qty"]) == (6, pytest.approx(1.2))
    assert iceberg["severity"] == "low"  # 0.6 of the visible size


def test_fills_with_a_shrinking_level_are_not_an_iceberg():
    market = ready()
    fill_and_refill(market, [0.3] * 6, [1.7, 1.4, 1.1, 0.8, 0.5, 0.2])
    assert market.found("iceberg") == []
    [run] = market.observer.runs.values()
    assert run.reference_qty == 0.2  # each step left the band and started over
    assert len(run.fills) == 0


def test_a_drop_beyond_the_tolerance_restarts_the_count():
    market = ready()
    fill_and_refill(market, [0.5] * 4, [2.0] * 4)
    fill_and_refill(market, [0.5], [1.7])  # 15 % below 2.0: the run starts over at 1.7
    fill_and_refill(market, [0.5] * 4, [1.7] * 4)
    assert market.found("iceberg") == []  # 4 fills since the restart
    fill_and_refill(market, [0.5], [1.7])
    [iceberg] = market.found("iceberg")
    assert (iceberg["fills"], iceberg["reference_qty"]) == (5, 1.7)


def test_fills_the_visible_size_could_absorb_show_no_refill():
    market = ready()
    fill_and_refill(market, [0.01] * 6, [2.0] * 6)  # 0.06 executed <= 10 % of 2.0
    assert market.found("iceberg") == []


def test_seven_full_refills_are_high_on_the_bid_side():
    market = Market()
    market.book(bids=[(100.00, 2.0)])
    market.warm_up()
    for _ in range(7):
        market.trade(100.00, 1.0, "sell")  # sellers hit the bid
        market.book(bids=[(100.00, 2.0)])
        market.fast()
    [iceberg] = market.found("iceberg")
    assert (iceberg["side"], iceberg["fills"], iceberg["executed_to_visible"]) == ("bid", 7, 3.5)
    assert iceberg["severity"] == "high"


def test_fills_age_out_of_the_window():
    market = ready()
    fill_and_refill(market, [0.5] * 5, [2.0] * 5)
    assert market.found("iceberg")
    market.fast(30 * 4)  # 30 s without fills
    assert market.found("iceberg") == []
    assert market.observer.runs == {}


def test_a_first_fill_away_from_the_touch_starts_uncounted():
    market = ready()
    for _ in range(5):
        market.trade(100.05, 0.5, "buy")  # swept to the 5th ask level, refilled there
        market.book(asks=[(100.05, 1.0)])
        market.fast()
    [run] = market.observer.runs.values()
    assert sum(count for _, count, _ in run.fills) == 4  # its size before the first fill is unknown
    assert market.found("iceberg") == []


def test_reported_icebergs_are_capped_largest_first():
    market = Market(AnomaliesOptions(max_reported_icebergs=2))
    market.warm_up()
    prices = [100.01, 100.02, 100.03]
    for _ in range(6):  # only the touch's first fills count: 6, 5 and 5 fills
        for i, price in enumerate(prices):
            market.trade(price, 0.2 * (i + 1), "buy")
        market.fast()  # the sizes never change: the hidden part refills everything
    icebergs = market.found("iceberg")
    assert [i["price"] for i in icebergs] == [100.03, 100.02]
    assert [i["executed_to_visible"] for i in icebergs] == [3.0, 2.0]
