"""Shared settings and paths for the Binance venue's tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _sim_fixtures import (  # noqa: F401 - re-exported for the live tests
    EXAMPLE_SPOT,
    REPO_ROOT,
    SHARED_SPOT,
    SHARED_SPOT_NEXT,
    SHARED_USDM,
    head,
    shared_file,
    wait_for,
)
from hypothesis import settings
from marketcore.events import BookDelta, BookSnapshot, VenueState, VenueStatus
from marketcore_venue_binance import BinanceOptions, BinanceVenue

settings.register_profile("marketcore", deadline=None, max_examples=150)
settings.load_profile("marketcore")

SPOT_0808 = SHARED_SPOT
SPOT_0809 = SHARED_SPOT_NEXT
USDM_0808 = SHARED_USDM
shared = shared_file
"""``path`` if the shared recordings (``../shared/data/binance``) are present, else skip."""


@pytest.fixture(scope="session")
def spot_recording(tmp_path_factory) -> Path:
    """About a minute of real spot BTCUSDT (snapshot included) for the simulator."""
    source = SPOT_0808 if SPOT_0808.is_file() else EXAMPLE_SPOT
    if not source.is_file():
        pytest.skip("no spot recording (../shared/data/binance or examples/data)")
    return head(source, tmp_path_factory.mktemp("rec") / "spot.gz", 7000)


@pytest.fixture(scope="session")
def usdm_recording(tmp_path_factory) -> Path:
    """About 40 s of real USDⓈ-M BTCUSDT (snapshot included) for the simulator."""
    return head(shared(USDM_0808), tmp_path_factory.mktemp("rec") / "usdm.gz", 11000)


# ---------------------------------------------------------------------------
# Helpers for tests that run the live client against the simulator
# ---------------------------------------------------------------------------

FAST = {
    "snapshot_jitter_s": 0.0,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.5,
    "stable_after_s": 0.5,
    "handover_timeout_s": 3.0,
}
"""Options that keep live tests quick (no jitter, short backoff)."""


class Collector:
    """The host's side in tests: receives events, keeps a plain dict book per symbol
    (built only from the emitted events) and checks the venue's promises as they come:
    deltas only on a snapshot, contiguous ids while connected."""

    def __init__(self, futures: bool = False) -> None:
        self.futures = futures
        self.events: list = []
        self.kinds: Counter[str] = Counter()
        self.books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
        self.last_id: dict[str, int] = {}
        self.statuses: dict[str, list[VenueStatus]] = defaultdict(list)
        self.snapshots: Counter[str] = Counter()
        self.last_snapshot: dict[str, BookSnapshot] = {}
        self.deltas: Counter[str] = Counter()

    def __call__(self, event) -> None:
        self.events.append(event)
        self.kinds[type(event).__name__] += 1
        if isinstance(event, BookSnapshot):
            self.books[event.symbol] = (dict(event.bids), dict(event.asks))
            self.last_snapshot[event.symbol] = event
            self.last_id[event.symbol] = event.last_update_id
            self.snapshots[event.symbol] += 1
        elif isinstance(event, BookDelta):
            symbol = event.symbol
            assert symbol in self.books, f"delta for {symbol} before its snapshot"
            last = self.last_id[symbol]
            if self.futures:
                assert event.prev_update_id is not None
                assert event.prev_update_id <= last < event.last_update_id, (last, event)
            else:
                assert event.first_update_id <= last + 1 <= event.last_update_id, (last, event)
            bids, asks = self.books[symbol]
            for side, levels in ((bids, event.bids), (asks, event.asks)):
                for price, qty in levels:
                    if qty > 0:
                        side[price] = qty
                    else:
                        side.pop(price, None)
            self.last_id[symbol] = event.last_update_id
            self.deltas[symbol] += 1
        elif isinstance(event, VenueStatus) and event.symbol is not None:
            self.statuses[event.symbol].append(event)

    def states(self, symbol: str) -> list[VenueState]:
        return [s.state for s in self.statuses[symbol]]


def sim_book(sim, symbol: str) -> tuple[int, dict[float, float], dict[float, float]]:
    last, bids, asks = sim.book(symbol)
    return (last, {float(p): float(q) for p, q in bids.items() if float(q) > 0},
            {float(p): float(q) for p, q in asks.items() if float(q) > 0})


@contextlib.asynccontextmanager
async def running(venue: BinanceVenue, collector: Collector, **run_kwargs) -> AsyncIterator[
        asyncio.Task]:
    """Run ``venue`` in a task for the block; cancel and await it afterwards, re-raising
    any error the venue stopped with."""
    task = asyncio.create_task(venue.run(collector, **run_kwargs))
    try:
        yield task
        if task.done():
            task.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def synced_at_sim(venue: BinanceVenue, collector: Collector, sim, symbols,
                        timeout_s: float = 20.0) -> None:
    """Pause the simulator and wait until the client holds every symbol at the
    simulator's current update id.

    Futures: the simulator's book id is the *next* diff's ``U`` (a futures snapshot is
    valid at any id up to it), so the client is there once nothing more arrives and
    its last ``u`` is below that id.
    """
    sim.pause()
    if not collector.futures:
        await wait_for(lambda: all(collector.last_id.get(s) == sim.book(s)[0]
                                   for s in symbols),
                       timeout_s, f"books of {symbols} at the simulator's update id")
        return
    seen = [-1]

    def quiet() -> bool:
        frames, seen[0] = seen[0], venue.stats.frames
        return frames == seen[0] and all(s in collector.last_id for s in symbols)

    await wait_for(quiet, timeout_s, "the stream to go quiet")
    await asyncio.sleep(0.2)
    await wait_for(quiet, timeout_s, "the stream to go quiet")
    for symbol in symbols:
        assert collector.last_id[symbol] <= sim.book(symbol)[0]


def assert_books_equal(collector: Collector, sim, symbol: str, limit: int) -> None:
    """The client's book equals the simulator's at the same update id.

    Levels beyond the depth of the client's last snapshot stay unknown until they
    change (Binance's procedure): when the snapshot side was cut at ``limit`` levels,
    the book must be equal from the top down to the cut, and every level the client
    knows beyond it must be the simulator's too. Otherwise the sides must be equal.
    """
    last, sim_bids, sim_asks = sim_book(sim, symbol)
    if collector.futures:
        assert collector.last_id[symbol] <= last
    else:
        assert collector.last_id[symbol] == last
    bids, asks = collector.books[symbol]
    snapshot = collector.last_snapshot[symbol]
    for mine, theirs, levels, is_bid in ((bids, sim_bids, snapshot.bids, True),
                                         (asks, sim_asks, snapshot.asks, False)):
        if len(levels) < limit:
            assert mine == theirs
            continue
        cut = levels[-1][0]
        inside = (lambda p, c=cut: p >= c) if is_bid else (lambda p, c=cut: p <= c)
        assert {p: q for p, q in mine.items() if inside(p)} == \
            {p: q for p, q in theirs.items() if inside(p)}
        assert all(theirs.get(p) == q for p, q in mine.items() if not inside(p))


def venue_for(sim, **options) -> BinanceVenue:
    """A venue pointed at ``sim`` with quick test options."""
    return BinanceVenue(BinanceOptions(ws_endpoints=(sim.ws_url,),
                                       rest_endpoints=(sim.rest_url,),
                                       **{**FAST, **options}))
