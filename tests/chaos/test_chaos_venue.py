"""Bad input from the venue: the simulator drops, gaps, garbles and floods a real node.

One simulator process and one node process (binance venue → jsonl + read API)
serve the first four scenarios in turn; the flood starts its own pair at ten
times the rate. Safety (no crash, no bad number in any published report, other
symbols untouched) is strict; recovery times are bounded by the pass column in
the full run and generously in the reduced one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from chaosrun import FULL, counts, wait_for
from chaosvenue import VenueRig, rss_bytes

STABLE_AFTER_S = 10.0
"""The venue's default: a connection up this long resets its reconnect backoff."""
MALFORMED = ("garbage", "missing_fields", "oversized", "absurd")
PRICE_FIELDS = ("last_price", "mid_price", "micro_price", "high_24h", "low_24h")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    try:
        with VenueRig(tmp_path_factory.mktemp("venue"), clone=4) as running:
            yield running
    except FileNotFoundError as error:
        pytest.skip(str(error))


def bad_numbers(report: dict[str, Any]) -> list[str]:
    """Every absurd value in one published report (what must never be published)."""
    found: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, float) and (not math.isfinite(value) or abs(value) >= 1e300):
            found.append(f"{where}={value!r}")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")

    walk(report, "report")
    for field in PRICE_FIELDS:
        value = report.get(field)
        if isinstance(value, int | float) and value <= 0:
            found.append(f"{field}={value!r}")
    bid, ask = report.get("best_bid"), report.get("best_ask")
    if isinstance(bid, dict) and isinstance(ask, dict):
        if bid.get("price", 1) <= 0 or ask.get("price", 1) <= 0:
            found.append(f"non-positive best price {bid} {ask}")
        if bid.get("price", 0) >= ask.get("price", math.inf):
            found.append(f"crossed: bid {bid.get('price')} >= ask {ask.get('price')}")
    return found


def resyncs(rig: VenueRig) -> dict[str, int]:
    return {s: r["ingestion"]["resyncs"] for s, r in rig.latest().items()}


def test_upstream_drop_reconnects_with_jitter(rig, chaos_results):
    """The simulator drops every connection: all symbols back ≤ 30 s, weight never hit.

    Drops are spaced by the venue's ``stable_after_s`` (10 s by default), so each one meets
    a reset backoff: its first reconnect is drawn at random from [0.25, 0.5] s. Back-to-back
    drops instead escalate the backoff (a reconnecting client must not hammer a failing
    server) up to ``backoff_max_s``; see docs/reliability.md."""
    trials = counts(2, 10)
    recoveries, reconnect_delays = [], []
    for number in range(trials):
        if number:
            time.sleep(STABLE_AFTER_S + 1.0)
        opened = rig.sim_stats()["connections_opened"]
        before = rig.venue_stats()["reconnects"]
        start = rig.offset()
        dropped_at = time.monotonic()
        rig.fault("drop")
        wait_for(lambda o=opened: rig.sim_stats()["connections_opened"] > o, 60,
                 "the node to reconnect", every=0.05)
        reconnect_delays.append(round(time.monotonic() - dropped_at, 3))
        wait_for(lambda s=start: len(rig.latest(s)) == len(rig.symbols) and rig.all_ok(),
                 30 if FULL else 90, "every symbol ok again after the drop", every=0.2)
        recoveries.append(round(time.monotonic() - dropped_at, 2))
        assert rig.venue_stats()["reconnects"] > before
    sim, venue = rig.sim_stats(), rig.venue_stats()
    assert sim["http_429"] == 0 and sim["http_418"] == 0, sim
    assert venue["rate_limited"] == 0 and venue["banned"] == 0, venue
    assert rig.node_alive()
    chaos_results.record("upstream_drop", criterion="all symbols back ≤ 30 s; weight limit "
                         "never hit", met=max(recoveries) <= 30 and sim["http_429"] == 0,
                         trials=trials, symbols=len(rig.symbols),
                         reconnect_delays_s=reconnect_delays,
                         recovery_max_s=max(recoveries), recovery_target_s=30,
                         weight_used=sim["weight_used"], http_429=sim["http_429"],
                         http_418=sim["http_418"])


def test_malformed_and_oversized_frames_are_counted(rig, chaos_results):
    """Garbage, missing fields, a 3 MB frame, absurd numbers on one symbol: each counted,
    no crash, the other symbols untouched."""
    rounds = counts(2, 20)
    target, others = rig.symbols[0], rig.symbols[1:]
    before = rig.venue_stats()
    resyncs_before = resyncs(rig)
    start = rig.offset()
    for _ in range(rounds):
        for kind in MALFORMED:
            rig.fault(kind, target)
        time.sleep(0.3)
    expected = rounds * len(MALFORMED)
    wait_for(lambda: rig.venue_stats()["malformed"] - before["malformed"] >= expected, 30,
             lambda: f"{expected} malformed frames counted ({rig.venue_stats()})")
    time.sleep(1.0)
    after = rig.venue_stats()
    for kind in MALFORMED:
        assert after[f"malformed_{kind}"] - before.get(f"malformed_{kind}", 0) == rounds, kind
    assert rig.node_alive()
    published = [r for r in rig.reports(start) if r["symbol"] in others]
    assert published, "no report of the other symbols"
    assert all(r["ingestion"]["venue_state"] == "connected" for r in published)
    now = resyncs(rig)
    assert {s: now[s] for s in others} == {s: resyncs_before[s] for s in others}
    assert now[target] == resyncs_before[target]  # rejected frames never touched its book
    chaos_results.record("malformed_frames", criterion="counted; 0 crashes; other symbols "
                         "unaffected", met=True, frames=expected,
                         counted=int(after["malformed"] - before["malformed"]),
                         kinds=list(MALFORMED), crashes=0, other_symbols_resynced=0,
                         binary_frames="not injected: the simulator sends text frames only")


