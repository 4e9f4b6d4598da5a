"""The whole workspace together: real recordings through the real venue and every calculator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from marketcore.cli import main
from marketcore.testing import replay_reports, validate_report

REPO = Path(__file__).resolve().parent.parent
RECORDING = REPO / "examples" / "data" / "binance-spot-btcusdt-20240808.gz"
SHARED = REPO.parent / "shared" / "data" / "binance"

PROFILE = """
[node]
symbols = ["BTCUSDT"]
[venue]
use = "binance"
[pipeline.fast]
period_ms = 250
[pipeline.slow]
period_ms = 2000
"""

STANDARD_SECTIONS = ("best_bid", "best_ask", "book_state", "mid_price", "spread_bps",
                     "micro_price", "depth", "flow", "liquidity", "health")


@pytest.fixture(scope="module")
def reports() -> list[dict]:
    return replay_reports(PROFILE, recordings=[RECORDING])


def test_replay_of_the_real_recording_fills_every_section(reports):
    assert len(reports) > 1000  # ~346 s of market time at 4 reports a second
    late = reports[-1]
    for section in STANDARD_SECTIONS:
        assert section in late, section
    assert late["book_state"] == "normal"
    assert late["ingestion"]["status"] == "ok"
    assert late["ingestion"]["resyncs"] == 0
    assert {"walls", "vacuums", "volume_profile"} <= set(late["liquidity"])
    assert late["best_bid"]["price"] < late["best_ask"]["price"]
    assert 50_000 < late["mid_price"] < 70_000  # BTCUSDT in August 2024
    assert any(r.get("anomalies") for r in reports)


def test_every_report_validates_against_the_schema(reports):
    for report in reports:
        validate_report(report)


def test_reports_carry_the_exchange_sequence_ids(reports):
    ids = [r["ingestion"]["last_update_id"] for r in reports]
    assert ids == sorted(ids)  # never backwards
    assert ids[0] >= 50093239218  # not before the snapshot (SOURCES.md: lastUpdateId)
    # The recorder's clock ran ~1.2 s behind Binance's: exchange times lead the receive
    # clock the replay runs on. The age is then 0, never negative, and the lead is bounded.
    assert all(r["data_age_ms"] >= 0 for r in reports)
    assert all(abs(r["ingestion"]["last_event_ms"] - r["generated_at"]) < 5000 for r in reports)


def test_replay_to_file_is_byte_identical_twice(tmp_path, write_profile):
    outputs = []
    for name in ("a.jsonl", "b.jsonl"):
        out = tmp_path / name
        assert main(["replay", str(write_profile(PROFILE)), "--recording", str(RECORDING),
                     "--out", str(out), "--duration", "60"]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) >= 200


@pytest.mark.skipif(not (SHARED / "hftbacktest_spot_btcusdt_20240809.gz").is_file(),
                    reason="../shared/data is not beside the repository")
def test_two_consecutive_shared_recordings_replay_without_a_gap():
    reports = replay_reports(PROFILE, recordings=[
        SHARED / "hftbacktest_spot_btcusdt_20240808.gz",
        SHARED / "hftbacktest_spot_btcusdt_20240809.gz",
    ])
    assert reports[-1]["ingestion"]["resyncs"] == 0
    assert reports[-1]["ingestion"]["status"] == "ok"
    assert len(reports) > 2000  # both files: ~650 s


def test_default_run_is_the_binance_client_against_the_simulator():
    command = [sys.executable, "-c",
               "import sys; from marketcore.cli import main; "
               "sys.exit(main(['run', '--duration', '8', '--json']))"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert reports, result.stderr
    assert {r["venue"] for r in reports} == {"binance"}
    last = reports[-1]
    assert last["ingestion"]["status"] == "ok"
    assert last["ingestion"]["venue_state"] == "connected"
    assert last["spread_bps"] >= 0
    for report in reports:
        validate_report(report)


def book_tickers(paths: list[Path]) -> tuple[list[int], list[tuple[float, float, float, float]]]:
    """Binance's own top of book (``@bookTicker``) from recordings, sorted by update id."""
    from marketcore_venue_binance.recording import read_recording

    found = []
    for path in paths:
        for _, raw in read_recording(path):
            if b"bookTicker" not in raw[:64]:
                continue
            data = json.loads(raw)["data"]
            found.append((data["u"], (float(data["b"]), float(data["B"]),
                                      float(data["a"]), float(data["A"]))))
    found.sort(key=lambda item: item[0])
    return [u for u, _ in found], [top for _, top in found]


CROSS_CHECKS = {
    "spot": (["hftbacktest_spot_btcusdt_20240808.gz", "hftbacktest_spot_btcusdt_20240809.gz"],
             "spot"),
    "usdm": (["hftbacktest_usdm_btcusdt_20240808.gz"], "usdm"),
}


@pytest.mark.parametrize("name", sorted(CROSS_CHECKS))
def test_report_top_of_book_equals_binances_book_ticker(name):
    """≥ 99.9 % of reports: best bid/ask price and qty equal the bookTicker with the
    largest update id ≤ the report's ingestion.last_update_id."""
    import bisect

    files, market = CROSS_CHECKS[name]
    paths = [SHARED / f for f in files]
    if not all(p.is_file() for p in paths):
        pytest.skip("../shared/data is not beside the repository")
    profile = f"""
[node]
symbols = ["BTCUSDT"]
[venue]
use = "binance"
market = "{market}"
[pipeline.fast]
calculators = ["spread"]
[pipeline.slow]
calculators = []
"""
    reports = replay_reports(profile, recordings=paths)
    ids, tops = book_tickers(paths)
    compared = equal = 0
    for report in reports:
        last = report["ingestion"]["last_update_id"]
        at = -1 if last is None else bisect.bisect_right(ids, last) - 1
        if at < 0 or "best_bid" not in report or "best_ask" not in report:
            continue
        bid, bid_qty, ask, ask_qty = tops[at]
        compared += 1
        equal += (report["best_bid"] == {"price": bid, "qty": bid_qty}
                  and report["best_ask"] == {"price": ask, "qty": ask_qty})
    assert compared > 1000
    print(f"{name}: {equal}/{compared} reports equal bookTicker ({100 * equal / compared:.3f} %)")
    assert equal / compared >= 0.999
