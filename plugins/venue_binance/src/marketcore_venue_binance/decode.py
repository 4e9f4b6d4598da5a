"""Binance frames from bytes straight to numbers: typed msgspec structs, validated in C.

Every frame of a combined stream is ``{"stream": name, "data": event}``. The first frame
of a stream is decoded in two steps — the envelope with ``data`` left as raw bytes (no
copy), then the event by the struct of its stream (depth, trade, aggTrade, ticker,
bookTicker); after that, frames of a known stream name are recognised by their first
bytes and decoded in one pass by the struct of the whole frame. The structs decode in
msgspec's *lax* mode, which turns Binance's decimal strings (``"60000.01"``) into floats
during parsing, and their fields carry bounds (a price is ``> 0`` and below
:data:`MAX_PRICE`, a quantity ``>= 0``), which msgspec checks in the same pass; NaN fails
every bound. So the hot path holds no Python loop over price levels at all.

**Floats as book keys.** Two different prices must never become one key. A decimal of at
most 15 significant digits round-trips through a float64 exactly, and Binance prices
have at most 15 (the tests check the property on random decimal strings). In depth
frames and snapshots — the prices that become book keys — a decimal string with more
significant digits is rejected as ``precision`` before the float is used; that check
is one regular-expression scan per frame, which only looks closer at strings of 16
characters or more. (Trade prices are not keys; the 24 h ticker's volumes legitimately
have more digits.)

Anything that is not a well-formed event raises :class:`MalformedFrame` with a *kind*
(``garbage``, ``missing_fields``, ``bad_type``, ``absurd``, ``precision``, ``oversized``,
``unknown_stream``), which the venue counts and logs once per kind per interval.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

import msgspec

__all__ = [
    "MAX_PRICE",
    "MAX_QTY",
    "AggTrade",
    "BookTicker",
    "DepthSnapshot",
    "DepthUpdate",
    "Envelope",
    "ExchangeInfo",
    "FrameDecoder",
    "MalformedFrame",
    "TradeEvent",
    "TwentyFourHourTicker",
    "grid_of",
    "significant_digits",
]

MAX_PRICE = 1e9
"""No Binance symbol trades anywhere near a billion quote units; above it is absurd."""
MAX_QTY = 1e15
"""Beyond the 15 significant digits a float keeps; above it is absurd."""
MAX_PERCENT = 1e6

Price = Annotated[float, msgspec.Meta(gt=0.0, lt=MAX_PRICE)]
Qty = Annotated[float, msgspec.Meta(ge=0.0, lt=MAX_QTY)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0, lt=MAX_QTY)]
Percent = Annotated[float, msgspec.Meta(gt=-MAX_PERCENT, lt=MAX_PERCENT)]
Id = Annotated[int, msgspec.Meta(ge=0)]
Level = tuple[Price, Qty]


class MalformedFrame(Exception):
    """A frame that cannot be used; ``kind`` says why, in one word, for the counters."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


# ---------------------------------------------------------------------------
# The structs
# ---------------------------------------------------------------------------


class Envelope(msgspec.Struct):
    """A combined-stream frame, a reply to a client request, or a server notice."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    """The event, undecoded (empty when absent)."""
    id: int | str | None = None
    error: msgspec.Raw = msgspec.Raw()
    """A request's error (empty when absent)."""
    e: str | None = None
    last_update_id: int | None = msgspec.field(name="lastUpdateId", default=None)
    """Set when the line is a REST depth snapshot body (recordings hold them inline)."""


class DepthUpdate(msgspec.Struct, frozen=True):
    """``depthUpdate``: absolute quantities for the levels that changed in ``[U, u]``."""

    symbol: str = msgspec.field(name="s")
    first_update_id: Id = msgspec.field(name="U")
    last_update_id: Id = msgspec.field(name="u")
    event_ms: int = msgspec.field(name="E")
    bids: list[Level] = msgspec.field(name="b")
    asks: list[Level] = msgspec.field(name="a")
    prev_update_id: int | None = msgspec.field(name="pu", default=None)
    """USDⓈ-M futures only: ``u`` of the previous event of this symbol."""


