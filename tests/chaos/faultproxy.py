"""A small TCP proxy between nodes and Redis that a chaos test can break on command.

The node processes connect to the proxy's loopback port instead of Redis. The
proxy runs its own asyncio loop on a background thread, so a synchronous test
can change its mode while real processes talk through it:

* ``pass`` — forward every byte as it comes;
* ``cut`` — close every connection (FIN) and close new ones at once: Redis is
  down or the route is gone, and the client knows it;
* ``blackhole`` — keep connections open but swallow every byte, and accept new
  connections that never reach Redis: a partition the client learns of only by
  its own timeouts. Leaving it resets the connections that lost bytes (their
  request/reply stream is out of step, as after a real partition's timeouts);
* ``delay`` — hold each chunk for a random ``[low, high]`` seconds, in order per
  direction (a slow network, or a Redis that answers late);
* ``slow`` — forward at most ``rate`` bytes per second per direction;

and :meth:`FaultProxy.reset` aborts every open connection with an RST.

Memory is bounded: each direction queues at most :data:`QUEUE_CHUNKS` chunks of
at most :data:`CHUNK_BYTES`; a full queue stops reading, which is TCP's own
backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any

import attrs

__all__ = ["CHUNK_BYTES", "QUEUE_CHUNKS", "FaultProxy", "Mode", "ProxyStats"]

CHUNK_BYTES = 64 * 1024
QUEUE_CHUNKS = 256


class Mode(enum.Enum):
    PASS = "pass"
    CUT = "cut"
    BLACKHOLE = "blackhole"
    DELAY = "delay"
    SLOW = "slow"


@attrs.define
class ProxyStats:
    """What the proxy did since it started (bytes are payload bytes)."""

    accepted: int = 0
    refused: int = 0
    forwarded: int = 0
    swallowed: int = 0
    delayed_chunks: int = 0
    resets: int = 0
    closed_by_cut: int = 0


@attrs.define(eq=False)
class _Pair:
    """One client connection and its upstream connection (None while blackholed)."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)
    lost: int = 0
    """Bytes swallowed on this pair: its protocol stream is out of step."""


class FaultProxy:
    """A loopback TCP proxy to ``target_host:target_port``; see the module docstring.

    Use as a context manager, or :meth:`start` / :meth:`close`. All methods are
    safe to call from the test's thread.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *,
                 seed: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.stats = ProxyStats()
        self._mode = Mode.PASS
        self._delay = (0.0, 0.0)
        self._rate = 0.0
        self._random = random.Random(seed)
        self._pairs: set[_Pair] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        """Stop listening, close every connection, stop the loop and its thread."""
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            await self._drop(pair, abort=True)
        # cancel whatever is left and let it finish before the loop stops: a task still
        # pending when the loop is closed is reported as destroyed at exit
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    # -- addresses and modes ------------------------------------------------------

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def connections(self) -> int:
        return len(self._pairs)

    def forward(self) -> None:
        """Back to ``pass``; connections that lost bytes in a blackhole are reset."""
        self._call(self._set(Mode.PASS))

    def cut(self) -> None:
        self._call(self._set(Mode.CUT))

    def blackhole(self) -> None:
        self._call(self._set(Mode.BLACKHOLE))

    def delay(self, low_s: float, high_s: float) -> None:
        if not 0 <= low_s <= high_s:
            raise ValueError(f"delay needs 0 <= low <= high, got {low_s}, {high_s}")
        self._delay = (low_s, high_s)
        self._call(self._set(Mode.DELAY))

    def slow(self, bytes_per_s: float) -> None:
        if bytes_per_s <= 0:
            raise ValueError(f"slow needs a positive rate, got {bytes_per_s}")
        self._rate = float(bytes_per_s)
        self._call(self._set(Mode.SLOW))

    def reset(self) -> int:
        """Abort every open connection with an RST; the mode is unchanged. Returns how many."""
        return self._call(self._reset_all())

    async def _set(self, mode: Mode) -> None:
        previous, self._mode = self._mode, mode
        if mode is Mode.CUT:
            for pair in list(self._pairs):
                self.stats.closed_by_cut += 1
                await self._drop(pair, abort=False)
        elif previous is Mode.BLACKHOLE and mode is not Mode.BLACKHOLE:
            for pair in [p for p in self._pairs if p.lost or p.upstream is None]:
                self.stats.resets += 1
                await self._drop(pair, abort=True)

    async def _reset_all(self) -> int:
        pairs = list(self._pairs)
        for pair in pairs:
            self.stats.resets += 1
            await self._drop(pair, abort=True)
        return len(pairs)

    # -- connections --------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        if self._mode is Mode.CUT:
            self.stats.refused += 1
            client.close()
            return
        self.stats.accepted += 1
        upstream_reader: asyncio.StreamReader | None = None
        upstream: asyncio.StreamWriter | None = None
        if self._mode is not Mode.BLACKHOLE:
            try:
                upstream_reader, upstream = await asyncio.open_connection(*self.target)
            except OSError:
                self.stats.refused += 1
                client.close()
                return
        pair = _Pair(client, upstream)
        self._pairs.add(pair)
        pair.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            if upstream_reader is None:
                await self._swallow(pair, reader)
            else:
                await asyncio.gather(self._pump(pair, reader, upstream),
                                     self._pump(pair, upstream_reader, client))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            await self._drop(pair, abort=False)

    async def _swallow(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        """A connection accepted in a blackhole: read and drop until it closes."""
        while data := await reader.read(CHUNK_BYTES):
            pair.lost += len(data)
            self.stats.swallowed += len(data)

    async def _pump(self, pair: _Pair, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        """One direction: read chunks, then drop, delay, pace or forward each by the mode."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)
        deliver = asyncio.create_task(self._deliver(queue, writer))
        pair.tasks.append(deliver)
        last_due = 0.0
        try:
            while data := await reader.read(CHUNK_BYTES):
                mode = self._mode
                if mode is Mode.BLACKHOLE:
                    pair.lost += len(data)
                    self.stats.swallowed += len(data)
                    continue
                due = time.monotonic()
                if mode is Mode.DELAY:
                    due += self._random.uniform(*self._delay)
                    self.stats.delayed_chunks += 1
                last_due = max(last_due, due)  # order is kept within a direction
                if deliver.done():  # the other side failed: stop reading
                    break
                await queue.put((last_due, data))
            if not deliver.done():
                await queue.put(None)
            await deliver
        finally:
            deliver.cancel()

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes] | None],
                       writer: asyncio.StreamWriter) -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._mode is Mode.SLOW:
                for start in range(0, len(data), 1024):
                    piece = data[start:start + 1024]
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(len(piece) / self._rate)
            else:
                writer.write(data)
                await writer.drain()
            self.stats.forwarded += len(data)
        writer.close()

    async def _drop(self, pair: _Pair, *, abort: bool) -> None:
        """Close both sides of a pair (``abort``: an RST to the client) and its tasks."""
        if pair not in self._pairs:
            return
        self._pairs.discard(pair)
        for writer in (pair.client, pair.upstream):
            if writer is None:
                continue
            if abort:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
        current = asyncio.current_task()
        for task in pair.tasks:
            if task is not current:
                task.cancel()
