"""Realized volatility: hand-computed windows, properties, and a replay of real Binance data."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from marketcore import ProfileError
from marketcore.strategies import symbol_states
from marketcore.testing import (
    assert_omitted,
    assert_section,
    assert_valid_report,
    make_plugin_manager,
    make_state,
    replay_calculator,
    run_cycle,
    section_series,
)
from marketcore_example_realized_vol import YEAR_MS, RealizedVol, RealizedVolOptions


def calculator(**options) -> RealizedVol:
    return RealizedVol(RealizedVolOptions(**options))


def test_a_hand_computed_window():
    # Grid steps of 1 s. Step 1: trades at 100 then 101 -> sample 101 (the last one).
    # Step 2: 99.99. Step 3: none (carried, a zero return). Step 4: 101.
    # Returns: ln(99.99/101), ln(101/99.99); span 3 s.
    trades = [(1_000, 100.0, 1.0, "buy"), (1_900, 101.0, 1.0, "buy"),
              (2_500, 99.99, 2.0, "sell"), (4_200, 101.0, 1.0, "buy")]
    report, omitted = run_cycle([calculator(min_returns=2)], make_state(trades=trades),
                                now_ms=5_000)
    assert omitted == {}
    r1, r2 = math.log(99.99 / 101), math.log(101 / 99.99)
    rv = r1 * r1 + r2 * r2
    assert_section(report, "ext.realized_vol", {
        "returns": 2, "span_s": 3.0, "window_s": 60, "sample_ms": 1000,
        "rv_bps": math.sqrt(rv) * 1e4,                    # = 142.13… bps
        "annualized_pct": math.sqrt(rv * YEAR_MS / 3_000) * 100,
    })
    assert 142.1 < report["ext"]["realized_vol"]["rv_bps"] < 142.2
    assert_valid_report(report)


def test_a_constant_price_has_zero_volatility():
    trades = [(i * 1_000, 250.5, 1.0, "buy") for i in range(1, 30)]
    report, _ = run_cycle([calculator()], make_state(trades=trades), now_ms=30_000)
    assert_section(report, "ext.realized_vol", {"returns": 28, "rv_bps": 0.0,
                                                "annualized_pct": 0.0})


def test_only_trades_inside_the_window_count():
    old = [(i * 1_000, 100.0 + (i % 2), 1.0, "buy") for i in range(0, 20)]   # jumpy, old
    recent = [(100_000 + i * 1_000, 100.0, 1.0, "sell") for i in range(12)]  # flat, recent
    report, _ = run_cycle([calculator(window_s=30)], make_state(trades=old + recent),
                          now_ms=112_000)
    assert_section(report, "ext.realized_vol", {"returns": 11, "rv_bps": 0.0})


def test_too_few_returns_omit_the_section_with_the_reason():
    trades = [(1_000, 100.0, 1.0, "buy"), (1_500, 100.5, 1.0, "buy"), (2_100, 100.2, 1.0, "sell")]
    report, _ = run_cycle([calculator()], make_state(trades=trades), now_ms=3_000)
    assert_omitted(report, "realized_vol", "1 returns from 3 trades in 60 s, need 10")


@given(symbol_states())
def test_any_state_gives_a_valid_non_negative_figure(state):
    report, _ = run_cycle([calculator(min_returns=2)], state)
    assert_valid_report(report)
    section = report.get("ext", {}).get("realized_vol")
    if section is not None:
        assert section["rv_bps"] >= 0 and section["annualized_pct"] >= 0
        assert section["returns"] >= 2 and section["span_s"] >= section["returns"] * 0.001


def test_the_installed_entry_point_registers_it():
    registration = make_plugin_manager(entry_points=True).registries.calculators["realized_vol"]
    assert registration.distribution == "marketcore-example-realized-vol"
    assert registration.options is RealizedVolOptions


def test_a_bad_option_is_a_profile_error_with_the_key_path():
    with pytest.raises(ProfileError, match=r"calculators\.realized_vol\.sample_ms: expected an "
                                           r"integer from 10 to 60000, found 5"):
        replay_calculator("realized_vol", options={"sample_ms": 5}, duration_s=5)


def test_a_replay_of_the_real_binance_recording(binance_recording):
    pytest.importorskip("marketcore_venue_binance", reason="the binance venue reads recordings")
    reports = replay_calculator("realized_vol", recordings=[binance_recording])
    assert len(reports) > 1_000  # 346 s of BTCUSDT, a report every 250 ms
    for report in reports:
        assert_valid_report(report)
    series = section_series(reports, "ext.realized_vol.annualized_pct")
    # the first minute fills the window; after that every cycle has ≥ 10 returns
    assert len(series) > 0.8 * len(reports)
    values = [v for _, v in series]
    # BTC on 2024-08-08 traded at tens of percent a year, not at 0 nor at 1000 %
    assert 1.0 < sorted(values)[len(values) // 2] < 200.0
    early = [r for r in reports if "realized_vol" not in r.get("ext", {})]
    assert early and all("returns from" in r["health"]["omitted"]["realized_vol"] for r in early)
