"""The local Binance: one websockets server on loopback for WebSocket streams and REST.

REST GETs are answered from websockets' ``process_request`` hook, so one port and
one library serve both, as one Binance host name does. The replay runs in one
task: it applies the timeline's due events, lets the :class:`Engine` encode each
event once per served symbol, then writes every connection's pending frames in a
single ``transport.write`` (pre-framed bytes: websockets' per-message ``send``
costs more than the whole encode, and there is no compression to negotiate —
the server offers none).

Binance's rules are enforced (see :mod:`.limits`): 1024 streams and 5 incoming
messages per second per connection (pings and pongs count: websockets' frame
hook is where they are seen), 300 connection attempts per 5 minutes per IP, the
REST weight budget with 429 then 418, pings every 20 s, a client that does not
pong within a minute dropped, the 24 h connection lifetime (``serverShutdown``
first). A connection whose send buffer exceeds ``max_send_buffer_bytes`` is
dropped as a slow client; at ``speed`` 0 the replay waits for readers instead.

Faults on command — in process or over HTTP (``POST /_sim/fault?kind=…``; GET
too, since websockets before 17 parses only GET requests): dropped connections,
sequence gaps, malformed frames, stalls, slow snapshots, server shutdown.
``GET /_sim/stats`` and ``GET /_sim/book?symbol=…`` serve the counters and the
simulator's own book. The ``/_sim`` endpoints have no authentication: keep the
simulator on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import threading
import time
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from ..tasks import finish, stop_tasks
from . import encode
from .config import SimulatorConfig
from .engine import Engine, Served, Slot
from .faults import MALFORMED_KINDS, malformed_payload
from .limits import AttemptLimit, MessageRate, WeightBudget
from .rest import RestApi
from .stats import SimulatorStats
from .streams import StreamNameError, parse_stream
from .timeline import Recording, load_recordings

__all__ = ["ExchangeSimulator"]

_COUNTED = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG})
_BATCH = 2000  # timeline items per replay step before the loop yields
_MAX_SLEEP_S = 0.25  # the replay wakes at least this often (stalls, pauses, stop)
_CLOSE_TIMEOUT_S = 2.0  # websockets' close handshake bound per connection
_CLOSE_GRACE_S = _CLOSE_TIMEOUT_S + 1.0  # stop(): then every socket left is dropped
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


class _Connection(ServerConnection):
    """websockets' server connection, with every incoming frame counted for the rate limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sim_client: _Client | None = None
        self.sim_plan: tuple[bool, list[str]] = (False, [])
        self.sim_sockets: set[_Connection] | None = None
        """The simulator's set of open sockets: joined once connected, left when closed."""

    def process_event(self, event: Any) -> None:
        client = self.sim_client
        if client is not None and isinstance(event, Frame) and event.opcode in _COUNTED:
            client.incoming()
        super().process_event(event)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.sim_sockets is not None:
            self.sim_sockets.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sim_sockets is not None:
            self.sim_sockets.discard(self)
        super().connection_lost(exc)


class _Client:
    """One WebSocket connection: its streams, its outbox, its message budget."""

    __slots__ = ("combined", "ip", "lifetime", "pending", "rate", "reason", "sim", "slots", "ws")

    def __init__(self, sim: ExchangeSimulator, ws: _Connection, combined: bool, ip: str) -> None:
        self.sim = sim
        self.ws = ws
        self.combined = combined
        self.ip = ip
        self.pending: list[bytes] = []
        self.slots: dict[str, Slot] = {}
        self.rate = MessageRate(sim.config.max_incoming_per_second)
        self.reason: str | None = None
        self.lifetime: asyncio.TimerHandle | None = None

    def incoming(self) -> None:
        self.sim.stats.messages_in += 1
        if not self.rate.allow() and self.reason is None:
            self.sim._close(self, 1008, "Too many messages", "rate_limit")

    def send_now(self, payload: bytes) -> None:
        ws = self.ws
        if ws.state is State.OPEN and self.reason is None:
            frame = encode.ws_frame(payload)
            ws.transport.write(frame)
            self.sim.stats.bytes_out += len(frame)

    def buffered(self) -> int:
        transport = self.ws.transport
        return 0 if transport is None or transport.is_closing() \
            else transport.get_write_buffer_size()


