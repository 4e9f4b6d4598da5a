"""Helpers for the simulator's and the recording format's tests (not a conftest: imported).

Recordings: the repository's bundled real spot file (``examples/data``), the shared
real files (``../shared/data/binance``, skipped when absent), and small synthetic
ones written here. Clients: the ``websockets`` client and ``urllib`` (in a thread)
against a running simulator, over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from marketcore_venue_binance.recording import RecordingWriter, read_recording

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = REPO_ROOT.parent / "shared" / "data" / "binance"
EXAMPLE_SPOT = REPO_ROOT / "examples" / "data" / "binance-spot-btcusdt-20240808.gz"
SHARED_SPOT = SHARED / "hftbacktest_spot_btcusdt_20240808.gz"
SHARED_SPOT_NEXT = SHARED / "hftbacktest_spot_btcusdt_20240809.gz"
SHARED_USDM = SHARED / "hftbacktest_usdm_btcusdt_20240808.gz"

T = TypeVar("T")


def spot_source() -> Path:
    """The real spot recording: the repository's copy, else the shared one, else skip."""
    for path in (EXAMPLE_SPOT, SHARED_SPOT):
        if path.is_file():
            return path
    pytest.skip("no spot recording (examples/data or ../shared/data/binance)")


def shared_file(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared recording {path.name} not found (../shared/data/binance)")
    return path


def head(source: Path, target: Path, lines: int) -> Path:
    """The first ``lines`` frames of ``source`` as a recording at ``target``."""
    with RecordingWriter(target) as writer:
        for index, (recv_ns, raw) in enumerate(read_recording(source)):
            if index >= lines:
                break
            writer.write(recv_ns, raw)
    return target


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    """Run a test coroutine; fail (never hang) after ``timeout`` seconds."""
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0,
                   what: str = "condition", detail: Callable[[], str] | None = None) -> None:
    """Poll ``predicate`` until true; fail (not hang) after ``timeout_s``, with
    ``detail()`` in the message so a timeout in CI says where things stood."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            extra = f": {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out waiting for {what}{extra}")
        await asyncio.sleep(0.005)


def _get(url: str, method: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


async def http(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of a plain HTTP request (urllib, in a thread)."""
    return await asyncio.to_thread(_get, url, method)


async def http_json(url: str, method: str = "GET") -> Any:
    status, _, body = await http(url, method)
    assert status == 200, (status, body)
    return json.loads(body)


# -- recordings built by hand -----------------------------------------------------------


def frame(stream: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"stream": stream, "data": data}, separators=(",", ":")).encode()


def snapshot(last_id: int, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]],
             **extra: Any) -> bytes:
    body = {"lastUpdateId": last_id, **extra, "bids": [list(b) for b in bids],
            "asks": [list(a) for a in asks]}
    return json.dumps(body, separators=(",", ":")).encode()


def depth(symbol: str, U: int, u: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]],
          E: int, pu: int | None = None, speed: str = "@100ms") -> bytes:
    data: dict[str, Any] = {"e": "depthUpdate", "E": E}
    if pu is not None:
        data["T"] = E
    data.update({"s": symbol, "U": U, "u": u})
    if pu is not None:
        data["pu"] = pu
    data.update({"b": [list(b) for b in bids], "a": [list(a) for a in asks]})
    return frame(f"{symbol.lower()}@depth{speed}", data)


def trade(symbol: str, t: int, price: str, qty: str, E: int, m: bool = False) -> bytes:
    return frame(f"{symbol.lower()}@trade", {"e": "trade", "E": E, "s": symbol, "t": t,
                                             "p": price, "q": qty, "T": E, "m": m, "M": True})


def write(path: Path, lines: Iterable[tuple[int, bytes]]) -> Path:
    with RecordingWriter(path) as writer:
        for recv_ns, raw in lines:
            writer.write(recv_ns, raw)
    return path


