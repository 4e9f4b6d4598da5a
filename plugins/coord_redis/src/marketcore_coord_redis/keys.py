"""Key names: one place decides them, so the coordinator and the sink always agree.

Two layouts:

``marketcore`` (default), with the symbol as a Redis Cluster hash tag so every
key one script touches lives in one slot::

    <prefix>:lease:{BTCUSDT}    the lease: holder node id, expires after the lease TTL
    <prefix>:token:{BTCUSDT}    hash: epoch, counter, run, quiet, holder, ae, ac
    <prefix>:report:{BTCUSDT}   the latest accepted report (JSON), expires after ttl_s
    <prefix>:stream:{BTCUSDT}   optional capped stream of accepted reports
    <prefix>:audit:{BTCUSDT}    optional capped stream of newly accepted tokens
    <prefix>:node:<node id>     membership record (JSON), expires after node_ttl_ms
    <prefix>:nodes              set of member ids, kept beside the records
    <prefix>:fleet              pub/sub channel: "join <id>" / "leave <id>" notices

``seed``: the origin system's names (no hash tags, so not for Cluster mode)::

    report:writer:BTCUSDT, report:writer:token:BTCUSDT, report:BTCUSDT,
    report:stream:BTCUSDT, report:audit:BTCUSDT, nt:node:<node id>, nt:nodes, nt:fleet
"""

from __future__ import annotations

import attrs

from marketcore_coord_redis.options import RedisOptions

__all__ = ["KeyLayout", "SymbolKeys"]


@attrs.frozen(slots=True)
class SymbolKeys:
    """The keys of one symbol, encoded once (they are sent on every cycle)."""

    lease: bytes
    token: bytes
    report: bytes
    stream: bytes
    audit: bytes


@attrs.frozen
class KeyLayout:
    """Builds key names for one layout and prefix."""

    layout: str = "marketcore"
    prefix: str = "marketcore"
    _cache: dict[str, SymbolKeys] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    @classmethod
    def of(cls, options: RedisOptions) -> KeyLayout:
        return cls(options.key_layout, options.key_prefix)

    def symbol(self, symbol: str) -> SymbolKeys:
        """The five keys of ``symbol`` (cached; the universe bounds the cache)."""
        keys = self._cache.get(symbol)
        if keys is None:
            if self.layout == "seed":
                names = (f"report:writer:{symbol}", f"report:writer:token:{symbol}",
                         f"report:{symbol}", f"report:stream:{symbol}", f"report:audit:{symbol}")
            else:
                tag = "{" + symbol + "}"
                names = tuple(f"{self.prefix}:{kind}:{tag}"
                              for kind in ("lease", "token", "report", "stream", "audit"))
            keys = SymbolKeys(*(name.encode() for name in names))
            if len(self._cache) < 1_000_000:
                self._cache[symbol] = keys
        return keys

    def node(self, node_id: str) -> str:
        return f"nt:node:{node_id}" if self.layout == "seed" else f"{self.prefix}:node:{node_id}"

    @property
    def nodes(self) -> str:
        return "nt:nodes" if self.layout == "seed" else f"{self.prefix}:nodes"

    @property
    def channel(self) -> str:
        """The pub/sub channel of join and leave notices (peers look members up at once)."""
        return "nt:fleet" if self.layout == "seed" else f"{self.prefix}:fleet"
