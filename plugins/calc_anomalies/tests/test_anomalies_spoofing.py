"""Spoofing, hand-computed: large orders placed away from mid, then pulled or traded.

Threshold: P95 of the level sizes (all 1.0) × 1.5 = 1.5. Mid 100.005, so a bid at
99.80 is 20.499 bps away, 99.75 is 25.499, 99.70 is 30.498, 99.65 is 35.498.

A spoofer's wall is pulled as the price comes towards it: ``place_and_pull`` places
it, moves the price 5 ticks towards it (mid 99.955: the 99.80 bid is then 15.507 bps
away, 4.992 bps nearer), pulls it 500 ms after placing it, and moves the price back.
The touch is 1.0, so an 11.0 level (10 placed) is 10 × the touch.
"""

from __future__ import annotations

import attrs
import pytest
from anomaly_scenarios import BIDS, Market, bps
from hypothesis import example, given, settings
from hypothesis import strategies as st
from marketcore_calc_anomalies import AnomaliesOptions

EVERY_CYCLE = AnomaliesOptions(scan_every_ms=0)
SPEC_ONLY = AnomaliesOptions(scan_every_ms=0, min_approach_bps=float("-inf"),
                             max_pull_lifetime_s=float("inf"), min_touch_ratio=0.0)
"""SPEC's rule alone: the three conditions that tell spoofing from re-quoting disabled."""


def pull(market: Market, price: float, *, side: str = "bid") -> None:
    """The price comes 5 ticks towards the wall, the wall goes, the price returns."""
    key = "bids" if side == "bid" else "asks"
    market.toward(side)
    market.fast()
    market.book(**{key: [(price, 1.0)]})
    market.fast()
    market.back(side)
    market.fast()


def place_and_pull(market: Market, price: float, *, side: str = "bid", size: float = 11.0) -> None:
    key = "bids" if side == "bid" else "asks"
    market.book(**{key: [(price, size)]})
    market.fast()
    pull(market, price, side=side)


def requote(market: Market, price: float, *, size: float = 11.0) -> None:
    """A market maker's bid left behind: the price moves up, away from it, and it goes."""
    market.book(bids=[(price, size)])
    market.fast()
    market.toward("ask")
    market.fast()
    market.book(bids=[(price, 1.0)])
    market.fast()
    market.back("ask")
    market.fast()


def test_three_pulled_walls_are_low_spoofing():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    for price in (99.80, 99.75, 99.70):
        place_and_pull(market, price)
    [spoof] = market.found("spoofing")
    assert spoof["side"] == "bid"
    assert spoof["placements"] == 3
    assert spoof["pulled"] == 3
    assert spoof["resting"] == 0
    assert spoof["cancel_rate"] == 1.0
    assert spoof["placed_qty"] == pytest.approx(30.0)
    assert spoof["pulled_qty"] == pytest.approx(30.0)
    assert spoof["traded_qty"] == 0.0
    assert spoof["threshold_qty"] == pytest.approx(1.5)
    assert spoof["min_distance_bps"] == pytest.approx(20.5, abs=0.01)
    assert spoof["max_distance_bps"] == pytest.approx(30.5, abs=0.01)
    assert spoof["prices"] == [99.80, 99.75, 99.70]
    assert spoof["largest"]["qty"] == pytest.approx(10.0)
    assert spoof["largest"]["price"] == 99.80  # ties: the first
    assert spoof["window_s"] == 60.0
    assert (spoof["pulled_on_approach"], spoof["spoof_rate"]) == (3, 1.0)
    assert spoof["min_approach_bps"] == pytest.approx(bps(99.70) - bps(99.70, 99.955), abs=0.01)
    assert spoof["max_lifetime_s"] == 0.5
    assert spoof["largest"]["pulled_distance_bps"] == pytest.approx(bps(99.80, 99.955), abs=0.01)
    assert spoof["largest"]["touch_ratio"] == 10.0
    # 3 pulled < 4 (medium by count) although the rate (100 %) grades high: the lower wins
    assert spoof["severity"] == "low"
    assert "3 of 3 large orders" in spoof["note"] and "100% spoof rate" in spoof["note"]
    assert "20.5-30.5 bps" in spoof["note"]
    assert "as the price came 4.987-4.992 bps nearer" in spoof["note"] and "0.5-0.5 s after placement" in spoof["note"]


