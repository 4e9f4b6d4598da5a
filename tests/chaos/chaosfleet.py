"""The chaos suite's fleet: ``marketcore_coord_redis.testing.Fleet`` with its settings.

The harness itself (node processes stopped by pid, the lease keys, report and
audit streams read back from Redis, the safety audit, ``settled`` and
``covered``) is the coord_redis plugin's public one; a node may reach Redis
through a :class:`FaultProxy` (``fleet.start(node, url=proxy.url)``). What is
the chaos suite's own: the lease TTL and settling quiet time of the reduced and
the full run, the three nodes and twelve symbols of most scenarios, and
``MARKETCORE_CHAOS_DEBUG`` for ``--debug`` nodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from chaosrun import counts
from marketcore_coord_redis.testing import Fleet, RedisCommands

__all__ = ["FLEET_OPTIONS", "NODES", "SYMBOLS", "ChaosFleet", "start_settled"]

FLEET_OPTIONS = {"lease_ttl_ms": counts(1200, 2000), "socket_timeout_ms": counts(400, 600),
                 "heartbeat_ms": 300, "node_ttl_ms": 3000, "watch_ms": 100, "min_hold_ms": 500,
                 "acquire_retry_ms": 100, "rebalance_ms": 2000}
"""The full run uses the spec's default lease TTL (2 s); the reduced run 1.2 s, so the
scenarios that wait in multiples of the TTL are shorter. Membership ticks are faster
than the defaults so a test fleet settles in a few seconds; the socket timeout stays
≤ TTL / 3 as required."""


SYMBOLS = tuple(f"C{i:02d}USDT" for i in range(12))
NODES = ("node-a", "node-b", "node-c")


class ChaosFleet(Fleet):
    """A :class:`Fleet` with the chaos suite's defaults: :data:`FLEET_OPTIONS`, a quiet
    time of 1 s to settle in the reduced run (2 s in the full one), and ``--debug``
    nodes when ``MARKETCORE_CHAOS_DEBUG`` is set."""

    def __init__(self, server: RedisCommands, directory: Path, *, symbols: Iterable[str],
                 coordinator: Mapping[str, Any] = FLEET_OPTIONS, **options: Any) -> None:
        options.setdefault("quiet_s", counts(1.0, 2.0))
        options.setdefault("debug", bool(os.environ.get("MARKETCORE_CHAOS_DEBUG")))
        super().__init__(server, directory, symbols=symbols, coordinator=coordinator,
                         **options)


def start_settled(fleet: Fleet, nodes: Iterable[str] = NODES,
                  urls: Mapping[str, str] | None = None) -> dict[str, str]:
    """Start ``nodes`` (each on its URL in ``urls``, else the server's) and wait up to
    90 s for the fleet to settle; return symbol → holder."""
    nodes = tuple(nodes)
    for node_id in nodes:
        fleet.start(node_id, url=(urls or {}).get(node_id))
    return fleet.settled(nodes, timeout=90)
