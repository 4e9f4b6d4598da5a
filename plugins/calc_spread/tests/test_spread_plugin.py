"""The plugin as a node sees it: entry point, profile options, a full synthetic replay."""

from __future__ import annotations

import pytest
from marketcore import ProfileError
from marketcore.testing import make_plugin_manager, replay_reports, validate_report
from marketcore_calc_spread import DepthCalculator, DepthOptions, SpreadCalculator

PROFILE = """
[node]
symbols = ["BTCUSDT", "ETHUSDT"]

[venue]
use = "synthetic"
replay_duration_s = 30

[pipeline.fast]
calculators = ["spread", "depth", "health"]

[pipeline.slow]
calculators = []

[calculators.depth]
bands_bps = [10, 50]
top_n = 5
"""


def test_the_entry_point_registers_both_calculators():
    registries = make_plugin_manager(entry_points=True).registries
    spread, depth = registries.calculators["spread"], registries.calculators["depth"]
    assert spread.distribution == "marketcore-calc-spread"
    assert isinstance(spread.factory(spread.options()), SpreadCalculator)
    assert depth.options is DepthOptions
    assert isinstance(depth.factory(DepthOptions()), DepthCalculator)


def test_a_synthetic_replay_publishes_valid_spread_and_depth_sections():
    reports = replay_reports(PROFILE)
    assert len(reports) > 100
    for report in reports:
        validate_report(report)
    normal = [r for r in reports if r.get("book_state") == "normal"]
    assert len(normal) == len(reports)            # the synthetic books never cross by default
    for report in normal:
        bid, ask = report["best_bid"]["price"], report["best_ask"]["price"]
        assert report["mid_price"] == pytest.approx((bid + ask) / 2)
        assert report["spread_bps"] == pytest.approx((ask - bid) / report["mid_price"] * 1e4)
        assert bid <= report["micro_price"] <= ask
        depth = report["depth"]
        assert [band["bps"] for band in depth["bands"]] == [10.0, 50.0]   # from the profile
        assert len(depth["top_bids"]) == 5 and len(depth["top_asks"]) == 5
        assert depth["top_bids"][0] == [bid, report["best_bid"]["qty"]]
        assert depth["bands"][0]["bid_qty"] <= depth["bands"][1]["bid_qty"]
    assert {r["symbol"] for r in reports} == {"BTCUSDT", "ETHUSDT"}


def test_crossed_books_in_a_replay_are_flagged_not_published_as_spreads():
    reports = replay_reports(PROFILE.replace('replay_duration_s = 30',
                                             'replay_duration_s = 30\ncrossed_every = 3'))
    crossed = [r for r in reports if r.get("book_state") == "crossed"]
    assert crossed, "crossed_every = 3 should leave some cycles on a crossed book"
    for report in crossed:
        validate_report(report)
        assert "spread_bps" not in report and "micro_price" not in report
        assert report["health"]["omitted"]["spread_bps"].startswith("crossed book")
        assert "crossed book" in report["health"]["flags"]


@pytest.mark.parametrize(("change", "message"), [
    (("top_n = 5", "top_n = 5000"),
     "calculators.depth.top_n: expected an integer from 0 to 1000, found 5000"),
    (("[10, 50]", "[10, -50]"),
     "calculators.depth.bands_bps: expected bands > 0 and < 10000 bps, found [-50.0, 10.0]"),
    (("[10, 50]", '["ten"]'), "calculators.depth.bands_bps[0]: expected a number, found 'ten'"),
])
def test_bad_options_in_a_profile_stop_the_replay_with_the_key_path(change, message):
    with pytest.raises(ProfileError) as error:
        replay_reports(PROFILE.replace(*change))
    assert message in str(error.value)


def test_a_misspelt_spread_option_is_an_error():
    with pytest.raises(ProfileError, match=r"calculators\.spread\.windo"):
        replay_reports(PROFILE + "\n[calculators.spread]\nwindo = 3\n")
