"""Keeping a streaming WebSocket alive — venue-neutral.

Nothing in this module knows about any exchange: it is written so it can move into
marketcore's core and serve every venue. A venue supplies a :class:`SessionHandler`
(what URL to open, what to send once open, what to do with each frame, how to hand
over from an old connection to its replacement); :class:`FeedConnection` does the rest:

* **reconnect** with capped, jittered exponential backoff (:class:`Backoff`) that
  resets once a connection has proved healthy (it stayed up ``stable_after_s``);
* **several endpoints** with a circuit breaker each (:class:`EndpointPool`): an
  endpoint that fails ``failures`` times in a row is skipped for ``cooldown_s``;
* a **watchdog**: a connection that delivers no frame for ``watchdog_s`` is closed and
  reopened (a silent TCP connection can look open for minutes);
* planned **rotation** (connection age, or :meth:`FeedConnection.rotate` on a server's
  notice): the replacement is opened *before* the old one is closed, the handler's
  ``handover`` decides when the new one carries everything, then the old one closes;
* **outgoing message rate**: every message a session sends goes through its
  :class:`MessageRate` (a sliding window), because exchanges disconnect clients that
  send too fast.

The library answers pings by itself; the client sends no pings of its own
(``ping_interval=None``) since those count against exchanges' message limits and the
watchdog already detects dead connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from marketcore_venue_binance.tasks import stop_tasks

__all__ = [
    "SHUTDOWN",
    "Backoff",
    "ConnectionCounters",
    "ConnectionPolicy",
    "EndpointPool",
    "FeedConnection",
    "MessageRate",
    "Session",
    "SessionHandler",
]

log = logging.getLogger("marketcore.connection")

SHUTDOWN = "shutdown"
"""The ``reason`` of :meth:`SessionHandler.session_ended` when the connection itself is
being stopped (nothing was lost that anyone should be told about)."""


class Backoff:
    """Capped exponential backoff with "equal jitter": the n-th delay is drawn from
    ``[d/2, d]`` with ``d = min(max_s, initial_s * factor**n)`` — never zero (no
    reconnect storms), never synchronised across clients."""

    def __init__(self, initial_s: float, max_s: float, factor: float = 2.0, *,
                 rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.initial_s * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0


@attrs.define
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


class EndpointPool:
    """Base URLs tried in order, each behind a circuit breaker.

    :meth:`pick` returns the preferred endpoint whose breaker is closed (or whose
    cool-down has passed: half-open, one more try). When every breaker is open it
    returns the endpoint that reopens first and how long to wait for it.
    """

    def __init__(self, urls: tuple[str, ...] | list[str], *, failures: int = 3,
                 cooldown_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 on_open: Callable[[str], None] | None = None) -> None:
        if not urls:
            raise ValueError("an endpoint pool needs at least one URL")
        self.urls = tuple(urls)
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.on_open = on_open
        self._breakers = {url: _Breaker() for url in self.urls}
        self._preferred = 0

    def pick(self) -> tuple[str, float]:
        """``(url, wait_s)``: the endpoint to use next and how long to wait first."""
        now = self.clock()
        count = len(self.urls)
        for offset in range(count):
            url = self.urls[(self._preferred + offset) % count]
            if self._breakers[url].open_until <= now:
                return url, 0.0
        url = min(self.urls, key=lambda u: self._breakers[u].open_until)
        return url, max(0.0, self._breakers[url].open_until - now)

    def failed(self, url: str) -> bool:
        """Count a failure; returns True when it opened the breaker."""
        breaker = self._breakers[url]
        breaker.failures += 1
        if breaker.failures >= self.failures:
            breaker.failures = 0
            breaker.open_until = self.clock() + self.cooldown_s
            if self.urls[self._preferred % len(self.urls)] == url:
                self._preferred = (self._preferred + 1) % len(self.urls)
            if self.on_open is not None:
                self.on_open(url)
            return True
        return False

    def succeeded(self, url: str) -> None:
        breaker = self._breakers[url]
        breaker.failures = 0
        breaker.open_until = 0.0

    def is_open(self, url: str) -> bool:
        return self._breakers[url].open_until > self.clock()


class MessageRate:
    """At most ``per_second`` messages in any rolling window of ``window_s`` (slightly
    over one second, so that clock granularity on either side cannot squeeze one more
    into a server's one-second window). Waiters are served in order."""

    def __init__(self, per_second: float, *, window_s: float = 1.05,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = max(1, math.floor(per_second))
        self.window_s = window_s
        self.clock = clock
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    def delay(self) -> float:
        """Seconds until one more message may go (0 when it may go now)."""
        now = self.clock()
        sent = self._sent
        while sent and sent[0] <= now - self.window_s:
            sent.popleft()
        if len(sent) < self.limit:
            return 0.0
        return sent[0] + self.window_s - now

    async def acquire(self) -> None:
        async with self._lock:
            while (wait := self.delay()) > 0:
                await asyncio.sleep(wait)
            self._sent.append(self.clock())


@attrs.frozen
class ConnectionPolicy:
    """How a :class:`FeedConnection` behaves; all durations in seconds."""

    watchdog_s: float = 30.0
    rotate_after_s: float = 23 * 3600.0
    handover_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_factor: float = 2.0
    stable_after_s: float = 10.0
    messages_per_second: float = 4.0
    max_message_bytes: int = 1 << 22


@attrs.define
class ConnectionCounters:
    """What happened to the connections; a venue may pass its own stats object (any
    object with these integer attributes)."""

    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    watchdog_timeouts: int = 0
    rotations: int = 0
    messages_sent: int = 0


class Session:
    """One open WebSocket of a :class:`FeedConnection`."""

    def __init__(self, number: int, endpoint: str, url: str, websocket: Any,
                 rate: MessageRate, counters: Any, connection: FeedConnection) -> None:
        self.number = number
        self.endpoint = endpoint
        self.url = url
        self.websocket = websocket
        self.rate = rate
        self.counters = counters
        self.connection = connection
        self.opened_at = time.monotonic()
        self.last_frame_at = self.opened_at
        self.frames = 0
        self.closed = False
        self.state: dict[str, Any] = {}
        """Room for the handler's own per-session bookkeeping."""

    async def send(self, message: str | bytes) -> None:
        """Send one message, waiting for the rate limit."""
        await self.rate.acquire()
        await self.websocket.send(message)
        self.counters.messages_sent += 1

    def __repr__(self) -> str:
        return f"<Session {self.connection.name}#{self.number} {self.endpoint}>"


class SessionHandler(Protocol):
    """The venue's side of a :class:`FeedConnection`."""

    def url(self, endpoint: str) -> str:
        """The full URL to open on ``endpoint`` (a base URL of the pool)."""
        ...

    def session_started(self, session: Session, replacing: Session | None) -> None:
        """A session is open; its frames may arrive from now on. ``replacing`` is the
        session it will replace (rotation), else ``None``."""
        ...

    async def session_ready(self, session: Session) -> None:
        """Send what must be sent once open (subscriptions). Runs while frames flow."""
        ...

    def frame(self, session: Session, recv_ns: int, raw: bytes) -> None:
        """One received message; ``recv_ns`` is the local receive time."""
        ...

    def session_ended(self, session: Session, reason: str, replaced: bool) -> None:
        """A session is closed; ``replaced`` when a rotation retired it."""
        ...

    async def handover(self, old: Session, new: Session) -> None:
        """Return once ``new`` carries everything ``old`` did (bounded by the policy's
        ``handover_timeout_s``)."""
        ...


def _retryable(error: BaseException) -> bool:
    """Errors worth retrying: network, handshake, HTTP 5xx/429; not programming errors."""
    return not isinstance(error, (TypeError, AttributeError, NameError, AssertionError))


def _abort(session: Session) -> None:
    """Drop the session's socket at once, without a close handshake."""
    transport = getattr(session.websocket, "transport", None)
    if transport is not None:
        transport.abort()


class FeedConnection:
    """One logical streaming connection, kept alive over successive sessions.

    ``run()`` owns every task it starts and cancels them when it is cancelled.
    ``connect`` opens a WebSocket (``websockets.asyncio.client.connect`` by default);
    ``retryable(error)`` decides whether a failure to connect is retried or raised.
    """

    def __init__(self, name: str, handler: SessionHandler, endpoints: EndpointPool,
                 policy: ConnectionPolicy = ConnectionPolicy(), *,
                 counters: Any = None, connect: Callable[..., Any] | None = None,
                 retryable: Callable[[BaseException], bool] = _retryable,
                 rng: random.Random | None = None) -> None:
        self.name = name
        self.handler = handler
        self.endpoints = endpoints
        self.policy = policy
        self.counters = counters if counters is not None else ConnectionCounters()
        self._connect = connect
        self._retryable = retryable
        self._backoff = Backoff(policy.backoff_initial_s, policy.backoff_max_s,
                                policy.backoff_factor, rng=rng)
        self._wake = asyncio.Event()
        self._rotate_reason: str | None = None
        self._numbers = 0
        self._readers: dict[Session, asyncio.Task[None]] = {}
        self._ready_tasks: set[asyncio.Task[None]] = set()
        self.session: Session | None = None
        """The session currently in use (``None`` while reconnecting)."""
        self.sessions_opened = 0

    # ----------------------------------------------------------------- control

    def rotate(self, reason: str) -> None:
        """Replace the current session soon, overlapping old and new (e.g. the server
        announced it will close)."""
        if self._rotate_reason is None:
            self._rotate_reason = reason
        self._wake.set()

    # ----------------------------------------------------------------- run

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            for task in [*self._readers.values(), *self._ready_tasks]:
                task.cancel()
            try:
                for session in list(self._readers):
                    await self._close(session, SHUTDOWN, replaced=False)
            finally:  # cancelled again meanwhile: drop what is left, own every task
                for session in self._readers:
                    _abort(session)
                await stop_tasks(*self._readers.values(), *self._ready_tasks)
                self._readers.clear()

    async def _run(self) -> None:
        current: Session | None = None
        while True:
            if current is None:
                current = await self._open_until_up(replacing=None)
            reason = await self._watch(current)
            if reason.startswith("rotate"):
                current = await self._rotate(current, reason)
                continue
            lived = time.monotonic() - current.opened_at
            healthy = lived >= self.policy.stable_after_s or current.frames > 0
            await self._close(current, reason, replaced=False)
            if healthy:
                self.endpoints.succeeded(current.endpoint)
            else:
                self.endpoints.failed(current.endpoint)
            if lived >= self.policy.stable_after_s:
                self._backoff.reset()
            log.info("%s: session %s ended (%s); reconnecting", self.name, current.number,
                     reason, extra={"component": "connection"})
            current = None
            if self._rotate_reason is not None:
                # the server announced the close: reconnect at once, no backoff
                self._rotate_reason = None
                continue
            await asyncio.sleep(self._backoff.next_delay())

    async def _rotate(self, old: Session, reason: str) -> Session:
        """Open the replacement, let the handler switch over, close the old one."""
        self._rotate_reason = None
        try:
            new = await self._open(replacing=old)
        except Exception as error:
            if not self._retryable(error):
                raise
            log.warning("%s: could not open a replacement (%s); keeping the old session",
                        self.name, error, extra={"component": "connection"})
            self.counters.connect_failures += 1
            await asyncio.sleep(self._backoff.next_delay())
            if not old.closed and reason.startswith("rotate"):
                self._rotate_reason = reason  # try again at the next watch
                self._wake.set()
            return old
        handover = asyncio.create_task(self.handler.handover(old, new))
        readers = [r for r in (self._readers.get(old), self._readers.get(new)) if r is not None]
        try:
            await asyncio.wait({handover, *readers}, timeout=self.policy.handover_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            completed = handover.done()
            await stop_tasks(handover)
        new_reader = self._readers.get(new)
        if new_reader is None or new_reader.done():  # the replacement died: keep the old one
            await self._close(new, self._end_reason(new_reader) if new_reader else "closed",
                              replaced=False)
            self.counters.connect_failures += 1
            return old
        if not completed:
            log.warning("%s: handover incomplete after %.1f s; closing the old session",
                        self.name, self.policy.handover_timeout_s,
                        extra={"component": "connection"})
        self.counters.rotations += 1
        await self._close(old, reason, replaced=True)
        self.session = new
        return new

    async def _open_until_up(self, replacing: Session | None) -> Session:
        while True:
            try:
                return await self._open(replacing=replacing)
            except Exception as error:
                if not self._retryable(error):
                    raise
                self.counters.connect_failures += 1
                log.info("%s: connect failed (%s)", self.name, error,
                         extra={"component": "connection"})
                await asyncio.sleep(self._backoff.next_delay())

    async def _open(self, replacing: Session | None) -> Session:
        endpoint, wait_s = self.endpoints.pick()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        url = self.handler.url(endpoint)
        try:
            websocket = await self._open_websocket(url)
        except Exception:
            self.endpoints.failed(endpoint)
            raise
        self._numbers += 1
        session = Session(self._numbers, endpoint, url, websocket,
                          MessageRate(self.policy.messages_per_second), self.counters, self)
        self.counters.connects += 1
        if replacing is None and self.sessions_opened:
            self.counters.reconnects += 1
        self.sessions_opened += 1
        self.handler.session_started(session, replacing)
        self._readers[session] = asyncio.create_task(self._read(session),
                                                     name=f"{self.name}#{session.number}")
        ready = asyncio.create_task(self._ready(session))
        self._ready_tasks.add(ready)
        ready.add_done_callback(self._ready_tasks.discard)
        if replacing is None:
            self.session = session
        return session

    async def _ready(self, session: Session) -> None:
        try:
            await self.handler.session_ready(session)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a failed subscribe: the session is useless
            log.warning("%s: setting up session %s failed: %s", self.name, session.number,
                        error, extra={"component": "connection"})
            reader = self._readers.get(session)
            if reader is not None:
                reader.cancel()

    async def _open_websocket(self, url: str) -> Any:
        if self._connect is not None:
            return await self._connect(url)
        from websockets.asyncio.client import connect

        return await connect(url, open_timeout=self.policy.connect_timeout_s,
                             ping_interval=None, close_timeout=self.policy.close_timeout_s,
                             max_size=self.policy.max_message_bytes, compression=None)

    async def _read(self, session: Session) -> None:
        websocket = session.websocket
        handler = self.handler
        try:
            while True:
                raw = await websocket.recv(decode=False)
                session.last_frame_at = time.monotonic()
                session.frames += 1
                try:
                    handler.frame(session, time.time_ns(), raw)
                except Exception:  # a handler bug must not kill the connection
                    log.exception("%s: frame handler failed", self.name)
        finally:
            self._wake.set()

    async def _watch(self, session: Session) -> str:
        """Wait until the session ends, goes silent, or is due for rotation."""
        policy = self.policy
        reader = self._readers[session]
        while True:
            self._wake.clear()
            if reader.done():
                return self._end_reason(reader)
            now = time.monotonic()
            silent = now - session.last_frame_at
            if silent >= policy.watchdog_s:
                self.counters.watchdog_timeouts += 1
                return f"no frame for {silent:.1f} s"
            if self._rotate_reason is not None:
                return f"rotate: {self._rotate_reason}"
            age = now - session.opened_at
            if age >= policy.rotate_after_s:
                return f"rotate: connection age {age:.0f} s"
            timeout = min(policy.watchdog_s - silent, policy.rotate_after_s - age)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result
            # when the wait ends in the same step as a cancellation, losing the latter
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout, 0.001)):
                    await self._wake.wait()

    @staticmethod
    def _end_reason(reader: asyncio.Task[None]) -> str:
        if reader.cancelled():
            return "closed"
        error = reader.exception()
        if error is None:
            return "closed"
        code = getattr(getattr(error, "rcvd", None), "code", None)
        return f"{type(error).__name__}{f' {code}' if code else ''}: {error}"[:200]

    async def _close(self, session: Session, reason: str, *, replaced: bool) -> None:
        if session.closed:
            return
        session.closed = True
        try:
            await stop_tasks(self._readers.pop(session, None))
            with contextlib.suppress(Exception):  # TimeoutError included
                async with asyncio.timeout(self.policy.close_timeout_s):
                    await session.websocket.close()
        finally:
            # A close handshake that timed out or was cancelled leaves the socket open
            # (and, with nobody reading any more, possibly paused with a full queue, so
            # it never sees the server's close): drop it. After a clean close the
            # socket is gone already and this does nothing.
            _abort(session)
            if self.session is session:
                self.session = None
            try:
                self.handler.session_ended(session, reason, replaced)
            except Exception:
                log.exception("%s: session_ended handler failed", self.name)
