"""The issue's acceptance items, proved with the live client against the simulator.

Every test runs the real client over real sockets (WebSocket and REST on loopback)
against :class:`ExchangeSimulator` replaying the real spot recording, and is bounded in
time: a test that cannot reach its state fails after its bound instead of hanging. The
only time figures asserted are the liveness bounds the issue names.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import Future

from conftest import (
    Collector,
    assert_books_equal,
    running,
    synced_at_sim,
    venue_for,
    wait_for,
)
from marketcore.components import Needs, WriterToken
from marketcore.events import BookSnapshot, VenueState, VenueStatus
from marketcore.report import base_report
from marketcore.state import SymbolState
from marketcore.testing import run_node
from marketcore_venue_binance.simulator import ExchangeSimulator, SimulatorConfig


def sim_config(path, **changes) -> SimulatorConfig:
    return SimulatorConfig(recordings=(str(path),), **{"speed": 10.0, **changes})


def progress(venue, host, symbols) -> str:
    """Where a many-symbol resync stands, for a timeout's message."""
    resynced = sum(host.snapshots[s] >= 2 for s in symbols)
    counters = {k: v for k, v in venue.stats.as_dict().items() if v}
    return f"{resynced}/{len(symbols)} resynced; venue stats {counters}"


def run(coro, timeout_s: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout=timeout_s))


class Host(Collector):
    """The collector plus what a node keeps: one :class:`SymbolState` per symbol, and
    the loop time at which each symbol's statuses and snapshots arrived."""

    def __init__(self, symbols) -> None:
        super().__init__()
        self.states_by_symbol = {s: SymbolState(s, "binance", Needs()) for s in symbols}
        self.timeline: list[tuple[float, str, object]] = []

    def __call__(self, event) -> None:
        super().__call__(event)
        symbol = getattr(event, "symbol", None)
        state = self.states_by_symbol.get(symbol)
        if state is not None:
            state.apply(event)
        if isinstance(event, BookSnapshot | VenueStatus):
            self.timeline.append((asyncio.get_running_loop().time(), symbol, event))

    def ingestion(self, symbol: str, now_ms: int) -> dict:
        """The ``ingestion`` section a node would publish for ``symbol`` now."""
        report = base_report(self.states_by_symbol[symbol], node_id="acceptance",
                             token=WriterToken(0, 1), now_ms=now_ms)
        return report["ingestion"]


# ---------------------------------------------------------------------------
# 1. a gap on one of 20 symbols
# ---------------------------------------------------------------------------


def test_gap_on_one_of_twenty_symbols_resyncs_it_while_the_others_stay_ok(spot_recording):
    async def scenario():
        config = sim_config(spot_recording, clone=20, speed=1.0, loop=True)
        async with ExchangeSimulator(config) as sim:
            symbols = sim.symbols
            assert len(symbols) == 20
            gapped, others = symbols[6], [s for s in symbols if s != symbols[6]]
            venue = venue_for(sim, snapshot_limit=1000)
            venue.subscribe(symbols)
            host = Host(symbols)
            samples: list[tuple[float, str, str, str]] = []

            async def sample_reports() -> None:
                """What the node's fast cycle would report, every 100 ms."""
                loop = asyncio.get_running_loop()
                while True:
                    now_ms = int(time.time() * 1000)
                    for symbol in symbols:
                        ingestion = host.ingestion(symbol, now_ms)
                        samples.append((loop.time(), symbol, ingestion["status"],
                                        ingestion["venue_state"]))
                    await asyncio.sleep(0.1)

            async with running(venue, host):
                await wait_for(lambda: all(host.deltas[s] > 10 for s in symbols),
                               timeout_s=30, what="all 20 symbols synced")
                sampler = asyncio.create_task(sample_reports())
                try:
                    loop = asyncio.get_running_loop()
                    await asyncio.sleep(0.5)
                    marks = {s: host.deltas[s] for s in symbols}
                    injected_at = loop.time()
                    sim.skip_update_ids(gapped, 5)
                    await wait_for(lambda: host.snapshots[gapped] >= 2, timeout_s=5.0,
                                   what=f"{gapped} resynced within 5 s")
                    resynced_at = loop.time()
                    await asyncio.sleep(1.0)  # the others keep flowing after it, too
                finally:
                    sampler.cancel()
                    await asyncio.gather(sampler, return_exceptions=True)
                await synced_at_sim(venue, host, sim, symbols)
                for symbol in symbols:
                    assert_books_equal(host, sim, symbol, 1000)

            # the gapped symbol: RESYNCING, then a new snapshot, within the bound
            events = [(t, e) for t, s, e in host.timeline if s == gapped and t >= injected_at]
            kinds = [e.state if isinstance(e, VenueStatus) else "snapshot" for _, e in events]
            assert kinds[:2] == [VenueState.RESYNCING, "snapshot"], kinds
            assert "gap" in events[0][1].reason
            assert events[1][0] - injected_at <= 5.0
            assert host.states_by_symbol[gapped].counts["resyncs"] == 1
            assert host.ingestion(gapped, int(time.time() * 1000))["resyncs"] == 1
            # the other 19: never a status, never a new snapshot, data flowing, and every
            # report from the gap to a second after the resync says ingestion "ok"
            for symbol in others:
                assert host.statuses[symbol] == [], symbol
                assert host.snapshots[symbol] == 1, symbol
                assert host.deltas[symbol] > marks[symbol] + 5, symbol
                window = [(status, state) for t, s, status, state in samples
                          if s == symbol and injected_at <= t <= resynced_at + 1.0]
                assert len(window) >= 5, (symbol, len(window))
                assert all(status == "ok" and state == "connected"
                           for status, state in window), (symbol, window)
            assert venue.stats.gaps == 1 and venue.stats.resyncs == 1
            assert venue.stats.reconnects == 0

    run(scenario())


