"""The report: base fields, ingestion status, encoding, schema, the health score."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore import Ticker, VenueState, WriterToken, encode_report, json_schema
from marketcore.report import (
    MAX_REPORT_BYTES,
    _dumps,
    _spliced,
    base_report,
    ingestion_status,
    preencode,
)
from marketcore.testing import make_plugin_manager, make_state, run_cycle, validate_report


@pytest.mark.parametrize(("age", "venue_state", "status"), [
    (0, VenueState.CONNECTED, "ok"),
    (1000, VenueState.CONNECTED, "ok"),
    (1001, VenueState.CONNECTED, "degraded"),
    (5000, VenueState.CONNECTED, "degraded"),
    (5001, VenueState.CONNECTED, "down"),
    (10, VenueState.RESYNCING, "degraded"),
    (10, VenueState.DEGRADED, "degraded"),
    (10, VenueState.DOWN, "down"),
    (None, VenueState.CONNECTED, "down"),
])
def test_ingestion_status_thresholds(age, venue_state, status):
    assert ingestion_status(age, venue_state) == status


def test_base_report_fields():
    ticker = Ticker("ETHUSDT", 3000.5, -1.25, 3100.0, 2900.0, 12345.0, 3.7e7, 3038.0, 99, 9_000)
    state = make_state(symbol="ETHUSDT", trades=[(9_500, 3001.0, 1.0, "buy")], ticker=ticker)
    state.last_update_id = 77
    report = base_report(state, node_id="n1", token=WriterToken(3, 42), now_ms=10_000)
    assert report == {
        "schemaVersion": "1.1",
        "writer": {"nodeId": "n1", "writerToken": 42, "epoch": 3},
        "updatedAt": 10_000, "symbol": "ETHUSDT", "venue": "test", "generated_at": 10_000,
        "data_age_ms": 500,
        "ingestion": {"status": "ok", "venue_state": "connected", "last_update_id": 77,
                      "last_event_ms": 9_500, "resyncs": 0},
        "last_price": 3000.5, "change_24h_pct": -1.25, "high_24h": 3100.0, "low_24h": 2900.0,
        "volume_24h": 12345.0,
    }
    validate_report(report)


def test_last_price_falls_back_to_the_last_trade():
    state = make_state(trades=[(1, 10.0, 1.0, "buy"), (2, 11.0, 1.0, "sell")])
    assert base_report(state, node_id="n", token=WriterToken(0, 1), now_ms=5)["last_price"] == 11.0


def test_non_finite_values_never_reach_the_json():
    report = base_report(make_state(event_ms=0), node_id="n", token=WriterToken(0, 1), now_ms=0)
    report["health"] = {"score": 50, "components": {}}
    report["spread_bps"] = float("nan")
    report["liquidity"] = {"walls": [{"qty": float("inf")}], "vacuums": []}
    decoded = json.loads(encode_report(report))
    assert "spread_bps" not in decoded
    assert decoded["liquidity"] == {"vacuums": []}
    assert decoded["health"]["omitted"] == {"spread_bps": "non-finite value",
                                            "walls": "non-finite value"}


def _double(hex_bits: str) -> float:
    return struct.unpack(">d", bytes.fromhex(hex_bits))[0]


@pytest.mark.parametrize("bad", [
    float("nan"), float("-inf"), np.float64("inf"), np.float32("nan"),
    _double("7ff0000000000001"),  # a NaN with the smallest payload
    _double("fff8000000000000"),  # a negative NaN
])
def test_non_finite_numpy_and_python_floats_are_caught_alike(bad):
    report = base_report(make_state(event_ms=0), node_id="n", token=WriterToken(0, 1), now_ms=0)
    report["health"] = {"score": 50, "components": {}}
    report["ext"] = {"mine": {"values": [1.0, bad]}, "theirs": {"ok": np.float64(2.5)}}
    decoded = json.loads(encode_report(report))
    assert decoded["ext"] == {"theirs": {"ok": 2.5}}
    assert decoded["health"]["omitted"] == {"mine": "non-finite value"}


@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20))
def test_the_fast_encoder_writes_what_the_standard_library_would(value):
    """Any finite JSON value (integers whose bytes may look like a non-finite float
    included) encodes to the same data as ``json.dumps``; a non-finite one is refused
    exactly when ``json.dumps(allow_nan=False)`` refuses it."""
    report = {"symbol": "BTCUSDT", "ext": {"x": value}}
    try:
        expected = json.loads(json.dumps(report, allow_nan=False))
    except ValueError:
        with pytest.raises(ValueError):
            _dumps(report)
        return
    assert json.loads(_dumps(report)) == expected


def test_oversized_reports_are_trimmed_and_say_so():
    report = base_report(make_state(event_ms=0), node_id="n", token=WriterToken(0, 1), now_ms=0)
    level = [60000.123456, 1.23456789]
    report["depth"] = {"bands": [], "top_bids": [level] * 20_000, "top_asks": [level] * 20_000}
    payload = encode_report(report)
    assert len(payload) <= MAX_REPORT_BYTES
    decoded = json.loads(payload)
    assert decoded["trimmed"] == ["depth.top_bids", "depth.top_asks"]
    assert len(decoded["depth"]["top_bids"]) == 5
    validate_report(decoded)


# ------------------------------------------------- sections encoded once, spliced often


def _node_style(slow: dict, fast: dict) -> dict:
    """A report built as a node builds it: base, slow sections merged, fast sections."""
    report = base_report(make_state(event_ms=0), node_id="n", token=WriterToken(0, 1), now_ms=0)
    for key, value in slow.items():
        if key in ("liquidity", "ext"):
            report.setdefault(key, {}).update(value)
        else:
            report[key] = value
    for key, value in fast.items():
        if key in ("liquidity", "ext"):
            report.setdefault(key, {}).update(value)
        else:
            report[key] = value
    return report


_SECTION = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)


@given(walls=_SECTION, anomalies=_SECTION, flow=_SECTION, mine=_SECTION)
def test_spliced_sections_encode_to_the_same_bytes(walls, anomalies, flow, mine):
    """Whatever the sections hold (NaN and infinity included), a report encoded with
    pre-encoded slow sections is byte for byte the report encoded without them, and
    the same sections are dropped and named."""
    slow = {"liquidity": {"walls": walls}, "anomalies": anomalies, "ext": {"slow": mine}}
    fast = {"flow": flow, "health": {"score": 1}, "ext": {"fast": mine}}
    preencoded = preencode(slow)
    plain = _node_style(slow, fast)
    spliced = _node_style(slow, fast)
    assert encode_report(spliced, preencoded) == encode_report(plain)
    assert spliced == plain


def test_a_replaced_section_is_encoded_from_the_report_not_the_cache():
    slow = {"liquidity": {"walls": [{"price": 1.0}]}, "anomalies": [{"kind": "x"}]}
    preencoded = preencode(slow)
    report = _node_style(slow, {"health": {"score": 3}})
    report["liquidity"]["walls"] = [{"price": 2.0}]
    report["anomalies"] = []
    assert _spliced(report, preencoded) is not None  # the splicing path answered
    decoded = json.loads(encode_report(report, preencoded))
    assert decoded["liquidity"]["walls"] == [{"price": 2.0}]
    assert decoded["anomalies"] == []


def test_spliced_reports_are_still_trimmed_when_too_big():
    level = {"price": 60000.123456, "qty": 1.23456789}
    slow = {"liquidity": {"walls": [level] * 20_000, "vacuums": []}}
    report = _node_style(slow, {"health": {"score": 3}})
    payload = encode_report(report, preencode(slow))
    assert len(payload) <= MAX_REPORT_BYTES
    decoded = json.loads(payload)
    assert decoded["trimmed"] == ["liquidity.walls"]
    assert len(decoded["liquidity"]["walls"]) == 10


def test_schema_is_draft_2020_12_and_rejects_unknown_top_level_keys():
    import jsonschema

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    report = base_report(make_state(event_ms=0), node_id="n", token=WriterToken(0, 1), now_ms=0)
    report["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_report(report)


# -- health ------------------------------------------------------------------


def health_calculator(**options):
    registration = make_plugin_manager().registries.calculators["health"]
    return registration.factory(registration.options(**options))


def book(levels=25, bid=100.0, ask=100.1):
    bids = [(round(bid - i * 0.1, 1), 1.0) for i in range(levels)]
    asks = [(round(ask + i * 0.1, 1), 1.0) for i in range(levels)]
    return bids, asks


def test_health_is_100_for_a_fresh_deep_calm_book():
    bids, asks = book()
    state = make_state(bids=bids, asks=asks, event_ms=10_000)
    report, _ = run_cycle([health_calculator()], state, now_ms=10_500)
    assert report["health"] == {
        "score": 100,
        "components": {"freshness": 1.0, "book": 1.0, "spread": 1.0, "anomalies": 1.0},
        "weights": {"freshness": 0.4, "book": 0.25, "spread": 0.2, "anomalies": 0.15},
        "flags": [],
    }


def test_health_by_hand_stale_thin_and_anomalous():
    # age 3000 ms: freshness = (5000-3000)/(5000-1000) = 0.5
    # 10 levels a side, min 20: book = 0.5
    # spread: no history yet -> 1.0
    # a medium anomaly: 1 - 0.5 = 0.5
    # score = 100 * (0.4*0.5 + 0.25*0.5 + 0.2*1 + 0.15*0.5) = 60
    bids, asks = book(levels=10)
    state = make_state(bids=bids, asks=asks, event_ms=7_000)
    report, _ = run_cycle([health_calculator()], state, now_ms=10_000,
                          report={"anomalies": [{"type": "iceberg", "severity": "medium", "note": ""}]})
    health = report["health"]
    assert health["components"] == {"freshness": 0.5, "book": 0.5, "spread": 1.0, "anomalies": 0.5}
    assert health["score"] == 60
    assert health["flags"] == ["stale data", "thin book", "anomalies"]


def test_health_crossed_book_scores_zero_book_and_spread():
    state = make_state(bids=[(101.0, 1.0)], asks=[(100.0, 1.0)], event_ms=0)
    report, _ = run_cycle([health_calculator()], state, now_ms=0)
    assert report["health"]["components"]["book"] == 0.0
    assert report["health"]["components"]["spread"] == 0.0
    assert "crossed book" in report["health"]["flags"]
    # 100 * (0.4 + 0 + 0 + 0.15) = 55
    assert report["health"]["score"] == 55


def test_health_spread_against_its_own_median():
    calc = health_calculator(min_spread_samples=5)
    bids, asks = book()
    state = make_state(bids=bids, asks=asks, event_ms=0)
    for _ in range(5):
        run_cycle([calc], state, now_ms=0)  # history: 5 × ~10 bps
    wide_bids, wide_asks = book(bid=100.0, ask=100.4)  # 39.92 bps vs median 9.995 bps
    state.book.load_snapshot(wide_bids, wide_asks)
    report, _ = run_cycle([calc], state, now_ms=0)
    median = 0.1 / 100.05 * 1e4
    spread = 0.4 / 100.2 * 1e4
    ratio = spread / median
    expected = max(0.0, 1 - (ratio - 1.5) / 3.5)
    assert report["health"]["components"]["spread"] == pytest.approx(expected, abs=1e-4)
    assert "wide spread" in report["health"]["flags"]


def test_health_while_resyncing_is_capped():
    bids, asks = book()
    state = make_state(bids=bids, asks=asks, event_ms=0, venue_state=VenueState.RESYNCING)
    report, _ = run_cycle([health_calculator()], state, now_ms=0)
    assert report["health"]["components"]["freshness"] == 0.5
    assert report["ingestion"]["status"] == "degraded"
    assert "resyncing" in report["health"]["flags"]
