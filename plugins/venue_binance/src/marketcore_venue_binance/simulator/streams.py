"""Stream names as Binance writes them: ``<symbol>@<kind>[@<speed>]``.

Parsing is strict where a lenient server would hide a client bug: the symbol part
must be lower case (Binance's rule), and an unknown kind or update speed is an
error rather than a subscription that silently never delivers. A well-formed name
for a symbol the simulator does not serve is accepted and stays quiet, as on
Binance.
"""

from __future__ import annotations

import re

import attrs

__all__ = ["MARKETS", "StreamNameError", "Variant", "parse_stream"]

MARKETS = ("spot", "usdm")

# Diff-depth update speeds (ms) and the speed of a bare "@depth", per market.
DEPTH_SPEEDS = {"spot": (100, 1000), "usdm": (0, 100, 250, 500)}
DEPTH_DEFAULT = {"spot": 1000, "usdm": 250}
PARTIAL_SPEEDS = {"spot": (100, 1000), "usdm": (100, 250, 500)}
PARTIAL_LEVELS = (5, 10, 20)

_SYMBOL = re.compile(r"[a-z0-9]{2,40}")
_SPEED = re.compile(r"(\d{1,4})ms")
# Kinds the simulator knows but does not synthesize: forwarded when recorded.
_PASSIVE = re.compile(
    r"(kline_\w+|continuousKline_\w+|miniTicker|ticker_\w+|avgPrice|markPrice(@1s)?|"
    r"forceOrder|indexPrice(@1s)?|contractInfo|rollingWindowTicker\w*)")


class StreamNameError(ValueError):
    """A stream name Binance would not accept; the message says why."""


@attrs.frozen(slots=True)
class Variant:
    """What a stream carries, whatever the symbol.

    ``kind`` is ``depth`` (diff depth every ``interval_ms``; 0 = as recorded /
    real time), ``partial`` (top ``levels`` every ``interval_ms``), ``trade``,
    ``aggTrade``, ``bookTicker``, ``ticker`` or ``other`` (``suffix`` as written).
    """

    kind: str
    interval_ms: int = 0
    levels: int = 0
    suffix: str = ""


TRADE = Variant("trade")
AGG_TRADE = Variant("aggTrade")
BOOK_TICKER = Variant("bookTicker")
TICKER = Variant("ticker")
_SIMPLE = {"trade": TRADE, "aggTrade": AGG_TRADE, "bookTicker": BOOK_TICKER, "ticker": TICKER}


def parse_stream(name: str, market: str) -> tuple[str, Variant]:
    """``"btcusdt@depth@100ms"`` → ``("btcusdt", Variant("depth", 100))``."""
    if not isinstance(name, str):
        raise StreamNameError(f"a stream name must be a string, found {name!r}")
    symbol, at, suffix = name.partition("@")
    if not at or not suffix:
        raise StreamNameError(f"invalid stream name {name!r}: expected <symbol>@<stream>")
    if not _SYMBOL.fullmatch(symbol):
        if _SYMBOL.fullmatch(symbol.lower()):
            raise StreamNameError(f"invalid stream name {name!r}: symbols in stream names are "
                                  f"lower case ({symbol.lower()}@{suffix})")
        raise StreamNameError(f"invalid stream name {name!r}: bad symbol {symbol!r}")
    simple = _SIMPLE.get(suffix)
    if simple is not None:
        return symbol, simple
    kind, _, speed = suffix.partition("@")
    if kind == "depth":
        return symbol, Variant("depth", _speed(name, speed, DEPTH_SPEEDS[market],
                                                DEPTH_DEFAULT[market]))
    if kind.startswith("depth") and kind[5:].isdigit():
        levels = int(kind[5:])
        if levels not in PARTIAL_LEVELS:
            raise StreamNameError(f"invalid stream name {name!r}: partial book depth is one "
                                  f"of {PARTIAL_LEVELS} levels")
        return symbol, Variant("partial", _speed(name, speed, PARTIAL_SPEEDS[market],
                                                  DEPTH_DEFAULT[market]), levels)
    if _PASSIVE.fullmatch(suffix):
        return symbol, Variant("other", suffix=suffix)
    raise StreamNameError(f"invalid stream name {name!r}: unknown stream {suffix!r}")


def _speed(name: str, text: str, allowed: tuple[int, ...], default: int) -> int:
    if not text:
        return default
    match = _SPEED.fullmatch(text)
    if match is None or int(match.group(1)) not in allowed:
        shown = ", ".join(f"@{ms}ms" for ms in allowed)
        raise StreamNameError(f"invalid stream name {name!r}: update speed is one of {shown}")
    return int(match.group(1))
