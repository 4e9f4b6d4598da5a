"""The venue-neutral connection keeper, against a small WebSocket server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time

import pytest
from conftest import wait_for
from marketcore_venue_binance.connection import (
    Backoff,
    ConnectionPolicy,
    EndpointPool,
    FeedConnection,
    MessageRate,
)
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


# ---------------------------------------------------------------------------
# Backoff, breaker, message rate
# ---------------------------------------------------------------------------


def test_backoff_grows_jittered_up_to_the_cap_and_resets():
    backoff = Backoff(0.5, 4.0, 2.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert 0.25 <= backoff.next_delay() <= 0.5


def test_breaker_skips_a_failing_endpoint_for_its_cooldown():
    now = [0.0]
    opened = []
    pool = EndpointPool(("a", "b"), failures=2, cooldown_s=10.0, clock=lambda: now[0],
                        on_open=opened.append)
    assert pool.pick() == ("a", 0.0)
    assert not pool.failed("a")
    assert pool.failed("a")  # second failure in a row opens it
    assert opened == ["a"] and pool.is_open("a")
    assert pool.pick() == ("b", 0.0)
    pool.failed("b")
    pool.failed("b")
    url, wait = pool.pick()  # everything open: the one that reopens first, and how long
    assert url == "a" and wait == pytest.approx(10.0)
    now[0] = 10.5
    assert pool.pick()[1] == 0.0  # half-open: tried again
    pool.succeeded("a")
    assert not pool.is_open("a")


def test_a_success_resets_the_failure_count():
    pool = EndpointPool(("a",), failures=2, cooldown_s=10.0)
    pool.failed("a")
    pool.succeeded("a")
    assert not pool.failed("a")


def test_message_rate_never_exceeds_its_limit_in_any_window():
    async def scenario():
        rate = MessageRate(3, window_s=0.2)
        sent = []
        for _ in range(10):
            await rate.acquire()
            sent.append(time.monotonic())
        for i, t in enumerate(sent):
            assert sum(1 for u in sent[i:] if u - t < 0.2) <= 3

    run(scenario())


# ---------------------------------------------------------------------------
# FeedConnection against a real server
# ---------------------------------------------------------------------------


class Recorder:
    """A SessionHandler that records what happened, in order."""

    def __init__(self, subscribe: list[str] | None = None) -> None:
        self.log: list[tuple[str, int]] = []
        self.frames: list[tuple[int, bytes]] = []
        self.subscribe = subscribe or []
        self.handover_ok = True

    def url(self, endpoint: str) -> str:
        return endpoint + "/feed"

    def session_started(self, session, replacing) -> None:
        self.log.append(("started" if replacing is None else "started-replacement",
                         session.number))

    async def session_ready(self, session) -> None:
        for message in self.subscribe:
            await session.send(message)

    def frame(self, session, recv_ns, raw) -> None:
        self.frames.append((session.number, raw))

    def session_ended(self, session, reason, replaced) -> None:
        self.log.append(("replaced" if replaced else "ended", session.number))

    async def handover(self, old, new) -> None:
        if not self.handover_ok:
            await asyncio.sleep(3600)


@contextlib.asynccontextmanager
async def feed_server(behaviour):
    """A WebSocket server on a free port; ``behaviour(ws, n)`` serves connection ``n``."""
    counter = [0]
    received: list[str] = []

    async def handler(ws):
        counter[0] += 1
        await behaviour(ws, counter[0], received)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}", counter, received


async def ticking(ws, n, received):
    """Send a frame every 20 ms, record what the client sends."""
    async def read():
        async for message in ws:
            received.append(message)

    reader = asyncio.create_task(read())
    try:
        i = 0
        while True:
            i += 1
            await ws.send(f'{{"n":{n},"i":{i}}}')
            await asyncio.sleep(0.02)
    except ConnectionClosed:
        pass
    finally:
        reader.cancel()


def quick(**changes) -> ConnectionPolicy:
    return ConnectionPolicy(**{"backoff_initial_s": 0.05, "backoff_max_s": 0.2,
                               "stable_after_s": 0.1, "handover_timeout_s": 1.0, **changes})


def test_sends_through_the_rate_limit_and_receives_frames():
    async def scenario():
        async with feed_server(ticking) as (url, _, received):
            handler = Recorder(subscribe=["a", "b", "c"])
            connection = FeedConnection("t", handler, EndpointPool((url,)), quick())
            task = asyncio.create_task(connection.run())
            await wait_for(lambda: len(handler.frames) > 5 and len(received) == 3)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert received == ["a", "b", "c"]
            assert connection.counters.messages_sent == 3
            assert handler.log[-1] == ("ended", 1)

    run(scenario())


def test_reconnects_when_the_server_closes():
    async def closes_first(ws, n, received):
        if n == 1:
            await ws.send('{"hello":1}')
            await ws.close()
            return
        await ticking(ws, n, received)

    async def scenario():
        async with feed_server(closes_first) as (url, _, _):
            handler = Recorder()
            connection = FeedConnection("t", handler, EndpointPool((url,)), quick())
            task = asyncio.create_task(connection.run())
            await wait_for(lambda: any(n == 2 for n, _ in handler.frames))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert connection.counters.reconnects == 1
            assert handler.log[:3] == [("started", 1), ("ended", 1), ("started", 2)]

    run(scenario())


def test_watchdog_reopens_a_silent_connection():
    async def silent_first(ws, n, received):
        if n == 1:
            await ws.wait_closed()  # open, but nothing arrives
            return
        await ticking(ws, n, received)

    async def scenario():
        async with feed_server(silent_first) as (url, _, _):
            handler = Recorder()
            connection = FeedConnection("t", handler, EndpointPool((url,)),
                                        quick(watchdog_s=0.3))
            task = asyncio.create_task(connection.run())
            await wait_for(lambda: any(n == 2 for n, _ in handler.frames))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert connection.counters.watchdog_timeouts == 1

    run(scenario())


def test_rotation_opens_the_new_session_before_closing_the_old():
    async def scenario():
        async with feed_server(ticking) as (url, _, _):
            handler = Recorder()
            connection = FeedConnection("t", handler, EndpointPool((url,)),
                                        quick(rotate_after_s=0.3))
            task = asyncio.create_task(connection.run())
            await wait_for(lambda: connection.counters.rotations >= 2)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log = handler.log
            assert log[:5] == [("started", 1), ("started-replacement", 2), ("replaced", 1),
                               ("started-replacement", 3), ("replaced", 2)]
            assert connection.counters.reconnects == 0

    run(scenario())


def test_rotation_on_request_and_a_stuck_handover_is_bounded():
    async def scenario():
        async with feed_server(ticking) as (url, _, _):
            handler = Recorder()
            handler.handover_ok = False
            connection = FeedConnection("t", handler, EndpointPool((url,)),
                                        quick(handover_timeout_s=0.2))
            task = asyncio.create_task(connection.run())
            await wait_for(lambda: handler.frames)
            connection.rotate("serverShutdown")
            await wait_for(lambda: ("replaced", 1) in handler.log)
            await wait_for(lambda: any(n == 2 for n, _ in handler.frames[-3:]))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert connection.counters.rotations == 1

    run(scenario())


def test_a_dead_endpoint_is_skipped_behind_its_breaker():
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        dead = f"ws://127.0.0.1:{probe.getsockname()[1]}"

    async def scenario():
        async with feed_server(ticking) as (url, _, _):
            opened = []
            pool = EndpointPool((dead, url), failures=1, cooldown_s=60.0, on_open=opened.append)
            handler = Recorder()
            connection = FeedConnection("t", handler, pool, quick())
            task = asyncio.create_task(connection.run())
            await wait_for(lambda: len(handler.frames) > 3)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert opened == [dead]
            assert connection.counters.connect_failures == 1
            assert pool.pick() == (url, 0.0)

    run(scenario())
