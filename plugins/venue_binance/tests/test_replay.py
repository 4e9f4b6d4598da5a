"""Replaying the real recordings: sequence checks, book correctness, determinism, reports."""

from __future__ import annotations

import gzip
import json
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import SPOT_0808, SPOT_0809, USDM_0808, shared
from marketcore.events import BookDelta, BookSnapshot, Instrument, Trade, VenueState, VenueStatus
from marketcore.state import SymbolState
from marketcore.testing import replay_reports, validate_report
from marketcore_venue_binance import BinanceOptions, BinanceVenue
from marketcore_venue_binance.recording import RecordingWriter, read_recording


def reference_book(paths: list[Path], futures: bool):
    """The book after the recordings, built here with json + dicts only.

    Binance's procedure from the documentation: the snapshot, then the depth events in
    file order whose ``u`` is past it; the first must contain the snapshot's id (spot
    ``U <= L+1 <= u``, futures ``U <= L <= u``), each later one continues the previous
    (spot ``U == u+1``, futures ``pu == u``).
    """
    snapshot = None
    depth = []
    for path in paths:
        with gzip.open(path, "rb") as lines:
            for line in lines:
                if b"depthUpdate" not in line and b"lastUpdateId" not in line:
                    continue
                message = json.loads(line.split(b" ", 1)[1])
                if "lastUpdateId" in message:
                    snapshot = snapshot or message
                elif message["data"].get("e") == "depthUpdate":
                    depth.append(message["data"])
    last = snapshot["lastUpdateId"]
    bids = {float(p): float(q) for p, q in snapshot["bids"]}
    asks = {float(p): float(q) for p, q in snapshot["asks"]}
    keys = {p for p, _ in snapshot["bids"]}
    applied = 0
    for event in depth:
        if event["u"] <= last:
            continue
        if applied == 0:
            assert event["U"] <= last + (0 if futures else 1) <= event["u"]
        elif futures:
            assert event["pu"] == last
        else:
            assert event["U"] == last + 1
        for side, levels in ((bids, event["b"]), (asks, event["a"])):
            for price, qty in levels:
                keys.add(price) if side is bids else None
                if float(qty) == 0:
                    side.pop(float(price), None)
                else:
                    side[float(price)] = float(qty)
        last = event["u"]
        applied += 1
    assert len({float(k) for k in keys}) == len(keys)  # distinct strings, distinct floats
    return last, bids, asks, applied


def replay_into_state(venue: BinanceVenue, paths, symbol="BTCUSDT"):
    state = SymbolState(symbol, "binance")
    events = list(venue.replay(paths, [symbol]))
    for event in events:
        if event.symbol == symbol:
            state.apply(event)
    return state, events


def book_dicts(state: SymbolState):
    sides = []
    for side in ("bid", "ask"):
        prices, qtys = state.book.side_arrays(side)
        sides.append(dict(zip(prices.tolist(), qtys.tolist(), strict=True)))
    return sides


@pytest.mark.parametrize("market, paths", [("spot", [SPOT_0808, SPOT_0809]),
                                           ("usdm", [USDM_0808])])
def test_replay_has_no_gaps_and_ends_at_the_reference_book(market, paths):
    paths = [shared(p) for p in paths]
    venue = BinanceVenue(BinanceOptions(market=market))
    state, events = replay_into_state(venue, paths)
    last, bids, asks, applied = reference_book(paths, futures=market == "usdm")
    stats = venue.stats
    assert stats.gaps == 0 and stats.resyncs == 0 and stats.malformed_total == 0
    assert stats.snapshots_applied == 1
    assert state.last_update_id == last
    assert book_dicts(state) == [bids, asks]
    deltas = [e for e in events if isinstance(e, BookDelta)]
    assert len(deltas) == applied
    assert not any(isinstance(e, VenueStatus) for e in events)
    # the bookTicker stream agrees with the book whenever both are at the same id
    assert stats.book_ticker_checks > 100 and stats.book_ticker_mismatches == 0


