"""Recordings turned into one replay timeline, checked and prepared once at start.

Everything the replay needs per event is worked out here, before the first frame
is sent, so the replay loop only looks things up:

* each symbol's starting book: its recorded REST snapshot. Diffs recorded before
  the snapshot with ``u <= lastUpdateId`` are already in it and are not replayed;
  the first replayed diff is the one that bridges it (``U <= lastUpdateId + 1 <=
  u``; futures ``U <= lastUpdateId <= u``), so the simulator's book is right at
  its first streamed event. A diff chain broken *inside* a recording (the
  recorder lost data) is rebuilt from the next recorded snapshot, as a client
  would; the replay keeps the gap, so clients see it too;
* prices as integer ticks (see :mod:`.prices`), so clones map them exactly;
* coarser diff-depth speeds (spot ``@depth`` = 1000 ms from a ``@depth@100ms``
  recording; futures 100/250/500 ms from ``@depth@0ms``) merged from the recorded
  diffs over event-time windows, emitted with the window's last diff;
* ``aggTrade`` (when not recorded): consecutive trades with the same price,
  aggressor side and trade time grouped, emitted with the group's last trade;
* ``24hrTicker`` ticks (when not recorded): one timeline item per recorded second.
"""

from __future__ import annotations

import heapq
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

try:  # the plugin's decoder of choice; the standard library does the same, slower
    from msgspec.json import decode as _json_decode
except ImportError:  # pragma: no cover - msgspec is a dependency of the plugin
    _json_decode = json.loads

from ..recording import RecordingError, read_recording
from .prices import PriceScale, decimals_of, significant_decimals
from .streams import DEPTH_SPEEDS, MARKETS, PARTIAL_SPEEDS

__all__ = [
    "AGG",
    "BOOK",
    "DEPTH",
    "OTHER",
    "RESET",
    "TICK",
    "TRADE",
    "AggTradeEvent",
    "BookTickerEvent",
    "DepthEvent",
    "LoadAbandoned",
    "OtherEvent",
    "RecordedSymbol",
    "Recording",
    "SnapshotReset",
    "TradeEvent",
    "load_recordings",
]

# Timeline item codes: an item is (recv_ns, code, symbol index, event).
DEPTH, TRADE, AGG, BOOK, TICK, OTHER, RESET = range(7)

TICKER_PERIOD_NS = 1_000_000_000


class DepthEvent:
    """A diff-depth event: recorded, merged over a window, or synthesized.

    Levels are kept as parallel tuples (ticks, quantity strings) per side; a
    quantity string of zeros removes the level. ``closes`` lists the coarser
    speeds whose window ends with this event, with the merged event to send then.
    """

    __slots__ = ("E", "T", "U", "a_q", "a_t", "b_q", "b_t", "closes", "pu", "raw", "recv_ns",
                 "template", "text", "u")

    def __init__(self, recv_ns: int, E: int, T: int | None, U: int, u: int, pu: int | None,
                 b_t: tuple[int, ...], b_q: tuple[str, ...], a_t: tuple[int, ...],
                 a_q: tuple[str, ...], raw: bytes | None = None) -> None:
        self.recv_ns = recv_ns
        self.E = E
        self.T = T
        self.U = U
        self.u = u
        self.pu = pu
        self.b_t = b_t
        self.b_q = b_q
        self.a_t = a_t
        self.a_q = a_q
        self.raw = raw
        self.closes: tuple[tuple[int, DepthEvent | None], ...] = ()
        self.text: tuple[str, str] | None = None  # the levels as recorded, once written
        self.template: Any = None  # the clone template, once built (see engine)


class TradeEvent:
    __slots__ = ("E", "M", "T", "X", "m", "p", "q", "raw", "recv_ns", "t", "ticks")

    def __init__(self, recv_ns: int, E: int, T: int, t: int, ticks: int, p: str, q: str,
                 m: bool, M: bool | None, X: str | None, raw: bytes | None) -> None:
        self.recv_ns = recv_ns
        self.E = E
        self.T = T
        self.t = t
        self.ticks = ticks
        self.p = p
        self.q = q
        self.m = m
        self.M = M
        self.X = X
        self.raw = raw


