"""Binance's wire formats, written straight to bytes.

Each function returns the ``data`` payload of one event for one served symbol
(the combined-stream wrapper and the WebSocket frame header are added by the
fan-out). f-strings over pre-formatted parts: a clone's event costs one string
build, and the same bytes go to every subscriber of that stream.

Field order and presence follow Binance's documents and the real recordings:
spot events carry no ``T``/``pu`` on diffs and no ``e``/``E`` on bookTicker;
futures diffs carry ``T`` and ``pu``, futures trades ``X``.
"""

from __future__ import annotations

from .prices import ClonePrices

__all__ = [
    "agg_trade",
    "book_ticker",
    "depth_update",
    "partial_depth",
    "server_shutdown",
    "snapshot_body",
    "ticker_24h",
    "trade",
    "ws_frame",
    "ws_header",
]

_TRUE_FALSE = ("false", "true")


_SMALL_HEADERS = [bytes((0x81, n)) for n in range(126)]


def ws_header(n: int) -> bytes:
    """The header of an unmasked, final WebSocket text frame of ``n`` payload bytes."""
    if n < 126:
        return _SMALL_HEADERS[n]
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


def ws_frame(payload: bytes) -> bytes:
    """A complete unmasked WebSocket text frame (server to client) around ``payload``."""
    return ws_header(len(payload)) + payload


def depth_update(symbol: str, E: int, T: int | None, U: int, u: int, pu: int | None,
                 bids: str, asks: str) -> bytes:
    """A diff-depth event; ``bids``/``asks`` are pre-joined level items."""
    if pu is None:  # spot
        return (f'{{"e":"depthUpdate","E":{E},"s":"{symbol}","U":{U},"u":{u},'
                f'"b":[{bids}],"a":[{asks}]}}').encode()
    return (f'{{"e":"depthUpdate","E":{E},"T":{T if T is not None else E},"s":"{symbol}",'
            f'"U":{U},"u":{u},"pu":{pu},"b":[{bids}],"a":[{asks}]}}').encode()


def partial_depth(symbol: str, last_update_id: int, E: int, T: int | None, U: int,
                  pu: int | None, bids: str, asks: str, futures: bool) -> bytes:
    """Partial book depth: spot ``{lastUpdateId,bids,asks}``, futures a depthUpdate shape."""
    if not futures:
        return f'{{"lastUpdateId":{last_update_id},"bids":[{bids}],"asks":[{asks}]}}'.encode()
    return (f'{{"e":"depthUpdate","E":{E},"T":{T if T is not None else E},"s":"{symbol}",'
            f'"U":{U},"u":{last_update_id},"pu":{pu if pu is not None else U - 1},'
            f'"b":[{bids}],"a":[{asks}]}}').encode()


def trade(symbol: str, E: int, T: int, t: int, price: str, qty: str, m: bool,
          M: bool | None, X: str | None, futures: bool) -> bytes:
    if futures:
        return (f'{{"e":"trade","E":{E},"T":{T},"s":"{symbol}","t":{t},"p":"{price}",'
                f'"q":"{qty}","X":"{X or "MARKET"}","m":{_TRUE_FALSE[m]}}}').encode()
    return (f'{{"e":"trade","E":{E},"s":"{symbol}","t":{t},"p":"{price}","q":"{qty}",'
            f'"T":{T},"m":{_TRUE_FALSE[m]},"M":{_TRUE_FALSE[M is not False]}}}').encode()


def agg_trade(symbol: str, E: int, T: int, a: int, price: str, qty: str, f: int, l: int,  # noqa: E741
              m: bool, futures: bool) -> bytes:
    tail = "" if futures else ',"M":true'
    return (f'{{"e":"aggTrade","E":{E},"s":"{symbol}","a":{a},"p":"{price}","q":"{qty}",'
            f'"f":{f},"l":{l},"T":{T},"m":{_TRUE_FALSE[m]}{tail}}}').encode()


def book_ticker(symbol: str, u: int, b: str, B: str, a: str, A: str, E: int | None,
                T: int | None, futures: bool) -> bytes:
    if futures:
        return (f'{{"e":"bookTicker","u":{u},"s":"{symbol}","b":"{b}","B":"{B}","a":"{a}",'
                f'"A":"{A}","T":{T if T is not None else E},"E":{E}}}').encode()
    return f'{{"u":{u},"s":"{symbol}","b":"{b}","B":"{B}","a":"{a}","A":"{A}"}}'.encode()


def ticker_24h(symbol: str, E: int, change: str, change_pct: str, wavg: str, prev_close: str,
               last: str, last_qty: str, bid: str, bid_qty: str, ask: str, ask_qty: str,
               open_: str, high: str, low: str, volume: str, quote_volume: str, open_ms: int,
               first_id: int, last_id: int, count: int, futures: bool) -> bytes:
    if futures:
        return (f'{{"e":"24hrTicker","E":{E},"s":"{symbol}","p":"{change}","P":"{change_pct}",'
                f'"w":"{wavg}","c":"{last}","Q":"{last_qty}","o":"{open_}","h":"{high}",'
                f'"l":"{low}","v":"{volume}","q":"{quote_volume}","O":{open_ms},"C":{E},'
                f'"F":{first_id},"L":{last_id},"n":{count}}}').encode()
    return (f'{{"e":"24hrTicker","E":{E},"s":"{symbol}","p":"{change}","P":"{change_pct}",'
            f'"w":"{wavg}","x":"{prev_close}","c":"{last}","Q":"{last_qty}","b":"{bid}",'
            f'"B":"{bid_qty}","a":"{ask}","A":"{ask_qty}","o":"{open_}","h":"{high}",'
            f'"l":"{low}","v":"{volume}","q":"{quote_volume}","O":{open_ms},"C":{E},'
            f'"F":{first_id},"L":{last_id},"n":{count}}}').encode()


def snapshot_body(last_update_id: int, bids: str, asks: str, E: int | None,
                  T: int | None) -> bytes:
    """``GET /api/v3/depth`` (spot, no times) or ``/fapi/v1/depth`` (with ``E``, ``T``)."""
    if E is None:
        return f'{{"lastUpdateId":{last_update_id},"bids":[{bids}],"asks":[{asks}]}}'.encode()
    return (f'{{"lastUpdateId":{last_update_id},"E":{E},"T":{T if T is not None else E},'
            f'"bids":[{bids}],"asks":[{asks}]}}').encode()


def server_shutdown(E: int) -> bytes:
    """The notice Binance sends before it closes connections (bare, never wrapped)."""
    return f'{{"e":"serverShutdown","E":{E}}}'.encode()


def levels_text(prices: ClonePrices, ticks: tuple[int, ...] | list[int],
                qtys: tuple[str, ...] | list[str]) -> str:
    """Level items for a book side, through a clone's price map."""
    return prices.levels(tuple(ticks), tuple(qtys))