def test_the_bridging_event_before_the_snapshot_is_applied():
    """In the spot file the event U=50093239208 u=50093239224 arrives before the snapshot
    (lastUpdateId 50093239218): it must be buffered, then applied first."""
    venue = BinanceVenue()
    _, events = replay_into_state(venue, [shared(SPOT_0808)])
    book_events = [e for e in events if isinstance(e, BookSnapshot | BookDelta)]
    assert isinstance(book_events[0], BookSnapshot)
    assert book_events[0].last_update_id == 50093239218
    assert (book_events[1].first_update_id, book_events[1].last_update_id) == \
        (50093239208, 50093239224)
    instrument = next(e for e in events if isinstance(e, Instrument))
    assert (instrument.tick_size, instrument.lot_size) == (0.01, 0.00001)


def test_trades_carry_the_aggressor_side():
    venue = BinanceVenue()
    _, events = replay_into_state(venue, [shared(SPOT_0808)])
    trades = [e for e in events if isinstance(e, Trade)]
    first = trades[0]  # "m": true — the buyer was the maker, the aggressor sold
    assert (first.trade_id, first.price, first.qty, first.side.value) == \
        (3735683259, 61837.63, 0.02, "sell")
    assert {t.side.value for t in trades} == {"buy", "sell"}
    assert all(b.trade_id == a.trade_id + 1 for a, b in pairwise(trades))
    assert venue.stats.trade_gaps == 0


def test_replay_is_deterministic():
    path = shared(SPOT_0808)
    first = list(BinanceVenue().replay([path], ["BTCUSDT"]))
    second = list(BinanceVenue().replay([path], ["BTCUSDT"]))
    assert len(first) > 10_000
    assert first == second


def test_symbols_not_asked_for_are_left_out():
    events = list(BinanceVenue().replay([shared(SPOT_0808)], ["ETHUSDT"]))
    assert events == []


# ---------------------------------------------------------------------------
# Edited recordings: gaps, bad lines, several symbols
# ---------------------------------------------------------------------------


def _lines(path: Path, limit: int) -> list[tuple[int, bytes]]:
    out = []
    for recv_ns, raw in read_recording(path):
        out.append((recv_ns, raw))
        if len(out) >= limit:
            break
    return out


def _write(path: Path, lines) -> Path:
    with RecordingWriter(path) as writer:
        for recv_ns, raw in lines:
            writer.write(recv_ns, raw)
    return path


def _is_depth(raw: bytes) -> bool:
    return b'"depthUpdate"' in raw[:120]


def test_a_gap_in_a_recording_resyncs_until_the_next_snapshot(tmp_path):
    lines = _lines(shared(SPOT_0808), 6000)
    depth_at = [i for i, (_, raw) in enumerate(lines) if _is_depth(raw)]
    lost = depth_at[100]  # well after the snapshot (line 8)
    resnap_at = depth_at[200]
    # a snapshot for the later position, built from the reference book at that point
    reference = _write(tmp_path / "reference.gz", lines[:resnap_at])
    last, bids, asks, _ = reference_book([reference], futures=False)
    body = json.dumps({"lastUpdateId": last,
                       "bids": [[repr(p), repr(q)] for p, q in sorted(bids.items(),
                                                                    reverse=True)],
                       "asks": [[repr(p), repr(q)] for p, q in sorted(asks.items())]})
    edited = lines[:lost] + lines[lost + 1:resnap_at] + \
        [(lines[resnap_at][0], body.encode())] + lines[resnap_at:]
    venue = BinanceVenue()
    state, events = replay_into_state(venue, [_write(tmp_path / "gap.gz", edited)])
    statuses = [e for e in events if isinstance(e, VenueStatus)]
    assert [s.state for s in statuses] == [VenueState.RESYNCING]
    assert "expected U=" in statuses[0].reason
    gap_index = events.index(statuses[0])
    snapshots = [i for i, e in enumerate(events) if isinstance(e, BookSnapshot)]
    assert len(snapshots) == 2 and snapshots[1] > gap_index
    # no book event between the gap and the new snapshot
    assert not any(isinstance(e, BookDelta) for e in events[gap_index:snapshots[1]])
    assert venue.stats.gaps == 1 and venue.stats.resyncs == 1
    final_last, final_bids, final_asks, _ = reference_book(
        [_write(tmp_path / "full.gz", lines)], futures=False)
    assert state.last_update_id == final_last
    assert book_dicts(state) == [final_bids, final_asks]
    assert state.venue_state is VenueState.CONNECTED and state.counts["resyncs"] == 1


