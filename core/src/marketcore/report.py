"""The market report: its schema, its base fields, and its JSON encoding.

A report is a plain ``dict`` (cheap to build, cheap to encode). The host fills
the base fields below; calculators fill the sections. The JSON Schema of
version :data:`SCHEMA_VERSION` ships as ``marketcore/schema/report.schema.json``
(:func:`json_schema`), and every report the test suites produce is validated
against it.

Base fields, filled by the host for every report:

``schemaVersion``, ``writer {nodeId, writerToken, epoch}``, ``updatedAt``,
``symbol``, ``venue``, ``generated_at``, ``data_age_ms``,
``ingestion {status, venue_state, last_update_id, last_event_ms, resyncs}``,
and from the last 24 h ticker (``null`` until one arrives; ``last_price``
falls back to the last trade): ``last_price``, ``change_24h_pct``,
``high_24h``, ``low_24h``, ``volume_24h``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import msgspec
import numpy as np

from marketcore.components import WriterToken
from marketcore.events import VenueState
from marketcore.state import SymbolState

__all__ = [
    "FRESH_MS",
    "MAX_REPORT_BYTES",
    "MERGED_SECTIONS",
    "SCHEMA_VERSION",
    "STALE_MS",
    "STANDARD_SECTIONS",
    "Preencoded",
    "base_report",
    "encode_report",
    "ingestion_status",
    "json_schema",
    "place_section",
    "preencode",
]

SCHEMA_VERSION = "1.1"
FRESH_MS = 1000
"""``ingestion.status`` is ``ok`` up to this data age."""
STALE_MS = 5000
"""… ``degraded`` up to this age, ``down`` beyond."""
MAX_REPORT_BYTES = 256 * 1024

BASE_FIELDS = (
    "schemaVersion", "writer", "updatedAt", "symbol", "venue", "generated_at", "data_age_ms",
    "ingestion", "last_price", "change_24h_pct", "high_24h", "low_24h", "volume_24h",
)
STANDARD_SECTIONS = frozenset({
    "best_bid", "best_ask", "book_state", "spread_bps", "mid_price", "micro_price", "depth", "flow",
    "liquidity", "walls", "vacuums", "volume_profile", "anomalies", "health",
})
"""Sections of the standard schema. A calculator section outside this set is
published under ``ext.<section>``. ``walls``, ``vacuums`` and
``volume_profile`` are placed inside ``liquidity``."""
_LIQUIDITY_PARTS = frozenset({"walls", "vacuums", "volume_profile"})
MERGED_SECTIONS = ("liquidity", "ext")
"""Report keys whose value is a dict of parts from several calculators and both cycles:
merged part by part, never replaced whole."""


def ingestion_status(data_age_ms: int | None, venue_state: VenueState) -> str:
    """``ok`` / ``degraded`` / ``down`` from data age and the venue's feed state.

    ``down`` when there is no data, the venue says down, or the age is past
    :data:`STALE_MS`; ``degraded`` when resyncing or degraded, or the age is
    past :data:`FRESH_MS`; ``ok`` otherwise.
    """
    if data_age_ms is None or venue_state is VenueState.DOWN or data_age_ms > STALE_MS:
        return "down"
    if venue_state is not VenueState.CONNECTED or data_age_ms > FRESH_MS:
        return "degraded"
    return "ok"


def base_report(
    state: SymbolState, *, node_id: str, token: WriterToken, now_ms: int
) -> dict[str, Any]:
    """The host's part of a report; calculators add their sections to it."""
    age = None if state.last_event_ms is None else max(0, now_ms - state.last_event_ms)
    ticker = state.ticker
    last_price = ticker.last if ticker is not None else None
    if last_price is None:
        last = state.trades.last()
        last_price = last[1] if last is not None else None
    return {
        "schemaVersion": SCHEMA_VERSION,
        "writer": {"nodeId": node_id, "writerToken": token.counter, "epoch": token.epoch},
        "updatedAt": now_ms,
        "symbol": state.symbol,
        "venue": state.venue,
        "generated_at": now_ms,
        "data_age_ms": age,
        "ingestion": {
            "status": ingestion_status(age, state.venue_state),
            "venue_state": state.venue_state.value,
            "last_update_id": state.last_update_id,
            "last_event_ms": state.last_event_ms,
            "resyncs": state.counts["resyncs"],
        },
        "last_price": last_price,
        "change_24h_pct": ticker.change_pct if ticker is not None else None,
        "high_24h": ticker.high if ticker is not None else None,
        "low_24h": ticker.low if ticker is not None else None,
        "volume_24h": ticker.volume if ticker is not None else None,
    }


def place_section(report: dict[str, Any], section: str, value: Any) -> None:
    """Put one calculator section where the schema wants it."""
    if section in _LIQUIDITY_PARTS:
        report.setdefault("liquidity", {})[section] = value
    elif section in STANDARD_SECTIONS:
        report[section] = value
    else:
        report.setdefault("ext", {})[section] = value


def _finite(value: Any) -> bool:
    if isinstance(value, float | np.floating):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


def _note_omitted(report: dict[str, Any], section: str, reason: str) -> None:
    health = report.get("health")
    if isinstance(health, dict):
        health.setdefault("omitted", {})[section] = reason


def _drop_non_finite(report: dict[str, Any]) -> None:
    """Remove every section holding NaN or infinity, saying so in ``health``."""
    for key in [k for k in report if k not in BASE_FIELDS and k != "health"]:
        value = report[key]
        if isinstance(value, dict) and key in MERGED_SECTIONS:
            for part in [p for p, v in value.items() if not _finite(v)]:
                del value[part]
                _note_omitted(report, part, "non-finite value")
        elif not _finite(value):
            del report[key]
            _note_omitted(report, key, "non-finite value")
    for key in BASE_FIELDS:
        if not _finite(report.get(key)):
            report[key] = None
    if not _finite(report.get("health")):
        report.pop("health")


