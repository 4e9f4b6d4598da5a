"""Normalized market-data events: what a venue emits and a SymbolState applies.

Every venue adapter turns its wire format into these few types, so the rest of
marketcore never sees a venue's JSON. They are attrs classes, frozen and slotted:
one allocation per event, never per price level.

Conventions:

* prices in quote currency and quantities in base units, as ``float``. Binance
  prices carry at most 15 significant digits, which a float64 round-trips exactly,
  so two different decimal prices never become one key (property-tested in the
  book's tests);
* times are UTC milliseconds (``*_ms``) for exchange times, and nanoseconds
  (``recv_ns``) for the local receive time, which is also the replay clock;
* book levels are ``(price, qty)`` pairs with *absolute* quantities; a quantity of
  ``0`` removes the level.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

__all__ = [
    "BookDelta",
    "BookSnapshot",
    "Event",
    "Instrument",
    "Level",
    "Side",
    "Ticker",
    "Trade",
    "VenueState",
    "VenueStatus",
]

Level = tuple[float, float]
"""One book level: ``(price, qty)``."""


class Side(enum.StrEnum):
    """The aggressor side of a trade: ``buy`` when the taker bought (lifted the ask)."""

    BUY = "buy"
    SELL = "sell"


class VenueState(enum.StrEnum):
    """What a venue says about its feed, for one symbol or for all of them."""

    CONNECTED = "connected"
    """Data flows and the book is in sync."""
    RESYNCING = "resyncing"
    """A sequence gap was seen; the book is being rebuilt from a new snapshot."""
    DEGRADED = "degraded"
    """Data flows but something is off (slow snapshots, a failing endpoint)."""
    DOWN = "down"
    """No data: disconnected, or the venue gave up on the symbol."""


@attrs.frozen(slots=True)
class BookSnapshot:
    """A full book image; replaces the whole local book of ``symbol``.

    ``last_update_id`` is the venue sequence id the image is valid at.
    """

    symbol: str
    bids: Sequence[Level]
    asks: Sequence[Level]
    last_update_id: int
    event_ms: int | None = None
    recv_ns: int = 0


@attrs.frozen(slots=True)
class BookDelta:
    """One batch of level changes covering venue ids ``first_update_id..last_update_id``.

    ``prev_update_id`` is the venue's own link to the previous batch where it has
    one (Binance futures ``pu``); ``None`` otherwise. The venue has already checked
    the sequence when it emits a delta: a SymbolState applies what it receives.
    """

    symbol: str
    bids: Sequence[Level]
    asks: Sequence[Level]
    first_update_id: int
    last_update_id: int
    event_ms: int
    recv_ns: int = 0
    prev_update_id: int | None = None


@attrs.frozen(slots=True)
class Trade:
    """One public trade. ``side`` is the aggressor (taker) side."""

    symbol: str
    price: float
    qty: float
    side: Side
    trade_id: int
    event_ms: int
    recv_ns: int = 0


@attrs.frozen(slots=True)
class Ticker:
    """Rolling 24 h statistics of ``symbol``."""

    symbol: str
    last: float
    change_pct: float
    high: float
    low: float
    volume: float
    quote_volume: float
    open: float
    trade_count: int
    event_ms: int
    recv_ns: int = 0


@attrs.frozen(slots=True)
class VenueStatus:
    """A change in the venue's feed state; ``symbol=None`` means every symbol."""

    state: VenueState
    symbol: str | None = None
    reason: str = ""
    recv_ns: int = 0


@attrs.frozen(slots=True)
class Instrument:
    """Static facts about ``symbol``: its price and quantity grid.

    A venue emits it once a symbol is subscribed (before or with the first
    snapshot), and again if the exchange changes the grid. Calculators that
    work on price levels (vacuums, volume profile) read ``tick_size``.
    """

    symbol: str
    tick_size: float
    lot_size: float = 0.0
    recv_ns: int = 0


Event = BookSnapshot | BookDelta | Trade | Ticker | VenueStatus | Instrument
"""Any event a venue emits."""