def test_four_pulled_walls_are_medium_and_eight_high():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    prices = [round(99.80 - 0.01 * i, 2) for i in range(8)]
    for price in prices[:4]:
        place_and_pull(market, price)
    assert market.found("spoofing")[0]["severity"] == "medium"
    for price in prices[4:]:
        place_and_pull(market, price)
    [spoof] = market.found("spoofing")
    assert (spoof["pulled"], spoof["severity"]) == (8, "high")


def test_a_wall_that_trades_away_is_not_spoofing():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    for price in (99.80, 99.75, 99.70):
        market.book(bids=[(price, 11.0)])
        market.fast()
        market.trade(price, 4.0, "sell")  # sellers hit the bid wall
        market.trade(price, 6.0, "sell")
        market.book(bids=[(price, 1.0)])
        market.fast()
    assert market.found("spoofing") == []
    placements = list(market.observer.placements)
    assert [p.traded for p in placements] == [10.0, 10.0, 10.0]
    assert [p.cancelled for p in placements] == [0.0, 0.0, 0.0]


def test_a_fall_beyond_the_traded_volume_is_a_cancellation():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    market.book(bids=[(99.80, 11.0)])
    market.fast()
    market.trade(99.80, 4.0, "sell")
    market.book(bids=[(99.80, 1.0)])  # fell by 10, of which 4 traded
    market.fast()
    [placement] = market.observer.placements
    assert (placement.placed_qty, placement.traded, placement.cancelled) == (10.0, 4.0, 6.0)
    assert placement.distance_bps == pytest.approx(bps(99.80))
    assert not placement.followed


def test_three_pulled_and_one_traded_is_a_75_percent_rate():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    for price in (99.80, 99.75, 99.70):
        place_and_pull(market, price)
    market.book(bids=[(99.65, 11.0)])
    market.fast()
    market.trade(99.65, 10.0, "sell")
    market.book(bids=[(99.65, 1.0)])
    market.fast()
    [spoof] = market.found("spoofing")
    assert (spoof["placements"], spoof["pulled"], spoof["cancel_rate"]) == (4, 3, 0.75)
    assert spoof["traded_qty"] == pytest.approx(10.0)


def test_two_pulled_and_one_resting_is_below_the_rate():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    place_and_pull(market, 99.80)
    place_and_pull(market, 99.75)
    market.book(bids=[(99.70, 11.0)])  # placed, still resting
    market.fast()
    assert market.found("spoofing") == []  # 2 / 3 = 67 % < 70 %
    pull(market, 99.70)
    [spoof] = market.found("spoofing")
    assert spoof["cancel_rate"] == 1.0


def test_asks_are_judged_apart_from_bids():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    for price in (100.21, 100.26, 100.31):
        place_and_pull(market, price, side="ask")
    place_and_pull(market, 99.80)  # one bid: below min_placements on its side
    [spoof] = market.found("spoofing")
    assert spoof["side"] == "ask"
    assert spoof["min_distance_bps"] == pytest.approx(bps(100.21), abs=0.01)


def test_near_mid_and_small_rises_are_not_placements():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    for price in (99.95, 99.94, 99.93):  # 5.5-7.5 bps from mid: closer than 10 bps
        place_and_pull(market, price)
    for price in (99.80, 99.75, 99.70):  # a rise of 1.0 < the 1.5 threshold
        place_and_pull(market, price, size=2.0)
    assert len(market.observer.placements) == 0
    assert market.found("spoofing") == []