class SimulatorThread:
    """The simulator on its own event loop in a thread, for a node that runs its own loop
    in the test's thread (``run_node`` blocks). Every task ends with the thread."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.sim: ExchangeSimulator | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="binance-sim", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported to the test thread
            self._error = error
            self._ready.set()

    async def _main(self) -> None:
        async with ExchangeSimulator(self.config) as sim:
            self.sim, self.loop = sim, asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    def submit(self, coro) -> Future:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def __enter__(self) -> SimulatorThread:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the simulator did not start: {self._error!r}")
        return self

    def __exit__(self, *_exc) -> None:
        assert self.loop is not None and self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the simulator thread did not stop"


def test_gap_on_one_of_twenty_symbols_in_a_real_node_keeps_the_others_reports_ok(
        spot_recording, tmp_path):
    """The same acceptance item through a whole node (``run_node``): the binance venue,
    the local coordinator, the fast cycle, the ``jsonl`` sink; read back its reports."""
    reports_path = tmp_path / "reports.jsonl"
    config = sim_config(spot_recording, clone=20, speed=1.0, loop=True)
    with SimulatorThread(config) as sim_thread:
        sim = sim_thread.sim
        symbols = sim.symbols
        gapped = symbols[6]

        async def inject_once_synced() -> float:
            await wait_for(lambda: sim.stats.snapshots_served >= len(symbols),
                           timeout_s=20, what="every symbol's snapshot served")
            await asyncio.sleep(1.5)
            injected_ms = time.time() * 1000
            sim.skip_update_ids(gapped, 5)
            return injected_ms

        profile = f"""
[node]
id = "acceptance"
symbols = {json.dumps(list(symbols))}

[venue]
use = "binance"
ws_endpoints = ["{sim.ws_url}"]
rest_endpoints = ["{sim.rest_url}"]
snapshot_jitter_s = 0.0

[coordinator]
use = "local"

[pipeline.fast]
period_ms = 250