def test_bad_lines_in_a_recording_are_counted_and_skipped(tmp_path):
    lines = _lines(shared(SPOT_0808), 3000)
    first_depth = next(i for i, (_, raw) in enumerate(lines) if _is_depth(raw) and i > 20)
    recv_ns = lines[first_depth][0]
    bad = [(recv_ns, b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate"}}'),
           (recv_ns, b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,'
                     b'"p":"NaN","q":"1","T":1,"m":true}}'),
           (recv_ns, b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,'
                     b'"s":"BTCUSDT","U":1,"u":2,"b":[["61837.6300000000001","1"]],"a":[]}}'),
           (recv_ns, b'{"not": "a frame"}')]
    edited = lines[:first_depth] + bad + lines[first_depth:]
    venue = BinanceVenue()
    state, _ = replay_into_state(venue, [_write(tmp_path / "bad.gz", edited)])
    assert venue.stats.malformed == {"missing_fields": 2, "absurd": 1, "precision": 1}
    assert venue.stats.gaps == 0
    last, bids, asks, _ = reference_book([_write(tmp_path / "good.gz", lines)], futures=False)
    assert state.last_update_id == last and book_dicts(state) == [bids, asks]


def test_files_of_different_symbols_merge_and_keep_their_snapshots(tmp_path):
    lines = _lines(shared(SPOT_0808), 4000)
    btc = _write(tmp_path / "btc.gz", lines)
    eth_lines = [(recv_ns + 7, raw.replace(b"btcusdt@", b"ethusdt@").replace(
        b'"s":"BTCUSDT"', b'"s":"ETHUSDT"')) for recv_ns, raw in lines]
    eth = _write(tmp_path / "eth.gz", eth_lines)
    venue = BinanceVenue()
    events = list(venue.replay([btc, eth], ["BTCUSDT", "ETHUSDT"]))
    assert [e.recv_ns for e in events] == sorted(e.recv_ns for e in events)
    snapshots = {e.symbol for e in events if isinstance(e, BookSnapshot)}
    assert snapshots == {"BTCUSDT", "ETHUSDT"}
    assert venue.stats.gaps == 0 and venue.stats.snapshots_unattributed == 0


# ---------------------------------------------------------------------------
# Through the host: reports
# ---------------------------------------------------------------------------

PROFILE = """
[node]
symbols = ["BTCUSDT"]

[venue]
use = "binance"
market = "{market}"
"""


@pytest.mark.parametrize("market, path", [("spot", SPOT_0808), ("usdm", USDM_0808)])
def test_replay_reports_carry_the_last_update_id_and_validate(market, path):
    reports = replay_reports(PROFILE.format(market=market), recordings=[shared(path)],
                             duration_s=60)
    assert len(reports) > 100
    for report in [*reports[::25], reports[-1]]:  # validate_report rebuilds its validator
        validate_report(report)                   # per call: a sample keeps this quick
    ids = [r["ingestion"]["last_update_id"] for r in reports]
    assert ids[-1] is not None and ids[-1] > 0
    synced = [r for r in reports if r["ingestion"]["last_update_id"] is not None]
    assert all(a <= b for a, b in pairwise(ids[len(ids) - len(synced):]))
    assert synced[-1]["ingestion"]["venue_state"] == "connected"
    assert synced[-1]["ingestion"]["last_event_ms"] is not None
