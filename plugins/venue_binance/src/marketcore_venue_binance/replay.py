"""Replaying SPEC §9 recordings through the very feed logic the live client uses.

A recording is gzip text, one line per received message, ``<recv_ns> <raw JSON>``: a
combined-stream frame, or a REST depth snapshot body written when it was received
(hftbacktest's collector format, which the shared real recordings use). Several files
are merged by receive time, so a day split over two files and several single-symbol
files both replay correctly.

A snapshot body does not name its symbol. It belongs to the only subscribed symbol the
file has carried so far; in a file of several symbols, to the one whose buffered events
it bridges (and it is skipped, counted in ``snapshots_unattributed``, when that is not
unambiguous). The recorder of this package writes one file per symbol, so its files
never need the second rule.

Everything else is the live procedure: events before the snapshot are buffered and
bridged, every event is checked against the previous one, and a gap marks the symbol
resyncing until the next snapshot in the file. ``recv_ns`` comes from the file, so the
same files always give the same events.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterator, Sequence
from operator import itemgetter
from pathlib import Path

from marketcore.events import Event

from marketcore_venue_binance.decode import MalformedFrame
from marketcore_venue_binance.feed import Feed
from marketcore_venue_binance.options import BinanceOptions
from marketcore_venue_binance.recording import read_recording
from marketcore_venue_binance.stats import VenueStats

__all__ = ["Replay"]


def _lines(paths: Sequence[Path]) -> Iterator[tuple[int, int, bytes]]:
    """``(recv_ns, file index, raw)`` of every file, merged by receive time."""
    return heapq.merge(*(_tagged(index, path) for index, path in enumerate(paths)),
                       key=itemgetter(0))


def _tagged(index: int, path: Path) -> Iterator[tuple[int, int, bytes]]:
    for recv_ns, raw in read_recording(path):
        yield recv_ns, index, raw


class Replay:
    """marketcore events of ``symbols`` from ``recordings``, in receive order (iterate).

    :attr:`feed` is the feed the events go through (its counters land in ``stats``).
    """

    def __init__(self, options: BinanceOptions, recordings: Sequence[Path | str],
                 symbols: Collection[str], stats: VenueStats) -> None:
        self.paths = [Path(p) for p in recordings]
        self.stats = stats
        self._out: list[Event] = []
        self.feed = Feed(options, self._out.append, stats)
        for symbol in sorted({s.upper() for s in symbols}):
            self.feed.add(symbol)

    def __iter__(self) -> Iterator[Event]:
        feed, out, stats = self.feed, self._out, self.stats
        seen: list[dict[str, None]] = [{} for _ in self.paths]
        for recv_ns, index, raw in _lines(self.paths):
            decoded = feed.decode(raw)
            if decoded is None:
                continue
            symbol, kind, event = decoded
            if kind is not None:
                seen[index].setdefault(symbol)
                feed.dispatch(symbol, kind, event, recv_ns)
            elif event.last_update_id is not None:
                _snapshot(feed, raw, recv_ns, event.last_update_id, seen[index], stats)
            if out:
                yield from out
                out.clear()
        feed.refresh_stats()


def _snapshot(feed: Feed, raw: bytes, recv_ns: int, snapshot_id: int,
              seen: dict[str, None], stats: VenueStats) -> None:
    candidates = [s for s in seen if s in feed.symbols]
    if not candidates and not seen and len(feed.symbols) == 1:
        candidates = list(feed.symbols)
    if len(candidates) == 1:
        target = candidates[0]
    else:
        fitting = [s for s in candidates if feed.symbols[s].sync.accepts(snapshot_id)]
        if len(fitting) != 1:
            if candidates or not seen:
                stats.snapshots_unattributed += 1
            return
        target = fitting[0]
    try:
        snapshot = feed.decoder.snapshot(raw)
    except MalformedFrame as error:
        feed.malformed(error, target)
        return
    feed.snapshot(target, snapshot, recv_ns)