[[sink]]
use = "jsonl"
path = "{reports_path.as_posix()}"
"""
        injected = sim_thread.submit(inject_once_synced())
        info = run_node(profile, duration_s=9.0)
        injected_ms = injected.result(timeout=5)
        gaps = sim.stats.faults["gap"]
    assert gaps == 1
    assert info.venue == "binance" and info.stats.reports_published > 0
    reports = [json.loads(line) for line in reports_path.read_text().splitlines()]
    by_symbol: dict[str, list[dict]] = {s: [] for s in symbols}
    for report in reports:
        by_symbol[report["symbol"]].append(report)
    # the gapped symbol: its report counts one resync, and shows it connected again (a new
    # snapshot) within 5 s of the gap, plus one fast cycle
    after = [r for r in by_symbol[gapped] if r["generated_at"] >= injected_ms]
    rebuilt = [r for r in after if r["ingestion"]["resyncs"] == 1
               and r["ingestion"]["venue_state"] == "connected"]
    assert rebuilt, [r["ingestion"] for r in after]
    assert rebuilt[0]["generated_at"] - injected_ms <= 5000 + 250
    assert rebuilt[-1]["ingestion"]["status"] == "ok"
    end_ms = max(r["generated_at"] for r in reports)
    # the other 19: every report from the gap to the end says ok, no resync, ids moving
    for symbol in symbols:
        if symbol == gapped:
            continue
        window = [r for r in by_symbol[symbol] if injected_ms <= r["generated_at"] <= end_ms]
        assert len(window) >= 8, (symbol, len(window))
        assert all(r["ingestion"]["status"] == "ok" and r["ingestion"]["resyncs"] == 0
                   for r in window), (symbol, [r["ingestion"] for r in window])
        ids = [r["ingestion"]["last_update_id"] for r in window]
        assert ids[-1] > ids[0], symbol


# ---------------------------------------------------------------------------
# 2. 300 symbols reconnecting at once
# ---------------------------------------------------------------------------


def test_300_symbols_reconnecting_at_once_never_trip_the_weight_limit(spot_recording):
    """The simulator allows exactly the client's own budget (2,400 per minute, fixed
    windows as Binance counts them), and the resync storm needs more than that: the
    scheduler must hold requests back, and any request outside the budget would be
    answered 429."""

    async def scenario():
        budget = 2400
        # half the recorded rate: simulator and client share this process, and on a
        # busy machine 300 symbols at full rate outrun one core; the rate has no
        # bearing on the REST weight, which is what this test is about
        config = sim_config(spot_recording, clone=300, speed=0.5, loop=True,
                            weight_per_minute=budget)
        async with ExchangeSimulator(config) as sim:
            symbols = sim.symbols
            assert len(symbols) == 300
            # the client stays away 1-2 s after the drop (its first backoff), so every
            # symbol misses updates and must resync; a reconnect quick enough to catch
            # the chain where it broke rightly resyncs nothing
            venue = venue_for(sim, snapshot_limit=100, snapshot_weight_per_minute=budget,
                              backoff_initial_s=2.0, backoff_max_s=2.0)
            venue.subscribe(symbols)
            host = Collector()
            async with running(venue, host):
                await wait_for(lambda: all(host.snapshots[s] >= 1 for s in symbols),
                               timeout_s=30, what="all 300 symbols synced")
                initial_weight = venue.stats.snapshot_weight_used
                sim.drop_connections()
                await wait_for(lambda: venue.stats.reconnects >= 1, what="the reconnect")
                await wait_for(lambda: all(host.snapshots[s] >= 2 for s in symbols),
                               timeout_s=120, what="all 300 symbols resynced",
                               detail=lambda: progress(venue, host, symbols))
                # a liveness bound: 300 symbols' backlog drains slowly on a loaded machine
                await synced_at_sim(venue, host, sim, symbols[:3], timeout_s=90)
                for symbol in symbols[:3]:
                    assert_books_equal(host, sim, symbol, 100)
            stats, served = venue.stats, sim.stats
            assert served.disconnects["fault_drop"] >= 1
            assert served.http_429 == 0 and served.http_418 == 0
            assert stats.rate_limited == 0 and stats.banned == 0
            # the storm needed more than one minute's budget: the limit was binding
            assert stats.snapshot_weight_used > budget
            assert stats.snapshot_weight_used >= initial_weight + 300 * 5
            for symbol in symbols:  # each went down with the connection, then resynced
                states = host.states(symbol)
                assert states[0] is VenueState.DOWN and VenueState.RESYNCING in states, symbol

    run(scenario(), timeout_s=360.0)


# ---------------------------------------------------------------------------
# 3. the initial sync, over real sockets
# ---------------------------------------------------------------------------


class Tap:
    """Every frame and snapshot body the client received for a symbol, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[int, dict]] = []  # (recv_ns, decoded JSON)

    def __call__(self, _symbol: str, recv_ns: int, raw: bytes) -> None:
        self.items.append((recv_ns, json.loads(raw)))

    def first_snapshot(self) -> tuple[int, int]:
        """``(position in the tap, lastUpdateId)`` of the first snapshot body."""
        return next((i, body["lastUpdateId"]) for i, (_, body) in enumerate(self.items)
                    if "lastUpdateId" in body)

    def depth(self) -> list[tuple[int, dict]]:
        """``(position, data)`` of every depth diff."""
        return [(i, body["data"]) for i, (_, body) in enumerate(self.items)
                if "@depth" in body.get("stream", "")]