def synthetic_spot(path: Path, symbol: str = "ETHUSDT", events: int = 40) -> Path:
    """A small spot recording: diffs before and after a snapshot, trades between.

    Prices on a 0.01 tick written with 2 decimals; ids contiguous; the snapshot
    (id 1004) arrives after the diff that bridges it (U 1003, u 1006).
    """
    base_ns = 1_700_000_000_000_000_000
    lines: list[tuple[int, bytes]] = []
    ms = 1_700_000_000_000
    lines.append((base_ns, depth(symbol, 1000, 1002, [("99.98", "1.00")], [], ms)))
    lines.append((base_ns + 50_000_000, depth(symbol, 1003, 1006, [("99.99", "2.00")],
                                              [("100.02", "0.00")], ms + 100)))
    lines.append((base_ns + 60_000_000, snapshot(
        1004, [("99.99", "1.50"), ("99.98", "1.00"), ("99.90", "3.00")],
        [("100.01", "1.00"), ("100.02", "4.00"), ("100.10", "2.00")])))
    u = 1006
    for k in range(events):
        ns = base_ns + (k + 2) * 100_000_000
        bid = f"{99.90 + (k % 9) * 0.01:.2f}"
        ask = f"{100.01 + (k % 7) * 0.01:.2f}"
        lines.append((ns, depth(symbol, u + 1, u + 2, [(bid, f"{k % 5}.00")],
                                [(ask, f"{(k + 1) % 4}.00")], ms + (k + 2) * 100)))
        u += 2
        lines.append((ns + 1_000_000, trade(symbol, 5000 + 2 * k, "100.01", "0.50",
                                            ms + (k + 2) * 100)))
        lines.append((ns + 1_000_001, trade(symbol, 5000 + 2 * k + 1, "100.01", "0.25",
                                            ms + (k + 2) * 100)))
    return write(path, lines)


def synthetic_usdm(path: Path, symbol: str = "ETHUSDT", events: int = 40) -> Path:
    """A small futures recording: ``pu`` chains, ids that skip (as futures ids do)."""
    base_ns = 1_700_000_000_000_000_000
    ms = 1_700_000_000_000
    lines: list[tuple[int, bytes]] = [
        (base_ns, depth(symbol, 1000, 1010, [("99.9", "1.000")], [], ms, pu=990,
                        speed="@0ms")),
        (base_ns + 30_000_000, depth(symbol, 1015, 1030, [("99.8", "2.000")], [], ms + 30,
                                     pu=1010, speed="@0ms")),
        (base_ns + 40_000_000, snapshot(1020, [("99.9", "1.000"), ("99.8", "1.000")],
                                        [("100.0", "1.000"), ("100.1", "3.000")],
                                        E=ms + 35, T=ms + 35)),
    ]
    u = 1030
    for k in range(events):
        ns = base_ns + (k + 1) * 60_000_000
        U = u + 3
        new_u = U + 4
        lines.append((ns, depth(symbol, U, new_u, [(f"{99.5 + (k % 4) * 0.1:.1f}", f"{k}.000")],
                                [(f"{100.0 + (k % 3) * 0.1:.1f}", f"{k % 2}.000")],
                                ms + (k + 1) * 60, pu=u, speed="@0ms")))
        u = new_u
    return write(path, lines)


def apply_levels(book: dict[str, str], levels: Iterable[list[str]]) -> None:
    for price, qty in levels:
        if float(qty) == 0:
            book.pop(price, None)
        else:
            book[price] = qty


class DictBook:
    """A reference book of price → quantity strings, built the way Binance says."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last_id: int | None = None

    def load(self, snap: dict[str, Any]) -> None:
        self.bids = {p: q for p, q in snap["bids"] if float(q) > 0}
        self.asks = {p: q for p, q in snap["asks"] if float(q) > 0}
        self.last_id = snap["lastUpdateId"]

    def apply(self, event: dict[str, Any], *, futures: bool = False) -> None:
        assert self.last_id is not None
        if futures:
            assert event["pu"] == self.last_id, (event["pu"], self.last_id)
        else:
            assert event["U"] == self.last_id + 1, (event["U"], self.last_id)
        apply_levels(self.bids, event["b"])
        apply_levels(self.asks, event["a"])
        self.last_id = event["u"]

    def bridge(self, snap: dict[str, Any], buffered: list[dict[str, Any]], *,
               futures: bool = False) -> list[dict[str, Any]]:
        """Binance's procedure; returns the buffered diffs that were applied."""
        self.load(snap)
        last = snap["lastUpdateId"]
        live = [e for e in buffered if (e["u"] >= last if futures else e["u"] > last)]
        if live:
            first = live[0]
            if futures:
                assert first["U"] <= last <= first["u"], (first["U"], last, first["u"])
            else:
                assert first["U"] <= last + 1 <= first["u"], (first["U"], last, first["u"])
            apply_levels(self.bids, first["b"])
            apply_levels(self.asks, first["a"])
            self.last_id = first["u"]
            for event in live[1:]:
                self.apply(event, futures=futures)
        return live

    def floats(self) -> tuple[dict[float, float], dict[float, float]]:
        return ({float(p): float(q) for p, q in self.bids.items()},
                {float(p): float(q) for p, q in self.asks.items()})


def as_floats(bids: dict[str, str], asks: dict[str, str]
              ) -> tuple[dict[float, float], dict[float, float]]:
    return ({float(p): float(q) for p, q in bids.items()},
            {float(p): float(q) for p, q in asks.items()})
