"""Reading reports back from Redis: what the ``redis`` sink offers as a ``ReportReader``.

The fleet writes every report to the same Redis, so any node — or
``marketcore report`` run anywhere with the profile — reads the whole fleet's
latest reports here, whoever wrote them:

* :meth:`ReportStore.latest` is one ``GET`` of the symbol's report key: the
  report exactly as accepted by the fencing script (compact JSON), or None
  when there is none (never written, or expired after ``ttl_s``).
* :meth:`ReportStore.index` finds the report keys with ``SCAN`` (``COUNT``
  bounded, :data:`SCAN_COUNT`; in Cluster mode on every primary), reads them in
  batches of :data:`READ_BATCH` (``MGET``; per-slot ``GET`` in Cluster mode) and
  returns one entry per symbol, sorted by symbol. A key that expires between
  the scan and the read is left out.

Each index entry, from the report itself:

``symbol``
    the symbol the report is stored under (what :meth:`ReportStore.latest` takes);
``age_ms``
    this machine's wall clock now minus the report's ``updatedAt`` (ms; ``None``
    when absent) — the same definition as core's readers;
``status``
    ``ingestion.status`` (``ok``, ``degraded``, ``down``);
``owner``, ``epoch``, ``token``
    ``writer.nodeId``, ``writer.epoch``, ``writer.writerToken``: the node that
    wrote it and the fencing token it was accepted under.

A key whose value is not a JSON object (not written by this sink) is skipped
and counted (``sink.stats.read_skipped``), never raised.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from marketcore_coord_redis.keys import KeyLayout
from marketcore_coord_redis.stats import SinkStats
from marketcore_coord_redis.transport import Client, is_cluster

__all__ = ["READ_BATCH", "SCAN_COUNT", "ReportStore", "index_entry"]

SCAN_COUNT = 1000
"""``SCAN … COUNT``: keys the server looks at per call, so no call blocks it for long."""

READ_BATCH = 500
"""Report keys read per round trip by :meth:`ReportStore.index`."""


def index_entry(symbol: str, report: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """One ``ReportReader.index()`` entry from a decoded report stored under ``symbol``."""
    writer = report.get("writer")
    writer = writer if isinstance(writer, Mapping) else {}
    ingestion = report.get("ingestion")
    ingestion = ingestion if isinstance(ingestion, Mapping) else {}
    updated = report.get("updatedAt")
    age = now_ms - updated if isinstance(updated, int) and not isinstance(updated, bool) else None
    return {"symbol": symbol, "age_ms": age, "status": ingestion.get("status"),
            "owner": writer.get("nodeId"), "epoch": writer.get("epoch"),
            "token": writer.get("writerToken")}


class ReportStore:
    """Reads the latest reports of one key layout through a started client."""

    def __init__(self, layout: KeyLayout, stats: SinkStats) -> None:
        self.layout = layout
        self.stats = stats
        if layout.layout == "seed":
            self._match = "report:*"
            self._head, self._tail = "report:", ""
        else:
            self._match = f"{_glob_escape(layout.prefix)}:report:{{*}}"
            self._head, self._tail = f"{layout.prefix}:report:{{", "}"

    async def latest(self, client: Client, symbol: str) -> bytes | None:
        return await client.get(self.layout.symbol(symbol).report)

    async def index(self, client: Client) -> list[dict[str, Any]]:
        keys: dict[str, bytes] = {}
        async for key in client.scan_iter(match=self._match, count=SCAN_COUNT):
            symbol = self.symbol_of(key)
            if symbol is not None:
                keys[symbol] = key if isinstance(key, bytes) else key.encode()
        symbols = sorted(keys)
        entries = []
        for start in range(0, len(symbols), READ_BATCH):
            chunk = symbols[start:start + READ_BATCH]
            values = await _read(client, [keys[s] for s in chunk])
            now_ms = time.time_ns() // 1_000_000
            for symbol, value in zip(chunk, values, strict=True):
                if value is None:
                    continue  # expired since the scan
                report = _decode(value)
                if report is None:
                    self.stats.read_skipped += 1
                    continue
                entries.append(index_entry(symbol, report, now_ms))
        return entries

    def symbol_of(self, key: bytes | str) -> str | None:
        """The symbol of a report key of this layout (None: another kind of key)."""
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        if not (name.startswith(self._head) and name.endswith(self._tail)):
            return None
        symbol = name[len(self._head):len(name) - len(self._tail)]
        if not symbol or (self.layout.layout == "seed" and ":" in symbol):
            return None  # seed layout: report:writer:…, report:stream:…, report:audit:…
        return symbol if self.layout.symbol(symbol).report == name.encode() else None


async def _read(client: Client, keys: Sequence[bytes]) -> list[bytes | None]:
    if is_cluster(client):
        return list(await client.mget_nonatomic(keys))
    return list(await client.mget(keys))


def _decode(value: bytes | None) -> Mapping[str, Any] | None:
    if value is None:
        return None
    try:
        report = json.loads(value)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def _glob_escape(text: str) -> str:
    """Escape ``SCAN MATCH`` glob characters in a literal prefix."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)