class ExchangeSimulator:
    """A local Binance replaying recordings (``async with ExchangeSimulator(cfg) as sim``).

    After :meth:`start`: ``ws_url`` (``ws://127.0.0.1:PORT``; streams at
    ``/stream?streams=…`` and ``/ws/<stream>``), ``rest_url``
    (``http://127.0.0.1:PORT``; ``/api/v3/depth`` or ``/fapi/v1/depth``),
    ``symbols``, ``stats``.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._stats = SimulatorStats()
        self.recording: Recording | None = None
        self.engine: Engine | None = None
        self.rest: RestApi | None = None
        self._server: Server | None = None
        self._clients: set[_Client] = set()
        self._sockets: set[_Connection] = set()
        self._closing = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._replay_task: asyncio.Task[None] | None = None
        self._go = asyncio.Event()
        self._running = asyncio.Event()
        self._running.set()
        self._finished = asyncio.Event()
        self._paused_at: float | None = None
        self._anchor_wall = 0.0  # loop time at which the replay clock read the first recv time
        self._anchor_epoch_ms = 0.0
        self._budget = WeightBudget(config.weight_per_minute, window_s=config.weight_window_s,
                                    ban_after_429s=config.ban_after_429s, ban_s=config.ban_s)
        self._attempts = AttemptLimit(config.max_connection_attempts,
                                      config.connection_attempts_window_s)
        self.ws_url = ""
        self.rest_url = ""

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the recordings, open the port, start the replay (per ``config.start``)."""
        if self._server is not None:
            return
        self._closing.clear()
        cfg = self.config
        for path in cfg.recordings:
            if not Path(path).is_file():
                raise FileNotFoundError(f"recording not found: {path}")
        self.recording = await self._load(cfg)
        self.engine = Engine(self.recording, cfg)
        self._stats.recorded_gaps = self.engine.recorded_gaps
        self.rest = RestApi(self.engine, self._budget, self._stats)
        self.rest.snapshot_delay_s = cfg.snapshot_latency_s
        self.engine.set_clock(time.time() * 1000, cfg.speed)
        self._server = await serve(
            self._handler, cfg.host, cfg.port, process_request=self._process_request,
            create_connection=self._connection, compression=None,
            ping_interval=cfg.ping_interval_s, ping_timeout=cfg.pong_timeout_s,
            close_timeout=_CLOSE_TIMEOUT_S, max_size=64 * 1024, max_queue=16, open_timeout=600,
            server_header="marketcore-binance-sim")
        port = self._server.sockets[0].getsockname()[1]
        host = "127.0.0.1" if cfg.host in ("", "0.0.0.0") else cfg.host
        host = f"[{host}]" if ":" in host else host
        self.ws_url = f"ws://{host}:{port}"
        self.rest_url = f"http://{host}:{port}"
        self._replay_task = asyncio.create_task(self._replay(), name="binance-sim replay")
        if cfg.start == "now":
            self._go.set()

    async def stop(self) -> None:
        """Close every connection, stop the replay; every task is awaited.

        Bounded: a socket still in its opening handshake — a REST request held back by
        a delay, a client that never sent its request — is dropped at once (websockets
        would wait ``open_timeout`` for it); WebSocket connections get
        :data:`_CLOSE_GRACE_S` for their close handshake, then are dropped too (a client
        that stopped reading never completes it). The port is closed even when the
        caller is cancelled meanwhile (the cancellation is raised once all has stopped).
        """
        self._closing.set()
        replay, self._replay_task = self._replay_task, None
        try:
            await stop_tasks(replay)
        finally:
            server, self._server = self._server, None
            try:
                if server is not None:
                    for client in list(self._clients):
                        client.reason = client.reason or "stopped"
                    server.close()
                    self._abort_sockets(State.CONNECTING)
                    try:
                        async with asyncio.timeout(_CLOSE_GRACE_S):
                            await server.wait_closed()
                    except TimeoutError:
                        self._abort_sockets()
                        await server.wait_closed()
            finally:
                await stop_tasks(*self._tasks)

    async def _load(self, cfg: SimulatorConfig) -> Recording:
        """Read the recordings in a thread; a cancelled start stops the thread too.

        ``asyncio.to_thread`` alone would return at once on cancellation and leave the
        thread reading (seconds for a day of recording) with no owner.
        """
        abandon = threading.Event()
        loading = asyncio.create_task(asyncio.to_thread(
            load_recordings, list(cfg.recordings), cfg.market, abandon=abandon),
            name="binance-sim load")
        try:
            return await asyncio.shield(loading)
        except asyncio.CancelledError:
            abandon.set()  # the reader gives up within a few thousand frames
            await finish(loading)
            raise

    def _abort_sockets(self, state: State | None = None) -> None:
        """Drop every socket (in ``state``) without a close handshake."""
        for connection in list(self._sockets):
            if state is None or connection.protocol.state is state:
                connection.transport.abort()

    def _connection(self, *args: Any, **kwargs: Any) -> _Connection:
        """websockets' connection factory: every socket is known until it closes."""
        connection = _Connection(*args, **kwargs)
        connection.sim_sockets = self._sockets
        return connection

    async def __aenter__(self) -> ExchangeSimulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._engine.served)

    @property
    def market(self) -> str:
        return self._engine.market

    @property
    def stats(self) -> SimulatorStats:
        """Counters; engine-side figures are refreshed on every read."""
        engine = self.engine
        if engine is not None:
            self._stats.frames_out = engine.frames_out
            self._stats.frames_withheld = engine.frames_withheld
            self._stats.events_encoded = engine.events_encoded
            self._stats.frames_per_stream = engine.frames_per_stream()
        return self._stats

    @property
    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("the simulator is not started")
        return self.engine

    def resume(self) -> None:
        """Start a ``manual`` replay, or continue after :meth:`pause` (no burst)."""
        if not self._go.is_set():
            self._go.set()
            return
        if self._paused_at is not None:
            paused = asyncio.get_running_loop().time() - self._paused_at
            self._anchor_wall += paused
            self._anchor_epoch_ms += paused * 1000
            self._engine.set_clock(self._anchor_epoch_ms, self.config.speed)
            self._paused_at = None
            self._running.set()

    def pause(self) -> None:
        """Freeze the replay clock; connections stay open and quiet."""
        if self._paused_at is None:
            self._paused_at = asyncio.get_running_loop().time()
            self._running.clear()

    async def wait_finished(self) -> None:
        """Until the replay has sent the last event (never, with ``loop``)."""
        await self._finished.wait()

    async def wait_subscribers(self, count: int = 1) -> None:
        """Until ``count`` connections are open (tests: the client has connected)."""
        while self._stats.connections_open < count:
            await asyncio.sleep(0.005)

    def book(self, symbol: str) -> tuple[int, dict[str, str], dict[str, str]]:
        """The simulator's whole book of ``symbol`` now: ``(last_update_id, bids, asks)``."""
        return self._engine.book(self._served(symbol))

    def snapshot(self, symbol: str, limit: int = 1000) -> dict[str, Any]:
        """What ``GET …/depth`` would answer now (no weight charged)."""
        return json.loads(self._engine.snapshot(self._served(symbol), limit))

    def _served(self, symbol: str) -> Served:
        served = self._engine.symbol(symbol)
        if served is None:
            raise ValueError(f"unknown symbol {symbol!r}; serving {', '.join(self.symbols)}")
        return served

    # -- faults ----------------------------------------------------------------------------

    def drop_connections(self) -> None:
        """Cut every WebSocket connection at once, without a close frame (a network drop)."""
        self._stats.faults["drop"] += 1
        for client in list(self._clients):
            self._drop(client, "fault_drop")

    def skip_update_ids(self, symbol: str, count: int = 1) -> None:
        """From the next diff on, ``symbol``'s ids jump by ``count``: clients see a gap."""
        if count < 1:
            raise ValueError("count must be >= 1")
        self._stats.faults["gap"] += 1
        self._engine.skip_update_ids(self._served(symbol), count)

    def send_malformed(self, kind: str, symbol: str | None = None) -> None:
        """Send one bad frame of ``kind`` on ``symbol``'s streams (all connections if None).

        Kinds: ``garbage``, ``missing_fields``, ``absurd``, ``oversized``, ``crossed``,
        ``duplicate`` (see :mod:`.faults`).
        """
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"unknown malformed kind {kind!r}: expected one of "
                             f"{', '.join(MALFORMED_KINDS)}")
        engine = self._engine
        served = self._served(symbol) if symbol else None
        self._stats.faults[f"malformed:{kind}"] += 1
        targets = [served] if served is not None else list(engine.served)
        if kind == "crossed":
            for target in targets:
                engine.cross(target)
            return
        if served is None and kind != "duplicate":
            for client in list(self._clients):
                slot = next((s for s in client.slots.values() if s.served is not None), None)
                if slot is not None and slot.served is not None:
                    payload = self._malformed(kind, slot.served)
                    client.send_now(slot.prefix + payload + b"}" if client.combined
                                    else payload)
                elif kind in ("garbage", "oversized"):
                    client.send_now(self._malformed(kind, engine.served[0]))
            return
        for target in targets:
            slots = [s for s in engine.slots_of(target) if s.subscribers]
            depth = [s for s in slots if s.key is not None and s.key.kind == "depth"]
            for slot in depth or slots:
                if kind == "duplicate":
                    if slot.last_data is None:
                        continue
                    payload = slot.last_data
                else:
                    payload = self._malformed(kind, target)
                for client in list(slot.subscribers):
                    client.send_now(slot.prefix + payload + b"}" if client.combined else payload)

    def _malformed(self, kind: str, served: Served) -> bytes:
        base = served.base
        return malformed_payload(kind, served.name, base.tmap(base.last_E),
                                 base.last_u + served.id_shift(), self._engine.futures,
                                 self.config.oversized_bytes)

    def stall(self, seconds: float, symbol: str | None = None) -> None:
        """Send nothing (for all symbols, or one) for ``seconds``; connections stay open.

        The replay goes on meanwhile: what was not sent is lost, so a depth stream
        resumes with a gap, as after a real stall.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._stats.faults["stall"] += 1
        until = asyncio.get_running_loop().time() + seconds
        self._engine.stall(until, self._served(symbol) if symbol else None)

    def delay_snapshots(self, seconds: float) -> None:
        """Hold every depth snapshot answer back by ``seconds`` (0 ends it).

        The book is cut when the request arrives, so diffs newer than the snapshot
        reach the client first, as they often do from Binance.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._stats.faults["delay_snapshots"] += 1
        assert self.rest is not None
        self.rest.snapshot_delay_s = seconds

    def server_shutdown(self) -> None:
        """Send ``{"e":"serverShutdown","E":…}`` to every connection, then close them (1001).

        New connections are still accepted: the client's reconnect finds a fresh server.
        """
        self._stats.faults["server_shutdown"] += 1
        for client in list(self._clients):
            client.send_now(encode.server_shutdown(time.time_ns() // 1_000_000))
            self._close(client, 1001, "server shutdown", "server_shutdown")

    # -- replay ----------------------------------------------------------------------------

    async def _replay(self) -> None:
        await self._go.wait()
        engine = self._engine
        recording = engine.recording
        items = recording.items
        n = len(items)
        cfg = self.config
        speed = cfg.speed
        loop = asyncio.get_running_loop()
        self._anchor_wall = loop.time()
        self._anchor_epoch_ms = time.time() * 1000
        engine.set_clock(self._anchor_epoch_ms, speed)
        r0 = recording.first_recv_ns
        process = engine.process
        stats = self._stats
        lap = 0
        while True:
            offset = lap * engine.period_ns
            i = 0
            while i < n:
                if not self._running.is_set():
                    await self._running.wait()
                now = loop.time()
                engine.now = now
                end = i
                if speed > 0:
                    virtual = r0 + (now - self._anchor_wall) * speed * 1e9 - offset
                    due = items[i][0]
                    if due > virtual:
                        await asyncio.sleep(min((due - virtual) / speed / 1e9, _MAX_SLEEP_S))
                        continue
                    stop_at = min(n, i + _BATCH)
                    while end < stop_at and items[end][0] <= virtual:
                        process(items[end])
                        end += 1
                    lag_ms = (virtual - items[end - 1][0]) / speed / 1e6
                    if lag_ms > stats.replay_lag_max_ms:
                        stats.replay_lag_max_ms = lag_ms
                else:
                    stop_at = min(n, i + _BATCH)
                    while end < stop_at:
                        process(items[end])
                        end += 1
                stats.replay_items += end - i
                i = end
                self._flush()
                if speed == 0:
                    await self._backpressure()
                await asyncio.sleep(0)
            if not cfg.loop:
                break
            lap += 1
            engine.now = loop.time()
            engine.begin_loop(lap)
            stats.loops_completed += 1
            self._flush()
        stats.replay_finished = True
        self._finished.set()

    def _flush(self) -> None:
        dirty = self._engine.dirty
        if not dirty:
            return
        limit = self.config.max_send_buffer_bytes
        real_time = self.config.speed > 0
        stats = self._stats
        for client in dirty:
            data = b"".join(client.pending)
            client.pending.clear()
            ws = client.ws
            if client.reason is not None or ws.state is not State.OPEN:
                continue
            transport = ws.transport
            transport.write(data)
            stats.bytes_out += len(data)
            if real_time and transport.get_write_buffer_size() > limit:
                self._drop(client, "slow_client")
        dirty.clear()

    async def _backpressure(self) -> None:
        """At speed 0 the replay runs as fast as the slowest reader; a stuck one is dropped."""
        high = self.config.max_send_buffer_bytes // 2
        deadline = None
        loop = asyncio.get_running_loop()
        while True:
            slow = [c for c in self._clients if c.reason is None and c.buffered() > high]
            if not slow:
                return
            now = loop.time()
            if deadline is None:
                deadline = now + self.config.slow_client_timeout_s
            elif now > deadline:
                for client in slow:
                    self._drop(client, "slow_client")
                return
            await asyncio.sleep(0.002)

    # -- connections -----------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        assert isinstance(ws, _Connection)
        combined, names = ws.sim_plan
        address = ws.remote_address
        client = _Client(self, ws, combined, str(address[0]) if address else "?")
        ws.sim_client = client
        self._clients.add(client)
        self._stats.connections_opened += 1
        self._stats.connections_open += 1
        loop = asyncio.get_running_loop()
        client.lifetime = loop.call_later(self.config.connection_lifetime_s, self._expire, client)
        try:
            if names:
                self._subscribe(client, names)
            async for message in ws:
                if client.reason is None:
                    self._on_request(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._forget(client)

    def _forget(self, client: _Client) -> None:
        if client.lifetime is not None:
            client.lifetime.cancel()
        engine = self._engine
        for slot in list(client.slots.values()):
            engine.unsubscribe(client, slot)
        client.slots.clear()
        client.pending.clear()
        self._clients.discard(client)
        self._stats.connections_open -= 1
        reason = client.reason
        if reason is None:
            sent = client.ws.protocol.close_sent
            if sent is not None and sent.code == 1011:
                reason = "ping_timeout"
            elif client.ws.protocol.close_rcvd is not None:
                reason = "client_closed"
            else:
                reason = "connection_lost"
        self._stats.disconnects[reason] += 1

    def _close(self, client: _Client, code: int, why: str, reason: str) -> None:
        """Close one connection with a close frame, from synchronous code."""
        if client.reason is not None:
            return
        client.reason = reason
        self._unsubscribe_all(client)
        self._spawn(client.ws.close(code, why))

    def _drop(self, client: _Client, reason: str) -> None:
        """Cut one connection without a close frame."""
        if client.reason is None:
            client.reason = reason
        self._unsubscribe_all(client)
        transport = client.ws.transport
        if transport is not None:
            transport.abort()

    def _unsubscribe_all(self, client: _Client) -> None:
        engine = self._engine
        for slot in list(client.slots.values()):
            engine.unsubscribe(client, slot)
        client.slots.clear()

    def _expire(self, client: _Client) -> None:
        client.send_now(encode.server_shutdown(time.time_ns() // 1_000_000))
        self._close(client, 1000, "connection lifetime reached", "lifetime")

    def _spawn(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a close that failed needs no report

    # -- stream control (the JSON requests) ------------------------------------------------

    def _subscribe(self, client: _Client, names: list[str]) -> None:
        engine = self._engine
        for name in names:
            if name in client.slots:
                continue
            slot = engine.slot(name)
            engine.subscribe(client, slot)
            client.slots[name] = slot
        if self.config.start == "on_subscribe" and client.slots:
            self._go.set()

    def _on_request(self, client: _Client, message: str | bytes) -> None:
        self._stats.requests_in += 1
        reply = self._answer(client, message)
        if "error" in reply:
            self._stats.request_errors += 1
        client.send_now(json.dumps(reply, separators=(",", ":")).encode())

    def _answer(self, client: _Client, message: str | bytes) -> dict[str, Any]:
        try:
            request = json.loads(message)
        except (ValueError, UnicodeDecodeError) as exc:
            return _ws_error(3, f"Invalid JSON: {exc}", None)
        if not isinstance(request, dict):
            return _ws_error(2, "Invalid request: expected a JSON object", None)
        rid = request.get("id")
        if not (rid is None or (isinstance(rid, int) and not isinstance(rid, bool) and rid >= 0)
                or (isinstance(rid, str) and len(rid) <= 36)):
            return _ws_error(2, "Invalid request: request ID must be an unsigned integer", None)
        method = request.get("method")
        if method is None:
            return _ws_error(2, "Invalid request: missing field `method`", rid)
        if method not in _METHODS:
            expected = ", ".join(f"`{m}`" for m in _METHODS)
            return _ws_error(2, f"Invalid request: unknown variant `{method}`, expected one "
                                f"of {expected}", rid)
        params = request.get("params", [])
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(client.slots), "id": rid}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return self._property(client, method, params, rid)
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return _ws_error(2, "Invalid request: params must be a list of stream names", rid)
        for name in params:
            try:
                parse_stream(name, self._engine.market)
            except StreamNameError as exc:
                return _ws_error(2, f"Invalid request: {exc}", rid)
        if method == "SUBSCRIBE":
            total = len(set(client.slots) | set(params))
            limit = self.config.max_streams_per_connection
            if total > limit:
                return _ws_error(2, f"Invalid request: too many streams ({total}); at most "
                                    f"{limit} per connection", rid)
            self._subscribe(client, params)
        else:
            engine = self._engine
            for name in params:
                slot = client.slots.pop(name, None)
                if slot is not None:
                    engine.unsubscribe(client, slot)
        return {"result": None, "id": rid}

    def _property(self, client: _Client, method: str, params: Any, rid: Any) -> dict[str, Any]:
        if not isinstance(params, list) or not params or not isinstance(params[0], str):
            return _ws_error(2, "Invalid request: property name must be a string", rid)
        if params[0] != "combined":
            return _ws_error(0, "Unknown property", rid)
        if method == "GET_PROPERTY":
            return {"result": client.combined, "id": rid}
        if len(params) != 2 or not isinstance(params[1], bool):
            return _ws_error(1, "Invalid value type: expected Boolean", rid)
        client.combined = params[1]
        return {"result": None, "id": rid}

    # -- HTTP ------------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request
                               ) -> Response | None:
        url = urlsplit(request.path)
        path = unquote(url.path)
        query = parse_qs(url.query, keep_blank_values=True)
        method = getattr(request, "method", "GET")
        address = connection.remote_address
        ip = str(address[0]) if address else "?"
        if path in ("/stream", "/ws") or path.startswith("/ws/"):
            return self._gate(connection, path, query, ip)
        if path.startswith("/_sim/"):
            return self._sim_endpoint(method, path, query)
        rest = self.rest
        if rest is not None and rest.handles(path):
            reply = rest.handle(method, path, query, ip)
            if reply.delay_s and not self._closing.is_set():
                # held back (latency, a fault); stop() must not wait for the delay
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(reply.delay_s):
                        await self._closing.wait()
            return _response(reply.status, reply.body, reply.headers)
        return _response(404, b'{"code":-1,"msg":"Not found"}')

    def _gate(self, connection: ServerConnection, path: str, query: dict[str, list[str]],
              ip: str) -> Response | None:
        """Admit a WebSocket handshake, or refuse it as Binance would."""
        if not self._attempts.allow(ip):
            self._stats.handshakes_rejected["connection_attempts"] += 1
            return _response(429, b'{"code":-1003,"msg":"Too many connection attempts; at most '
                             + str(self.config.max_connection_attempts).encode()
                             + b' per 5 minutes per IP."}', (("Retry-After", "60"),))
        combined = path == "/stream"
        if combined:
            raw = (query.get("streams") or [""])[0]
            names = [n for n in raw.split("/") if n]
        else:
            names = [n for n in path[len("/ws/"):].split("/") if n] if path.startswith("/ws/") \
                else []
        limit = self.config.max_streams_per_connection
        if len(set(names)) > limit:
            self._stats.handshakes_rejected["too_many_streams"] += 1
            return _response(400, json.dumps({
                "code": -1, "msg": f"Too many streams: {len(set(names))}; at most {limit} per "
                                   f"connection"}).encode())
        for name in names:
            try:
                parse_stream(name, self._engine.market)
            except StreamNameError as exc:
                self._stats.handshakes_rejected["invalid_stream"] += 1
                return _response(400, json.dumps({"code": -1, "msg": str(exc)}).encode())
        assert isinstance(connection, _Connection)
        connection.sim_plan = (combined, names)
        return None

    def _sim_endpoint(self, method: str, path: str, query: dict[str, list[str]]) -> Response:
        """``/_sim/*``: faults, stats, the simulator's own book (no weight, no auth)."""
        def arg(name: str, default: str = "") -> str:
            return (query.get(name) or [default])[0]

        try:
            if path == "/_sim/stats":
                return _response(200, json.dumps(self.stats.as_dict()).encode())
            if path == "/_sim/symbols":
                return _response(200, json.dumps(list(self.symbols)).encode())
            if path == "/_sim/book":
                last_id, bids, asks = self.book(arg("symbol"))
                body = {"lastUpdateId": last_id,
                        "bids": sorted(bids.items(), key=lambda kv: -float(kv[0])),
                        "asks": sorted(asks.items(), key=lambda kv: float(kv[0]))}
                return _response(200, json.dumps(body).encode())
            if path == "/_sim/fault":
                if method not in ("POST", "GET"):
                    return _response(405, b'{"error":"use POST (or GET)"}')
                self._fault(arg("kind"), arg("symbol") or None, arg("seconds", "0"),
                            arg("count", "1"), arg("what"))
                return _response(200, json.dumps({"ok": True, "kind": arg("kind")}).encode())
        except (ValueError, RuntimeError) as exc:
            return _response(400, json.dumps({"error": str(exc)}).encode())
        return _response(404, b'{"error":"unknown simulator endpoint"}')

    def _fault(self, kind: str, symbol: str | None, seconds: str, count: str,
               what: str) -> None:
        if kind == "drop":
            self.drop_connections()
        elif kind in ("gap", "skip_update_ids"):
            if not symbol:
                raise ValueError("gap needs symbol=")
            self.skip_update_ids(symbol, int(count))
        elif kind == "malformed":
            self.send_malformed(what or "garbage", symbol)
        elif kind in MALFORMED_KINDS:
            self.send_malformed(kind, symbol)
        elif kind == "stall":
            self.stall(float(seconds), symbol)
        elif kind == "delay_snapshots":
            self.delay_snapshots(float(seconds))
        elif kind in ("shutdown", "server_shutdown"):
            self.server_shutdown()
        else:
            raise ValueError(f"unknown fault kind {kind!r}: drop, gap, malformed (what=…), "
                             f"{', '.join(MALFORMED_KINDS)}, stall, delay_snapshots, shutdown")


def _ws_error(code: int, msg: str, rid: Any) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": rid}


def _response(status: int, body: bytes,
              headers: tuple[tuple[str, str], ...] = ()) -> Response:
    fields = Headers([("Content-Type", "application/json;charset=UTF-8"),
                      ("Content-Length", str(len(body))), ("Connection", "close"), *headers])
    return Response(status, http.HTTPStatus(status).phrase, fields, body)
