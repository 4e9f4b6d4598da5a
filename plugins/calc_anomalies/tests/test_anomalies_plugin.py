"""Registration, options from a profile, and the two calculators in the core pipeline."""

from __future__ import annotations

import attrs
import jsonschema
import pytest
from anomaly_scenarios import BIDS, Market, check_report
from marketcore.components import Cycle, Needs
from marketcore.events import VenueState, VenueStatus
from marketcore.profile import ProfileError, load_profile, structure_options
from marketcore.testing import make_plugin_manager, make_state, run_cycle, validate_report
from marketcore_calc_anomalies import (
    AnomaliesCalculator,
    AnomaliesOptions,
    AnomalyTracker,
    TrackerOptions,
)


def test_entry_point_registers_both_calculators():
    pm = make_plugin_manager(entry_points=True)
    calculators = pm.registries.calculators
    assert calculators["anomalies"].options is AnomaliesOptions
    assert calculators["anomaly_tracker"].options is TrackerOptions
    assert calculators["anomalies"].factory is AnomaliesCalculator
    assert calculators["anomaly_tracker"].factory is AnomalyTracker


def test_defaults_are_the_spec_numbers():
    options = AnomaliesOptions()
    assert (options.wall_multiplier, options.min_level_samples) == (1.5, 20)
    assert options.min_distance_bps == 10.0
    assert options.min_cancel_rate == 0.7
    assert (options.iceberg_min_fills, options.iceberg_tolerance) == (5, 0.10)
    assert (options.spread_k, options.depth_band_bps, options.depth_percentile) == (3.0, 50.0, 10.0)
    calculator = AnomaliesCalculator(options)
    assert calculator.cycle is Cycle.SLOW and calculator.sections == ("anomalies",)
    assert calculator.needs == Needs(trade_window_ms=60_000, level_history=2048)
    assert AnomalyTracker.cycle is Cycle.FAST and AnomalyTracker.sections == ()


PROFILE = """
[node]
symbols = ["BTCUSDT"]
[venue]
use = "synthetic"
[pipeline.fast]
calculators = ["anomaly_tracker"]
[pipeline.slow]
calculators = ["anomalies"]
{tables}
"""


def test_options_come_from_the_profile(tmp_path):
    path = tmp_path / "profile.toml"
    path.write_text(PROFILE.format(
        tables="[calculators.anomalies]\nspread_k = 4\nspoof_window_s = 30"))
    profile = load_profile(path, {"MARKETCORE_CALCULATORS__ANOMALIES__MIN_PLACEMENTS": "5"})
    options = structure_options(profile.calculators["anomalies"], AnomaliesOptions,
                                source=str(path), path="calculators.anomalies")
    assert options == AnomaliesOptions(spread_k=4.0, spoof_window_s=30.0, min_placements=5)
    assert _replay(path.read_text(), 0.5)  # it assembles and runs


def _replay(text: str, seconds: float) -> list[dict]:
    from marketcore.testing import replay_reports

    return replay_reports(text, duration_s=seconds)


@pytest.mark.parametrize(("table", "message"), [
    ("spread_k = 0.5", "calculators.anomalies.spread_k: expected a number > 1, found 0.5"),
    ("min_cancel_rate = 1.5",
     "calculators.anomalies.min_cancel_rate: expected a number in (0, 1], found 1.5"),
    ("iceberg_min_fills = 0",
     "calculators.anomalies.iceberg_min_fills: expected an integer >= 1, found 0"),
    ("spread_k = 'wide'", "calculators.anomalies.spread_k: expected a number, found 'wide'"),
    ("spred_k = 3", "calculators.anomalies.spred_k: expected one of the keys"),
    ("min_distance_bps = 50\nmax_distance_bps = 20",
     "max_distance_bps (20) must be above min_distance_bps (50)"),
    ("min_approach_bps = nan", "calculators.anomalies.min_approach_bps: expected a number"),
    ("max_pull_lifetime_s = 0",
     "calculators.anomalies.max_pull_lifetime_s: expected a number > 0, found 0"),
    ("min_touch_ratio = -1",
     "calculators.anomalies.min_touch_ratio: expected a number >= 0, found -1"),
])
def test_bad_options_are_precise_profile_errors(table, message):
    with pytest.raises(ProfileError) as caught:
        _replay(PROFILE.format(tables=f"[calculators.anomalies]\n{table}"), 0.1)
    assert message in str(caught.value)


def test_the_tracker_takes_no_options():
    with pytest.raises(ProfileError, match=r"anomaly_tracker\.scan_every_ms: expected one of the keys"):
        _replay(PROFILE.format(tables="[calculators.anomaly_tracker]\nscan_every_ms = 0"), 0.1)


