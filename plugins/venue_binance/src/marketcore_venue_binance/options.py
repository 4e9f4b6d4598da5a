"""The ``[venue]`` options of ``use = "binance"``, with the exchange's own limits as bounds.

Defaults are the numbers of the product specification and of Binance's documentation:
1024 streams and 5 incoming messages per second per connection, a 24 h connection
lifetime, a REST weight budget of 6000 per minute per IP (of which this client uses
well under half by default), depth snapshots of 1000 levels.
"""

from __future__ import annotations

import attrs
from attrs import validators as v

__all__ = [
    "DEFAULT_REST_ENDPOINTS",
    "DEFAULT_WS_ENDPOINTS",
    "EXCHANGE_INFO_WEIGHT",
    "MARKETS",
    "SNAPSHOT_LIMITS",
    "BinanceOptions",
    "depth_weight",
]

MARKETS = ("spot", "usdm")
"""``spot``: api.binance.com rules (``U == previous u + 1``); ``usdm``: USDⓈ-M futures
(fapi, ``pu == previous u``)."""

DEFAULT_WS_ENDPOINTS = {
    "spot": ("wss://stream.binance.com:9443", "wss://data-stream.binance.vision",
             "wss://stream.binance.com:443"),
    "usdm": ("wss://fstream.binance.com",),
}
DEFAULT_REST_ENDPOINTS = {
    "spot": ("https://api.binance.com", "https://api-gcp.binance.com",
             "https://api1.binance.com", "https://api2.binance.com"),
    "usdm": ("https://fapi.binance.com",),
}
SNAPSHOT_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)
"""The ``limit`` values ``GET /api/v3/depth`` accepts."""

STREAM_KINDS = ("depth", "depth@100ms", "depth@0ms", "depth@250ms", "depth@500ms", "trade",
                "aggTrade", "ticker", "bookTicker")


def depth_weight(limit: int, market: str = "spot") -> int:
    """The request weight of one depth snapshot of ``limit`` levels.

    Spot ``/api/v3/depth``: 5 up to 100 levels, 25 up to 500, 50 up to 1000, 250 up to
    5000. USDⓈ-M ``/fapi/v1/depth``: 2 up to 50, 5 at 100, 10 at 500, 20 at 1000.
    """
    if market == "spot":
        brackets = ((100, 5), (500, 25), (1000, 50))
        fallback = 250
    else:
        brackets = ((50, 2), (100, 5), (500, 10))
        fallback = 20
    for top, weight in brackets:
        if limit <= top:
            return weight
    return fallback


EXCHANGE_INFO_WEIGHT = {"spot": 20, "usdm": 1}


