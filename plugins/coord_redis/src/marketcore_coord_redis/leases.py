"""Writer leases: acquire, renew, release and read back, many symbols per round trip.

Each operation is one Lua script per symbol (``lua/acquire.lua`` …), sent as a
batch. A lease's validity is measured on this node's monotonic clock from the
moment the acquire or renew was *sent*: Redis starts the TTL when the command
arrives, which is later, so ``sent + ttl`` (less a 1 % clock-rate margin) never
outlives the lease in Redis.

An acquire whose reply is lost is never sent again: :meth:`LeaseClient.inspect`
reads the lease back and tells whether this process got it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from marketcore.components import WriterToken

from marketcore_coord_redis.keys import KeyLayout
from marketcore_coord_redis.scripts import lua_script
from marketcore_coord_redis.transport import UNKNOWN, Client, is_cluster, run_batch

__all__ = ["CLOCK_MARGIN", "Acquired", "Inspection", "Lease", "LeaseClient"]

CLOCK_MARGIN = 0.01
"""Fraction of the TTL given up for the difference between this clock's and Redis's rate."""

HOLDERS_PER_READ = 1000
"""Lease keys read per round trip by :meth:`LeaseClient.holders`."""

RENEWED, OTHER_HOLDER, NO_LEASE, TOKEN_MOVED = 1, 0, -1, -2
"""Replies of ``renew.lua`` (and ``fenced_write.lua``)."""


@attrs.define(slots=True)
class Lease:
    """A lease this node holds (or held until its validity ran out)."""

    symbol: str
    token: WriterToken
    acquired_at: float
    """Monotonic time of the first acquire: the minimum hold counts from here."""
    sent_at: float
    """Monotonic send time of the last acquire or renew that succeeded."""
    valid_until: float
    """Monotonic time until which the lease is provably this node's."""

    def proven(self, now: float) -> bool:
        return now < self.valid_until


@attrs.frozen(slots=True)
class Acquired:
    """The outcome of one acquire."""

    symbol: str
    status: str
    """``ok``, ``held`` (another holder), ``wait`` (new epoch, quiet time),
    ``unknown`` (reply lost: read it back) or ``error``."""
    token: WriterToken | None = None
    holder: str = ""
    retry_ms: int = 0
    """For ``held``: the lease's remaining TTL; for ``wait``: the quiet time left."""
    epoch: int = 0
    """The epoch the server reported (``ok`` and ``wait``)."""


@attrs.frozen(slots=True)
class Inspection:
    """A lease read back: who holds it and with which token."""

    symbol: str
    holder: str
    instance: str
    token: WriterToken | None
    pttl_ms: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LeaseClient:
    """The lease scripts for one node process over one Redis client."""

    def __init__(self, client: Client, layout: KeyLayout, *, node_id: str, instance: str,
                 ttl_ms: int) -> None:
        self.client = client
        self.layout = layout
        self.node_id = node_id.encode()
        self.instance = instance.encode()
        self.ttl_ms = ttl_ms
        self._ttl = b"%d" % ttl_ms

    def valid_until(self, sent_at: float) -> float:
        return sent_at + self.ttl_ms / 1000 * (1 - CLOCK_MARGIN)

    def _keys(self, symbol: str) -> tuple[bytes, bytes]:
        keys = self.layout.symbol(symbol)
        return keys.lease, keys.token

    async def acquire(self, symbols: Sequence[str], *, min_epoch: int) -> list[Acquired]:
        """Try to acquire each symbol; see :class:`Acquired` for the outcomes.

        Raises :class:`~marketcore_coord_redis.transport.BatchInterrupted` when
        the connection fails; calls without a reply then have status ``unknown``.
        """
        args = (self.node_id, self.instance, self._ttl, b"%d" % min_epoch)
        calls = [(self._keys(s), args) for s in symbols]
        replies = await run_batch(self.client, lua_script("acquire"), calls)
        return [self.outcome(s, r) for s, r in zip(symbols, replies, strict=True)]

    @staticmethod
    def outcome(symbol: str, reply: Any) -> Acquired:
        """An acquire reply (or :data:`UNKNOWN`) as an :class:`Acquired`."""
        if reply is UNKNOWN:
            return Acquired(symbol, "unknown")
        if not isinstance(reply, list) or len(reply) != 3:
            return Acquired(symbol, "error", holder=_text(reply))
        status = _text(reply[0])
        if status == "OK":
            return Acquired(symbol, "ok", WriterToken(int(reply[1]), int(reply[2])),
                            epoch=int(reply[1]))
        if status == "HELD":
            return Acquired(symbol, "held", holder=_text(reply[1]), retry_ms=int(reply[2]))
        if status == "WAIT":
            return Acquired(symbol, "wait", retry_ms=int(reply[1]), epoch=int(reply[2]))
        return Acquired(symbol, "error", holder=status)

    async def renew(self, leases: Sequence[Lease]) -> list[Any]:
        """Renew each lease: ``1`` renewed, ``0`` other holder, ``-1`` none, ``-2`` token moved."""
        calls = [(self._keys(lease.symbol),
                  (self.node_id, self._ttl, b"%d" % lease.token.epoch,
                   b"%d" % lease.token.counter)) for lease in leases]
        return await run_batch(self.client, lua_script("renew"), calls)

    async def release(self, leases: Sequence[Lease]) -> list[Any]:
        """Release each lease still held with its token; ``1`` released, ``0`` not ours."""
        calls = [(self._keys(lease.symbol),
                  (self.node_id, b"%d" % lease.token.epoch, b"%d" % lease.token.counter))
                 for lease in leases]
        return await run_batch(self.client, lua_script("release"), calls)

    async def holders(self, symbols: Sequence[str]) -> dict[str, str]:
        """Who holds each symbol's lease now (symbols without a lease are left out).

        Read straight from the lease keys (``MGET``; per slot in Cluster mode), so
        every node that reads at the same moment sees the same owners — unlike the
        membership records, which lag by up to a heartbeat.
        """
        found: dict[str, str] = {}
        for start in range(0, len(symbols), HOLDERS_PER_READ):
            chunk = symbols[start:start + HOLDERS_PER_READ]
            keys = [self.layout.symbol(s).lease for s in chunk]
            values = await (self.client.mget_nonatomic(keys) if is_cluster(self.client)
                            else self.client.mget(keys))
            for symbol, value in zip(chunk, values, strict=True):
                if value:
                    found[symbol] = _text(value)
        return found

    async def inspect(self, symbols: Sequence[str]) -> list[Inspection | None]:
        """Read each lease back (after a lost acquire reply); ``None`` where no reply came."""
        replies = await run_batch(self.client, lua_script("inspect"),
                                  [(self._keys(s), ()) for s in symbols])
        found: list[Inspection | None] = []
        for symbol, reply in zip(symbols, replies, strict=True):
            if not isinstance(reply, list) or len(reply) != 5:
                found.append(None)
                continue
            holder, instance, epoch, counter, pttl = reply
            token = WriterToken(int(epoch), int(counter)) if int(counter) >= 0 else None
            found.append(Inspection(symbol, _text(holder), _text(instance), token, int(pttl)))
        return found

    def mine(self, inspection: Inspection) -> bool:
        """Whether a read-back lease belongs to this very process."""
        return (inspection.holder.encode() == self.node_id
                and inspection.instance.encode() == self.instance
                and inspection.token is not None and inspection.pttl_ms > 0)