def test_placements_age_out_of_the_window():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    for price in (99.80, 99.75, 99.70):
        place_and_pull(market, price)
    assert market.found("spoofing")
    market.fast(60 * 4)  # a minute later
    assert market.found("spoofing") == []
    assert len(market.observer.placements) == 0


def test_default_scans_miss_an_order_pulled_between_two_scans():
    market = Market()  # scans every 1000 ms; the first scan was at the start
    market.warm_up()  # 21 fast cycles: scans at +1000, +2000, …, +5000 ms; now +5250
    market.book(bids=[(99.80, 11.0)])
    market.fast()  # +5500: no scan
    market.book(bids=[(99.80, 1.0)])
    market.fast(2)  # +5750, +6000 (scan): the wall came and went unseen
    assert len(market.observer.placements) == 0
    market.book(bids=[(99.75, 11.0)])
    market.fast(4)  # +7000: scanned while it rests
    market.book(bids=[(99.75, 1.0)])
    market.fast()  # followed at every cycle: the pull is seen at once
    [placement] = market.observer.placements
    assert (placement.price, placement.cancelled, placement.followed) == (99.75, 10.0, False)


def test_a_new_snapshot_voids_what_was_being_followed():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    place_and_pull(market, 99.80)
    place_and_pull(market, 99.75)
    market.book(bids=[(99.70, 11.0)])
    market.fast()
    market.snapshot()  # the book was rebuilt: the 99.70 wall's fate is unknown
    market.fast()
    [*_, last] = market.observer.placements
    assert last.void and not last.followed
    assert market.found("spoofing") == []  # 2 counted placements < min_placements 3


def test_a_second_large_rise_on_a_followed_level_is_a_new_placement():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    market.book(bids=[(99.80, 11.0)])
    market.fast()
    market.book(bids=[(99.80, 21.0)])  # another 10 on top
    market.fast()
    market.book(bids=[(99.80, 1.0)])
    market.fast()
    first, second = market.observer.placements
    assert (first.placed_qty, first.cancelled, first.followed) == (10.0, 0.0, False)
    assert (second.placed_qty, second.cancelled) == (10.0, 10.0)


def test_no_threshold_before_twenty_level_samples():
    market = Market(EVERY_CYCLE, level_sizes=[1.0] * 19)
    market.warm_up()
    anomalies, omitted = market.slow()
    assert anomalies is None
    assert omitted == {"anomalies": "anomalies: level-size history has 19 of 20 samples"}


def test_walls_the_price_moved_away_from_are_requoting_not_spoofing():
    market = Market(EVERY_CYCLE)
    market.warm_up()
    for price in (99.80, 99.75, 99.70, 99.65):
        requote(market, price)
    assert market.found("spoofing") == []
    placements = list(market.observer.placements)
    assert all(p.pulled_ms is not None for p in placements)
    assert all(p.approach_bps == pytest.approx(-5.0, abs=0.05) for p in placements)


def test_spec_rule_alone_reads_requoting_as_spoofing():
    market = Market(SPEC_ONLY)
    market.warm_up()
    for price in (99.80, 99.75, 99.70, 99.65):
        requote(market, price)
    [spoof] = market.found("spoofing")
    assert (spoof["pulled"], spoof["pulled_on_approach"], spoof["cancel_rate"]) == (4, 4, 1.0)
    assert spoof["severity"] == "medium"


def test_an_approach_under_the_minimum_does_not_count():
    market = Market(attrs.evolve(EVERY_CYCLE, min_approach_bps=5.0))  # 4.99 bps < 5
    market.warm_up()
    for price in (99.80, 99.75, 99.70):
        place_and_pull(market, price)
    assert market.found("spoofing") == []
    market = Market(attrs.evolve(EVERY_CYCLE, min_approach_bps=4.9))
    market.warm_up()
    for price in (99.80, 99.75, 99.70):
        place_and_pull(market, price)
    assert market.found("spoofing")[0]["pulled_on_approach"] == 3


