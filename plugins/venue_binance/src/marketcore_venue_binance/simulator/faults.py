"""Bad frames a venue can send, for :meth:`ExchangeSimulator.send_malformed`.

Each is a valid UTF-8 text frame (so the WebSocket layer delivers it) whose
content a client must reject, count and survive:

* ``garbage`` — not JSON at all;
* ``missing_fields`` — a ``depthUpdate`` without ids and levels;
* ``absurd`` — a ``depthUpdate`` with a negative quantity, a price of 1e300,
  ``NaN`` and ``Infinity`` strings;
* ``oversized`` — a well-formed but multi-megabyte frame (beyond the 1 MiB a
  WebSocket client accepts by default);
* ``crossed`` — a real, in-sequence diff that puts a bid above the best ask for
  one diff, then withdraws it (handled by the engine: it is part of the book);
* ``duplicate`` — the last diff again (old ids: a client drops it).

The malformed diffs carry ``U = u = last u + 1`` (futures ``pu = last u``) and do
not advance the sequence: a client that rejects them sees the next real diff
follow on; a client that wrongly applies one sees a gap at the next diff.
"""

from __future__ import annotations

__all__ = ["MALFORMED_KINDS", "malformed_payload"]

MALFORMED_KINDS = ("garbage", "missing_fields", "absurd", "oversized", "crossed", "duplicate")


def malformed_payload(kind: str, symbol: str, E: int, last_u: int, futures: bool,
                      oversized_bytes: int) -> bytes:
    """The ``data`` payload of one malformed frame of ``kind`` for ``symbol``."""
    ids = f'"U":{last_u + 1},"u":{last_u + 1}' + (f',"pu":{last_u}' if futures else "")
    head = f'{{"e":"depthUpdate","E":{E},"s":"{symbol}"'
    if kind == "garbage":
        return (head + ',"U":\u2603,"b":[["1.0","2.0"]<<garbage>>').encode()
    if kind == "missing_fields":
        return (head + "}").encode()
    if kind == "absurd":
        return (head + f',{ids},"b":[["-61800.00","1.0"],["1e300","1.0"],["NaN","NaN"]],'
                f'"a":[["61800.10","-3.5"],["Infinity","1.0"]]}}').encode()
    if kind == "oversized":
        body = head + f',{ids},"b":[],"a":[],"pad":"'
        pad = max(0, oversized_bytes - len(body) - 2)
        return (body + "x" * pad + '"}').encode()
    raise ValueError(f"unknown malformed kind {kind!r}: expected one of {MALFORMED_KINDS}")
