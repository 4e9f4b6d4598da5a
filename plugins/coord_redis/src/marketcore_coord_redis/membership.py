"""Membership: each node's record in Redis, and who is alive.

A node writes ``<prefix>:node:<id>`` (JSON: node id, process instance, host,
pid, start time, metrics URL, the symbols it owns) with a TTL (default 5 s),
refreshed about every second, and adds its id to the set ``<prefix>:nodes``
kept beside the records, so peers find members without ``SCAN``.

A member is alive while its record was refreshed within the member timeout
(default: one lease TTL). Age is read from the record's remaining TTL on the
server (``PTTL``), never from another machine's clock. Ids whose record
expired are removed from the set by whoever notices.

Joins and leaves are also announced on the channel ``<prefix>:fleet``
(``join <id>`` / ``leave <id>``): peers subscribed to it look the members up
at once instead of at their next ``watch_ms`` poll. A notice is only a hint
to look — membership itself is always read from the records.

Graceful leave deletes the record and the set entry and announces it in one
round trip, so peers see the node gone at once instead of a TTL later.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping

import attrs
import cattrs

from marketcore_coord_redis.keys import KeyLayout
from marketcore_coord_redis.transport import Client, is_cluster

__all__ = ["Member", "Membership", "NodeRecord"]

_CONVERTER = cattrs.Converter()


@attrs.frozen
class NodeRecord:
    """What a node says about itself in ``<prefix>:node:<id>``."""

    node_id: str
    instance: str
    """``<node id>#<nonce>``: tells two processes with the same node id apart."""
    host: str
    pid: int
    started_at_ms: int
    metrics_url: str = ""
    symbols: tuple[str, ...] = ()
    """The symbols this node holds leases for."""

    def to_json(self) -> bytes:
        return json.dumps(_CONVERTER.unstructure(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> NodeRecord:
        return _CONVERTER.structure(json.loads(data), cls)


@attrs.frozen
class Member:
    """A live member as seen in one look-up."""

    record: NodeRecord
    age_ms: int
    """Time since the record was last refreshed (from its remaining TTL)."""


def this_process(node_id: str, *, host: str = "", metrics_url: str = "") -> NodeRecord:
    """The record of the running process, with a fresh instance nonce."""
    return NodeRecord(node_id=node_id, instance=f"{node_id}#{os.urandom(4).hex()}",
                      host=host or socket.gethostname(), pid=os.getpid(),
                      started_at_ms=time.time_ns() // 1_000_000, metrics_url=metrics_url)


class Membership:
    """Reads and writes membership records for one node."""

    def __init__(self, client: Client, layout: KeyLayout, me: NodeRecord, *,
                 node_ttl_ms: int, member_timeout_ms: int) -> None:
        self.client = client
        self.layout = layout
        self.me = me
        self.node_ttl_ms = node_ttl_ms
        self.member_timeout_ms = member_timeout_ms

    def _pipeline(self):
        return self.client.pipeline() if is_cluster(self.client) else \
            self.client.pipeline(transaction=False)

    async def heartbeat(self, symbols: tuple[str, ...]) -> None:
        """Write this node's record (with its TTL), then make sure its id is in the set."""
        record = attrs.evolve(self.me, symbols=symbols)
        pipe = self._pipeline()
        pipe.set(self.layout.node(self.me.node_id), record.to_json(), px=self.node_ttl_ms)
        pipe.sadd(self.layout.nodes, self.me.node_id)
        await pipe.execute()

    async def members(self) -> Mapping[str, Member]:
        """Every live member by node id (this node included when its record is fresh)."""
        ids = sorted(i.decode() for i in await self.client.smembers(self.layout.nodes))
        if not ids:
            return {}
        pipe = self._pipeline()
        for node_id in ids:
            key = self.layout.node(node_id)
            pipe.get(key)
            pipe.pttl(key)
        replies = await pipe.execute()
        alive: dict[str, Member] = {}
        gone = []
        for index, node_id in enumerate(ids):
            data, ttl = replies[2 * index], replies[2 * index + 1]
            if data is None:
                gone.append(node_id)
                continue
            age = self.node_ttl_ms - ttl if ttl >= 0 else 0
            if age > self.member_timeout_ms:
                continue  # silent for too long: treated as gone, its record expires later
            try:
                record = NodeRecord.from_json(data)
            except (ValueError, TypeError, cattrs.BaseValidationError):
                continue  # not a record we understand: not a member
            alive[node_id] = Member(record, age)
        if gone:
            await self.client.srem(self.layout.nodes, *gone)
        return alive

    async def announce(self, event: str) -> None:
        """Publish ``<event> <node id>`` on the fleet channel (peers look members up)."""
        await self.client.publish(self.layout.channel, f"{event} {self.me.node_id}")

    async def leave(self) -> None:
        """Delete this node's record and set entry, then announce the leave."""
        if is_cluster(self.client):  # keys in different slots, and PUBLISH has none
            await self.client.delete(self.layout.node(self.me.node_id))
            await self.client.srem(self.layout.nodes, self.me.node_id)
            await self.announce("leave")
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.layout.node(self.me.node_id))
        pipe.srem(self.layout.nodes, self.me.node_id)
        pipe.publish(self.layout.channel, f"leave {self.me.node_id}")
        await pipe.execute()
