"""Stream names, the spreading of symbols over connections, and subscription messages.

A symbol's streams always share one connection (its depth, trades and ticker are then
ordered with each other and change connection together). A connection carries at most
``max_streams_per_connection`` streams (Binance: 1024), so it holds
``max_streams // streams_per_symbol`` symbols; new symbols fill the first connection with
room, and a connection left without symbols is closed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator

__all__ = ["StreamPlan", "combined_url", "stream_names", "subscription_messages"]

MAX_URL_CHARS = 4000
"""Streams beyond this URL length are subscribed with messages after connecting."""
STREAMS_PER_MESSAGE = 200
"""Streams per SUBSCRIBE / UNSUBSCRIBE message (each message counts against the limit of
incoming messages per second, whatever its size)."""


def stream_names(symbol: str, kinds: Iterable[str]) -> list[str]:
    """``("BTCUSDT", ["depth@100ms", "trade"])`` → ``["btcusdt@depth@100ms", "btcusdt@trade"]``."""
    lower = symbol.lower()
    return [f"{lower}@{kind}" for kind in kinds]


def combined_url(base: str, streams: list[str], *,
                 max_chars: int = MAX_URL_CHARS) -> tuple[str, list[str]]:
    """The combined-stream URL holding as many of ``streams`` as fit, and the rest."""
    prefix = f"{base.rstrip('/')}/stream?streams="
    length = len(prefix)
    taken = 0
    for stream in streams:
        extra = len(stream) + (1 if taken else 0)
        if taken and length + extra > max_chars:
            break
        length += extra
        taken += 1
    return prefix + "/".join(streams[:taken]), streams[taken:]


def subscription_messages(method: str, streams: list[str], ids: Iterator[int], *,
                          per_message: int = STREAMS_PER_MESSAGE) -> list[str]:
    """``SUBSCRIBE`` / ``UNSUBSCRIBE`` requests for ``streams``, ``per_message`` each."""
    messages = []
    for start in range(0, len(streams), per_message):
        params = streams[start:start + per_message]
        messages.append(json.dumps({"method": method, "params": params, "id": next(ids)},
                                   separators=(",", ":")))
    return messages


class StreamPlan:
    """Which connection slot carries which symbol."""

    def __init__(self, symbols_per_connection: int) -> None:
        if symbols_per_connection < 1:
            raise ValueError("a connection must carry at least one symbol")
        self.symbols_per_connection = symbols_per_connection
        self.slots: dict[int, dict[str, None]] = {}
        self.slot_of: dict[str, int] = {}
        self._ids = itertools.count()

    def assign(self, symbol: str) -> int:
        """The slot of ``symbol``, placing it in the first slot with room."""
        found = self.slot_of.get(symbol)
        if found is not None:
            return found
        slot = next((number for number, symbols in self.slots.items()
                     if len(symbols) < self.symbols_per_connection), None)
        if slot is None:
            slot = next(self._ids)
            self.slots[slot] = {}
        self.slots[slot][symbol] = None
        self.slot_of[symbol] = slot
        return slot

    def release(self, symbol: str) -> int | None:
        """Remove ``symbol``; returns the slot it was in. Empty slots are dropped."""
        slot = self.slot_of.pop(symbol, None)
        if slot is not None:
            symbols = self.slots[slot]
            symbols.pop(symbol, None)
            if not symbols:
                del self.slots[slot]
        return slot
