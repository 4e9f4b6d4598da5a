"""Shared pieces of the coord_redis tests: the node's side of coordination, waiting, a proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from marketcore.components import Publication, WriterToken
from marketcore_coord_redis import CoordinatorOptions, RedisCoordinator, RedisSink

SYMBOLS = tuple(f"S{i:02d}USDT" for i in range(12))

FAST = {"lease_ttl_ms": 900, "socket_timeout_ms": 300, "heartbeat_ms": 200, "node_ttl_ms": 2000,
        "watch_ms": 100, "acquire_retry_ms": 50, "min_hold_ms": 0, "rebalance_ms": 1000}
"""Coordinator options that make a test fleet settle in about a second."""


def coordinator_options(url: str, **overrides: Any) -> CoordinatorOptions:
    return CoordinatorOptions(url=url, **{**FAST, **overrides})


class NodeSide:
    """What a node does for its coordinator: track owned symbols and tokens, publish.

    ``publish`` hands the owned symbols' reports to a sink and drops the symbols
    the sink refused, telling the coordinator — what a marketcore node does.
    """

    def __init__(self, node_id: str, universe: Iterable[str] = SYMBOLS) -> None:
        self.node_id = node_id
        self.universe = tuple(universe)
        self.tokens: dict[str, WriterToken] = {}
        self.events: list[tuple[str, str, object]] = []

    def acquired(self, symbol: str, token: WriterToken) -> None:
        self.tokens[symbol] = token
        self.events.append(("acquired", symbol, token))

    def released(self, symbol: str, reason: str) -> None:
        self.tokens.pop(symbol, None)
        self.events.append(("released", symbol, reason))

    def batch(self, cycle: int = 0) -> list[Publication]:
        return [report(symbol, self.node_id, token, cycle)
                for symbol, token in sorted(self.tokens.items())]

    async def publish(self, sink: RedisSink, coordinator: RedisCoordinator,
                      cycle: int = 0) -> list[str]:
        refused = list(await sink.publish(self.batch(cycle)))
        for symbol in refused:
            coordinator.refused(symbol)
            self.released(symbol, "refused by sink")
        return refused


def report(symbol: str, node_id: str, token: WriterToken, cycle: int = 0,
           size: int = 0) -> Publication:
    body = {"symbol": symbol, "writer": {"nodeId": node_id, "writerToken": token.counter,
                                         "epoch": token.epoch}, "cycle": cycle}
    if size:
        body["pad"] = "x" * max(0, size - len(json.dumps(body)) - 10)
    return Publication(symbol, token, body, json.dumps(body, separators=(",", ":")).encode())


@contextlib.asynccontextmanager
async def running(coordinator: RedisCoordinator, node: NodeSide) -> AsyncIterator[asyncio.Task]:
    """Run a coordinator as the node's supervised task; cancel it (graceful leave) at the end."""
    task = asyncio.create_task(coordinator.run(node))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0,
                     message: str = "condition") -> None:
    """Poll ``condition`` until true; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.02)


class TcpProxy:
    """A loopback TCP proxy to a Redis server that a test can cut, like a network partition."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.open = True
        self._server: asyncio.Server | None = None
        self._pairs: set[asyncio.StreamWriter] = set()
        self.traffic: list[tuple[str, int]] = []
        """``("up" | "down", bytes)`` per forwarded chunk: client to server is up."""
        self._lose_reply_to: bytes | None = None
        self._losing: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._pairs.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer, "up", writer),
                             self._pipe(up_reader, writer, "down", writer),
                             return_exceptions=True)

    def lose_reply_to(self, marker: bytes) -> None:
        """Let the next request containing ``marker`` reach Redis, then drop its reply
        and the connection: the client cannot know whether the request ran."""
        self._lose_reply_to = marker

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str, client: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 20):
                if not self.open:
                    break
                if direction == "up" and self._lose_reply_to and self._lose_reply_to in data:
                    self._lose_reply_to = None
                    self._losing.add(client)
                if direction == "down" and client in self._losing:
                    self._losing.discard(client)
                    break  # the reply is lost, and so is the connection
                self.traffic.append((direction, len(data)))
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._pairs.discard(writer)

    def cut(self) -> None:
        """Drop every connection and refuse new ones until :meth:`restore`."""
        self.open = False
        for writer in list(self._pairs):
            writer.close()
        self._pairs.clear()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