@pytest.mark.parametrize("changes", [
    {"spoof_medium_count": 9}, {"iceberg_high_ratio": 0.5}, {"min_level_samples": 4096},
    {"min_baseline_samples": 600}, {"baseline_s": 15.0}, {"spoof_high_rate": 0.8},
])
def test_contradictory_options_are_refused(changes):
    with pytest.raises(ValueError, match="must"):
        AnomaliesCalculator(attrs.evolve(AnomaliesOptions(), **changes))


def test_a_calculator_without_sections_runs_in_the_pipeline():
    state = make_state(bids=BIDS[:5], asks=[(100.01, 1.0)])
    report, omitted = run_cycle([AnomalyTracker()], state, now_ms=1_000)
    assert omitted == {}
    assert "anomalies" not in report and "ext" not in report
    assert state.scratch("anomalies") == {}  # nothing to feed before `anomalies` ran


def test_the_tracker_feeds_the_observer_once_anomalies_created_it():
    market = Market()
    before = market.observer.observations
    market.fast(3)
    assert market.observer.observations == before + 3
    market.slow()  # same instant as the last fast cycle: no second look
    assert market.observer.observations == before + 3


def test_a_feed_that_is_not_connected_is_an_omission():
    market = Market()
    market.warm_up()
    market.state.apply(VenueStatus(VenueState.RESYNCING, "BTCUSDT", "gap"))
    market.fast()
    anomalies, omitted = market.slow()
    assert anomalies is None
    assert omitted == {"anomalies": "anomalies: feed is resyncing"}


def test_a_crossed_book_is_an_omission():
    market = Market()
    market.warm_up()
    market.book(bids=[(100.02, 1.0)])
    market.fast()
    anomalies, omitted = market.slow()
    assert anomalies is None
    assert omitted == {"anomalies": "anomalies: book is one-sided or crossed"}


def test_a_quiet_market_publishes_an_empty_list():
    market = Market()
    market.warm_up()
    anomalies, omitted = market.slow()
    assert (anomalies, omitted) == ([], {})


def test_the_schema_checks_can_fail():
    market = Market(AnomaliesOptions(scan_every_ms=0))
    market.warm_up()
    for price in (99.80, 99.75, 99.70):
        market.book(bids=[(price, 11.0)])
        market.fast()
        market.toward("bid")  # the price comes towards the wall, which goes
        market.fast()
        market.book(bids=[(price, 1.0)])
        market.fast()
        market.back("bid")
        market.fast()
    report, _ = run_cycle([market.anomalies], market.state, now_ms=market.now, cycle=Cycle.SLOW)
    validate_report(report)
    check_report(report)
    report["anomalies"][0]["severity"] = "critical"
    for check in (validate_report, check_report):
        with pytest.raises(jsonschema.ValidationError):
            check(report)


def test_symbols_acquired_together_do_not_all_scan_in_the_same_cycle():
    """The scan is the observer's costly step: a node's symbols, observed from the same
    instant, spread their scans over the fast cycles instead of piling them into one."""
    from marketcore_calc_anomalies import Observer

    options = AnomaliesOptions()
    bids, asks = [(100.0 - i * 0.01, 1.0) for i in range(50)], [(100.01 + i * 0.01, 1.0)
                                                              for i in range(50)]
    symbols = [f"SYM{k}USDT" for k in range(40)]
    states = {s: make_state(symbol=s, bids=bids, asks=asks, event_ms=0) for s in symbols}
    observers = {s: Observer(options) for s in symbols}
    per_cycle = []
    for tick in range(1, 25):  # 6 s of 250 ms fast cycles after a first look at 0
        now = tick * 250
        before = sum(o.scans for o in observers.values())
        for s in symbols:
            if tick == 1:
                observers[s].observe(states[s], 0)
            observers[s].observe(states[s], now)
        per_cycle.append(sum(o.scans for o in observers.values()) - before)
    steady = per_cycle[8:]  # past every symbol's shifted second scan
    assert sum(steady) == len(steady) * len(symbols) // 4  # each symbol once a second
    assert max(steady) <= len(symbols) // 2  # unstaggered, one cycle in four held all 40
    # a symbol's schedule depends on its name only: a replay scans at the same instants
    first, second = Observer(options), Observer(options)
    first.observe(states[symbols[0]], 0)
    second.observe(make_state(symbol=symbols[0], bids=bids, asks=asks, event_ms=0), 0)
    assert first._next_scan_ms == second._next_scan_ms < 1000