class TradeEvent(msgspec.Struct, frozen=True):
    """``trade``: one fill. ``m`` (buyer is maker) true means the aggressor sold."""

    symbol: str = msgspec.field(name="s")
    trade_id: Id = msgspec.field(name="t")
    price: Price = msgspec.field(name="p")
    qty: Qty = msgspec.field(name="q")
    trade_ms: int = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")
    order_type: str = msgspec.field(name="X", default="MARKET")
    """USDⓈ-M futures: ``MARKET`` for order-book trades, else insurance fund / ADL."""


class AggTrade(msgspec.Struct, frozen=True):
    """``aggTrade``: fills of one taker order at one price, ids ``f..l``."""

    symbol: str = msgspec.field(name="s")
    agg_id: Id = msgspec.field(name="a")
    price: Price = msgspec.field(name="p")
    qty: Qty = msgspec.field(name="q")
    first_trade_id: int = msgspec.field(name="f")
    last_trade_id: int = msgspec.field(name="l")
    trade_ms: int = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")


class TwentyFourHourTicker(msgspec.Struct, frozen=True):
    """``24hrTicker``: rolling 24 h statistics, pushed every second."""

    symbol: str = msgspec.field(name="s")
    event_ms: int = msgspec.field(name="E")
    last: Price = msgspec.field(name="c")
    change_pct: Percent = msgspec.field(name="P")
    high: NonNegative = msgspec.field(name="h")
    low: NonNegative = msgspec.field(name="l")
    volume: NonNegative = msgspec.field(name="v")
    quote_volume: NonNegative = msgspec.field(name="q")
    open: NonNegative = msgspec.field(name="o")
    trade_count: Id = msgspec.field(name="n")


class BookTicker(msgspec.Struct, frozen=True):
    """``bookTicker``: best bid and ask after book update ``u``."""

    symbol: str = msgspec.field(name="s")
    update_id: Id = msgspec.field(name="u")
    bid: Price = msgspec.field(name="b")
    bid_qty: Qty = msgspec.field(name="B")
    ask: Price = msgspec.field(name="a")
    ask_qty: Qty = msgspec.field(name="A")


class DepthSnapshot(msgspec.Struct, frozen=True):
    """A REST depth snapshot: the book at ``lastUpdateId``."""

    last_update_id: Id = msgspec.field(name="lastUpdateId")
    bids: list[Level]
    asks: list[Level]
    event_ms: int | None = msgspec.field(name="E", default=None)


class _Filter(msgspec.Struct):
    filter_type: str = msgspec.field(name="filterType")
    tick_size: str | None = msgspec.field(name="tickSize", default=None)
    step_size: str | None = msgspec.field(name="stepSize", default=None)


class _SymbolInfo(msgspec.Struct):
    symbol: str
    filters: list[_Filter] = []


class ExchangeInfo(msgspec.Struct):
    """The part of ``exchangeInfo`` this venue reads: each symbol's tick and lot size."""

    symbols: list[_SymbolInfo] = []

    def grids(self) -> dict[str, tuple[float, float]]:
        """``{symbol: (tick_size, lot_size)}`` for the symbols with both filters."""
        found = {}
        for info in self.symbols:
            tick = lot = None
            for f in info.filters:
                if f.filter_type == "PRICE_FILTER" and f.tick_size:
                    tick = float(f.tick_size)
                elif f.filter_type == "LOT_SIZE" and f.step_size:
                    lot = float(f.step_size)
            if tick and tick > 0:
                found[info.symbol] = (tick, lot or 0.0)
        return found


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

_LONG_TOKEN = re.compile(rb'"([^"]{16,})"')
"""Quoted text of 16 characters or more: the only strings that can hold a decimal of more
than 15 significant digits (``"61837.63000000"``, Binance's usual form, has 14)."""
_NUMBER_CHARS = b"0123456789.+-"


def significant_digits(text: str | bytes) -> int:
    """Significant digits of a plain decimal string: ``"0.00012300"`` has 3."""
    raw = text.decode() if isinstance(text, bytes) else text
    digits = raw.strip('"+- ').replace(".", "").strip("0")
    return len(digits)