def test_sequence_gap_resyncs_only_that_symbol(rig, chaos_results):
    """A skipped update id on one symbol: that symbol resyncs (≤ 5 s), the others do not;
    a duplicate diff is counted and dropped."""
    trials = counts(2, 10)
    times = []
    for number in range(trials):
        target = rig.symbols[number % len(rig.symbols)]
        before = resyncs(rig)
        start = rig.offset()
        injected = time.monotonic()
        rig.fault("gap", target)
        wait_for(lambda t=target, b=before, s=start: any(
            r["symbol"] == t and r["ingestion"]["resyncs"] > b[t]
            and r["ingestion"]["status"] == "ok" for r in rig.reports(s)),
            5 if FULL else 60, f"{target} resynced after a gap", every=0.1)
        times.append(round(time.monotonic() - injected, 2))
        now = resyncs(rig)
        assert {s: now[s] for s in rig.symbols if s != target} == \
            {s: before[s] for s in rig.symbols if s != target}
    duplicates = rig.venue_stats()["duplicates"]
    before = resyncs(rig)
    rig.fault("duplicate", rig.symbols[1])
    wait_for(lambda: rig.venue_stats()["duplicates"] > duplicates, 30, "a duplicate counted")
    assert resyncs(rig) == before
    chaos_results.record("sequence_gap", criterion="that symbol resynced ≤ 5 s",
                         met=max(times) <= 5, trials=trials, resync_s=times,
                         resync_max_s=max(times), target_s=5, duplicates_counted=True)


def test_absurd_numbers_and_crossed_book_never_published(rig, chaos_results):
    """NaN, ≤ 0, 1e300, ±Infinity and a crossed book: 0 such values in any published
    report; a crossed book marks that symbol resyncing (its resync count goes up)."""
    rounds = counts(2, 10)
    start = rig.offset()
    before = rig.venue_stats()
    crossed, absurd = rig.symbols[2], rig.symbols[3]
    resyncs_before = resyncs(rig)
    for _ in range(rounds):
        rig.fault("absurd", absurd)
        rig.fault("crossed", crossed)
        time.sleep(1.0)
    wait_for(lambda: rig.venue_stats().get("malformed_crossed", 0)
             - before.get("malformed_crossed", 0) >= rounds, 30, "crossed frames counted")
    wait_for(lambda: resyncs(rig)[crossed] > resyncs_before[crossed] and rig.all_ok(), 60,
             f"{crossed} marked resyncing and back")
    time.sleep(1.0)
    checked, bad, degraded = 0, [], 0
    for report in rig.reports(0):  # every report the node ever published
        checked += 1
        bad += [(report["symbol"], b) for b in bad_numbers(report)]
    for report in rig.reports(start):
        if report["symbol"] == crossed and report["ingestion"]["status"] != "ok":
            degraded += 1
    assert bad == [], bad[:5]
    after = rig.venue_stats()
    assert after["malformed_absurd"] - before.get("malformed_absurd", 0) >= rounds
    assert rig.node_alive()
    chaos_results.record("absurd_numbers", criterion="0 such values in any published "
                         "report; symbol marked resyncing", met=True, rounds=rounds, reports_checked=checked,
                         bad_values_published=0,
                         crossed_resyncs=resyncs(rig)[crossed] - resyncs_before[crossed],
                         crossed_reports_not_ok_during_test=degraded)


def test_flood_ten_times_the_rate(rig, tmp_path: Path, chaos_results):
    """The feed at 10× speed: RSS ≤ normal-rate baseline + 50 MB, memory flat, drops counted."""
    duration = counts(8.0, 120.0)
    baseline = 0
    for _ in range(5):  # the node at the normal rate, after the scenarios above
        baseline = max(baseline, rss_bytes(rig.node.pid))
        time.sleep(0.2)
    normal_rate = _frame_rate(rig)
    rig.close()  # one pair at a time on this machine
    with VenueRig(tmp_path, clone=4, speed=10.0) as flood:
        started = time.monotonic()
        samples = []
        while time.monotonic() - started < duration:
            assert flood.node_alive(), flood.log("node.log")[-2000:]
            samples.append(rss_bytes(flood.node.pid))
            time.sleep(1.0)
        rate = _frame_rate(flood)
        sim, venue, health = flood.sim_stats(), flood.venue_stats(), flood.health()
        published = sum(1 for _ in flood.reports(0))
    peak = max(samples)
    chaos_results.record("flood", criterion="RSS ≤ baseline + 50 MB; drops counted",
                         met=peak <= baseline + 50 * 2**20, duration_s=duration, normal_frames_per_s=normal_rate,
                         flood_frames_per_s=rate,
                         rate_ratio=round(rate / normal_rate, 1) if normal_rate else None,
                         baseline_rss_mb=round(baseline / 2**20, 1),
                         peak_rss_mb=round(peak / 2**20, 1),
                         growth_mb=round((peak - baseline) / 2**20, 1),
                         sim_disconnects=sim["disconnects"],
                         sim_frames_withheld=sim["frames_withheld"],
                         venue_buffer_overflows=venue["buffer_overflows"],
                         venue_reconnects=venue["reconnects"], venue_resyncs=venue["resyncs"],
                         fast_cycle_skipped_ticks=health["node"]["fast_cycle"]["skipped_ticks"],
                         reports_published=published)
    assert peak <= baseline + 50 * 2**20, (baseline, peak)
    assert published > 0


def _frame_rate(rig: VenueRig, window: float = 3.0) -> float:
    first = rig.venue_stats()["frames"]
    time.sleep(window)
    return round((rig.venue_stats()["frames"] - first) / window, 1)