def _first_sync(host: Collector, symbol: str) -> tuple[BookSnapshot, list]:
    """The first snapshot emitted for ``symbol`` and the deltas right behind it."""
    start = next(i for i, e in enumerate(host.events)
                 if isinstance(e, BookSnapshot) and e.symbol == symbol)
    deltas = [e for e in host.events[start + 1:]
              if type(e).__name__ == "BookDelta" and e.symbol == symbol]
    return host.events[start], deltas


def test_initial_sync_with_the_bridging_event_before_the_snapshot(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording)) as sim:
            sim.delay_snapshots(0.8)  # the book is cut on arrival, the answer held back
            venue = venue_for(sim, snapshot_limit=5000)
            venue.subscribe(["BTCUSDT"])
            host, tap = Collector(), Tap()
            async with running(venue, host, tap=tap):
                await wait_for(lambda: host.deltas["BTCUSDT"] > 5, what="sync")
                await synced_at_sim(venue, host, sim, ["BTCUSDT"])
                assert_books_equal(host, sim, "BTCUSDT", 5000)
            at, last = tap.first_snapshot()
            diffs = tap.depth()
            bridging = [(i, d) for i, d in diffs if d["U"] <= last + 1 <= d["u"]]
            assert len(bridging) == 1
            position, bridge = bridging[0]
            assert position < at  # the bridging diff was received before the snapshot
            assert any(i < at and d["u"] <= last for i, d in diffs)  # and older ones
            snapshot, deltas = _first_sync(host, "BTCUSDT")
            assert snapshot.last_update_id == last
            # the bridging diff was applied first, from the buffer, with the snapshot's
            # receive time; nothing at or before lastUpdateId was applied
            assert (deltas[0].first_update_id, deltas[0].last_update_id) == \
                (bridge["U"], bridge["u"])
            assert deltas[0].recv_ns == snapshot.recv_ns
            assert all(d.last_update_id > last for d in deltas)
            stats = venue.stats
            assert stats.stale_snapshots == 0 and stats.gaps == 0 and stats.resyncs == 0
            assert stats.snapshots_applied == 1

    run(scenario())


def test_initial_sync_drops_the_event_ending_exactly_at_last_update_id(spot_recording):
    """The simulator cuts a spot snapshot at a diff boundary: the diff received last
    before the request ends exactly at ``lastUpdateId``; it must be dropped and the
    next one (``U == lastUpdateId + 1``) bridge."""

    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording)) as sim:
            venue = venue_for(sim, snapshot_limit=5000)
            venue.subscribe(["BTCUSDT"])
            host, tap = Collector(), Tap()
            async with running(venue, host, tap=tap):
                await wait_for(lambda: host.deltas["BTCUSDT"] > 5, what="sync")
                await synced_at_sim(venue, host, sim, ["BTCUSDT"])
                assert_books_equal(host, sim, "BTCUSDT", 5000)
            at, last = tap.first_snapshot()
            diffs = tap.depth()
            ending = [(i, d) for i, d in diffs if d["u"] == last]
            assert len(ending) == 1
            assert ending[0][0] < at  # buffered before the snapshot arrived
            snapshot, deltas = _first_sync(host, "BTCUSDT")
            assert snapshot.last_update_id == last
            assert deltas[0].first_update_id == last + 1  # the next diff bridged
            assert all(d.last_update_id > last for d in deltas)  # the one at L was dropped
            emitted = {(d.first_update_id, d.last_update_id) for d in deltas}
            assert (ending[0][1]["U"], last) not in emitted
            stats = venue.stats
            assert stats.stale_snapshots == 0 and stats.gaps == 0 and stats.resyncs == 0
            assert stats.snapshots_applied == 1

    run(scenario())