def _check_precision(raw: bytes, start: int = 0) -> None:
    """Raise if a quoted decimal in ``raw`` (from ``start``) has more than 15 significant
    digits. One regular-expression scan; matches are rare and checked one by one (a match
    may also be the text *between* two strings: it is skipped unless purely numeric, and
    the scan goes on from its closing quote, so no string is missed)."""
    search = _LONG_TOKEN.search
    match = search(raw, start)
    while match is not None:
        token = match.group(1)
        if not token.strip(_NUMBER_CHARS) and significant_digits(token) > 15:
            raise MalformedFrame("precision", f"{token.decode()[:40]} has more than 15 "
                                 "significant digits")
        match = search(raw, match.end() - 1)


def _kind_of(error: msgspec.ValidationError) -> str:
    text = str(error)
    if "missing required field" in text:
        return "missing_fields"
    if text.startswith("Expected `") and ", got `" in text:
        return "bad_type"
    if "Expected `array` of length" in text:
        return "bad_type"
    return "absurd"


def grid_of(values: list[tuple[float, float]], column: int) -> float:
    """The finest decimal step among ``values[i][column]`` (a tick or lot size guess).

    Floats of at most 15 significant digits print as their shortest decimal, so the
    decimals of ``repr`` are those of the string the exchange sent, trailing zeros
    removed. ``0.0`` when there are no values.
    """
    finest = None
    for row in values:
        exponent = Decimal(repr(row[column])).normalize().as_tuple().exponent
        if isinstance(exponent, int) and (finest is None or exponent < finest):
            finest = exponent
    if finest is None:
        return 0.0
    return float(Decimal(1).scaleb(min(finest, 0)))


# ---------------------------------------------------------------------------
# The decoder
# ---------------------------------------------------------------------------

_KINDS = {
    "depth": DepthUpdate,
    "trade": TradeEvent,
    "aggTrade": AggTrade,
    "ticker": TwentyFourHourTicker,
    "bookTicker": BookTicker,
}
_PRECISION_CHECKED = frozenset({"depth"})
"""Kinds whose prices become book keys (snapshots are checked too). Trade prices are
not keys; the 24 h ticker's volumes legitimately carry more digits
(``"3266598649.94325113"``)."""


_FRAME_STRUCTS = {
    kind: msgspec.defstruct(f"{struct.__name__}Frame", [("stream", str), ("data", struct)])
    for kind, struct in _KINDS.items()
}
"""A whole combined-stream frame of each kind, for decoding in one pass."""
_STREAM_PREFIX = b'{"stream":"'
_CACHE_SIZE = 65_536


