"""The plugin as a node sees it: entry point, profile options, a full synthetic replay."""

from __future__ import annotations

import math

import pytest
from marketcore import ProfileError
from marketcore.testing import make_plugin_manager, replay_reports, validate_report
from marketcore_calc_liquidity import (
    FlowOptions,
    VacuumsOptions,
    VolumeProfileOptions,
    WallsOptions,
)

PROFILE = """
[node]
symbols = ["BTCUSDT", "ETHUSDT"]

[venue]
use = "synthetic"
replay_duration_s = 50

[pipeline.fast]
calculators = ["flow", "health"]

[pipeline.slow]
calculators = ["walls", "vacuums", "volume_profile"]

[calculators.flow]
windows_s = [5, 20]

[calculators.vacuums]
max_distance_bps = 30
"""


def test_the_entry_point_registers_all_four_calculators():
    registries = make_plugin_manager(entry_points=True).registries
    expected = {"flow": FlowOptions, "walls": WallsOptions, "vacuums": VacuumsOptions,
                "volume_profile": VolumeProfileOptions}
    for name, options in expected.items():
        registration = registries.calculators[name]
        assert registration.distribution == "marketcore-calc-liquidity"
        assert registration.options is options
        assert registration.factory(options()).name == name


def finite(value):
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


@pytest.fixture(scope="module")
def reports():
    return replay_reports(PROFILE)


def test_a_synthetic_replay_publishes_valid_liquidity_sections(reports):
    assert len(reports) > 350
    for report in reports:
        validate_report(report)
        assert finite(report)
        assert "non-finite value" not in str(report.get("health", {}).get("omitted"))
        windows = report["flow"]["windows"]
        assert [w["window_s"] for w in windows] == [5.0, 20.0]     # from the profile
    late = [r for r in reports if r["generated_at"] - reports[0]["generated_at"] > 30_000]
    for report in late:   # 30 s in: history and trades are warm
        liquidity = report["liquidity"]
        assert set(liquidity) == {"walls", "vacuums", "volume_profile"}
        age = report["generated_at"] - reports[0]["generated_at"]
        # acceleration waits until twice the window was watched (2 × 20 s, from the first
        # trade, which came in the first quarter second)
        acceleration = report["flow"]["windows"][1]["acceleration"]
        if age < 39_500:
            assert acceleration is None
        elif age > 40_500:
            assert acceleration is not None
        profile = liquidity["volume_profile"]
        assert profile["val"] <= profile["poc"] <= profile["vah"]
        assert profile["value_area_volume_pct"] >= 70.0
        assert all(v["distance_bps"] <= 30 for v in liquidity["vacuums"])
        assert "omitted" not in report["health"]
    assert any(r["liquidity"]["walls"] for r in late)              # the synthetic market has walls
    assert any(r["liquidity"]["vacuums"] for r in late)


def test_reports_say_why_slow_sections_are_missing():
    strict = PROFILE + """
[calculators.walls]
min_samples = 2000

[calculators.volume_profile]
min_trades = 1000
"""
    reports = replay_reports(strict, duration_s=5)
    after_slow = [r for r in reports if "liquidity" in r]
    assert after_slow, "the slow cycle ran in 5 s"
    for report in after_slow:
        validate_report(report)
        omitted = report["health"]["omitted"]
        assert omitted["walls"].startswith("level-size history holds ")
        assert omitted["walls"].endswith(" samples, needs at least 2000")
        assert omitted["volume_profile"].startswith("fewer than 1000 trades in the window")
        assert set(report["liquidity"]) == {"vacuums"}


@pytest.mark.parametrize(("change", "message"), [
    (("windows_s = [5, 20]", "windows_s = [0]"),
     "calculators.flow.windows_s: expected windows of 0.1 to 3600 s, found [0.0]"),
    (("max_distance_bps = 30", "max_distance_bps = 30\nmin_levels = 2"),
     "calculators.vacuums.min_levels: expected an integer from 3 to 1000000, found 2"),
    (("max_distance_bps = 30", "max_distance_bps = nan"),
     "calculators.vacuums.max_distance_bps: expected a number in (0, 10000]"),
])
def test_bad_options_in_a_profile_stop_the_replay_with_the_key_path(change, message):
    with pytest.raises(ProfileError) as error:
        replay_reports(PROFILE.replace(*change))
    assert message in str(error.value)
