"""The anomaly detectors on real Binance BTCUSDT: quiet on the calm stretches.

Crafted scenarios (the calc_anomalies suite) show that each anomaly fires; this shows
the other half: replayed through the real Binance venue, the detectors stay quiet or
low when the market is calm. It lives here, not in the plugin's own suite, because it
needs the Binance plugin too.

A **calm stretch** is a 60 s window of the replay (counted from its first report) in
which the mid moved less than ``CALM_RANGE_BPS`` (its high − low over its mean) and
the spread never exceeded ``CALM_SPREAD_BPS``. On these recordings (BTCUSDT at about
62,000 USDT, one tick = 0.0016 bps) the spread is a tick most of the time; the windows
split cleanly into those whose spread stayed under 0.06 bps and those where it blew
out past 0.27 bps, and every window of the first kind moved under 15 bps.

In a calm stretch no anomaly may be medium or high, and low ones may be reported by
at most ``MAX_CALM_LOW_RATE`` of the slow cycles (one anomaly per cycle counted per
item): a low is a hint, not an alarm.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from marketcore.testing import replay_reports

REPO = Path(__file__).resolve().parent.parent
RECORDING = REPO / "examples" / "data" / "binance-spot-btcusdt-20240808.gz"
SHARED = REPO.parent / "shared" / "data" / "binance"
SHARED_RECORDINGS = [SHARED / "hftbacktest_spot_btcusdt_20240808.gz",
                     SHARED / "hftbacktest_spot_btcusdt_20240809.gz"]

CALM_WINDOW_MS = 60_000
CALM_RANGE_BPS = 15.0
CALM_SPREAD_BPS = 0.1
MAX_CALM_LOW_RATE = 0.05
SLOW_MS = 2000

PROFILE = f"""
[node]
symbols = ["BTCUSDT"]
[venue]
use = "binance"
[pipeline.fast]
period_ms = 250
calculators = ["spread", "anomaly_tracker", "health"]
[pipeline.slow]
period_ms = {SLOW_MS}
calculators = ["anomalies"]
"""
SPEC_RULE = """
[calculators.anomalies]
min_approach_bps = -inf
max_pull_lifetime_s = inf
min_touch_ratio = 0.0
"""


def calm_windows(reports: list[dict]) -> set[int]:
    """The indexes of the 60 s windows that are calm (see the module's docstring)."""
    start = reports[0]["generated_at"]
    mids: dict[int, list[float]] = {}
    spreads: dict[int, list[float]] = {}
    for report in reports:
        if report.get("mid_price") is None or report.get("spread_bps") is None:
            continue
        window = (report["generated_at"] - start) // CALM_WINDOW_MS
        mids.setdefault(window, []).append(report["mid_price"])
        spreads.setdefault(window, []).append(report["spread_bps"])
    calm = set()
    for window, seen in mids.items():
        moved = (max(seen) - min(seen)) / (sum(seen) / len(seen)) * 1e4
        if moved < CALM_RANGE_BPS and max(spreads[window]) <= CALM_SPREAD_BPS:
            calm.add(window)
    return calm


def slow_results(reports: list[dict]) -> list[dict]:
    """One report per slow cycle: the section is carried by the fast reports between."""
    latest = {}
    for report in reports:
        if "anomalies" in report:
            latest[report["generated_at"] // SLOW_MS] = report
    return list(latest.values())


def tally(reports: list[dict]) -> tuple[Counter, Counter, set[int]]:
    """``(counts by (calm|busy, type, severity), slow cycles by calm|busy, calm windows)``."""
    start = reports[0]["generated_at"]
    calm = calm_windows(reports)
    counts: Counter = Counter()
    cycles: Counter = Counter()
    for report in slow_results(reports):
        stretch = "calm" if (report["generated_at"] - start) // CALM_WINDOW_MS in calm else "busy"
        cycles[stretch] += 1
        for anomaly in report["anomalies"]:
            counts[stretch, anomaly["type"], anomaly["severity"]] += 1
    return counts, cycles, calm


def assert_quiet_when_calm(reports: list[dict]) -> None:
    counts, cycles, calm = tally(reports)
    assert calm, "no calm stretch: the test would prove nothing"
    assert cycles["calm"] >= 30  # a minute of calm at least
    loud = {k: n for k, n in counts.items() if k[0] == "calm" and k[2] != "low"}
    assert loud == {}, loud
    lows = sum(n for k, n in counts.items() if k[0] == "calm")
    assert lows <= MAX_CALM_LOW_RATE * cycles["calm"], (lows, cycles, counts)


@pytest.fixture(scope="module")
def bundled() -> list[dict]:
    return replay_reports(PROFILE, recordings=[RECORDING])


def test_the_bundled_recording_is_quiet_when_calm(bundled):
    assert_quiet_when_calm(bundled)


def test_the_calm_definition_tells_stretches_apart(bundled):
    calm = calm_windows(bundled)
    windows = {(r["generated_at"] - bundled[0]["generated_at"]) // CALM_WINDOW_MS
               for r in bundled}
    assert calm and calm < windows  # both kinds present: the split is not trivial


def test_specs_rule_alone_reads_market_making_as_spoofing():
    """Why the rule has the approach, lifetime and touch conditions: without them the
    market makers' ladders 10-20 bps out, moved as the price moves, fire it at medium
    and above even on the calm stretches."""
    reports = replay_reports(PROFILE + SPEC_RULE, recordings=[RECORDING])
    counts, _, _ = tally(reports)
    assert sum(n for (stretch, kind, severity), n in counts.items()
               if stretch == "calm" and kind == "spoofing" and severity != "low") > 0


@pytest.mark.skipif(not all(path.is_file() for path in SHARED_RECORDINGS),
                    reason="../shared/data is not beside the repository")
def test_the_shared_recordings_are_quiet_when_calm():
    reports = replay_reports(PROFILE, recordings=SHARED_RECORDINGS)
    assert_quiet_when_calm(reports)