class FrameDecoder:
    """Decodes raw frames into ``(symbol, kind, event)``; raises :class:`MalformedFrame`.

    ``kind`` is the stream's kind without its symbol and speed: ``depth``, ``trade``,
    ``aggTrade``, ``ticker``, ``bookTicker``; ``None`` for frames that are not stream
    events (replies to SUBSCRIBE, ``serverShutdown``, a recorded REST snapshot body), in
    which case the event is the :class:`Envelope`.
    """

    __slots__ = ("_decoders", "_envelope", "_frames", "_kind_cache", "_snapshot",
                 "check_precision", "max_frame_bytes")

    def __init__(self, *, max_frame_bytes: int = 1 << 20, check_precision: bool = True) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.check_precision = check_precision
        self._envelope = msgspec.json.Decoder(Envelope)
        self._decoders = {kind: msgspec.json.Decoder(struct, strict=False)
                          for kind, struct in _KINDS.items()}
        self._snapshot = msgspec.json.Decoder(DepthSnapshot, strict=False)
        self._kind_cache: dict[str, tuple[str, str] | None] = {}
        self._frames: dict[bytes, tuple[str, str, msgspec.json.Decoder, bool]] = {}
        """Stream name (bytes) → what its frames are, for the one-pass path."""

    def stream_kind(self, stream: str) -> tuple[str, str] | None:
        """``"btcusdt@depth@100ms"`` → ``("BTCUSDT", "depth")``; ``None`` if unknown."""
        found = self._kind_cache.get(stream, False)
        if found is False:
            symbol, _, rest = stream.partition("@")
            name = rest.partition("@")[0]
            found = (symbol.upper(), name) if symbol and name in _KINDS else None
            if len(self._kind_cache) < _CACHE_SIZE:
                self._kind_cache[stream] = found
        return found

    def frame(self, raw: bytes) -> tuple[str | None, str | None, Any]:
        if len(raw) > self.max_frame_bytes:
            raise MalformedFrame("oversized", f"{len(raw)} bytes")
        # One pass for the usual case: a combined-stream frame of a stream seen before,
        # ``{"stream":"<name>","data":{…}}``, decoded whole by its kind's struct.
        if raw.startswith(_STREAM_PREFIX):
            end = raw.find(b'"', 11)
            known = self._frames.get(raw[11:end]) if raw.startswith(b',"data":', end + 1) \
                else None
            if known is not None:
                symbol, kind, decoder, precise = known
                if precise:
                    _check_precision(raw, end + 1)
                try:
                    event = decoder.decode(raw).data
                except msgspec.ValidationError as error:
                    raise MalformedFrame(_kind_of(error), f"{kind}: {error}") from None
                except msgspec.DecodeError as error:
                    raise MalformedFrame("garbage", str(error)) from None
                if event.symbol != symbol:
                    raise MalformedFrame("bad_type", f"{symbol} frame carries {event.symbol}")
                return symbol, kind, event
        return self._frame_in_two_steps(raw)

    def _frame_in_two_steps(self, raw: bytes) -> tuple[str | None, str | None, Any]:
        """The envelope first (the event left raw), then the event by its stream."""
        try:
            envelope = self._envelope.decode(raw)
        except msgspec.ValidationError as error:  # a subclass of DecodeError: first
            raise MalformedFrame(_kind_of(error), str(error)) from None
        except msgspec.DecodeError as error:
            raise MalformedFrame("garbage", str(error)) from None
        if envelope.stream is None or not envelope.data:
            if (envelope.id is not None or envelope.e is not None
                    or envelope.last_update_id is not None):
                return None, None, envelope
            raise MalformedFrame("missing_fields", "neither a stream frame nor a reply")
        found = self.stream_kind(envelope.stream)
        if found is None:
            raise MalformedFrame("unknown_stream", envelope.stream[:60])
        symbol, kind = found
        data = envelope.data
        precise = self.check_precision and kind in _PRECISION_CHECKED
        if precise:
            _check_precision(data)
        try:
            event = self._decoders[kind].decode(data)
        except msgspec.ValidationError as error:
            raise MalformedFrame(_kind_of(error), f"{envelope.stream}: {error}") from None
        except msgspec.DecodeError as error:
            raise MalformedFrame("garbage", str(error)) from None
        if event.symbol != symbol:
            raise MalformedFrame("bad_type", f"{envelope.stream} carries symbol {event.symbol}")
        if len(self._frames) < _CACHE_SIZE:
            self._frames[envelope.stream.encode()] = (
                symbol, kind, msgspec.json.Decoder(_FRAME_STRUCTS[kind], strict=False), precise)
        return symbol, kind, event

    def snapshot(self, raw: bytes) -> DepthSnapshot:
        """A REST depth snapshot body."""
        if len(raw) > 64 * self.max_frame_bytes:
            raise MalformedFrame("oversized", f"snapshot of {len(raw)} bytes")
        if self.check_precision:
            _check_precision(raw)
        try:
            return self._snapshot.decode(raw)
        except msgspec.ValidationError as error:
            raise MalformedFrame(_kind_of(error), f"snapshot: {error}") from None
        except msgspec.DecodeError as error:
            raise MalformedFrame("garbage", f"snapshot: {error}") from None

    @staticmethod
    def exchange_info(raw: bytes) -> ExchangeInfo:
        try:
            return msgspec.json.decode(raw, type=ExchangeInfo)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise MalformedFrame("garbage", f"exchangeInfo: {error}") from None