class AggTradeEvent:
    __slots__ = ("E", "T", "a", "f", "l", "m", "p", "q", "raw", "recv_ns", "ticks")

    def __init__(self, recv_ns: int, E: int, T: int, a: int, ticks: int, p: str, q: str,
                 f: int, l: int, m: bool, raw: bytes | None = None) -> None:  # noqa: E741
        self.recv_ns = recv_ns
        self.E = E
        self.T = T
        self.a = a
        self.ticks = ticks
        self.p = p
        self.q = q
        self.f = f
        self.l = l
        self.m = m
        self.raw = raw


class BookTickerEvent:
    __slots__ = ("A", "B", "E", "T", "a", "a_t", "b", "b_t", "raw", "recv_ns", "u")

    def __init__(self, recv_ns: int, u: int, b_t: int, b: str, B: str, a_t: int, a: str,
                 A: str, E: int | None, T: int | None, raw: bytes | None) -> None:
        self.recv_ns = recv_ns
        self.u = u
        self.b_t = b_t
        self.b = b
        self.B = B
        self.a_t = a_t
        self.a = a
        self.A = A
        self.E = E
        self.T = T
        self.raw = raw


class OtherEvent:
    """A recorded frame of a stream the simulator does not model; forwarded as is."""

    __slots__ = ("raw", "recv_ns", "suffix")

    def __init__(self, recv_ns: int, suffix: str, raw: bytes) -> None:
        self.recv_ns = recv_ns
        self.suffix = suffix
        self.raw = raw


class SnapshotReset:
    """The book of a symbol restarts from this recorded snapshot (after a recorded gap)."""

    __slots__ = ("E", "L", "T", "asks", "bids", "recv_ns")

    def __init__(self, recv_ns: int, L: int, bids: dict[int, str], asks: dict[int, str],
                 E: int | None, T: int | None) -> None:
        self.recv_ns = recv_ns
        self.L = L
        self.bids = bids
        self.asks = asks
        self.E = E
        self.T = T


@attrs.define(slots=True, eq=False)
class RecordedSymbol:
    """One symbol of the recordings and what the replay needs to know about it."""

    name: str
    scale: PriceScale
    qty_decimals: int
    native_interval: int
    start: SnapshotReset
    depth: list[DepthEvent]
    first_U: int
    first_pu: int | None
    last_u: int
    merged_intervals: tuple[int, ...]
    first_trade_id: int | None = None
    last_trade_id: int | None = None
    first_agg_id: int | None = None
    last_agg_id: int | None = None
    recorded: frozenset[str] = frozenset()
    other_suffixes: frozenset[str] = frozenset()
    skew_ms: int = 0
    first_price_ticks: int | None = None
    volume: float = 0.0
    quote_volume: float = 0.0
    trades: int = 0
    duration_ms: int = 1
    recorded_gaps: int = 0

    @property
    def lower(self) -> str:
        return self.name.lower()


@attrs.frozen(slots=True)
class Recording:
    """The prepared replay: symbols, the timeline and its span."""

    market: str
    symbols: tuple[RecordedSymbol, ...]
    items: list[tuple[int, int, int, Any]]
    first_recv_ns: int
    last_recv_ns: int
    paths: tuple[str, ...]

    @property
    def duration_ns(self) -> int:
        return max(self.last_recv_ns - self.first_recv_ns, 1)


@attrs.define(slots=True)
class _Frame:
    seq: int
    recv_ns: int
    kind: str  # depth trade aggTrade bookTicker ticker other snapshot
    symbol: str | None
    data: dict[str, Any]
    raw: bytes | None
    suffix: str
    where: str


class LoadAbandoned(Exception):
    """:func:`load_recordings` stopped early: its ``abandon`` event was set."""


