"""The replay engine: the exchange's books and what each stream sends, without sockets.

One :class:`Base` per recorded symbol holds the simulator's own book (the truth a
REST snapshot is cut from) and applies the timeline's events to it. Each served
symbol (:class:`Served`: the recorded symbol itself, or one of its clones) is that
book seen through a price map and an id offset, so a thousand clones cost one
book, not a thousand.

Fan-out: for every event, each served symbol that has subscribers on that stream
gets its payload encoded once; the same bytes (framed once for combined and once
for raw connections) are appended to every subscriber's pending list. The server
writes each connection's pending frames in one call per replay step. Nothing here
allocates per book level per subscriber.

Ids and times a client sees are the recorded ones plus offsets: the clone's id
offset, the loop shift (so a looped replay stays contiguous), the shift a gap
fault adds, and the time map (rebasing onto the wall clock at ``speed``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from . import encode
from .config import SimulatorConfig
from .prices import ClonePrices
from .streams import AGG_TRADE, BOOK_TICKER, PARTIAL_LEVELS, TICKER, TRADE, Variant, parse_stream
from .timeline import (
    AGG,
    BOOK,
    DEPTH,
    OTHER,
    RESET,
    TICK,
    AggTradeEvent,
    BookTickerEvent,
    DepthEvent,
    OtherEvent,
    RecordedSymbol,
    Recording,
    SnapshotReset,
    TradeEvent,
)
from .timeline import (
    TRADE as TRADE_ITEM,
)

__all__ = ["Base", "Engine", "Served", "Slot", "Subscriber", "clone_name"]

_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "USD", "BTC", "ETH", "BNB",
           "EUR", "TRY", "BRL", "JPY", "GBP", "AUD")
# Prior day of the synthesized 24 h ticker, relative to the first recorded price.
_PRIOR_OPEN, _PRIOR_HIGH, _PRIOR_LOW = 0.985, 1.012, 0.978
_DAY_S = 86400.0
_BOOL = ("false", "true")


class Subscriber(Protocol):
    """A connection as the engine sees it: how it wants frames, and its outbox."""

    combined: bool
    pending: list[bytes]


def clone_name(symbol: str, k: int, width: int) -> str:
    """``BTCUSDT``, 7 → ``BTC0007USDT`` (the number goes between base and quote asset)."""
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[:-len(quote)]}{k:0{width}d}{quote}"
    return f"{symbol}{k:0{width}d}"


class Slot:
    """One stream name: its subscribers, the combined-frame prefix, frames sent."""

    __slots__ = ("frames", "key", "last_data", "name", "prefix", "served", "subscribers")

    def __init__(self, name: str, served: Served | None, key: Variant | None) -> None:
        self.name = name
        self.served = served
        self.key = key
        self.prefix = b'{"stream":"' + name.encode() + b'","data":'
        self.subscribers: set[Any] = set()
        self.frames = 0
        self.last_data: bytes | None = None


class Served:
    """A symbol the simulator serves: a recorded symbol through a price map and id offsets."""

    __slots__ = ("base", "cross_pending", "cross_ticks", "extra", "fault_shift", "id_off",
                 "index", "journal", "k", "lower", "merged_seen", "name", "overlay", "prices",
                 "raw_ok", "stall_until", "trade_off")

    def __init__(self, index: int, name: str, base: Base, prices: ClonePrices, id_off: int,
                 trade_off: int) -> None:
        self.index = index
        self.k = len(base.served)  # position among its base's served symbols
        self.name = name
        self.lower = name.lower()
        self.base = base
        self.prices = prices
        self.id_off = id_off
        self.trade_off = trade_off
        self.fault_shift = 0
        # Recorded bytes may be sent as they are: same name, prices and ids.
        self.raw_ok = name == base.rec.name and prices.identity and id_off == 0
        self.stall_until = 0.0
        # The "crossed" fault: a bid above the best ask for one diff, then withdrawn.
        self.cross_pending = False
        self.cross_ticks: int | None = None
        self.extra: list[tuple[int, str]] | None = None
        self.overlay: dict[int, str] = {}
        self.journal: deque[tuple[int, int, str]] = deque(maxlen=64)
        self.merged_seen: dict[int, int] = {}

    def id_shift(self) -> int:
        return self.id_off + self.base.loop_shift + self.fault_shift


class Base:
    """A recorded symbol during replay: its book, sequence position, shifts and stats."""

    def __init__(self, index: int, rec: RecordedSymbol, futures: bool) -> None:
        self.index = index
        self.rec = rec
        self.futures = futures
        self.bids: dict[int, str] = dict(rec.start.bids)
        self.asks: dict[int, str] = dict(rec.start.asks)
        self.last_u = rec.start.L
        self.last_E = rec.start.E or 0
        self.last_T = rec.start.T
        self.next_index = 0  # the next recorded diff (lookahead for futures snapshots)
        self.loop = 0
        self.loop_shift = 0
        self.trade_shift = 0
        self.agg_shift = 0
        self.t_mul = 1.0
        self.t_add = 0.0
        self.t_int = True
        self.pu_override = 0
        self.first_pending: set[int] = set()
        self.served: list[Served] = []
        self.active: dict[Variant, dict[Served, list[Slot]]] = {}
        self.faulty: set[Served] = set()
        intervals = (rec.native_interval, *rec.merged_intervals)
        self.intervals = intervals
        self.depth_keys = {iv: (Variant("depth", iv),
                                tuple(Variant("partial", iv, n) for n in PARTIAL_LEVELS))
                           for iv in intervals}
        self.other_keys: dict[str, Variant] = {}
        for suffix in rec.other_suffixes | ({"ticker"} if "ticker" in rec.recorded else set()):
            try:
                self.other_keys[suffix] = parse_stream(f"{rec.lower}@{suffix}",
                                                       "usdm" if futures else "spot")[1]
            except ValueError:
                continue
        # 24 h ticker state, in recorded ticks.
        self.bbo: tuple[int, str, int, str] | None = None
        self.last_ticks: int | None = None
        self.last_qty = "0"
        self.high: int | None = None
        self.low: int | None = None
        self.volume = 0.0
        self.quote = 0.0
        self.count = 0
        self.last_trade_id = (rec.first_trade_id or 1) - 1
        # Clone price maps, vectorized: mapped = (ticks * num2 + den) // den2 per clone.
        self.num2 = np.zeros(0, dtype=np.int64)
        self.den = 1
        self.tick_div = 10 ** rec.scale.tick_decimals if rec.scale.tick_decimals else 0
        self.price_fmt = rec.scale.formatter()
        self.safe_ticks = 0  # larger tick counts would overflow int64: mapped one by one

    def seal(self) -> None:
        """Freeze the clone list into the arrays the vectorized price map uses."""
        nums = [s.prices.num for s in self.served]
        dens = {s.prices.den for s in self.served}
        if len(dens) != 1:
            raise ValueError("clones of one symbol must share the price-factor denominator")
        self.den = dens.pop()
        self.num2 = np.array([2 * n for n in nums], dtype=np.int64)
        self.safe_ticks = (2**62 - self.den) // max(2 * max(nums), 1)

    def mapped(self, ticks: np.ndarray, clones: Sequence[Served]) -> list[list[int]] | None:
        """Each clone's price arguments for ``ticks``: ``[whole, frac, whole, frac, …]``.

        One numpy pass for all clones; ``None`` when the numbers are too large for
        int64 (then the caller maps prices one by one, exactly).
        """
        if ticks.size and int(ticks.max()) > self.safe_ticks:
            return None
        num2 = self.num2[[s.k for s in clones]]
        den = self.den
        mapped = (ticks[None, :] * num2[:, None] + den) // (2 * den)
        if not self.tick_div:
            return mapped.tolist()  # type: ignore[no-any-return]
        whole, frac = np.divmod(mapped, self.tick_div)
        out = np.empty((mapped.shape[0], mapped.shape[1] * 2), dtype=np.int64)
        out[:, 0::2] = whole
        out[:, 1::2] = frac
        return out.tolist()  # type: ignore[no-any-return]

    def tmap(self, t: int) -> int:
        """A recorded exchange time (ms) as the client sees it."""
        if self.t_int:
            return t + int(self.t_add)
        return int(t * self.t_mul + self.t_add)


class Engine:
    """Replays a :class:`Recording` into subscribers' outboxes."""

    def __init__(self, recording: Recording, config: SimulatorConfig) -> None:
        self.recording = recording
        self.config = config
        self.market = recording.market
        self.futures = self.market == "usdm"
        self.bases = [Base(i, rec, self.futures) for i, rec in enumerate(recording.symbols)]
        self.served: list[Served] = []
        self.by_lower: dict[str, Served] = {}
        self.slots: dict[str, Slot] = {}
        self.retired_frames: dict[str, int] = {}
        self.dirty: list[Subscriber] = []
        self.now = 0.0  # loop time of the current step (stalls compare against it)
        self.stall_all_until = 0.0
        self.frames_out = 0
        self.frames_withheld = 0
        self.events_encoded = 0
        self.recorded_gaps = sum(rec.recorded_gaps for rec in recording.symbols)
        self.period_ns = recording.duration_ns + 1_000_000_000  # one loop, plus a second
        self._anchor_ms = 0.0
        self._speed = config.speed
        self._build_served(config.clone)
        self._handlers = {DEPTH: self._depth, TRADE_ITEM: self._trade, AGG: self._agg,
                          BOOK: self._book_ticker, TICK: self._tick, OTHER: self._other,
                          RESET: self._reset}

    # -- served symbols and streams ----------------------------------------------------

    def _build_served(self, clones: int) -> None:
        width = max(4, len(str(clones)))
        for base in self.bases:
            rec = base.rec
            ids = max(rec.last_u, rec.start.L)
            id_stride = 10 ** (len(str(ids)) + 1)
            trade_stride = 10 ** (len(str(max(rec.last_trade_id or 1, rec.last_agg_id or 1))) + 1)
            if clones == 0:
                specs = [(rec.name, 1, 0)]
            else:
                specs = [(clone_name(rec.name, k, width), k, k - 1) for k in range(1, clones + 1)]
            for name, k, n in specs:
                prices = ClonePrices(rec.scale, 1000 + (k - 1), 1000)
                if name.lower() in self.by_lower:
                    raise ValueError(f"two served symbols would be named {name}")
                served = Served(len(self.served), name, base, prices, n * id_stride,
                                n * trade_stride)
                self.served.append(served)
                self.by_lower[served.lower] = served
                base.served.append(served)
            base.seal()

    def symbol(self, name: str) -> Served | None:
        return self.by_lower.get(name.lower())

    def slot(self, name: str) -> Slot:
        """The slot of a stream name; raises ``StreamNameError`` for a malformed one."""
        slot = self.slots.get(name)
        if slot is not None:
            return slot
        lower, variant = parse_stream(name, self.market)
        served = self.by_lower.get(lower)
        key = None if served is None else self._resolve(served.base, variant)
        slot = self.slots[name] = Slot(name, served, key)
        return slot

    def _resolve(self, base: Base, variant: Variant) -> Variant | None:
        """The variant a stream is served from: a speed the recording cannot give falls back
        to the recorded one; kinds it has no data for stay silent (``None``)."""
        if variant.kind in ("depth", "partial"):
            iv = variant.interval_ms if variant.interval_ms in base.intervals \
                else base.rec.native_interval
            return Variant(variant.kind, iv, variant.levels)
        if variant.kind == "other":
            return base.other_keys.get(variant.suffix)
        if variant == BOOK_TICKER and "bookTicker" not in base.rec.recorded:
            return None
        return variant

    def subscribe(self, client: Subscriber, slot: Slot) -> bool:
        """Add a subscriber; False when it was already subscribed."""
        if client in slot.subscribers:
            return False
        slot.subscribers.add(client)
        if len(slot.subscribers) == 1 and slot.key is not None and slot.served is not None:
            active = slot.served.base.active.setdefault(slot.key, {})
            active.setdefault(slot.served, []).append(slot)
        return True

    def unsubscribe(self, client: Subscriber, slot: Slot) -> bool:
        if client not in slot.subscribers:
            return False
        slot.subscribers.discard(client)
        if slot.subscribers:
            return True
        if slot.key is not None and slot.served is not None:
            active = slot.served.base.active.get(slot.key, {})
            slots = active.get(slot.served)
            if slots is not None and slot in slots:
                slots.remove(slot)
                if not slots:
                    del active[slot.served]
        if slot.frames:
            self.retired_frames[slot.name] = self.retired_frames.get(slot.name, 0) + slot.frames
        del self.slots[slot.name]  # bounded: only streams somebody listens to stay
        return True

    def frames_per_stream(self) -> dict[str, int]:
        out = dict(self.retired_frames)
        for name, slot in self.slots.items():
            if slot.frames:
                out[name] = out.get(name, 0) + slot.frames
        return out

    # -- time ------------------------------------------------------------------------------

    def set_clock(self, wall_anchor_ms: float, speed: float) -> None:
        """Map recorded times so that the first recorded receive time is ``wall_anchor_ms``.

        ``wall_anchor_ms`` is the wall time at which the replay clock reads the
        recording's first receive time (it moves when the replay is paused).
        """
        self._anchor_ms = wall_anchor_ms
        self._speed = speed
        rebase = self.config.rebase_time
        s = speed if speed > 0 else 1.0
        r0_ms = self.recording.first_recv_ns / 1e6
        for base in self.bases:
            loop_ms = base.loop * self.period_ns / 1e6
            if not rebase:
                base.t_int, base.t_mul, base.t_add = True, 1.0, round(loop_ms)
            elif s == 1.0:
                base.t_int, base.t_mul = True, 1.0
                base.t_add = round(wall_anchor_ms + loop_ms - base.rec.skew_ms - r0_ms)
            else:
                base.t_int, base.t_mul = False, 1.0 / s
                base.t_add = wall_anchor_ms + (loop_ms - base.rec.skew_ms - r0_ms) / s

    # -- replay ----------------------------------------------------------------------------

    def process(self, item: tuple[int, int, int, Any]) -> None:
        """Apply one timeline item (receive time, code, symbol index, event)."""
        self._handlers[item[1]](self.bases[item[2]], item[3], item[0])

    def begin_loop(self, loop: int) -> None:
        """Start the recording over: rewind each book to its snapshot with one diff.

        The rewind diff takes the next id after the last one sent, and every id of
        the new pass is shifted to follow it, so clients see one contiguous stream.
        """
        for base in self.bases:
            base.loop = loop
        self.set_clock(self._anchor_ms, self._speed)
        for base in self.bases:
            rec = base.rec
            u0 = rec.first_U
            base.loop_shift += base.last_u + 2 - u0
            if rec.first_trade_id is not None and rec.last_trade_id is not None:
                base.trade_shift += rec.last_trade_id - rec.first_trade_id + 1
            if rec.first_agg_id is not None and rec.last_agg_id is not None:
                base.agg_shift += rec.last_agg_id - rec.first_agg_id + 1
            b_t, b_q = _diff(base.bids, rec.start.bids)
            a_t, a_q = _diff(base.asks, rec.start.asks)
            first = rec.depth[0]
            rewind = DepthEvent(0, first.E - 1, None if first.T is None else first.T - 1,
                                u0 - 1, u0 - 1, u0 - 2 if self.futures else None,
                                b_t, b_q, a_t, a_q)
            rewind.closes = tuple((iv, None) for iv in base.intervals)
            base.next_index = -1  # the rewind itself is not in rec.depth
            self._depth(base, rewind, 0)
            base.next_index = 0
            base.pu_override = u0 - 1
            base.first_pending = set(base.intervals) if self.futures else set()

    def _depth(self, base: Base, ev: DepthEvent, _recv: int) -> None:
        bids, asks = base.bids, base.asks
        for t, q in zip(ev.b_t, ev.b_q, strict=True):
            if q.strip("0."):
                bids[t] = q
            else:
                bids.pop(t, None)
        for t, q in zip(ev.a_t, ev.a_q, strict=True):
            if q.strip("0."):
                asks[t] = q
            else:
                asks.pop(t, None)
        base.last_u = ev.u
        base.last_E = ev.E
        base.last_T = ev.T
        base.next_index += 1
        faulty = list(base.faulty) if base.faulty else ()
        for served in faulty:
            self._cross_step(base, served)
        for interval, merged in ev.closes:
            event = ev if merged is None else merged
            pu = event.pu
            if base.first_pending and interval in base.first_pending:
                pu = base.pu_override
                base.first_pending.discard(interval)
            depth_key, partial_keys = base.depth_keys[interval]
            active = base.active.get(depth_key)
            if active:
                self._send_depth(base, event, pu, active, merged is None, interval)
            for key in partial_keys:
                active = base.active.get(key)
                if active:
                    self._partial(base, event, key, active, pu)
        for served in faulty:
            served.extra = None

    def _send_depth(self, base: Base, ev: DepthEvent, pu: int | None,
                    active: dict[Served, list[Slot]], native: bool, interval: int) -> None:
        """Encode one diff for every served symbol listening at this speed, and fan it out."""
        E = base.tmap(ev.E)
        T = None if ev.T is None else base.tmap(ev.T)
        batch: list[tuple[Served, list[Slot], int]] = []
        for served, slots in active.items():
            shift = served.id_off + base.loop_shift + served.fault_shift
            extra = served.extra if native else self._journal(served, interval)
            if extra:
                self._fan(served, slots, self._depth_with(served, ev, pu, E, T, shift, extra),
                          True)
            elif (served.raw_ok and shift == 0 and ev.raw is not None and pu == ev.pu
                  and base.t_int and base.t_add == 0):
                self._fan(served, slots, ev.raw, True)
            elif served.prices.identity and len(active) < 4:
                text = ev.text
                if text is None:
                    prices = served.prices
                    text = ev.text = (prices.levels(ev.b_t, ev.b_q),
                                      prices.levels(ev.a_t, ev.a_q))
                data = encode.depth_update(served.name, E, T, ev.U + shift, ev.u + shift,
                                           None if pu is None else pu + shift, *text)
                self._fan(served, slots, data, True)
            else:
                batch.append((served, slots, shift))
        if not batch:
            return
        template = ev.template
        if template is None:
            template = ev.template = self._depth_template(base, ev)
        fmt, ticks = template
        rows = base.mapped(ticks, [b[0] for b in batch])
        if rows is None:  # beyond int64: map one by one
            for served, slots, shift in batch:
                self._fan(served, slots, self._depth_with(served, ev, pu, E, T, shift, None),
                          True)
            return
        if self.futures:
            T = E if T is None else T
            pu = ev.U - 1 if pu is None else pu
            for (served, slots, shift), row in zip(batch, rows, strict=True):
                data = (fmt % (E, T, served.name, ev.U + shift, ev.u + shift, pu + shift, *row)
                        ).encode()
                self._fan(served, slots, data, True)
        else:
            for (served, slots, shift), row in zip(batch, rows, strict=True):
                data = (fmt % (E, served.name, ev.U + shift, ev.u + shift, *row)).encode()
                self._fan(served, slots, data, True)

    def _depth_template(self, base: Base, ev: DepthEvent) -> tuple[str, np.ndarray]:
        """A %-format of the whole diff with the prices left open, and its tick array."""
        price = base.price_fmt
        bids = ",".join([f'["{price}","{q}"]' for q in ev.b_q])
        asks = ",".join([f'["{price}","{q}"]' for q in ev.a_q])
        if self.futures:
            head = '{"e":"depthUpdate","E":%d,"T":%d,"s":"%s","U":%d,"u":%d,"pu":%d'
        else:
            head = '{"e":"depthUpdate","E":%d,"s":"%s","U":%d,"u":%d'
        fmt = f'{head},"b":[{bids}],"a":[{asks}]}}'
        return fmt, np.array(ev.b_t + ev.a_t, dtype=np.int64)

    def _depth_with(self, served: Served, ev: DepthEvent, pu: int | None, E: int,
                    T: int | None, shift: int, extra: list[tuple[int, str]] | None) -> bytes:
        """One diff, mapped level by level (fault levels merged in, or huge numbers)."""
        prices = served.prices
        if extra:
            b = dict(zip(ev.b_t, ev.b_q, strict=True))
            b.update(extra)
            b_t = tuple(sorted(b, reverse=True))
            bids = prices.levels(b_t, tuple(b[t] for t in b_t))
        else:
            bids = prices.levels(ev.b_t, ev.b_q)
        asks = prices.levels(ev.a_t, ev.a_q)
        return encode.depth_update(served.name, E, T, ev.U + shift, ev.u + shift,
                                   None if pu is None else pu + shift, bids, asks)

    def _partial(self, base: Base, ev: DepthEvent, key: Variant,
                 active: dict[Served, list[Slot]], pu: int | None) -> None:
        n = key.levels
        b_t = tuple(heapq.nlargest(n, base.bids))
        a_t = tuple(heapq.nsmallest(n, base.asks))
        b_q = tuple(base.bids[t] for t in b_t)
        a_q = tuple(base.asks[t] for t in a_t)
        E = base.tmap(ev.E)
        T = None if ev.T is None else base.tmap(ev.T)
        for served, slots in active.items():
            shift = served.id_off + base.loop_shift + served.fault_shift
            prices = served.prices
            data = encode.partial_depth(
                served.name, base.last_u + shift, E, T, ev.U + shift,
                None if pu is None else pu + shift, prices.levels(b_t, b_q),
                prices.levels(a_t, a_q), self.futures)
            self._fan(served, slots, data, False)

    def _prices(self, base: Base, ticks: Sequence[int], clones: Sequence[Served]
                ) -> list[tuple[str, ...]]:
        """Each clone's price strings for a few tick counts (trades, tickers)."""
        rows = base.mapped(np.array(ticks, dtype=np.int64), clones)
        fmt = base.price_fmt
        if rows is None:
            return [tuple(s.prices.text(t) for t in ticks) for s in clones]
        step = 2 if base.tick_div else 1
        if step == 1:
            return [tuple(fmt % v for v in row) for row in rows]
        return [tuple(fmt % (row[i], row[i + 1]) for i in range(0, len(row), 2))
                for row in rows]

    def _trade(self, base: Base, ev: TradeEvent, _recv: int) -> None:
        self._count_trade(base, ev.ticks, ev.q, ev.t)
        active = base.active.get(TRADE)
        if not active:
            return
        E = base.tmap(ev.E)
        T = base.tmap(ev.T)
        raw = ev.raw is not None and base.t_int and base.t_add == 0
        batch = []
        for served, slots in active.items():
            t_off = served.trade_off + base.trade_shift
            if raw and served.raw_ok and t_off == 0:
                self._fan(served, slots, ev.raw, False)  # type: ignore[arg-type]
            else:
                batch.append((served, slots, t_off))
        if not batch:
            return
        prices = self._prices(base, (ev.ticks,), [b[0] for b in batch])
        if self.futures:
            fmt = (f'{{"e":"trade","E":{E},"T":{T},"s":"%s","t":%d,"p":"%s","q":"{ev.q}",'
                   f'"X":"{ev.X or "MARKET"}","m":{_BOOL[ev.m]}}}')
        else:
            fmt = (f'{{"e":"trade","E":{E},"s":"%s","t":%d,"p":"%s","q":"{ev.q}","T":{T},'
                   f'"m":{_BOOL[ev.m]},"M":{_BOOL[ev.M is not False]}}}')
        t = ev.t
        for (served, slots, t_off), (price,) in zip(batch, prices, strict=True):
            self._fan(served, slots, (fmt % (served.name, t + t_off, price)).encode(), False)

    def _agg(self, base: Base, ev: AggTradeEvent, _recv: int) -> None:
        if "trade" not in base.rec.recorded:
            self._count_trade(base, ev.ticks, ev.q, ev.l)
        active = base.active.get(AGG_TRADE)
        if not active:
            return
        E = base.tmap(ev.E)
        T = base.tmap(ev.T)
        raw = ev.raw is not None and base.t_int and base.t_add == 0
        batch = []
        for served, slots in active.items():
            t_off = served.trade_off + base.trade_shift
            a_off = served.trade_off + base.agg_shift
            if raw and served.raw_ok and t_off == 0 and a_off == 0:
                self._fan(served, slots, ev.raw, False)  # type: ignore[arg-type]
            else:
                batch.append((served, slots, t_off, a_off))
        if not batch:
            return
        prices = self._prices(base, (ev.ticks,), [b[0] for b in batch])
        tail = "" if self.futures else ',"M":true'
        fmt = (f'{{"e":"aggTrade","E":{E},"s":"%s","a":%d,"p":"%s","q":"{ev.q}","f":%d,'
               f'"l":%d,"T":{T},"m":{_BOOL[ev.m]}{tail}}}')
        for (served, slots, t_off, a_off), (price,) in zip(batch, prices, strict=True):
            data = (fmt % (served.name, ev.a + a_off, price, ev.f + t_off, ev.l + t_off)).encode()
            self._fan(served, slots, data, False)

    def _book_ticker(self, base: Base, ev: BookTickerEvent, _recv: int) -> None:
        base.bbo = (ev.b_t, ev.B, ev.a_t, ev.A)
        active = base.active.get(BOOK_TICKER)
        if not active:
            return
        raw = ev.raw is not None and base.t_int and base.t_add == 0
        batch = []
        for served, slots in active.items():
            shift = served.id_off + base.loop_shift + served.fault_shift
            if raw and served.raw_ok and shift == 0:
                self._fan(served, slots, ev.raw, False)  # type: ignore[arg-type]
            else:
                batch.append((served, slots, shift))
        if not batch:
            return
        prices = self._prices(base, (ev.b_t, ev.a_t), [b[0] for b in batch])
        if self.futures:
            E = base.tmap(ev.E if ev.E is not None else base.last_E)
            T = base.tmap(ev.T) if ev.T is not None else E
            fmt = (f'{{"e":"bookTicker","u":%d,"s":"%s","b":"%s","B":"{ev.B}","a":"%s",'
                   f'"A":"{ev.A}","T":{T},"E":{E}}}')
        else:
            fmt = f'{{"u":%d,"s":"%s","b":"%s","B":"{ev.B}","a":"%s","A":"{ev.A}"}}'
        u = ev.u
        for (served, slots, shift), (b, a) in zip(batch, prices, strict=True):
            self._fan(served, slots, (fmt % (u + shift, served.name, b, a)).encode(), False)

    def _other(self, base: Base, ev: OtherEvent, _recv: int) -> None:
        key = base.other_keys.get(ev.suffix)
        active = base.active.get(key) if key is not None else None
        if not active:
            return
        for served, slots in active.items():
            if served.raw_ok:  # not modelled: only the recorded symbol gets it, as recorded
                self._fan(served, slots, ev.raw, False)

    def _reset(self, base: Base, ev: SnapshotReset, _recv: int) -> None:
        """A recorded gap: the book restarts from the recording's next snapshot."""
        base.bids = dict(ev.bids)
        base.asks = dict(ev.asks)
        base.last_u = ev.L

    def _tick(self, base: Base, _ev: None, recv_ns: int) -> None:
        active = base.active.get(TICKER)
        if not active or "ticker" in base.rec.recorded:
            return
        rec = base.rec
        p0 = rec.first_price_ticks or self._mid(base)
        if p0 is None:
            return
        last = base.last_ticks if base.last_ticks is not None else p0
        open_t = round(p0 * _PRIOR_OPEN)
        high = max(round(p0 * _PRIOR_HIGH), base.high or last, last)
        low = min(round(p0 * _PRIOR_LOW), base.low or last, last)
        duration_s = max(rec.duration_ms / 1000.0, 1.0)
        elapsed_s = (recv_ns - self.recording.first_recv_ns) / 1e9 + base.loop * (
            self.period_ns / 1e9)
        prior_s = max(0.0, _DAY_S - elapsed_s)
        volume = rec.volume / duration_s * prior_s + base.volume
        quote = rec.quote_volume / duration_s * prior_s + base.quote
        count = int(rec.trades / duration_s * prior_s) + base.count
        last_id = base.last_trade_id + base.trade_shift
        E = base.tmap(recv_ns // 1_000_000 + rec.skew_ms)
        bbo = base.bbo or self._top(base)
        qd = rec.qty_decimals
        dec = rec.scale.decimals
        vol_text = f"{volume:.{qd}f}"
        for served, slots in active.items():
            prices = served.prices
            scale = prices.scale
            c_t, o_t = prices.ticks(last), prices.ticks(open_t)
            change = c_t - o_t
            change_text = ("-" if change < 0 else "") + scale.format(abs(change))
            pct = f"{change / o_t * 100:.3f}" if o_t else "0.000"
            factor = prices.num / prices.den
            q = quote * factor
            wavg = f"{q / volume:.{dec}f}" if volume else scale.format(c_t)
            b_t, b_q, a_t, a_q = bbo
            data = encode.ticker_24h(
                served.name, E, change_text, pct, wavg, prices.text(open_t), prices.text(last),
                base.last_qty, prices.text(b_t), b_q, prices.text(a_t), a_q,
                prices.text(open_t), prices.text(high), prices.text(low), vol_text,
                f"{q:.{dec}f}", E - 86_400_000, last_id + served.trade_off - count + 1,
                last_id + served.trade_off, count, self.futures)
            self._fan(served, slots, data, False)

    def _count_trade(self, base: Base, ticks: int, qty: str, trade_id: int) -> None:
        q = float(qty)
        base.last_ticks = ticks
        base.last_qty = qty
        if base.high is None or ticks > base.high:
            base.high = ticks
        if base.low is None or ticks < base.low:
            base.low = ticks
        base.volume += q
        base.quote += q * ticks / 10 ** base.rec.scale.tick_decimals
        base.count += 1
        base.last_trade_id = trade_id

    @staticmethod
    def _top(base: Base) -> tuple[int, str, int, str]:
        b = max(base.bids) if base.bids else 0
        a = min(base.asks) if base.asks else 0
        return b, base.bids.get(b, "0"), a, base.asks.get(a, "0")

    @staticmethod
    def _mid(base: Base) -> int | None:
        if not base.bids or not base.asks:
            return None
        return (max(base.bids) + min(base.asks)) // 2

    # -- fan-out ---------------------------------------------------------------------------

    def _fan(self, served: Served, slots: list[Slot], data: bytes, depth: bool) -> None:
        """Queue one event's bytes to every subscriber of ``slots`` (encoded once, shared).

        A frame is queued as its pieces (header, prefix, payload, suffix); the server
        joins a connection's pieces once per step, so the payload is copied once.
        """
        now = self.now
        if (served.stall_until and now < served.stall_until) or now < self.stall_all_until:
            self.frames_withheld += sum(len(s.subscribers) for s in slots)
            return
        self.events_encoded += 1
        dirty = self.dirty
        size = len(data)
        header = encode.ws_header
        for slot in slots:
            combined = raw = None
            subscribers = slot.subscribers
            for client in subscribers:
                if client.combined:
                    if combined is None:
                        prefix = slot.prefix
                        combined = (header(len(prefix) + size + 1), prefix, data, b"}")
                    parts = combined
                else:
                    if raw is None:
                        raw = (header(size), data)
                    parts = raw
                pending = client.pending
                if not pending:
                    dirty.append(client)
                pending.extend(parts)
            n = len(subscribers)
            slot.frames += n
            self.frames_out += n
            if depth:
                slot.last_data = data

    # -- REST ------------------------------------------------------------------------------

    def snapshot(self, served: Served, limit: int) -> bytes:
        """The REST depth body for ``served`` now: top ``limit`` levels per side."""
        base = served.base
        bids = base.bids
        if served.overlay:
            bids = {**bids, **served.overlay}
        b_t = _top(bids, limit, reverse=True)
        a_t = _top(base.asks, limit, reverse=False)
        prices = served.prices
        b_text = prices.levels(tuple(b_t), tuple(bids[t] for t in b_t))
        a_text = prices.levels(tuple(a_t), tuple(base.asks[t] for t in a_t))
        E = T = None
        if self.futures:
            E = base.tmap(base.last_E)
            T = base.tmap(base.last_T) if base.last_T is not None else E
        return encode.snapshot_body(self.last_update_id(served), b_text, a_text, E, T)

    def last_update_id(self, served: Served) -> int:
        """The id a snapshot taken now is valid at.

        Spot: the ``u`` of the last diff applied. Futures: the ``U`` of the next diff
        (the book is the same at every id up to it), so that the diff a client
        buffers next satisfies Binance's futures rule ``U <= lastUpdateId <= u``;
        real futures snapshots also land inside the next diff's id range.
        """
        base = served.base
        shift = served.id_shift()
        if not self.futures or (base.next_index <= 0 and base.loop == 0):
            return base.last_u + shift
        depth = base.rec.depth
        if 0 <= base.next_index < len(depth):
            return max(depth[base.next_index].U, base.last_u) + shift
        if self.config.loop:
            return base.last_u + 1 + shift  # the rewind diff comes next
        return base.last_u + shift

    def book(self, served: Served) -> tuple[int, dict[str, str], dict[str, str]]:
        """``(last_update_id, bids, asks)``: the whole current book as price → qty strings."""
        base = served.base
        bids = {**base.bids, **served.overlay} if served.overlay else base.bids
        prices = served.prices
        return (self.last_update_id(served),
                {prices.text(t): q for t, q in bids.items()},
                {prices.text(t): q for t, q in base.asks.items()})

    # -- faults ----------------------------------------------------------------------------

    def skip_update_ids(self, served: Served, count: int) -> None:
        served.fault_shift += count

    def cross(self, served: Served) -> None:
        served.cross_pending = True
        served.base.faulty.add(served)

    def _cross_step(self, base: Base, served: Served) -> None:
        """Per diff while a crossed-book fault runs: place the crossing bid, then withdraw it."""
        if served.cross_ticks is not None:
            t = served.cross_ticks
            qty = base.bids.get(t, _zero(base.rec.qty_decimals))
            served.overlay.pop(t, None)
            served.cross_ticks = None
        elif served.cross_pending and base.asks:
            t = min(base.asks) + 1
            qty = _one(base.rec.qty_decimals)
            served.overlay[t] = qty
            served.cross_ticks = t
            served.cross_pending = False
        else:
            base.faulty.discard(served)
            return
        served.extra = [(t, qty)]
        seq = served.journal[-1][0] + 1 if served.journal else 1
        served.journal.append((seq, t, qty))

    def _journal(self, served: Served, interval: int) -> list[tuple[int, str]] | None:
        """Fault levels a merged (slower) stream has not carried yet."""
        if not served.journal:
            return None
        seen = served.merged_seen.get(interval, 0)
        latest = served.journal[-1][0]
        if latest <= seen:
            return None
        served.merged_seen[interval] = latest
        return [(t, q) for seq, t, q in served.journal if seq > seen]

    def stall(self, until: float, served: Served | None) -> None:
        if served is None:
            self.stall_all_until = until
        else:
            served.stall_until = until

    def slots_of(self, served: Served) -> Iterable[Slot]:
        return [slot for slot in self.slots.values() if slot.served is served]


def _top(levels: dict[int, str], n: int, *, reverse: bool) -> list[int]:
    if n >= len(levels):
        return sorted(levels, reverse=reverse)
    return heapq.nlargest(n, levels) if reverse else heapq.nsmallest(n, levels)


def _diff(current: dict[int, str], target: dict[int, str]
          ) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The levels that turn ``current`` into ``target`` (absolute quantities, zeros remove)."""
    zero = "0"
    if target:
        sample = next(iter(target.values()))
        zero = "0." + "0" * len(sample.partition(".")[2]) if "." in sample else "0"
    changes = {t: zero for t in current if t not in target}
    changes.update({t: q for t, q in target.items() if current.get(t) != q})
    ticks = tuple(sorted(changes))
    return ticks, tuple(changes[t] for t in ticks)


def _zero(decimals: int) -> str:
    return "0." + "0" * decimals if decimals else "0"


def _one(decimals: int) -> str:
    return "1." + "0" * decimals if decimals else "1"