_TRIMMABLE = (
    ("depth", "top_bids", 5), ("depth", "top_asks", 5),
    ("liquidity", "walls", 10), ("liquidity", "vacuums", 10),
)
"""(section, list, entries kept) cut from an oversized report, in this order."""


def _trim(report: dict[str, Any]) -> list[str]:
    """Shrink the bulkiest lists of an oversized report; returns what was cut."""
    cut = []
    for section, part, keep in _TRIMMABLE:
        table = report.get(section)
        entries = table.get(part) if isinstance(table, dict) else None
        if isinstance(entries, list) and len(entries) > keep:
            table[part] = entries[:keep]
            cut.append(f"{section}.{part}")
    if "ext" in report and not cut:
        report.pop("ext")
        cut.append("ext")
    return cut


def _plain(value: Any) -> Any:
    """msgspec's hook for types it does not know: numpy scalars become Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"a report cannot hold {type(value).__name__}")


_PACK = msgspec.msgpack.Encoder(enc_hook=_plain)
_JSON = msgspec.json.Encoder(enc_hook=_plain)
_NON_FINITE = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]")
"""A MessagePack float64 (``0xcb`` and 8 big-endian bytes) whose exponent bits are all
ones: NaN or ±infinity. Every finite double starts below ``7ff``/``fff``."""


def _dumps(report: Mapping[str, Any]) -> bytes:
    """Compact JSON, refusing NaN and infinity (``ValueError``) as ``json.dumps`` does.

    msgspec writes JSON about 7× faster than the standard library but turns NaN into
    ``null``, which must never stand for a number. So the report is first packed as
    MessagePack (fast, floats kept as 8 raw bytes) and searched for a non-finite
    float64; only when the pattern is there (NaN, or by rare chance an integer's
    bytes) does the exact, slower path decide.
    """
    if _NON_FINITE.search(_PACK.encode(report)):
        return json.dumps(report, separators=(",", ":"), allow_nan=False,
                          default=_plain).encode()
    return _JSON.encode(report)


def encode_report(report: dict[str, Any], preencoded: Preencoded | None = None) -> bytes:
    """Compact JSON of a report; never NaN or infinity, never over 256 KB.

    A section holding a non-finite number is dropped and named in
    ``health.omitted``; an oversized report is trimmed (top-N, walls, vacuums,
    then ``ext``) and lists what was cut in ``trimmed``. The dict is modified
    in place when either happens.

    ``preencoded`` (from :func:`preencode`) holds sections already checked and
    encoded, typically the slow cycle's, which a node merges into every fast report
    until the next slow cycle: where the report still holds the very same object, its
    JSON is spliced in instead of being encoded again. The bytes are the same either way.
    """
    if preencoded:
        payload = _spliced(report, preencoded)
        if payload is not None:
            return payload
    try:
        payload = _dumps(report)
    except ValueError:
        _drop_non_finite(report)
        payload = _dumps(report)
    while len(payload) > MAX_REPORT_BYTES:
        cut = _trim(report)
        if not cut:
            break
        report.setdefault("trimmed", []).extend(cut)
        payload = _dumps(report)
    return payload


Preencoded = dict[tuple[str, str | None], tuple[Any, msgspec.Raw]]
"""``(section, part or None) -> (the section's object, its JSON)``; ``part`` names an
entry of ``liquidity`` or ``ext``."""


def preencode(sections: Mapping[str, Any]) -> Preencoded:
    """Check and encode once sections that will be merged into many reports.

    ``sections`` are laid out as in a report (``liquidity`` and ``ext`` hold parts). A
    section with a non-finite number is left out, so that the report's own encoding
    drops it and says so.
    """
    out: Preencoded = {}
    for key, value in sections.items():
        merged = key in MERGED_SECTIONS and isinstance(value, dict)
        parts = value.items() if merged else ((None, value),)
        for part, item in parts:
            if not _NON_FINITE.search(_PACK.encode(item)):
                out[key, part] = (item, msgspec.Raw(_JSON.encode(item)))
    return out


def _spliced(report: dict[str, Any], preencoded: Preencoded) -> bytes | None:
    """The report's JSON with the pre-encoded sections spliced in, or ``None`` when the
    rest of it holds a non-finite number or the whole is too big (the slow path then
    decides what to drop or trim)."""
    checked = dict(report)  # what still needs the non-finite check
    spliced = dict(report)  # what is encoded, with the pre-encoded JSON in place
    for key in MERGED_SECTIONS:
        if isinstance(report.get(key), dict):
            checked[key] = dict(report[key])
            spliced[key] = dict(report[key])
    for (key, part), (item, raw) in preencoded.items():
        if part is None:
            if report.get(key) is item:
                del checked[key]
                spliced[key] = raw
        else:
            holder = report.get(key)
            if isinstance(holder, dict) and holder.get(part) is item:
                del checked[key][part]
                spliced[key][part] = raw
    if _NON_FINITE.search(_PACK.encode(checked)):
        return None
    payload = _JSON.encode(spliced)
    return payload if len(payload) <= MAX_REPORT_BYTES else None


@cache
def json_schema() -> dict[str, Any]:
    """The report's JSON Schema (draft 2020-12)."""
    text = resources.files("marketcore").joinpath("schema/report.schema.json").read_text("utf-8")
    return json.loads(text)