def load_recordings(paths: Sequence[str | Path], market: str = "spot", *,
                    abandon: threading.Event | None = None) -> Recording:
    """Read, check and prepare recordings for replay (``market``: spot, usdm or auto).

    Loading takes seconds for long recordings and runs in a thread; setting ``abandon``
    (the simulator's start was cancelled) makes it raise :class:`LoadAbandoned` soon.
    """
    if not paths:
        raise RecordingError("no recording given")
    if market not in (*MARKETS, "auto"):
        raise RecordingError(f"unknown market {market!r}: expected one of {MARKETS}")

    def check() -> None:
        if abandon is not None and abandon.is_set():
            raise LoadAbandoned("loading the recordings was abandoned")

    frames = list(_frames(paths, check))
    check()
    if not frames:
        raise RecordingError(f"{', '.join(map(str, paths))}: no frames")
    has_pu = any(f.kind == "depth" and "pu" in f.data for f in frames)
    detected = "usdm" if has_pu else "spot"
    if market == "auto":
        market = detected
    elif market != detected and any(f.kind == "depth" for f in frames):
        hint = "events carry 'pu'" if has_pu else "events carry no 'pu'"
        raise RecordingError(f"{paths[0]}: the recording looks like {detected} ({hint}); "
                             f"replay it with market={detected!r}")
    by_symbol: dict[str, list[_Frame]] = {}
    snapshots: list[_Frame] = []
    for frame in frames:
        if frame.kind == "snapshot":
            snapshots.append(frame)
        elif frame.symbol is not None:
            by_symbol.setdefault(frame.symbol, []).append(frame)
    _assign_snapshots(snapshots, by_symbol)
    items: list[tuple[int, int, int, int, Any]] = []
    symbols: list[RecordedSymbol] = []
    for name in sorted(by_symbol):
        symbol = _prepare_symbol(name, by_symbol[name], market, len(symbols), items, check)
        if symbol is not None:
            symbols.append(symbol)
    if not symbols:
        raise RecordingError(f"{paths[0]}: no symbol with a depth snapshot and diff events")
    items.sort(key=lambda item: (item[0], item[1]))
    timeline = [(recv, code, index, event) for recv, _seq, code, index, event in items]
    first = min(f.recv_ns for f in frames)
    last = max(f.recv_ns for f in frames)
    return Recording(market, tuple(symbols), timeline, first, last,
                     tuple(str(p) for p in paths))


def _frames(paths: Sequence[str | Path], check: Callable[[], None]) -> Iterator[_Frame]:
    """Every frame of every file, merged by receive time (files may continue each other)."""
    streams = [_file_frames(str(p), i) for i, p in enumerate(paths)]
    for seq, frame in enumerate(heapq.merge(*streams, key=lambda f: f.recv_ns)):
        frame.seq = seq
        if not seq & 1023:
            check()
        yield frame


