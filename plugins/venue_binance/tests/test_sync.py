"""The book sync state machine: Binance's procedure, crafted cases and a reference model."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marketcore_venue_binance.sync import (
    APPLY,
    BUFFERED,
    DUPLICATE,
    GAP,
    HELD,
    IGNORED,
    STALE,
    SYNCED,
    BookSync,
)


@attrs.frozen
class D:
    first_update_id: int
    last_update_id: int
    prev_update_id: int | None = None
    bids: tuple = ()
    asks: tuple = ()


@attrs.frozen
class S:
    last_update_id: int
    bids: tuple = ()
    asks: tuple = ()


# ---------------------------------------------------------------------------
# Crafted cases: spot
# ---------------------------------------------------------------------------


def test_bridging_event_before_the_snapshot_is_buffered_and_applied():
    """The real recordings' case: the bridging event arrives before the snapshot."""
    sync = BookSync("BTCUSDT")
    assert sync.on_diff(D(189, 202)) == BUFFERED
    assert sync.wants_snapshot
    sync.requested = True
    assert not sync.wants_snapshot
    assert sync.on_diff(D(203, 207)) == BUFFERED
    assert sync.on_diff(D(208, 224)) == BUFFERED
    assert sync.on_snapshot(S(218)) == SYNCED
    snapshot, ready = sync.take_ready()
    assert snapshot.last_update_id == 218
    assert [d.first_update_id for d in ready] == [208]  # u <= 218 dropped
    assert sync.live and sync.last_update_id == 224
    assert sync.on_diff(D(225, 237)) == APPLY
    assert sync.last_update_id == 237


def test_snapshot_exactly_at_the_previous_event_end_bridges():
    sync = BookSync("X")
    sync.on_diff(D(10, 12))
    sync.on_diff(D(13, 15))
    assert sync.on_snapshot(S(12)) == SYNCED  # U=13 <= 12+1 <= 15
    _, ready = sync.take_ready()
    assert [d.first_update_id for d in ready] == [13]


def test_snapshot_older_than_the_buffer_is_stale_and_wanted_again():
    sync = BookSync("X")
    sync.on_diff(D(100, 110))
    sync.requested = True
    assert sync.on_snapshot(S(90)) == STALE
    assert sync.stale_snapshots == 1
    assert sync.wants_snapshot and not sync.live


def test_snapshot_newer_than_the_buffer_is_held_until_the_bridging_event():
    sync = BookSync("X")
    sync.on_diff(D(100, 110))
    assert sync.on_snapshot(S(115)) == HELD
    assert not sync.wants_snapshot
    assert sync.on_diff(D(111, 114)) == DUPLICATE  # u <= L
    assert sync.on_diff(D(115, 120)) == SYNCED
    snapshot, ready = sync.take_ready()
    assert snapshot.last_update_id == 115 and [d.last_update_id for d in ready] == [120]


def test_held_snapshot_that_the_stream_skips_over_is_stale():
    sync = BookSync("X")
    sync.on_diff(D(100, 110))
    assert sync.on_snapshot(S(115)) == HELD
    assert sync.on_diff(D(130, 140)) == BUFFERED  # 115 + 1 < 130: the snapshot is useless
    assert sync.stale_snapshots == 1 and sync.wants_snapshot


def test_gap_on_any_event_resyncs():
    sync = BookSync("X")
    sync.on_diff(D(1, 5))
    sync.on_snapshot(S(3))
    sync.take_ready()
    assert sync.on_diff(D(6, 9)) == APPLY
    assert sync.on_diff(D(11, 12)) == GAP  # 10 lost
    assert not sync.live and sync.gaps == 1 and sync.resyncs == 1
    assert sync.buffered == 1 and sync.wants_snapshot
    assert sync.on_snapshot(S(11)) == SYNCED
    _, ready = sync.take_ready()
    assert [d.first_update_id for d in ready] == [11]


def test_duplicates_while_live_are_dropped_without_resync():
    sync = BookSync("X")
    sync.on_diff(D(1, 5))
    assert sync.on_snapshot(S(4)) == SYNCED
    sync.take_ready()
    assert sync.on_diff(D(6, 8)) == APPLY
    assert sync.on_diff(D(6, 8)) == DUPLICATE
    assert sync.on_diff(D(1, 5)) == DUPLICATE
    assert sync.on_diff(D(9, 9)) == APPLY
    assert sync.resyncs == 0 and sync.duplicates == 2


