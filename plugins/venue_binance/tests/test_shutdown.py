"""Stopping: cancelling the task that runs ``venue.run`` ends it at any moment.

The node stops the venue by cancelling the task running ``venue.run(emit)`` and
awaiting it. A cancellation that some inner wait swallows leaves that task running for
ever and the node never exits; an unbounded wait in the teardown (a REST answer the
simulator holds back, a socket that never finished its handshake) has the same effect.
Each test cancels at one moment of the venue's life, with the bundled simulator inside
``run`` (``simulate``) as in the default profile, and checks that the task ends, as
cancelled, and that no task and no recording-loading thread is left behind.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable

import pytest
from conftest import FAST, Collector
from marketcore_venue_binance import BinanceOptions, BinanceVenue
from marketcore_venue_binance.simulator import ExchangeSimulator, SimulatorConfig
from marketcore_venue_binance.tasks import stop_tasks

STOP_BOUND_S = 10.0
"""Liveness bound for a stop (a hang fails the test; how fast it stops is not asserted)."""


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``predicate`` on every turn of the loop, so that a short-lived state (a
    connection being set up) is caught before it passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


def loading_threads() -> list[int]:
    """Threads now inside the simulator's ``load_recordings``."""
    return [ident for ident, frame in sys._current_frames().items()
            if ident != threading.get_ident() and _in_load(frame)]


def _in_load(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "load_recordings":
            return True
        frame = frame.f_back
    return False


async def stop_and_check(task: asyncio.Task) -> None:
    """Cancel ``task`` as the node does; it must end, cancelled, leaving nothing running."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, STOP_BOUND_S)
    assert task.cancelled()
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not left, f"tasks left running: {[t.get_name() for t in left]}"
    assert not loading_threads(), "a thread is still loading the recording"


def simulated_venue(recording) -> BinanceVenue:
    venue = BinanceVenue(BinanceOptions(simulate=(str(recording),), simulate_speed=10.0,
                                        **FAST))
    venue.subscribe(["BTCUSDT"])
    return venue


def test_cancel_while_the_simulator_loads_the_recording(spot_recording):
    async def scenario():
        venue = simulated_venue(spot_recording)
        task = asyncio.create_task(venue.run(Collector()))
        await until(lambda: bool(loading_threads()), "the recording to be loading")
        assert venue.client is None
        await stop_and_check(task)
        assert venue.simulator is None

    asyncio.run(scenario())


def test_cancel_before_the_first_snapshot(spot_recording):
    async def scenario():
        venue = simulated_venue(spot_recording)
        collector = Collector()
        task = asyncio.create_task(venue.run(collector))
        await until(lambda: venue.client is not None, "the client to start")
        assert collector.snapshots["BTCUSDT"] == 0
        await stop_and_check(task)
        assert venue.client is None and venue.simulator is None

    asyncio.run(scenario())


def test_cancel_while_a_snapshot_request_is_in_flight(spot_recording):
    async def scenario():
        venue = simulated_venue(spot_recording)
        collector = Collector()
        task = asyncio.create_task(venue.run(collector))
        await until(lambda: venue.simulator is not None, "the simulator to start")
        sim = venue.simulator
        sim.delay_snapshots(60.0)  # the answer is held: the request stays in flight
        await until(lambda: sim.stats.snapshots_served >= 1, "the snapshot request")
        assert venue.client.scheduler.pending() >= 1
        assert collector.snapshots["BTCUSDT"] == 0
        await stop_and_check(task)
        assert sim.stats.connections_open == 0

    asyncio.run(scenario())


def test_cancel_after_sync(spot_recording):
    async def scenario():
        venue = simulated_venue(spot_recording)
        collector = Collector()
        task = asyncio.create_task(venue.run(collector))
        await until(lambda: collector.deltas["BTCUSDT"] > 5, "the book to be in sync")
        sim = venue.simulator
        await stop_and_check(task)
        assert sim.stats.connections_open == 0
        assert venue.stats.gaps == 0

    asyncio.run(scenario())


def test_cancel_while_a_connection_is_torn_down(spot_recording):
    """The node's shutdown: the coordinator releases the symbols (the venue starts
    closing their connection) and the venue task is cancelled right after."""
    async def scenario():
        venue = simulated_venue(spot_recording)
        collector = Collector()
        task = asyncio.create_task(venue.run(collector))
        await until(lambda: collector.deltas["BTCUSDT"] > 5, "the book to be in sync")
        client = venue.client
        venue.unsubscribe(["BTCUSDT"])
        await until(lambda: not client.slots, "the connection's teardown to begin")
        assert client.plan.slots == {} and not task.done()
        await stop_and_check(task)

    asyncio.run(scenario())


# ---------------------------------------------------------------------------
# The pieces: stopping a child task, stopping the simulator
# ---------------------------------------------------------------------------


def test_a_cancellation_during_a_childs_cleanup_is_not_lost():
    """The caller is cancelled while it waits for a child to clean up: the child's
    cleanup runs to its end, then the caller is cancelled, not resumed."""
    async def scenario():
        cleaned = asyncio.Event()
        release = asyncio.Event()

        async def child():
            try:
                await asyncio.Event().wait()
            finally:
                await release.wait()  # a cleanup that takes a while (a close handshake)
                cleaned.set()

        async def parent(worker):
            await stop_tasks(worker)
            return "resumed"

        worker = asyncio.create_task(child())
        await asyncio.sleep(0)
        caller = asyncio.create_task(parent(worker))
        await until(lambda: worker.cancelling() > 0, "the child to be cancelled")
        caller.cancel()
        await asyncio.sleep(0.05)
        assert not caller.done() and not cleaned.is_set()  # still waiting for the child
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, STOP_BOUND_S)
        assert cleaned.is_set() and worker.cancelled()

    asyncio.run(scenario())


def test_simulator_stops_with_a_socket_that_never_sent_its_request(spot_recording):
    async def scenario():
        sim = ExchangeSimulator(SimulatorConfig(recordings=(str(spot_recording),)))
        await sim.start()
        port = int(sim.rest_url.rsplit(":", 1)[1])
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await until(lambda: len(sim._sockets) == 1, "the server to accept the socket")
        await asyncio.wait_for(sim.stop(), STOP_BOUND_S)
        writer.close()
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not left, f"tasks left running: {[t.get_name() for t in left]}"

    asyncio.run(scenario())