def _file_frames(path: str, file_index: int) -> Iterator[_Frame]:
    for n, (recv_ns, raw) in enumerate(read_recording(path), start=1):
        where = f"{path}: frame {n}"
        try:
            doc = _json_decode(raw)
        except ValueError as exc:
            raise RecordingError(f"{where}: not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise RecordingError(f"{where}: expected a JSON object")
        if "lastUpdateId" in doc and "bids" in doc and "asks" in doc:
            yield _Frame(0, recv_ns, "snapshot", None, doc, None, "", where)
            continue
        stream = doc.get("stream")
        data = doc.get("data")
        if isinstance(stream, str) and isinstance(data, dict):
            symbol, _, suffix = stream.partition("@")
            data_raw = _data_bytes(raw, data)
        elif "e" in doc and "s" in doc:  # a raw (not combined) stream recording
            data = doc
            symbol, suffix, data_raw = str(doc["s"]).lower(), "", raw
        else:
            continue  # subscription responses and the like: not market data
        kind = _kind(suffix, data)
        if kind in ("depth", "trade", "aggTrade", "bookTicker", "ticker") and "s" not in data:
            raise RecordingError(f"{where}: {kind} event without a symbol")
        if not suffix:
            suffix = {"depth": "depth", "trade": "trade", "aggTrade": "aggTrade",
                      "bookTicker": "bookTicker", "ticker": "ticker"}.get(kind, kind)
        yield _Frame(0, recv_ns, kind, symbol.upper(), data, data_raw, suffix, where)


def _kind(suffix: str, data: dict[str, Any]) -> str:
    event = data.get("e")
    if event == "depthUpdate":
        # Futures partial-book streams (depth5…) carry depthUpdate too: not diffs.
        diff = not suffix or suffix == "depth" or suffix.startswith("depth@")
        return "depth" if diff else "other"
    if event in ("trade", "aggTrade"):
        return str(event)
    if event == "24hrTicker":
        return "ticker"
    if suffix == "bookTicker" or event == "bookTicker":
        return "bookTicker"
    return "other"


def _data_bytes(raw: bytes, data: dict[str, Any]) -> bytes:
    """The ``data`` member of a combined frame, byte for byte when the frame allows it."""
    at = raw.find(b'"data":')
    if at > 0 and raw.endswith(b"}") and raw.startswith(b'{"stream":'):
        candidate = raw[at + 7:-1].strip()
        if candidate.startswith(b"{") and candidate.endswith(b"}"):
            return candidate
    return json.dumps(data, separators=(",", ":")).encode()


def _assign_snapshots(snapshots: list[_Frame], by_symbol: dict[str, list[_Frame]]) -> None:
    """A REST snapshot body names no symbol: find it from the diffs that bridge it."""
    depth_symbols = [s for s, frames in by_symbol.items() if any(f.kind == "depth"
                                                                  for f in frames)]
    for snap in snapshots:
        last_id = snap.data["lastUpdateId"]
        if not isinstance(last_id, int):
            raise RecordingError(f"{snap.where}: lastUpdateId is not an integer")
        if len(depth_symbols) == 1:
            owner = depth_symbols[0]
        else:
            owners = [s for s in depth_symbols if any(
                f.kind == "depth" and f.data.get("U", 0) - 1 <= last_id <= f.data.get("u", -1)
                for f in by_symbol[s])]
            if len(owners) != 1:
                raise RecordingError(f"{snap.where}: cannot tell which symbol this snapshot "
                                     f"belongs to (candidates: {owners or depth_symbols})")
            owner = owners[0]
        snap.symbol = owner
        frames = by_symbol[owner]
        frames.append(snap)
        frames.sort(key=lambda f: f.seq)


def _prepare_symbol(name: str, frames: list[_Frame], market: str, index: int,
                    items: list[tuple[int, int, int, int, Any]],
                    check: Callable[[], None]) -> RecordedSymbol | None:
    depth_frames = [f for f in frames if f.kind == "depth"]
    if not depth_frames:
        return None  # trades only: nothing to build a book from; not served
    try:
        scale, qty_decimals = _scales(name, frames)
    except (KeyError, IndexError, TypeError) as exc:
        raise RecordingError(f"{name}: malformed event in the recording: {exc!r}") from None
    native = _native_interval(depth_frames[0].suffix, market)
    check()
    start, streamed, resets, gaps = _sequence(name, frames, market, scale)
    check()
    if not streamed:
        raise RecordingError(f"{name}: no diff event after the snapshot "
                             f"(lastUpdateId {start.L})")
    merged = tuple(iv for iv in sorted(set(DEPTH_SPEEDS[market]) | set(PARTIAL_SPEEDS[market]))
                   if iv > native)
    _merge_windows(streamed, native, merged)
    recorded = frozenset(f.kind for f in frames)
    symbol = RecordedSymbol(
        name=name, scale=scale, qty_decimals=qty_decimals, native_interval=native,
        start=start, depth=[ev for _, ev in streamed], first_U=streamed[0][1].U,
        first_pu=streamed[0][1].pu, last_u=streamed[-1][1].u, merged_intervals=merged,
        recorded=recorded, recorded_gaps=gaps,
        other_suffixes=frozenset(f.suffix for f in frames if f.kind == "other"))
    for frame, event in streamed:
        items.append((event.recv_ns, frame.seq, DEPTH, index, event))
    for frame, reset in resets:
        items.append((reset.recv_ns, frame.seq, RESET, index, reset))
    _add_trades(symbol, frames, index, items)
    check()
    for frame in frames:
        try:
            if frame.kind == "bookTicker":
                items.append((frame.recv_ns, frame.seq, BOOK, index,
                              _book_ticker(frame, scale)))
            elif frame.kind in ("ticker", "other"):
                items.append((frame.recv_ns, frame.seq, OTHER, index,
                              OtherEvent(frame.recv_ns, frame.suffix, frame.raw or b"{}")))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{frame.where}: malformed {frame.kind} event: {exc}") from None
    symbol.scale = PriceScale(scale.decimals, scale.tick_decimals)  # the memo was for loading
    stamped = [f for f in frames if f.kind in ("depth", "trade") and "E" in f.data]
    if stamped:
        skews = sorted(int(f.data["E"]) - f.recv_ns // 1_000_000 for f in stamped[:50])
        symbol.skew_ms = skews[len(skews) // 2]
    symbol.duration_ms = max((frames[-1].recv_ns - frames[0].recv_ns) // 1_000_000, 1)
    if "ticker" not in recorded:
        first = frames[0].recv_ns
        for k in range(1, int((frames[-1].recv_ns - first) // TICKER_PERIOD_NS) + 1):
            items.append((first + k * TICKER_PERIOD_NS, -1, TICK, index, None))
    return symbol


def _scales(name: str, frames: list[_Frame]) -> tuple[PriceScale, int]:
    """The decimals prices are written with and the tick they use; the quantity decimals."""
    prices: set[str] = set()
    qtys: set[str] = set()
    for frame in frames:
        data = frame.data
        if frame.kind in ("depth", "snapshot"):
            for key in ("b", "a", "bids", "asks"):
                for level in data.get(key, ()):
                    prices.add(level[0])
                    qtys.add(level[1])
        elif frame.kind in ("trade", "aggTrade"):
            prices.add(data["p"])
            qtys.add(data["q"])
        elif frame.kind == "bookTicker":
            prices.add(data["b"])
            prices.add(data["a"])
    if not prices:
        raise RecordingError(f"{name}: no prices in the recording")
    try:
        decimals = max(decimals_of(p) for p in prices)
        tick = max(significant_decimals(p) for p in prices)
        qty_decimals = max((decimals_of(q) for q in qtys), default=8)
    except (AttributeError, TypeError):
        raise RecordingError(f"{name}: prices and quantities must be strings") from None
    return _TickMemo(decimals, tick), qty_decimals


class _TickMemo(PriceScale):
    """A price scale that remembers conversions: a recording repeats its prices a lot."""

    __slots__ = ("_memo",)

    def __init__(self, decimals: int, tick_decimals: int) -> None:
        super().__init__(decimals, tick_decimals)
        object.__setattr__(self, "_memo", {})

    def ticks(self, text: str) -> int:
        memo = self._memo
        found = memo.get(text)
        if found is None:
            found = memo[text] = PriceScale.ticks(self, text)
        return found


def _native_interval(suffix: str, market: str) -> int:
    _, _, speed = suffix.partition("@")
    if speed.endswith("ms") and speed[:-2].isdigit():
        return int(speed[:-2])
    return 1000 if market == "spot" else 250


def _is_zero(qty: str) -> bool:
    return not qty.strip("0.")


def _levels(levels: Iterable[Sequence[str]], scale: PriceScale
            ) -> tuple[tuple[int, ...], tuple[str, ...]]:
    ticks = []
    qtys = []
    for price, qty in levels:
        ticks.append(scale.ticks(price))
        if not isinstance(qty, str):
            raise TypeError(f"quantity {qty!r} is not a string")
        qtys.append(qty)
    return tuple(ticks), tuple(qtys)


def _depth_event(frame: _Frame, scale: PriceScale) -> DepthEvent:
    d = frame.data
    try:
        b_t, b_q = _levels(d["b"], scale)
        a_t, a_q = _levels(d["a"], scale)
        pu = d.get("pu")
        return DepthEvent(frame.recv_ns, int(d["E"]), d.get("T"), int(d["U"]), int(d["u"]),
                          None if pu is None else int(pu), b_t, b_q, a_t, a_q, frame.raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordingError(f"{frame.where}: malformed depthUpdate: {exc!r}") from None


def _snapshot(frame: _Frame, scale: PriceScale) -> SnapshotReset:
    d = frame.data
    try:
        bids = {scale.ticks(p): q for p, q in d["bids"] if not _is_zero(q)}
        asks = {scale.ticks(p): q for p, q in d["asks"] if not _is_zero(q)}
        return SnapshotReset(frame.recv_ns, int(d["lastUpdateId"]), bids, asks, d.get("E"),
                             d.get("T"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecordingError(f"{frame.where}: malformed depth snapshot: {exc!r}") from None


def _sequence(name: str, frames: list[_Frame], market: str, scale: PriceScale
              ) -> tuple[SnapshotReset, list[tuple[_Frame, DepthEvent]],
                         list[tuple[_Frame, SnapshotReset]], int]:
    """Decide which recorded diffs are replayed and where the book (re)starts.

    Binance's own procedure, run over the recording: buffer diffs until a snapshot
    they bridge; drop the ones it already holds; afterwards every diff must follow
    the previous one (spot ``U == u + 1``, futures ``pu == u``), else buffer again
    until the next recorded snapshot.
    """
    futures = market == "usdm"
    start: SnapshotReset | None = None
    streamed: list[tuple[_Frame, DepthEvent]] = []
    resets: list[tuple[_Frame, SnapshotReset]] = []
    pending: list[tuple[_Frame, DepthEvent]] = []
    waiting: SnapshotReset | None = None  # a snapshot seen before the diffs that bridge it
    last_u: int | None = None
    gaps = 0

    def bridges(event: DepthEvent, snap_id: int) -> bool:
        if futures:
            return event.U <= snap_id <= event.u
        return event.U <= snap_id + 1 <= event.u

    def held(event: DepthEvent, snap_id: int) -> bool:
        return event.u < snap_id if futures else event.u <= snap_id

    def try_bridge(snap: SnapshotReset) -> str:
        """``bridged``, ``later`` (its bridging diff is still to come) or ``stale``."""
        nonlocal start, last_u, pending
        live = [(f, e) for f, e in pending if not held(e, snap.L)]
        if not live:
            return "later"
        if not bridges(live[0][1], snap.L):
            return "stale"  # older than the buffered diffs: wait for another snapshot
        if start is None:
            start = snap
        else:
            first_frame = live[0][0]
            resets.append((first_frame, SnapshotReset(first_frame.recv_ns, snap.L, snap.bids,
                                                       snap.asks, snap.E, snap.T)))
        streamed.extend(live)
        last_u = live[-1][1].u
        pending = []
        return "bridged"

    for frame in frames:
        if frame.kind == "snapshot":
            if last_u is not None and not pending:
                continue  # a later snapshot while in sync: the book needs nothing
            snap = _snapshot(frame, scale)
            waiting = snap if try_bridge(snap) == "later" else None
            continue
        if frame.kind != "depth":
            continue
        event = _depth_event(frame, scale)
        if last_u is not None and not pending:
            follows = event.pu == last_u if futures else last_u + 1 == event.U
            if follows:
                streamed.append((frame, event))
                last_u = event.u
                continue
            if event.u <= last_u:
                continue  # a duplicate or stale diff in the recording: skip it
            gaps += 1
            last_u = None
        pending.append((frame, event))
        if waiting is not None and try_bridge(waiting) != "later":
            waiting = None
        if len(pending) > 100_000:
            raise RecordingError(f"{name}: more than 100000 diffs without a usable snapshot")
    if start is None:
        raise RecordingError(f"{name}: no depth snapshot that the recorded diffs bridge; a "
                             f"recording must hold one (when files continue each other, "
                             f"pass the one with the snapshot first)")
    if pending and streamed:
        # A recorded gap no later snapshot repairs: replay the diffs after it anyway. The
        # stream shows the gap; the simulator's own book simply goes on from there.
        streamed.extend(pending)
    return start, streamed, resets, gaps


def _merge_windows(streamed: list[tuple[_Frame, DepthEvent]], native: int,
                   intervals: tuple[int, ...]) -> None:
    """Attach to each diff the coarser-speed events whose windows it closes."""
    events = [e for _, e in streamed]
    for interval in intervals:
        window: list[DepthEvent] = []
        for i, event in enumerate(events):
            window.append(event)
            nxt = events[i + 1] if i + 1 < len(events) else None
            if nxt is not None and nxt.E // interval == event.E // interval:
                continue
            event.closes = (*event.closes, (interval, _merge(window)))
            window = []
    for event in events:
        event.closes = ((native, None), *event.closes)


def _merge(window: list[DepthEvent]) -> DepthEvent:
    """One event for a window of diffs: ids span the window, the last quantity wins.

    Futures ``pu`` is the first diff's ``pu``: the previous window's last ``u``, or
    the id before a recorded gap, which the merged stream must show too.
    """
    bids: dict[int, str] = {}
    asks: dict[int, str] = {}
    for event in window:
        bids.update(zip(event.b_t, event.b_q, strict=True))
        asks.update(zip(event.a_t, event.a_q, strict=True))
    b_t = tuple(sorted(bids, reverse=True))
    a_t = tuple(sorted(asks))
    first, last = window[0], window[-1]
    return DepthEvent(last.recv_ns, last.E, last.T, first.U, last.u,
                      first.pu, b_t, tuple(bids[t] for t in b_t),
                      a_t, tuple(asks[t] for t in a_t))


def _add_trades(symbol: RecordedSymbol, frames: list[_Frame], index: int,
                items: list[tuple[int, int, int, int, Any]]) -> None:
    scale = symbol.scale
    trades: list[tuple[_Frame, TradeEvent]] = []
    for frame in frames:
        if frame.kind not in ("trade", "aggTrade"):
            continue
        d = frame.data
        try:
            ticks = scale.ticks(d["p"])
            if frame.kind == "trade":
                event = TradeEvent(frame.recv_ns, int(d["E"]), int(d["T"]), int(d["t"]), ticks,
                                   d["p"], d["q"], bool(d["m"]), d.get("M"), d.get("X"),
                                   frame.raw)
                trades.append((frame, event))
                items.append((frame.recv_ns, frame.seq, TRADE, index, event))
                _count_trade(symbol, ticks, float(d["q"]), float(d["p"]), event.t)
            else:
                agg = AggTradeEvent(frame.recv_ns, int(d["E"]), int(d["T"]), int(d["a"]), ticks,
                                    d["p"], d["q"], int(d["f"]), int(d["l"]), bool(d["m"]),
                                    frame.raw)
                items.append((frame.recv_ns, frame.seq, AGG, index, agg))
                if symbol.first_agg_id is None:
                    symbol.first_agg_id = agg.a
                symbol.last_agg_id = agg.a
                if "trade" not in symbol.recorded:
                    _count_trade(symbol, ticks, float(d["q"]), float(d["p"]), None)
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{frame.where}: malformed {frame.kind} event: {exc}") from None
    if "aggTrade" in symbol.recorded or not trades:
        return
    # Synthesize aggTrade: same price, same aggressor side, same trade time.
    scale_q = 10 ** symbol.qty_decimals
    agg_id = trades[0][1].t // 2  # any plausible counter; clones offset it like trade ids
    symbol.first_agg_id = agg_id
    group: list[tuple[_Frame, TradeEvent]] = []
    for i, (frame, trade) in enumerate(trades):
        group.append((frame, trade))
        nxt = trades[i + 1][1] if i + 1 < len(trades) else None
        if nxt is not None and (nxt.ticks, nxt.m, nxt.T) == (trade.ticks, trade.m, trade.T):
            continue
        units = sum(_qty_units(t.q, symbol.qty_decimals) for _, t in group)
        whole, frac = divmod(units, scale_q)
        qty = f"{whole}.{frac:0{symbol.qty_decimals}d}" if symbol.qty_decimals else str(whole)
        first = group[0][1]
        agg = AggTradeEvent(trade.recv_ns, trade.E, trade.T, agg_id, trade.ticks, trade.p, qty,
                            first.t, trade.t, trade.m)
        items.append((trade.recv_ns, frame.seq, AGG, index, agg))
        symbol.last_agg_id = agg_id
        agg_id += 1
        group = []


def _qty_units(qty: str, decimals: int) -> int:
    whole, _, frac = qty.partition(".")
    return int(whole + frac.ljust(decimals, "0")[:decimals]) if decimals else int(whole)


def _count_trade(symbol: RecordedSymbol, ticks: int, qty: float, price: float,
                 trade_id: int | None) -> None:
    if symbol.first_price_ticks is None:
        symbol.first_price_ticks = ticks
    symbol.volume += qty
    symbol.quote_volume += qty * price
    symbol.trades += 1
    if trade_id is not None:
        if symbol.first_trade_id is None:
            symbol.first_trade_id = trade_id
        symbol.last_trade_id = trade_id


def _book_ticker(frame: _Frame, scale: PriceScale) -> BookTickerEvent:
    d = frame.data
    return BookTickerEvent(frame.recv_ns, int(d["u"]), scale.ticks(d["b"]), d["b"], d["B"],
                           scale.ticks(d["a"]), d["a"], d["A"], d.get("E"), d.get("T"),
                           frame.raw)