def test_overlapping_event_is_a_gap():
    sync = BookSync("X")
    sync.on_diff(D(1, 5))
    assert sync.on_snapshot(S(4)) == SYNCED
    sync.take_ready()
    assert sync.on_diff(D(4, 9)) == GAP


def test_gap_inside_the_buffer_restarts_the_buffer():
    sync = BookSync("X")
    sync.on_diff(D(1, 5))
    assert sync.on_diff(D(8, 9)) == BUFFERED
    assert sync.gaps == 1 and sync.buffered == 1
    assert sync.on_snapshot(S(4)) == STALE  # older than the new first event


def test_buffer_is_bounded_and_keeps_the_newest():
    sync = BookSync("X", max_buffer=4)
    for i in range(10):
        sync.on_diff(D(i * 10, i * 10 + 9))
    assert sync.buffered == 4 and sync.buffer_overflows == 6
    assert sync.on_snapshot(S(5)) == STALE  # the oldest events are gone
    assert sync.on_snapshot(S(65)) == SYNCED
    _, ready = sync.take_ready()
    assert [d.first_update_id for d in ready] == [60, 70, 80, 90]


def test_snapshot_while_live_without_refresh_is_ignored():
    sync = BookSync("X")
    sync.on_diff(D(1, 5))
    assert sync.on_snapshot(S(4)) == SYNCED
    sync.take_ready()
    assert sync.on_snapshot(S(5)) == IGNORED


def test_periodic_refresh_replays_events_after_the_new_snapshot():
    sync = BookSync("X")
    sync.on_diff(D(1, 5))
    assert sync.on_snapshot(S(4)) == SYNCED
    sync.take_ready()
    assert sync.begin_refresh()
    assert not sync.begin_refresh()  # one at a time
    for first in (6, 9, 12):
        assert sync.on_diff(D(first, first + 2)) == APPLY
    assert sync.on_snapshot(S(10)) == SYNCED  # bridged by (9, 11)
    snapshot, ready = sync.take_ready()
    assert snapshot.last_update_id == 10
    assert [d.first_update_id for d in ready] == [9, 12]
    assert sync.live and sync.last_update_id == 14 and sync.refreshes == 1


def test_refresh_snapshot_ahead_of_the_stream_is_ignored():
    sync = BookSync("X")
    sync.on_diff(D(1, 5))
    assert sync.on_snapshot(S(4)) == SYNCED
    sync.take_ready()
    sync.begin_refresh()
    assert sync.on_snapshot(S(50)) == IGNORED
    assert sync.live


def test_take_ready_without_synced_is_an_error():
    with pytest.raises(RuntimeError):
        BookSync("X").take_ready()


# ---------------------------------------------------------------------------
# Crafted cases: USDⓈ-M futures (pu)
# ---------------------------------------------------------------------------


def test_futures_chain_is_checked_by_pu():
    sync = BookSync("BTCUSDT", futures=True)
    sync.on_diff(D(100, 120, 90))
    sync.on_diff(D(130, 140, 120))  # ids skip (other symbols), pu links
    assert sync.on_snapshot(S(125)) == SYNCED  # pu=120 <= 125 < 140
    _, ready = sync.take_ready()
    assert [d.first_update_id for d in ready] == [130]
    assert sync.on_diff(D(150, 160, 140)) == APPLY
    assert sync.on_diff(D(170, 180, 165)) == GAP  # pu != previous u


def test_futures_real_bridge():
    """The usdm recording: snapshot 5123107852948 bridged by U=…850310 u=…853551."""
    sync = BookSync("BTCUSDT", futures=True)
    assert sync.on_diff(D(5123107850310, 5123107853551, 5123107850146)) == BUFFERED
    assert sync.on_snapshot(S(5123107852948)) == SYNCED


# ---------------------------------------------------------------------------
# Reference model on random streams with random losses, duplicates and snapshots
# ---------------------------------------------------------------------------