def _urls(schemes: tuple[str, ...]):
    def check(_instance, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
        for url in value:
            if not isinstance(url, str) or not url.startswith(schemes):
                raise ValueError(
                    f"{attribute.name}: expected URLs starting with {' or '.join(schemes)}, "
                    f"found {url!r}")
    return check


def _streams(_instance, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"{attribute.name}: expected at least one stream")
    for stream in value:
        if stream not in STREAM_KINDS:
            raise ValueError(f"{attribute.name}: expected streams among "
                             f"{', '.join(STREAM_KINDS)}, found {stream!r}")
    depth = [s for s in value if s.startswith("depth")]
    if len(depth) > 1:
        raise ValueError(f"{attribute.name}: expected at most one depth stream, found {depth}")


def _positive(_instance, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected a number > 0, found {value!r}")


def _number(minimum: float | None = None, maximum: float | None = None, *, strict: bool = False):
    validators = [v.instance_of((int, float))]
    if minimum is not None:
        validators.append(v.gt(minimum) if strict else v.ge(minimum))
    if maximum is not None:
        validators.append(v.le(maximum))
    return validators


@attrs.frozen
class BinanceOptions:
    """Everything ``[venue]`` may say when ``use = "binance"``; see the README for a table."""

    market: str = attrs.field(default="spot", validator=v.in_(MARKETS))
    """``spot`` or ``usdm`` (USDⓈ-M futures, with the ``pu`` sequencing rule)."""
    streams: tuple[str, ...] = attrs.field(
        default=("depth@100ms", "trade", "ticker"), validator=_streams)
    """Streams per symbol: one depth stream, ``trade`` or ``aggTrade``, ``ticker``, and
    optionally ``bookTicker`` (used only to cross-check the book, never applied)."""
    ws_endpoints: tuple[str, ...] = attrs.field(default=(), validator=_urls(("ws://", "wss://")))
    """WebSocket base URLs, tried in order; empty: the market's public endpoints."""
    rest_endpoints: tuple[str, ...] = attrs.field(
        default=(), validator=_urls(("http://", "https://")))
    """REST base URLs for snapshots and exchange info; empty: the market's public ones."""

    # -- book sync and snapshots -------------------------------------------------
    snapshot_limit: int = attrs.field(default=1000, validator=v.in_(SNAPSHOT_LIMITS))
    """Levels per side of each REST depth snapshot (weight 5/25/50/250 by bracket)."""
    snapshot_weight_per_minute: int = attrs.field(
        default=2400, validator=[v.instance_of(int), v.ge(1), v.le(6000)])
    """The REST weight this venue may spend per rolling minute (Binance allows 6000 per IP)."""
    snapshot_jitter_s: float = attrs.field(default=0.25, validator=_number(0, 60))
    """Random delay (0..this) before each REST request, so resyncs do not arrive in bursts."""
    snapshot_concurrency: int = attrs.field(
        default=2, validator=[v.instance_of(int), v.ge(1), v.le(16)])
    snapshot_timeout_s: float = attrs.field(default=10.0, validator=_number(0, strict=True))
    resnapshot_interval_s: float = attrs.field(default=0.0, validator=_number(0))
    """Re-snapshot each synced book this often (0: never), bounding the drift of levels
    beyond the snapshot depth, which stay unknown until they change."""
    max_buffered_events: int = attrs.field(
        default=300, validator=[v.instance_of(int), v.ge(4), v.le(100_000)])
    """Diff events kept per symbol while it waits for a snapshot (oldest dropped first)."""
    exchange_info: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Read tick and lot sizes from ``exchangeInfo``; otherwise (or when it fails) they are
    inferred from the snapshot's prices and quantities."""
    check_precision: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Reject depth frames and snapshots carrying a price or quantity of more than 15
    significant digits (two such decimals could become one float key). One scan per
    depth frame, about a third of its decoding time; Binance never sends such numbers."""
    verify_books: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Keep a book per symbol inside the venue to reject frames that cross it (a crossed
    book resyncs the symbol) and to cross-check ``bookTicker``. Costs one more apply."""

    # -- connections -------------------------------------------------------------
    max_streams_per_connection: int = attrs.field(
        default=1024, validator=[v.instance_of(int), v.ge(1), v.le(1024)])
    messages_per_second: float = attrs.field(default=4.0, validator=_number(0, 5, strict=True))
    """Client messages per rolling second per connection (Binance disconnects above 5;
    the default keeps one for the pong the WebSocket library sends by itself)."""
    watchdog_s: float = attrs.field(default=30.0, validator=_number(0, strict=True))
    """A connection that delivers no frame for this long is closed and reopened."""
    rotate_after_s: float = attrs.field(default=23 * 3600.0, validator=_number(0, strict=True))
    """Open a replacement connection this long after connecting (Binance cuts at 24 h)."""
    handover_timeout_s: float = attrs.field(default=10.0, validator=_number(0, strict=True))
    """How long old and new connections overlap at most during a rotation."""
    connect_timeout_s: float = attrs.field(default=10.0, validator=_number(0, strict=True))
    backoff_initial_s: float = attrs.field(default=0.5, validator=_number(0, strict=True))
    backoff_max_s: float = attrs.field(default=30.0, validator=_number(0, strict=True))
    backoff_factor: float = attrs.field(default=2.0, validator=_number(1))
    stable_after_s: float = attrs.field(default=10.0, validator=_number(0))
    """A connection that stayed up this long resets the backoff."""
    breaker_failures: int = attrs.field(default=3, validator=[v.instance_of(int), v.ge(1)])
    """Consecutive failures that open an endpoint's circuit breaker."""
    breaker_cooldown_s: float = attrs.field(default=60.0, validator=_number(0))
    """How long an endpoint with an open breaker is skipped."""
    max_frame_bytes: int = attrs.field(
        default=1 << 20, validator=[v.instance_of(int), v.ge(1024)])
    """Frames larger than this are counted as ``oversized`` and skipped."""

    # -- diagnostics ---------------------------------------------------------------
    malformed_log_interval_s: float = attrs.field(default=60.0, validator=_number(0))
    """Bad input is logged once per kind per this interval (and always counted)."""

    # -- local exchange simulator ------------------------------------------------------
    simulate: tuple[str, ...] = ()
    """Recordings to serve from the bundled simulator, started inside ``run`` on a free
    loopback port; the endpoints then point at it (no internet needed)."""
    simulate_speed: float = attrs.field(default=1.0, validator=_number(0))
    """Replay speed of the simulator (1 = real time, 0 = as fast as possible)."""
    simulate_loop: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Start the recordings over when they end."""

    def __attrs_post_init__(self) -> None:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s: expected a number >= backoff_initial_s, found "
                             f"{self.backoff_max_s!r}")
        if self.futures and self.snapshot_limit > 1000:
            raise ValueError("snapshot_limit: expected at most 1000 for usdm, found "
                             f"{self.snapshot_limit}")
        if len(self.streams) > self.max_streams_per_connection:
            raise ValueError(f"max_streams_per_connection: expected at least {len(self.streams)} "
                             f"(the streams of one symbol), found "
                             f"{self.max_streams_per_connection}")

    @property
    def futures(self) -> bool:
        return self.market == "usdm"

    @property
    def depth_stream(self) -> str | None:
        return next((s for s in self.streams if s.startswith("depth")), None)

    def ws_urls(self) -> tuple[str, ...]:
        return tuple(u.rstrip("/") for u in self.ws_endpoints or DEFAULT_WS_ENDPOINTS[self.market])

    def rest_urls(self) -> tuple[str, ...]:
        return tuple(u.rstrip("/")
                     for u in self.rest_endpoints or DEFAULT_REST_ENDPOINTS[self.market])
