"""The ``volume_profile`` calculator: POC and value area by hand, ties, incremental binning."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore import Needs, Side, Trade
from marketcore.testing import make_state, run_cycle, validate_report
from marketcore_calc_liquidity import VolumeProfileCalculator, VolumeProfileOptions
from marketcore_calc_liquidity.volume_profile import point_of_control, value_area

# Tick 0.1 and 5 ticks a bin: bin k holds [0.5k, 0.5k + 0.5), centre 0.5k + 0.25.
TRADES = [
    (1_000, 99.0, 1.0, "sell"),                                                 # bin 198: 1
    (2_000, 99.5, 1.0, "buy"), (2_500, 99.9, 2.0, "sell"),                      # bin 199: 3
    (3_000, 100.0, 2.0, "buy"), (4_000, 100.2, 1.0, "buy"), (5_000, 100.4, 3.0, "sell"),  # 200: 6
    (6_000, 100.5, 1.0, "buy"), (7_000, 100.9, 1.0, "buy"), (8_000, 100.6, 2.0, "sell"),  # 201: 4
    (9_000, 101.0, 1.0, "buy"), (10_000, 101.4, 0.5, "buy"), (12_000, 101.2, 0.5, "sell"),  # 2
]


def profile_of(state, calculator=None, now_ms=60_000):
    report, omitted = run_cycle([calculator or VolumeProfileCalculator()], state,
                                now_ms=now_ms, cycle="slow")
    validate_report(report)
    return report.get("liquidity", {}).get("volume_profile"), omitted


def test_every_field_by_hand():
    profile, _ = profile_of(make_state(trades=TRADES, tick_size=0.1))
    # total 16, target 70 % = 11.2. POC bin 200 (6). Neighbours 199 (3) and 201 (4): take
    # 201 -> 10; then 199 (3) against 202 (2): take 199 -> 13 >= 11.2. Value area 199 … 201.
    assert profile == {
        "poc": 100.25,
        "val": 99.75,
        "vah": 100.75,
        "bin_size": 0.5,
        "window_sec": 1800.0,
        "trade_count": 12,
        "total_volume": 16.0,
        "value_area_volume_pct": 81.25,      # 13 / 16
        "since_ms": 1_000,
    }


def test_configured_bins_window_and_value_area():
    # 10-tick bins of 1.0: 99 -> 1+3 = 4, 100 -> 6+4 = 10, 101 -> 2. 50 %: the POC bin alone
    # (10 of 16 = 62.5 %) is enough.
    calculator = VolumeProfileCalculator(VolumeProfileOptions(bin_ticks=10, value_area_pct=50,
                                                              window_s=600))
    profile, _ = profile_of(make_state(trades=TRADES, tick_size=0.1), calculator)
    assert (profile["poc"], profile["val"], profile["vah"]) == (100.5, 100.5, 100.5)
    assert profile["bin_size"] == 1.0 and profile["window_sec"] == 600.0
    assert profile["value_area_volume_pct"] == 62.5


def test_fewer_than_ten_trades_is_omitted():
    profile, omitted = profile_of(make_state(trades=TRADES[:9], tick_size=0.1))
    assert profile is None
    assert omitted["volume_profile"] == "fewer than 10 trades in the window (9)"


def test_tick_is_inferred_from_the_book_without_an_instrument():
    state = make_state(bids=[(100.0, 1.0), (99.9, 1.0)], asks=[(100.1, 1.0)], trades=TRADES)
    profile, _ = profile_of(state)
    assert profile["bin_size"] == 0.5 and profile["poc"] == 100.25
    _, omitted = profile_of(make_state(trades=TRADES))
    assert omitted["volume_profile"].startswith("tick size unknown")


def test_point_of_control_ties_go_to_the_vwap_then_lower():
    centres = np.array([1.0, 2.0, 3.0, 4.0])
    assert point_of_control(centres, np.array([1.0, 5.0, 2.0, 1.0])) == 1
    # VWAP 2.25: bin 3 (0.75 away) beats bin 1 (1.25 away)
    assert point_of_control(centres, np.array([3.0, 1.0, 3.0, 1.0])) == 2
    # VWAP 2.5: bins 1 and 4 equally near -> the lower
    assert point_of_control(centres, np.array([3.0, 1.0, 1.0, 3.0])) == 0


def test_value_area_takes_the_larger_neighbour_ties_nearer_then_lower():
    # equal neighbours at equal distance: the lower first, then the larger (upper) one
    assert value_area([1, 2, 3, 4, 5], [1.0, 2.0, 5.0, 2.0, 1.0], 2, 7.7) == (1, 3, 9.0)
    # equal neighbours, the upper one nearer (bin 4 vs bin 1 around POC bin 3)
    assert value_area([1, 3, 4], [2.0, 5.0, 2.0], 1, 7.0) == (1, 2, 7.0)
    # target reached by the POC alone
    assert value_area([1, 2], [5.0, 1.0], 0, 3.0) == (0, 0, 5.0)
    # everything, when the target is the total
    assert value_area([1, 2, 3], [1.0, 1.0, 1.0], 1, 3.0) == (0, 2, 3.0)


def test_trades_fed_over_several_runs_equal_one_run():
    """Incremental binning: trades arriving between runs, some in the same millisecond."""
    calculator = VolumeProfileCalculator()
    state = make_state(trades=TRADES[:5], tick_size=0.1)
    profile_of(state, calculator, now_ms=5_000)                       # binned 5 trades
    late = [(5_000, 100.3, 0.25, "buy"), *TRADES[5:]]            # same ms as the last one
    for index, (ts, price, qty, side) in enumerate(late):
        state.apply(Trade("BTCUSDT", price, qty, Side(side), 100 + index, ts))
        if index == 3:
            profile_of(state, calculator, now_ms=ts)                  # a run in the middle
    incremental, _ = profile_of(state, calculator, now_ms=60_000)
    at_once, _ = profile_of(make_state(trades=TRADES[:5] + late, tick_size=0.1))
    assert incremental == at_once
    assert incremental["trade_count"] == 13 and incremental["total_volume"] == 16.25


def test_old_buckets_leave_the_window():
    calculator = VolumeProfileCalculator(VolumeProfileOptions(window_s=120, bucket_s=60))
    state = make_state(trades=TRADES, tick_size=0.1, needs=Needs(trade_window_ms=60_000))
    first, _ = profile_of(state, calculator, now_ms=60_000)
    assert first["trade_count"] == 12
    # bucket [0, 60 s) ends at 60 s, which is before now - 120 s = 80 s: it left the window
    _, omitted = profile_of(state, calculator, now_ms=200_000)
    assert omitted["volume_profile"] == "fewer than 10 trades in the window (0)"


def test_memory_stays_in_per_bucket_histograms_not_raw_trades():
    calculator = VolumeProfileCalculator()
    assert calculator.needs == Needs(trade_window_ms=60_000)          # catch-up, not 30 min
    state = make_state(trades=TRADES, tick_size=0.1)
    profile_of(state, calculator)
    histogram = state.scratch("volume_profile")["histogram"]
    assert {k: len(b.volumes) for k, b in histogram.buckets.items()} == {0: 5}   # 5 bins


def test_max_bins_bounds_a_bucket_and_counts_what_it_dropped():
    calculator = VolumeProfileCalculator(VolumeProfileOptions(max_bins=4))
    trades = [*TRADES, (13_000, 100.1, 1.0, "buy"), (14_000, 99.6, 1.0, "buy")]
    profile, _ = profile_of(make_state(trades=trades, tick_size=0.1), calculator)
    # one batch: its four lowest bins (198 … 201) fit; the 3 trades of bin 202 are dropped
    assert profile["dropped_trades"] == 3
    assert profile["trade_count"] == 11
    assert profile["total_volume"] == 16.0                  # 16 + 2 - 2 dropped
    assert profile["vah"] == 100.75                         # no bin above 201


def reference_bins(trades, bin_size):
    volume = defaultdict(float)
    for _, price, qty, _ in trades:
        volume[math.floor(price / bin_size + 1e-6)] += qty
    return volume


trade_lists = st.lists(
    st.tuples(st.integers(min_value=0, max_value=100_000),
              st.integers(min_value=9_000, max_value=9_200).map(lambda t: t / 100),
              st.integers(min_value=1, max_value=5_000).map(lambda lots: lots / 1000),
              st.sampled_from(["buy", "sell"])),
    min_size=10, max_size=120,
).map(lambda trades: sorted(trades, key=lambda t: t[0]))


@given(trades=trade_lists, bin_ticks=st.integers(min_value=1, max_value=8),
       cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=4),
       pct=st.sampled_from([50.0, 70.0, 90.0]))
def test_invariants_on_random_trades(trades, bin_ticks, cuts, pct):
    calculator = VolumeProfileCalculator(VolumeProfileOptions(bin_ticks=bin_ticks,
                                                              value_area_pct=pct))
    state = make_state(tick_size=0.01)
    fed = 0
    for cut in sorted(cuts):                     # runs in between arrivals: incremental path
        while fed < len(trades) and trades[fed][0] <= cut:
            ts, price, qty, side = trades[fed]
            state.apply(Trade("BTCUSDT", price, qty, Side(side), fed + 1, ts))
            fed += 1
        profile_of(state, calculator, now_ms=cut)
    for ts, price, qty, side in trades[fed:]:
        state.apply(Trade("BTCUSDT", price, qty, Side(side), fed + 1, ts))
        fed += 1
    profile, _ = profile_of(state, calculator, now_ms=120_000)
    bin_size = round(0.01 * bin_ticks, 2)
    volume = reference_bins(trades, bin_size)
    total = math.fsum(volume.values())
    assert profile["val"] <= profile["poc"] <= profile["vah"]
    assert profile["trade_count"] == len(trades)
    assert profile["total_volume"] == pytest.approx(total, rel=1e-12)
    poc_bin = math.floor(profile["poc"] / bin_size)
    assert volume[poc_bin] == pytest.approx(max(volume.values()), rel=1e-12)
    low, high = math.floor(profile["val"] / bin_size), math.floor(profile["vah"] / bin_size)
    inside = math.fsum(v for k, v in volume.items() if low <= k <= high)
    assert inside >= total * pct / 100 * (1 - 1e-12)                  # value area >= target
    assert profile["value_area_volume_pct"] == pytest.approx(inside / total * 100, rel=1e-9)
    for value in (profile["poc"], profile["val"], profile["vah"]):
        assert value > 0 and math.isfinite(value)
        assert round(value / bin_size - 0.5, 6) == round(value / bin_size - 0.5)  # a bin centre