@st.composite
def scenarios(draw, futures: bool):
    """A true event stream (with its book after every event) and a delivery script."""
    n = draw(st.integers(5, 30))
    events, truth = [], []
    book: dict[int, int] = {}
    next_first = 1000
    prev_u = 999
    for _ in range(n):
        width, skip, seed = draw(st.tuples(st.integers(1, 4), st.integers(0, 3),
                                           st.integers(0, 2**32)))
        first, last = next_first, next_first + width - 1
        changes = tuple(((seed >> (8 * k)) % 12 + 1, (seed >> (8 * k + 4)) % 4)
                        for k in range(seed % 4))
        events.append(D(first, last, prev_u if futures else None, changes))
        for price, qty in changes:
            if qty:
                book[price] = qty
            else:
                book.pop(price, None)
        truth.append(dict(book))
        prev_u = last
        next_first = last + 1 + (skip if futures else 0)
    script = draw(st.lists(st.tuples(st.sampled_from(["deliver", "deliver", "deliver", "drop",
                                                      "dup", "snapshot"]),
                                     st.integers(-3, 2)), min_size=n, max_size=3 * n))
    return events, truth, script


def _run_model(events, truth, script, futures):
    """Deliver events as the script says; the client's book must always be the truth."""
    sync = BookSync("X", futures=futures, max_buffer=8)
    client: dict[int, int] = {}
    cursor = 0  # the next true event to deliver
    lost = False  # an event was lost since the book was last rebuilt

    def truth_at(update_id):
        index = max((i for i, e in enumerate(events) if e.last_update_id <= update_id),
                    default=-1)
        return truth[index] if index >= 0 else {}

    def apply(diff):
        for price, qty in diff.bids:
            if qty:
                client[price] = qty
            else:
                client.pop(price, None)

    def rebuild():
        nonlocal lost
        snapshot, ready = sync.take_ready()
        client.clear()
        client.update(dict(snapshot.bids))
        for diff in ready:
            apply(diff)
        lost = False

    def deliver(event):
        outcome = sync.on_diff(event)
        if outcome == APPLY:
            assert not lost, "an event was applied after a lost one without a resync"
            apply(event)
        elif outcome == SYNCED:
            rebuild()
        return outcome

    for action, offset in script:
        if action == "snapshot":
            index = min(len(events) - 1, cursor - 1 + offset)
            if index < 0:
                continue
            update_id = events[index].last_update_id
            if futures and index + 1 < len(events):  # any id up to the next event's U
                update_id += offset % max(1, events[index + 1].first_update_id - update_id)
            if sync.on_snapshot(S(update_id, tuple(truth[index].items()))) == SYNCED:
                rebuild()
        elif cursor < len(events):
            event = events[cursor]
            cursor += 1
            if action == "drop":
                lost = True
                continue
            deliver(event)
            if action == "dup":
                assert deliver(event) == DUPLICATE
        if sync.live:
            assert client == truth_at(sync.last_update_id)


@settings(max_examples=100)
@given(scenarios(futures=False))
def test_spot_sync_matches_the_true_book(scenario):
    _run_model(*scenario, futures=False)


@settings(max_examples=100)
@given(scenarios(futures=True))
def test_futures_sync_matches_the_true_book(scenario):
    _run_model(*scenario, futures=True)


@given(st.integers(5, 40), st.integers(0, 39), st.booleans())
def test_a_bridging_snapshot_always_syncs(n, at, futures):
    """Liveness: events delivered without loss and a snapshot from inside their range
    always give a synced book, whatever the order of arrival."""
    at = min(at, n - 1)
    events = []
    prev = 99
    first = 100
    for _ in range(n):
        events.append(D(first, first + 1, prev if futures else None))
        prev = first + 1
        first = prev + (2 if futures else 1)
    sync = BookSync("X", futures=futures, max_buffer=64)
    synced = False
    snapshot_sent = False
    for i, event in enumerate(events):
        if sync.on_diff(event) == SYNCED:
            synced = True
            sync.take_ready()
        if i == at and not snapshot_sent:
            snapshot_sent = True
            if sync.on_snapshot(S(events[max(0, at - 1)].last_update_id)) == SYNCED:
                synced = True
                sync.take_ready()
    assert synced and sync.live and sync.last_update_id == events[-1].last_update_id
