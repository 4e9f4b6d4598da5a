"""The calculators in a whole node: a deterministic replay of the synthetic venue.

The synthetic market places walls 12-45 bps out and pulls most of them within
seconds (``spoof_ratio``), runs icebergs at the touch and jumps with a few seconds of
stress; here all three come more often than by default so two minutes show them.
Its walls are pulled at random moments, not as the price comes towards them, so the
spoofing rule reads them here by SPEC's base rule (the conditions that tell spoofing
from re-quoting disabled); those conditions are tested by hand and on real data.
"""

from __future__ import annotations

from collections import Counter

import pytest
from anomaly_scenarios import check_report
from marketcore.events import BookDelta, Trade
from marketcore.synthetic import SyntheticConfig, SyntheticMarket
from marketcore.testing import replay_reports, validate_report
from marketcore_calc_anomalies import AnomaliesOptions
from marketcore_calc_anomalies.rules import iceberg_severity, spoofing_severity

VENUE = """
[node]
symbols = ["BTCUSDT", "ETHUSDT"]
[venue]
use = "synthetic"
replay_duration_s = 120
wall_every_s = 8
spoof_ratio = 0.9
iceberg_every_s = 30
jump_every_s = 40
[calculators.anomalies]
min_approach_bps = -inf
max_pull_lifetime_s = inf
min_touch_ratio = 0.0
"""
PIPELINES = """
[pipeline.fast]
calculators = ["anomaly_tracker", "health"]
[pipeline.slow]
calculators = ["anomalies"]
"""
OPTIONS = AnomaliesOptions(min_approach_bps=float("-inf"), max_pull_lifetime_s=float("inf"),
                           min_touch_ratio=0.0)


@pytest.fixture(scope="module")
def reports() -> list[dict]:
    return replay_reports(VENUE + PIPELINES)


def anomalies_of(reports: list[dict], kind: str) -> list[tuple[dict, dict]]:
    return [(r, a) for r in reports for a in r.get("anomalies") or [] if a["type"] == kind]


def test_every_report_validates_and_carries_the_section_after_warm_up(reports):
    assert len(reports) >= 2 * 119 * 4  # two symbols, 4 fast cycles a second
    first_of_each_kind = {}
    for report in reports:
        check_report(report)
        for anomaly in report.get("anomalies") or []:
            first_of_each_kind.setdefault(anomaly["type"], report)
        omitted = report["health"].get("omitted", {})
        assert "anomaly_tracker" not in omitted
        if report["generated_at"] - reports[0]["generated_at"] > 10_000:
            assert "anomalies" in report, omitted
    for report in first_of_each_kind.values():
        validate_report(report)


def test_all_three_kinds_appear(reports):
    kinds = Counter(a["type"] for r in reports for a in r.get("anomalies") or [])
    assert kinds["spoofing"] > 0 and kinds["iceberg"] > 0 and kinds["flash_crash_risk"] > 0


def test_spoofing_figures_are_sane(reports):
    for _, spoof in anomalies_of(reports, "spoofing"):
        assert spoof["side"] in ("bid", "ask")
        assert OPTIONS.min_placements <= spoof["placements"]
        assert spoof["pulled"] + spoof["resting"] <= spoof["placements"]
        assert spoof["cancel_rate"] == round(spoof["pulled"] / spoof["placements"], 4) >= 0.7
        assert 10.0 <= spoof["min_distance_bps"] <= spoof["max_distance_bps"] <= 100.0
        assert 0 < spoof["threshold_qty"] <= spoof["largest"]["qty"] <= spoof["pulled_qty"]
        assert spoof["pulled_qty"] + spoof["traded_qty"] <= spoof["placed_qty"] * (1 + 1e-9)
        assert spoof["severity"] == spoofing_severity(spoof["pulled"], spoof["cancel_rate"],
                                                      OPTIONS)


def test_iceberg_figures_are_sane(reports):
    for report, iceberg in anomalies_of(reports, "iceberg"):
        reference = iceberg["reference_qty"]
        assert iceberg["fills"] >= 5
        assert iceberg["executed_qty"] > 0.1 * reference
        assert abs(iceberg["visible_qty"] - reference) <= 0.1 * reference + 1e-9
        assert iceberg["executed_to_visible"] == round(iceberg["executed_qty"] / reference, 4)
        assert iceberg["severity"] == iceberg_severity(iceberg["executed_to_visible"], OPTIONS)
        assert report["generated_at"] - iceberg["since_ms"] >= 0


def test_flash_crash_figures_are_sane(reports):
    for report, risk in anomalies_of(reports, "flash_crash_risk"):
        assert len(risk["signals"]) >= 2
        assert set(risk["signals"]) <= set(risk["evaluated"])
        assert risk["severity"] == ("high" if len(risk["signals"]) == 3 else "medium")
        if "spread" in risk["signals"]:
            assert risk["spread_bps"] > 3 * risk["median_spread_bps"]
        if "thin_book" in risk["signals"]:
            assert risk["depth_notional"] < risk["depth_floor_notional"]
        assert report["health"]["components"]["anomalies"] <= 0.5


def test_a_reported_pull_is_in_the_venue_stream(reports):
    """The largest pulled order of a spoofing item, found in the raw events: the level
    rose by at least its size and fell back, with no trade at that price between."""
    report, spoof = next((r, a) for r, a in anomalies_of(reports, "spoofing")
                         if r["symbol"] == "BTCUSDT")
    largest, side = spoof["largest"], spoof["side"]
    config = SyntheticConfig(wall_every_s=8, spoof_ratio=0.9, iceberg_every_s=30,
                             jump_every_s=40)
    market = SyntheticMarket(["BTCUSDT", "ETHUSDT"], config)
    sizes, traded = [], 0.0
    for event in market.events(until_ms=report["generated_at"]):
        if event.symbol != "BTCUSDT" or event.recv_ns // 1_000_000 < largest["placed_ms"] - 2000:
            continue
        if isinstance(event, BookDelta):
            levels = event.bids if side == "bid" else event.asks
            sizes += [q for p, q in levels if p == largest["price"]]
        elif isinstance(event, Trade) and event.price == largest["price"]:
            traded += event.qty
    assert max(sizes) - min(sizes) >= largest["qty"] * (1 - 1e-9)
    assert traded == 0.0


def test_replays_are_deterministic(reports):
    again = replay_reports(VENUE.replace("replay_duration_s = 120", "replay_duration_s = 40")
                           + PIPELINES)
    first = [r.get("anomalies") for r in reports if r["generated_at"] <= again[-1]["generated_at"]]
    assert [r.get("anomalies") for r in again] == first


def test_without_the_tracker_the_rules_run_on_slow_observations():
    reports = replay_reports(VENUE + '[pipeline.slow]\ncalculators = ["anomalies"]\n'
                             '[pipeline.fast]\ncalculators = ["health"]\n')
    published = [r for r in reports if "anomalies" in r]
    assert published  # after the warm-up of 20 slow observations
    assert any(r["anomalies"] for r in published)


def test_profiles_that_list_no_calculators_run_both():
    reports = replay_reports(VENUE.replace("replay_duration_s = 120", "replay_duration_s = 30"))
    assert any("anomalies" in r for r in reports)
