"""Sink ``redis``: every report written through the fencing script, a cycle in one round trip.

Each report goes through ``lua/fenced_write.lua``, which checks — in the same
atomic step as the write — that the symbol's lease is held by the report's
writer node with the report's token, and that no newer token was accepted
before. A node paused or partitioned past its lease cannot overwrite a newer
owner's report: the storage refuses it.

Replies and what the sink does with them:

* ``1`` written;
* ``0`` refused — another node holds the lease (or a newer token was accepted):
  counted and returned, so the node drops the symbol;
* ``-1`` no lease in Redis (it expired in an outage, or a Redis restart lost
  it): nothing written, counted as *unproven*; the node keeps the symbol warm
  and the coordinator acquires it again;
* ``-2`` the writer holds the lease under a newer token (the report was built
  just before the token changed): nothing written, counted as *stale*.

The sink is also a ``marketcore.components.ReportReader``: ``latest`` and
``index`` read back the latest report of every symbol the fleet wrote (see
:mod:`marketcore_coord_redis.reader`).

A batch is packed and sent as one pipelined round trip of ``EVALSHA`` calls
carrying up to 100 reports each (in Cluster mode, reports of one hash slot per
call, routed to that slot's node). While Redis is unreachable the sink raises
at once during a jittered backoff instead of waiting for a socket timeout
every cycle.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from marketcore.components import Publication

from marketcore_coord_redis.keys import KeyLayout
from marketcore_coord_redis.options import PASSWORD_VARIABLE, SinkOptions, check_secret_source
from marketcore_coord_redis.reader import ReportStore
from marketcore_coord_redis.scripts import lua_script
from marketcore_coord_redis.stats import Backoff, SinkStats
from marketcore_coord_redis.transport import (
    TRANSIENT,
    UNKNOWN,
    BatchInterrupted,
    Client,
    close_client,
    is_cluster,
    open_client,
    redacted_url,
    run_batch,
)

__all__ = ["RedisSink", "RedisUnavailable"]

log = logging.getLogger("marketcore.coord_redis")

WRITTEN, REFUSED, NO_LEASE, STALE = 1, 0, -1, -2
"""Codes ``fenced_write.lua`` returns per report (``-3``: an error)."""

REPORTS_PER_CALL = 100
"""Reports carried by one script call. A call costs far more than a report's
work inside it (``benchmarks/bench_publish.py``), and 100 keep each call's run
on the server around a millisecond, so other clients are not held up."""


class RedisUnavailable(ConnectionError):
    """Redis could not be reached; the batch was not written (nothing unfenced was)."""


class RedisSink:
    """Writes each cycle's reports to Redis, fenced by the writers' leases."""

    name = "redis"

    def __init__(self, options: SinkOptions) -> None:
        check_secret_source(options)
        self.options = options
        self.layout = KeyLayout.of(options)
        self.stats = SinkStats()
        self._client: Client | None = None
        self._script = lua_script("fenced_write")
        self._head = (b"%d" % (options.ttl_s * 1000),
                      b"%d" % (options.stream_maxlen if options.stream else 0),
                      b"%d" % (options.audit_maxlen if options.audit else 0))
        self._extras = b"1" if options.stream or options.audit else b"0"
        self._backoff = Backoff(first_s=0.1, cap_s=5.0)
        self._retry_at = 0.0
        self._node_ids: dict[str, bytes] = {}
        self._store = ReportStore(self.layout, self.stats)

    async def start(self) -> None:
        password = self.options.password or os.environ.get(PASSWORD_VARIABLE, "")
        self._client = await open_client(self.options, password)
        log.info("publishing fenced reports to %s", redacted_url(self.options.url),
                 extra={"component": "sink.redis"})

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_client(client)

    async def publish(self, batch: Sequence[Publication]) -> Collection[str]:
        """Write the batch in one round trip; return the symbols refused by fencing."""
        if not batch:
            return ()
        if self._client is None:
            raise RuntimeError("the redis sink was not started")
        if time.monotonic() < self._retry_at:
            self.stats.skipped += 1
            raise RedisUnavailable("Redis unreachable; reconnecting (batch not written)")
        writable = [p for p in batch if self._node_id(p) is not None]
        if len(writable) < len(batch):
            self.stats.errors += len(batch) - len(writable)
            log.warning("%d reports without writer.nodeId were not written",
                        len(batch) - len(writable), extra={"component": "sink.redis"})
            if not writable:
                return ()
        groups = self._groups(writable)
        calls = [self._call(group) for group in groups]
        started = time.perf_counter()
        try:
            replies = await run_batch(self._client, self._script, calls)
        except BatchInterrupted as error:
            self._unreachable(error)
            refused = self._count(groups, error.replies)
            if refused:  # refusals read before the failure are real: let the node act on them
                return refused
            raise RedisUnavailable(f"Redis connection lost mid-batch: {error.cause}") from None
        except TRANSIENT as error:
            self._unreachable(error)
            raise RedisUnavailable(f"Redis unreachable: {type(error).__name__}") from None
        self._backoff.reset()
        self._retry_at = 0.0
        self.stats.batches += 1
        self.stats.last_batch_ms = (time.perf_counter() - started) * 1000
        return self._count(groups, replies)

    # -- reading back (ReportReader) -----------------------------------------------

    async def latest(self, symbol: str) -> bytes | None:
        """The latest accepted report of ``symbol`` (compact JSON), or None if none is
        stored (never written, or expired after ``ttl_s``)."""
        client = self._started()
        try:
            value = await self._store.latest(client, symbol)
        except TRANSIENT as error:
            self.stats.read_errors += 1
            raise RedisUnavailable(f"Redis unreachable: {type(error).__name__}") from None
        self.stats.reads += 1
        return value

    async def index(self) -> Sequence[Mapping[str, Any]]:
        """One entry per stored report — ``symbol``, ``age_ms``, ``status``, ``owner``,
        ``epoch``, ``token`` — sorted by symbol (found with a bounded ``SCAN``)."""
        client = self._started()
        try:
            entries = await self._store.index(client)
        except TRANSIENT as error:
            self.stats.read_errors += 1
            raise RedisUnavailable(f"Redis unreachable: {type(error).__name__}") from None
        self.stats.reads += 1
        return entries

    def _started(self) -> Client:
        if self._client is None:
            raise RuntimeError("the redis sink was not started")
        return self._client

    def _groups(self, batch: Sequence[Publication]) -> list[list[Publication]]:
        """Reports per script call: one writer, up to :data:`REPORTS_PER_CALL`, and in
        Cluster mode one hash slot."""
        client = self._client
        cluster = is_cluster(client)
        by_call: dict[tuple[bytes, int], list[Publication]] = {}
        for publication in batch:
            slot = client.keyslot(self.layout.symbol(publication.symbol).lease) if cluster else 0
            by_call.setdefault((self._node_id(publication) or b"", slot), []).append(publication)
        return [group[i:i + REPORTS_PER_CALL] for group in by_call.values()
                for i in range(0, len(group), REPORTS_PER_CALL)]

    def _call(self, group: Sequence[Publication]) -> tuple[list[bytes], list[bytes]]:
        keys: list[bytes] = []
        args: list[bytes] = [*self._head, self._node_id(group[0]) or b"", self._extras]
        for publication in group:
            symbol_keys = self.layout.symbol(publication.symbol)
            token = publication.token
            keys += (symbol_keys.lease, symbol_keys.token, symbol_keys.report)
            args += (b"%d" % token.epoch, b"%d" % token.counter, publication.payload)
            if self._extras == b"1":
                keys += (symbol_keys.stream, symbol_keys.audit)
                args.append(publication.symbol.encode())
        return keys, args

    def _node_id(self, publication: Publication) -> bytes | None:
        """The writer named in the report (``writer.nodeId``), encoded once per node id."""
        writer = publication.report.get("writer")
        node_id = writer.get("nodeId") if isinstance(writer, dict) else None
        if not isinstance(node_id, str) or not node_id:
            return None
        encoded = self._node_ids.get(node_id)
        if encoded is None:
            encoded = node_id.encode()
            if len(self._node_ids) < 1024:
                self._node_ids[node_id] = encoded
        return encoded

    def _count(self, groups: Sequence[Sequence[Publication]],
               replies: Sequence[object]) -> list[str]:
        """Tally each report's code; return the refused symbols."""
        refused = []
        stats = self.stats
        for group, reply in zip(groups, replies, strict=True):
            if not isinstance(reply, list):  # the call failed or its reply was lost
                if reply is not UNKNOWN:
                    stats.errors += len(group)
                continue
            for publication, code in zip(group, reply, strict=True):
                if code == WRITTEN:
                    stats.written += 1
                elif code == REFUSED:
                    stats.refused += 1
                    refused.append(publication.symbol)
                    log.info("write of %s refused: another node holds its lease",
                             publication.symbol,
                             extra={"component": "sink.redis", "symbol": publication.symbol})
                elif code == NO_LEASE:
                    stats.unproven += 1
                elif code == STALE:
                    stats.stale += 1
                else:
                    stats.errors += 1
        return refused

    def _unreachable(self, error: BaseException) -> None:
        self.stats.errors += 1
        if not self._backoff.failing:
            log.warning("Redis unreachable (%s); reports are not written until it answers",
                        type(error).__name__, extra={"component": "sink.redis"})
        self._retry_at = time.monotonic() + self._backoff.delay()