def test_a_wall_pulled_after_the_lifetime_does_not_count():
    market = Market(attrs.evolve(EVERY_CYCLE, max_pull_lifetime_s=2.0))
    market.warm_up()
    for price in (99.80, 99.75, 99.70):
        market.book(bids=[(price, 11.0)])
        market.fast(8)  # rests 2 s, then the price comes and it goes at 2.25 s
        pull(market, price)
    assert market.found("spoofing") == []
    assert [p.lifetime_ms for p in market.observer.placements] == [2250] * 3
    place_and_pull(market, 99.65)  # pulled at 0.5 s: 1 of 4 is no rate
    [*_, last] = market.observer.placements
    assert last.lifetime_ms == 500
    assert market.found("spoofing") == []


def test_a_wall_no_larger_than_the_touch_does_not_count():
    bids = [(100.00, 20.0), *BIDS[1:]]  # a 20.0 touch: a 10.0 placement is half of it
    market = Market(EVERY_CYCLE, bids=bids)
    market.warm_up()
    for price in (99.80, 99.75, 99.70):
        market.book(bids=[(price, 11.0)])
        market.fast()
        market.book(bids=[(100.00, 0.0), (99.99, 0.0), (99.98, 0.0), (99.97, 0.0),
                          (99.96, 0.0)], asks=[(p, 1.0) for p, _ in BIDS[:5]])
        market.fast()
        market.book(bids=[(price, 1.0)])
        market.fast()
        market.book(bids=bids[:5], asks=[(p, 0.0) for p, _ in BIDS[:5]])
        market.fast()
    assert [p.touch_ratio for p in market.observer.placements] == [0.5] * 3
    assert market.found("spoofing") == []
    market = Market(attrs.evolve(EVERY_CYCLE, min_touch_ratio=0.5), bids=bids)
    market.warm_up()
    for price in (99.80, 99.75, 99.70):
        market.book(bids=[(price, 11.0)])
        market.fast()
        market.book(bids=[(100.00, 0.0), (99.99, 0.0), (99.98, 0.0), (99.97, 0.0),
                          (99.96, 0.0)], asks=[(p, 1.0) for p, _ in BIDS[:5]])
        market.fast()
        market.book(bids=[(price, 1.0)])
        market.fast()
        market.book(bids=bids[:5], asks=[(p, 0.0) for p, _ in BIDS[:5]])
        market.fast()
    assert market.found("spoofing")[0]["pulled_on_approach"] == 3


@settings(max_examples=25)
@given(st.lists(st.tuples(st.sampled_from(["approach", "requote", "rest"]), st.integers(0, 12)),
                min_size=3, max_size=8))
@example([("approach", 0)] * 3 + [("requote", 0)])  # both fire: 3 of 4 pulled on approach
@example([("requote", 0)] * 4)  # SPEC's alone fires
def test_the_added_conditions_only_ever_quieten_specs_rule(walls):
    """Whatever mix of spoofed, re-quoted and resting walls: what the default rule
    reports, SPEC's rule alone reports too, with at least as many pulls."""
    found = []
    for options in (EVERY_CYCLE, SPEC_ONLY):
        market = Market(options)
        market.warm_up()
        for i, (kind, rests) in enumerate(walls):
            price = round(99.80 - 0.01 * i, 2)
            if kind == "requote":
                requote(market, price)
                continue
            market.book(bids=[(price, 11.0)])
            market.fast(1 + rests)
            if kind == "approach":
                pull(market, price)
        found.append(market.found("spoofing"))
    default, spec = found
    if default:
        assert spec and spec[0]["pulled"] >= default[0]["pulled_on_approach"]
        assert spec[0]["cancel_rate"] >= default[0]["spoof_rate"] >= 0.7
