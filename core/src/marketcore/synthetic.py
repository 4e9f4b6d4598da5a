"""Seeded, deterministic synthetic market data for any number of symbols.

The built-in ``synthetic`` venue, the benchmarks and the test suites all draw from
this generator, and plugin authors can use it to exercise a calculator on a market
that contains the things reports are about, without a network or a recording::

    from marketcore.synthetic import SyntheticConfig, SyntheticMarket

    market = SyntheticMarket(["BTCUSDT", "ETHUSDT"], SyntheticConfig(seed=7))
    for event in market.events(until_ms=market.config.start_ms + 60_000):
        ...  # BookSnapshot first, then BookDelta / Trade / Ticker in receive order

    for recv_ns, frame in market.binance_frames(until_ms=...):
        ...  # the same stream as Binance wire bytes (combined-stream frames)

**Determinism.** Each symbol has its own PCG64 stream seeded from
``(config.seed, blake2b(symbol))``, so the same symbols and config always give the
same events and byte-identical frames, and a symbol's stream does not change when
other symbols are added to the market. The price level, tick size and lot size of a
symbol depend on its name and ``start_price`` only, never on the seed. Each feature
(jumps, walls, thin stretches, icebergs) draws from a generator of its own, and so does
the book's upkeep, so the market's own draws do not depend on which features are on:
with the same seed, the market with walls starts as the one without plus the walls, and
drifts from it only through what the walls change in the book (which is how the tests
tell walls from natural churn).

**The model,** per symbol, one step per depth event (``1 / deltas_per_sec``):

* a latent mid follows a log random walk (``volatility_bps`` per second) with rare
  jumps; a jump comes with a burst of one-sided trades and a few seconds of stress
  (spread widened to 4–10 ticks, the swept side thin until it refills);
* taker orders arrive as a Poisson process; each fills one to a few resting orders
  at the touch, walking the book when it empties a level. The aggressor side leans
  with the step's mid move, and the step's delta shows the consumed levels (reduced
  or removed), so trade flow, price impact and the book agree;
* after the trades the touch is re-centred on the mid with a spread of 1–3 ticks:
  levels overtaken by the move are removed and the vacated stretch is refilled near
  the new touch. Resting orders are also resized (part of the way to a fresh size),
  cancelled and added (``changes_per_sec``), mostly near the top. Each side keeps
  about ``levels`` levels on the tick grid, dense at the top and sparser outwards (tens
  of bps deep, more where the tick is coarse), with log-normal sizes that grow with
  distance and lean with a slowly drifting bid/ask imbalance. The far end is the edge
  of that window: it slides as the touch moves, and the levels it reveals are of
  ordinary size, so sliding never looks like a large order placed;
* the raw material of the slow-cycle reports: *walls* (a level raised by several times
  the P95 size, 12–45 bps from the touch, in one delta) that are mostly pulled, in one
  delta, within seconds (spoof like, ``spoof_ratio``) or otherwise rest a minute or
  two; *thin stretches* (a run of levels cut to a few lots, below P10); *icebergs* (a
  touch level that keeps its visible size while it is hit and holds the price);
* a 24 h ticker every ``ticker_every_ms``, from 5-minute buckets that start with a
  plausible prior day (a random walk ending at the start price) and then count the
  generated trades exactly.

Update ids of a symbol are contiguous (``first_update_id == previous
last_update_id + 1``) and trade ids too. ``recv_ns`` is the exchange time plus a
per-symbol latency of 2–30 ms and never decreases within a symbol; the merged stream
never goes back in ``recv_ns``.

**Numbers.** Prices are integer ticks of ``10**-d`` and quantities integer lots of
``10**-q``; an event carries ``ticks / 10**d``, the correctly rounded float of the
decimal, which is what ``float()`` of the wire string gives, so events and decoded
frames compare equal. Wire strings have exactly the tick (lot) precision:
``"60000.01"``, never ``0.30000000000000004``. (Binance itself pads to 8 decimals;
decoders must accept both.)

**Faults,** for tests: ``gap_every=N`` loses every N-th depth event (its ids are
skipped and its changes never arrive, as when a frame is lost), so a venue must
notice the gap and rebuild the book from :meth:`SyntheticStream.snapshot`;
``crossed_every=N`` makes every N-th delta cross the book by one bid above the best
ask, removed again by the next delta.

**Cost.** Plain Python, paid per depth event: at the defaults a step makes about 15
level changes and 2 trades. Random numbers come from numpy a block at a time, runs
of new levels go in as one slice, and each symbol advances a second of market time at
once so its state stays in cache; the merge is a sort per second, not a heap per
event. ``changes_per_sec``, ``trades_per_sec`` and ``deltas_per_sec`` scale the cost.
Memory per symbol is bounded (the book, a 288-bucket ring, the draw blocks) plus one
second of pending events.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import chain
from typing import Any, Generic, NamedTuple, TypeVar

import attrs
import numpy as np
from attrs import validators as v

from marketcore.events import BookDelta, BookSnapshot, Event, Level, Side, Ticker, Trade

__all__ = ["SyntheticConfig", "SyntheticMarket", "SyntheticStream"]

T = TypeVar("T")

_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}")
_PRICE_DECADES = 6  # symbol prices spread log-uniformly over start_price * [1e-6, 1]
_BOOK_DEPTH_BPS = 80.0  # how far ``levels`` levels reach from the touch
_LEVEL_NOTIONAL = 500.0  # median resting size, in quote currency
_SIZE_SIGMA = 1.6  # log-normal spread of level sizes
_TRADE_FRACTION = 0.08  # median fill size relative to the median level size
_TRADE_SIGMA = 1.5
_P95, _P10 = math.exp(1.645 * _SIZE_SIGMA), math.exp(-1.2816 * _SIZE_SIGMA)
_RESIZE_KEEP = 0.75  # a resized level keeps this power of its size (log-AR(1)) ...
_RESIZE_NEW = math.sqrt(1.0 - _RESIZE_KEEP**2)  # ... times this power of a fresh factor
_MEAN_FILLS = 2.0  # fills per taker order: geometric, at most 8
_NEAR_RANK = 8.0  # mean rank of a change "near the top"
_INSERT_REACH = 8  # levels a new order looks past for a free tick
_FILL_CAP = 30  # levels refilled behind a moved touch per step; more leaves a thin stretch
_EXTEND_CAP = 20  # levels added at the far end per step when a side runs short
_MAX_WALLS = 8
_WALL_BPS = (12.0, 45.0)  # how far from the touch walls go
_WALL_P95 = (4.0, 8.0)  # wall sizes, in nominal P95s of the level sizes at their distance
_BOOK, _JUMPS, _WALLS, _THIN, _ICEBERGS = range(1, 6)  # tags of the _Aside draws
_BUCKET_MS = 300_000  # 24 h statistics in 5-minute buckets
_BUCKETS = 288
_NO_LOW = 1 << 62  # the low of a bucket without trades
_OPEN, _HIGH, _LOW, _VOLUME, _QUOTE, _COUNT = range(6)  # rows of a _Day ring
_FAR = 1 << 62  # a key beyond any level
_DAY_MS = 86_400_000
_MIN_LATENCY_MS, _MAX_LATENCY_MS = 2.0, 30.0  # receive time minus exchange time
_BLOCK = 64  # random numbers drawn per numpy call and stream
_WINDOW_MS = 1000  # market time each symbol advances in one go (its state stays in cache)


def _at_least(minimum: float) -> list[Callable[..., Any]]:
    """Validators for a real number ``>= minimum`` (ints accepted, as TOML gives them)."""
    return [v.instance_of((int, float)), v.ge(minimum)]


@attrs.frozen
class SyntheticConfig:
    """How the synthetic market behaves. Rates are per symbol.

    ``*_every_s`` are the mean seconds between occurrences of a feature, per symbol
    (0 turns it off); ``gap_every`` / ``crossed_every`` are fault knobs for tests.
    """

    seed: int = attrs.field(default=1, validator=[v.instance_of(int), v.ge(0)])
    start_price: float = attrs.field(default=60000.0, validator=_at_least(1e-3))
    """The price of BTC. Well-known bases (ETH, SOL, XRP, …) sit at their usual ratio to it;
    any other symbol at ``start_price * 10**-(6*u)``, with u in [0, 1) from its name."""
    levels: int = attrs.field(default=200, validator=[v.instance_of(int), v.ge(10)])
    """Levels per side kept in the book (give or take 5 %)."""
    deltas_per_sec: float = attrs.field(default=10.0, validator=v.and_(v.gt(0), v.le(1000)))
    """Depth events per second (Binance depth@100ms: 10)."""
    trades_per_sec: float = attrs.field(default=20.0, validator=_at_least(0))
    """Trades (fills) per second; taker orders come at half that rate, 2 fills each."""
    ticker_every_ms: int = attrs.field(default=1000, validator=[v.instance_of(int), v.ge(0)])
    """A 24 h ticker this often (0: none)."""
    volatility_bps: float = attrs.field(default=2.0, validator=_at_least(0))
    """Standard deviation of the mid's move over one second, in basis points."""
    start_ms: int = attrs.field(default=1_723_161_600_000, validator=v.instance_of(int))
    """Simulated start, UTC milliseconds."""
    changes_per_sec: float = attrs.field(default=40.0, validator=_at_least(0))
    """Resting orders added, resized or cancelled, besides what trades and moves do:
    the main dial of churn per delta, and of the generator's cost."""
    jump_every_s: float = attrs.field(default=300.0, validator=_at_least(0))
    """Mean seconds between price jumps (5-20 times the one-second move)."""
    wall_every_s: float = attrs.field(default=20.0, validator=_at_least(0))
    """Mean seconds between walls placed away from the mid."""
    spoof_ratio: float = attrs.field(default=0.6, validator=v.and_(v.ge(0), v.le(1)))
    """Share of walls pulled within seconds instead of resting a minute or two."""
    iceberg_every_s: float = attrs.field(default=120.0, validator=_at_least(0))
    """Mean seconds between icebergs at the touch."""
    vacuum_every_s: float = attrs.field(default=30.0, validator=_at_least(0))
    """Mean seconds between thin stretches cut into the book."""
    gap_every: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    """Lose every N-th depth event (0: never), so a venue's gap check fires."""
    crossed_every: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    """Cross the book in every N-th depth event (0: never)."""


_DEFAULT_CONFIG = SyntheticConfig()


def _stable_int(*parts: str) -> int:
    """A 64-bit hash that is the same in every process (``hash()`` is salted)."""
    digest = hashlib.blake2b(":".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "USD")
_BTC_RATIOS = {
    "BTC": 1.0, "ETH": 0.05, "BNB": 0.0095, "SOL": 0.0025, "LTC": 0.0012, "AVAX": 4.5e-4,
    "LINK": 2.3e-4, "DOT": 1.0e-4, "XRP": 1.0e-5, "ADA": 6.0e-6, "TRX": 2.0e-6, "DOGE": 2.0e-6,
}
"""Rough prices of well-known bases relative to BTC, so demos of BTCUSDT, ETHUSDT, … look
like the market; any other symbol gets a price from its name's hash."""


def _known_ratio(symbol: str) -> float | None:
    for quote in _QUOTES:
        if symbol.endswith(quote):
            return _BTC_RATIOS.get(symbol[: -len(quote)])
    return None


@attrs.frozen(slots=True)
class _Instrument:
    """What a symbol is: its price level and grids. Depends on the name only."""

    symbol: str
    key: int
    price_decimals: int
    qty_decimals: int
    start_ticks: int
    level_lots: float

    @classmethod
    def derive(cls, symbol: str, start_price: float) -> _Instrument:
        """Price from the base's usual ratio to BTC, else from the name's hash; tick and lot
        sized to the price, as venues do."""
        ratio = _known_ratio(symbol)
        if ratio is None:
            ratio = 10.0 ** (-_PRICE_DECADES * (_stable_int("price", symbol) / 2.0**64))
        price = start_price * ratio
        pd = min(8, max(2, 4 - math.floor(math.log10(price))))
        qd = min(8, max(0, math.ceil(math.log10(price))))
        lot_notional = price / 10**qd
        return cls(
            symbol=symbol,
            key=_stable_int("symbol", symbol),
            price_decimals=pd,
            qty_decimals=qd,
            start_ticks=max(1000, round(price * 10**pd)),
            level_lots=max(1.0, _LEVEL_NOTIONAL / lot_notional),
        )


def _blocks(draw: Callable[[int], np.ndarray]) -> Iterator[Any]:
    """An endless iterator over numpy draws made a block at a time (numpy per scalar is
    slow), chained in C (a generator would resume a Python frame per number)."""
    return chain.from_iterable(iter(lambda: draw(_BLOCK).tolist(), None))


def _changes(rng: np.random.Generator) -> Iterator[tuple[float, float, float, float, float]]:
    """The five numbers of a resting-order change: four uniforms and a size factor, as
    tuples (which, unlike lists, the GC stops tracking). A change takes all five whatever
    it turns out to do, so the draws never depend on the book."""
    while True:
        block = iter(rng.random(4 * _BLOCK).tolist())
        sizes = np.exp(_SIZE_SIGMA * rng.standard_normal(_BLOCK)).tolist()
        yield from zip(block, block, block, block, sizes, strict=True)


def _stream(draw: Callable[[int], np.ndarray]) -> Callable[[], Any]:
    return partial(next, _blocks(draw))


class _Draws:
    """Scalar random streams of one symbol's market, all from its PCG64 generator; call them.

    Besides the plain ones: ``size`` and ``fill`` are the log-normal factors of resting
    and trade sizes; ``orders`` and ``changes`` the Poisson counts of taker orders and
    of resting-order changes per step, ``fills`` the fills per order (geometric, at
    most 8), ``change`` the five numbers of one resting-order change. All are
    precomputed in blocks, because a step draws dozens of them and a numpy call per
    scalar costs more than the step.
    """

    __slots__ = (
        "change",
        "changes",
        "exponential",
        "fill",
        "fills",
        "normal",
        "orders",
        "size",
        "uniform",
    )

    def __init__(self, rng: np.random.Generator, orders: float, changes: float) -> None:
        self.uniform = _stream(rng.random)
        self.normal = _stream(rng.standard_normal)
        self.exponential = _stream(rng.standard_exponential)
        self.size = _stream(lambda n: np.exp(_SIZE_SIGMA * rng.standard_normal(n)))
        self.fill = _stream(lambda n: np.exp(_TRADE_SIGMA * rng.standard_normal(n)))
        self.orders = _stream(lambda n: rng.poisson(orders, n))
        self.changes = _stream(lambda n: rng.poisson(changes, n))
        self.fills = _stream(lambda n: np.minimum(8, rng.geometric(1 / _MEAN_FILLS, n)))
        self.change = partial(next, _changes(rng))


class _Aside:
    """Draws kept apart from the market's own (:class:`_Draws`), from a generator of their
    own seeded from the symbol and a tag: those of each feature (jumps, walls, thin
    stretches, icebergs: ``uniform`` and ``exponential``), and those whose number depends
    on the book (the levels that refill a moved touch or extend the far end:
    ``exponential`` gaps and log-normal ``size`` factors).

    The market's draws are then taken in the same order whatever the book looks like and
    whichever features are on, so with the same seed a market with walls starts as the
    market without them plus the walls, not as a different market.
    """

    __slots__ = ("exponential", "size", "uniform")

    def __init__(self, seed: int, key: int, tag: int) -> None:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, key, tag])))
        self.exponential = _stream(rng.standard_exponential)
        if tag == _BOOK:
            self.size = _stream(lambda n: np.exp(_SIZE_SIGMA * rng.standard_normal(n)))
        else:
            self.uniform = _stream(rng.random)


class _Side:
    """One side of a book as integer ticks and lots, ordered from the touch outwards.

    Keys are ``sign * tick`` (asks +1, bids -1) so both sides sort ascending from the
    touch; every mutation is also recorded in ``changes`` for the step's delta.
    """

    __slots__ = ("changes", "keys", "lean", "lots", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.keys: list[int] = []
        self.lots: dict[int, int] = {}
        self.changes: dict[int, int] = {}
        self.lean = 1.0  # multiplier of new sizes on this side: the book's imbalance

    def touch(self) -> int:
        return self.sign * self.keys[0]

    def tick_at(self, rank: int) -> int:
        return self.sign * self.keys[rank]

    def set(self, tick: int, lots: int) -> None:
        if tick not in self.lots:
            bisect.insort(self.keys, self.sign * tick)
        self.lots[tick] = lots
        self.changes[tick] = lots

    def insert_run(self, ticks: list[int], lots: list[int]) -> None:
        """New levels, ordered outwards, with no existing level among them: one slice."""
        if not ticks:
            return
        at = bisect.bisect_left(self.keys, self.sign * ticks[0])
        self.keys[at:at] = [self.sign * tick for tick in ticks]
        run = dict(zip(ticks, lots, strict=True))
        self.lots.update(run)
        self.changes.update(run)

    def remove(self, tick: int) -> None:
        del self.keys[bisect.bisect_left(self.keys, self.sign * tick)]
        del self.lots[tick]
        self.changes[tick] = 0

    def remove_inside(self, tick: int) -> None:
        """Remove every level strictly better than ``tick`` (overtaken by the touch)."""
        count = bisect.bisect_left(self.keys, self.sign * tick)
        for key in self.keys[:count]:
            del self.lots[self.sign * key]
            self.changes[self.sign * key] = 0
        del self.keys[:count]

    def remove_outermost(self) -> None:
        tick = self.sign * self.keys.pop()
        del self.lots[tick]
        self.changes[tick] = 0

    def levels(self, price_scale: int, qty_scale: int) -> list[Level]:
        lots = self.lots
        return [
            ((tick := self.sign * key) / price_scale, lots[tick] / qty_scale) for key in self.keys
        ]

    def take_changes(self, price_scale: int, qty_scale: int) -> list[Level]:
        """The step's changes, touch first as Binance sends them, and forget them."""
        changes = self.changes
        levels = [
            (tick / price_scale, changes[tick] / qty_scale)
            for tick in sorted(changes, reverse=self.sign < 0)
        ]
        changes.clear()
        return levels


class _Wall(NamedTuple):
    lots: int
    until_ms: int


class _Iceberg(NamedTuple):
    sign: int
    tick: int
    lots: int
    until_ms: int


class _TickerWire(NamedTuple):
    """Exact integers behind a ticker frame, including fields a Ticker event does not carry."""

    open: int
    high: int
    low: int
    last: int
    last_lots: int
    volume_lots: int
    quote: int  # sum of ticks * lots
    count: int
    last_trade_id: int
    bid: int
    bid_lots: int
    ask: int
    ask_lots: int


_Item = tuple[int, int, Event, _TickerWire | None]
"""(recv_ns, symbol index, event, ticker wire data): sorts by receive time, then symbol."""


class _Day:
    """Rolling 24 h statistics in 5-minute buckets, exact in integer ticks and lots.

    Past buckets sit in a small numpy ring (touched once per bucket and per ticker);
    the current bucket is plain attributes, so a trade costs a few additions.
    """

    __slots__ = (
        "bucket",
        "count",
        "high",
        "last_lots",
        "last_tick",
        "low",
        "open",
        "past_count",
        "past_quote",
        "past_volume",
        "quote",
        "ring",
        "volume",
    )

    def __init__(self, bucket: int, prior: np.ndarray, last_tick: int, last_lots: int) -> None:
        """``prior``: rows _OPEN.._COUNT (int64) of the buckets just before ``bucket``."""
        self.ring = np.zeros((6, _BUCKETS), dtype=np.int64)
        self.ring[_LOW] = _NO_LOW
        slots = np.arange(bucket - prior.shape[1], bucket) % _BUCKETS
        self.ring[:, slots] = prior
        self.past_volume = int(prior[_VOLUME].sum())
        self.past_quote = int(prior[_QUOTE].sum())
        self.past_count = int(prior[_COUNT].sum())
        self.last_tick, self.last_lots = last_tick, max(1, last_lots)
        self.bucket = bucket
        self.open = self.high = self.low = self.volume = self.quote = self.count = 0

    def roll(self, bucket: int) -> None:
        """Move to ``bucket``: the current one becomes past, those beyond 24 h drop out."""
        if bucket <= self.bucket:
            return
        ring = self.ring
        if self.count:
            ring[:, self.bucket % _BUCKETS] = (
                self.open,
                self.high,
                self.low,
                self.volume,
                self.quote,
                self.count,
            )
            self.past_volume += self.volume
            self.past_quote += self.quote
            self.past_count += self.count
        for b in range(max(self.bucket + 1, bucket - _BUCKETS + 1), bucket + 1):
            slot = b % _BUCKETS
            if ring[_COUNT, slot]:
                self.past_volume -= int(ring[_VOLUME, slot])
                self.past_quote -= int(ring[_QUOTE, slot])
                self.past_count -= int(ring[_COUNT, slot])
                ring[:, slot] = (0, 0, _NO_LOW, 0, 0, 0)
        self.bucket = bucket
        self.open = self.high = self.low = self.volume = self.quote = self.count = 0

    def add(self, t_ms: int, tick: int, lots: int) -> None:
        if t_ms // _BUCKET_MS != self.bucket:
            self.roll(t_ms // _BUCKET_MS)
        if not self.count:
            self.open = self.high = self.low = tick
        elif tick > self.high:
            self.high = tick
        elif tick < self.low:
            self.low = tick
        self.volume += lots
        self.quote += tick * lots
        self.count += 1
        self.last_tick, self.last_lots = tick, lots

    def totals(self) -> tuple[int, int, int]:
        """Volume (lots), quote volume (ticks x lots) and trade count over the 24 h."""
        return (
            self.past_volume + self.volume,
            self.past_quote + self.quote,
            self.past_count + self.count,
        )

    def open_high_low(self) -> tuple[int, int, int]:
        """Open of the oldest traded bucket, and high and low, all over the 24 h."""
        ring, last, now = self.ring, self.last_tick, self.bucket % _BUCKETS
        traded = np.flatnonzero(ring[_COUNT])
        if traded.size:
            later = traded[traded > now]
            open_ = int(ring[_OPEN, later[0] if later.size else traded[0]])
            high, low = max(int(ring[_HIGH].max()), last), min(int(ring[_LOW].min()), last)
        else:
            open_ = self.open if self.count else last
            high = low = last
        if self.count:
            high, low = max(high, self.high), min(low, self.low)
        return open_, high, low


class _SymbolSim:
    """One symbol's market: book, latent mid, trades, 24 h stats, ids and clock."""

    def __init__(self, inst: _Instrument, config: SyntheticConfig, index: int) -> None:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([config.seed, inst.key])))
        self.config, self.symbol, self.index, self.key = config, inst.symbol, index, inst.key
        self.step_ms = 1000.0 / config.deltas_per_sec
        step_s = self.step_ms / 1000.0
        orders = config.trades_per_sec / _MEAN_FILLS * step_s
        self.draw = _Draws(rng, orders=orders, changes=config.changes_per_sec * step_s)
        self.price_scale, self.qty_scale = 10**inst.price_decimals, 10**inst.qty_decimals
        self.phase_ms = 1 + int(rng.random() * self.step_ms)
        self.steps = 0
        self.t_ms = config.start_ms
        self.latency_ms = _MIN_LATENCY_MS + 18.0 * rng.random()
        self.last_recv_ns = config.start_ms * 1_000_000
        self.update_id = int(rng.integers(10**9, 6 * 10**10))
        self.trade_id = int(rng.integers(10**8, 4 * 10**9))
        self.deltas_made = 0
        self.ticker_due_ms = config.start_ms + 1 + int(rng.random() * config.ticker_every_ms)
        levels = config.levels
        self.depth_ticks = max(_BOOK_DEPTH_BPS * 1e-4 * inst.start_ticks, 1.5 * levels)
        self.gap_scale = 1.5 * (self.depth_ticks / levels) / self.depth_ticks ** (1 / 3)
        self.level_lots = inst.level_lots
        self.trade_lots = max(1.0, inst.level_lots * _TRADE_FRACTION)
        self.slack = max(2, levels // 20)
        self.mid = inst.start_ticks + 0.5
        self.spread = 1
        self.imbalance = 0.0
        self.stress_until_ms = 0
        self.ask_cleared: int | None = None
        self.bid_cleared: int | None = None
        self.walls: dict[tuple[int, int], _Wall] = {}
        self.iceberg: _Iceberg | None = None
        self.iceberg_hit = False
        self.bids, self.asks = _Side(-1), _Side(1)
        self._seed_book(rng, inst.start_ticks)
        self.day = self._prior_day(rng)
        self.reveal_cap = max(1, int(self.level_lots * _P95))
        start = config.start_ms
        self.book_draw = _Aside(config.seed, inst.key, _BOOK)
        self.asides: dict[int, _Aside] = {}  # the features', made when first needed
        # The first times of all features, on or off, so the market's draws are the same.
        first = [self.draw.exponential() for _ in range(4)]
        self.jump_due_ms = self._after(start, config.jump_every_s, first[0])
        self.wall_due_ms = self._after(start, config.wall_every_s, first[1])
        self.vacuum_due_ms = self._after(start, config.vacuum_every_s, first[2])
        self.iceberg_due_ms = self._after(start, config.iceberg_every_s, first[3])

    # -- set-up ---------------------------------------------------------------------

    def _seed_book(self, rng: np.random.Generator, bid: int) -> None:
        """The opening book, vectorized: ``levels`` per side, dense at the top."""
        levels = self.config.levels
        expected = self.depth_ticks * (np.arange(levels) / levels) ** 1.5
        gaps = np.maximum(1, np.rint(np.diff(expected) * rng.exponential(size=(2, levels - 1))))
        offsets = np.concatenate([np.zeros((2, 1)), np.cumsum(gaps, axis=1)], axis=1)
        growth = 1.0 + offsets / self.depth_ticks
        sizes = self.level_lots * np.exp(_SIZE_SIGMA * rng.standard_normal((2, levels)))
        lots = np.maximum(1, (sizes * growth).astype(np.int64))
        for side, touch, row in ((self.bids, bid, 0), (self.asks, bid + 1, 1)):
            ticks = (touch + side.sign * offsets[row].astype(np.int64)).tolist()
            side.insert_run(ticks, lots[row].tolist())
            side.changes.clear()

    def _prior_day(self, rng: np.random.Generator) -> _Day:
        """A plausible previous 24 h: a 5-minute random walk that ends at the start price."""
        count = _BUCKETS - 1
        sigma = max(self.config.volatility_bps, 0.5) * 1e-4 * math.sqrt(_BUCKET_MS / 1000)
        moves = rng.standard_normal(count) * sigma
        after = np.concatenate([np.cumsum(moves[::-1])[::-1][1:], [0.0]])
        close = self.mid * np.exp(-after)
        open_ = np.concatenate([[close[0] * math.exp(-moves[0])], close[:-1]])
        wick = np.abs(rng.standard_normal((2, count))) * sigma / 2
        high = np.maximum(open_, close) * np.exp(wick[0])
        low = np.minimum(open_, close) * np.exp(-wick[1])
        trades = np.maximum(1, rng.poisson(self.config.trades_per_sec * _BUCKET_MS / 1000, count))
        mean_fill = self.trade_lots * math.exp(_TRADE_SIGMA**2 / 2)
        volume = np.maximum(1, np.rint(trades * mean_fill * rng.lognormal(0, 0.3, count)))
        ticks = np.rint([open_, high, low, close]).astype(np.int64)
        quote = (ticks[0] + ticks[3]) // 2 * volume.astype(np.int64)
        prior = np.vstack([ticks[:3], volume.astype(np.int64), quote, trades.astype(np.int64)])
        bucket = self.config.start_ms // _BUCKET_MS
        return _Day(bucket, prior, last_tick=int(ticks[3, -1]), last_lots=round(mean_fill))

    # -- sizes, gaps, clock -----------------------------------------------------------

    def _size(self, side: _Side, distance: int, factor: float) -> int:
        """A resting size: log-normal ``factor``, larger further out, leaning with the
        imbalance."""
        growth = 1.0 + distance / self.depth_ticks
        return int(self.level_lots * growth * side.lean * factor) or 1

    def _recv(self, t_ms: int, jitter: float) -> int:
        """Receive time: exchange time plus this symbol's latency (and an exponential
        ``jitter`` in ms), never going back."""
        latency_ms = self.latency_ms + jitter
        if latency_ms > _MAX_LATENCY_MS:
            latency_ms = _MAX_LATENCY_MS
        recv = t_ms * 1_000_000 + int(latency_ms * 1e6)
        if recv <= self.last_recv_ns:
            recv = self.last_recv_ns + 1
        self.last_recv_ns = recv
        return recv

    def next_step_ms(self) -> int:
        return self.config.start_ms + self.phase_ms + round(self.steps * self.step_ms)

    def _aside(self, tag: int) -> _Aside:
        """The draws of feature ``tag``: its own generator, made when it first occurs."""
        draw = self.asides.get(tag)
        if draw is None:
            draw = self.asides[tag] = _Aside(self.config.seed, self.key, tag)
        return draw

    @staticmethod
    def _after(t_ms: int, every_s: float, exponential: float) -> float:
        """When a feature with mean interval ``every_s`` comes next (Poisson; 0 is never)."""
        return t_ms + exponential * every_s * 1000.0 if every_s > 0 else math.inf

    # -- one step -------------------------------------------------------------------

    def snapshot(self, recv_ns: int) -> BookSnapshot:
        """The book as a REST snapshot would show it (no exchange time on the wire)."""
        ps, qs = self.price_scale, self.qty_scale
        return BookSnapshot(
            symbol=self.symbol,
            bids=self.bids.levels(ps, qs),
            asks=self.asks.levels(ps, qs),
            last_update_id=self.update_id,
            event_ms=None,
            recv_ns=recv_ns,
        )

    def step(self) -> list[_Item]:
        """Advance to the next depth event: trades, then the delta, then a ticker if due."""
        t0, t1 = self.t_ms, self.next_step_ms()
        self.steps += 1
        dt_s = (t1 - t0) / 1000.0
        out: list[_Item] = []
        shock = self.draw.normal()
        move = self.config.volatility_bps * 1e-4 * math.sqrt(dt_s) * shock
        jump = self._jump(t1) if t1 >= self.jump_due_ms else 0.0
        lean = shock + (3.0 if jump > 0 else -3.0 if jump < 0 else 0.0)
        self._trades(t0, t1, lean, burst=jump != 0.0, out=out)
        self.mid *= math.exp(move + jump)
        self._drift(dt_s, t1)
        self._recenter()
        self._random_changes()
        self._features(t1)
        self._cross_if_due()
        self._keep_depth()
        self._emit_delta(t1, out)
        self._emit_ticker(t1, out)
        self.t_ms = t1
        return out

    def _jump(self, t_ms: int) -> float:
        """A rare large move (log return) that leaves a few seconds of stress."""
        draw = self._aside(_JUMPS)
        uniform = draw.uniform
        self.jump_due_ms = self._after(t_ms, self.config.jump_every_s, draw.exponential())
        self.stress_until_ms = t_ms + 3000
        self.spread = 4 + int(uniform() * 7)
        size = self.config.volatility_bps * 1e-4 * (5.0 + 15.0 * uniform())
        return size if uniform() < 0.5 else -size

    def _drift(self, dt_s: float, t_ms: int) -> None:
        """Slow state: the bid/ask size lean (Ornstein-Uhlenbeck) and the spread regime."""
        shock = 0.5 * math.sqrt(dt_s / 15.0) * self.draw.normal()
        self.imbalance += shock - self.imbalance * dt_s / 30.0
        self.bids.lean = math.exp(self.imbalance)
        self.asks.lean = 1.0 / self.bids.lean
        if t_ms >= self.stress_until_ms and (self.spread > 3 or self.draw.uniform() < 0.1):
            u = self.draw.uniform()
            self.spread = 1 if u < 0.6 else 2 if u < 0.9 else 3

    # -- trades ---------------------------------------------------------------------

    def _trades(self, t0: int, t1: int, lean: float, *, burst: bool, out: list[_Item]) -> None:
        """Taker orders in ``(t0, t1]``; buyers dominate when the mid is about to rise."""
        self.ask_cleared = self.bid_cleared = None
        draw = self.draw
        orders = sum(draw.orders() for _ in range(5)) if burst else draw.orders()
        if not orders:
            return
        p_buy = 0.5 + 0.45 * math.tanh(lean)
        ice = self.iceberg
        if ice is not None and ice.tick == (self.bids if ice.sign < 0 else self.asks).touch():
            p_buy = 0.25 if ice.sign < 0 else 0.75  # traders lean on the iceberg
        uniform = draw.uniform
        for t_ms in sorted(t0 + 1 + int(uniform() * (t1 - t0)) for _ in range(orders)):
            self._take(t_ms, uniform() < p_buy, draw.fills(), out)

    def _take(self, t_ms: int, buy: bool, fills: int, out: list[_Item]) -> None:
        """One taker order: ``fills`` trades at the touch, walking out as levels empty."""
        side, aggressor = (self.asks, Side.BUY) if buy else (self.bids, Side.SELL)
        ice = self.iceberg
        ice_tick = ice.tick if ice is not None and ice.sign == side.sign else None
        fill, resting, ps, qs = self.draw.fill, side.lots, self.price_scale, self.qty_scale
        for _ in range(fills):
            if len(side.keys) < 2:
                return  # never sweep a side empty, however wild the config
            tick = side.touch()
            available = resting[tick]
            lots = int(self.trade_lots * fill()) or 1
            if lots > available:
                lots = available
            if tick == ice_tick:
                self.iceberg_hit = True  # its hidden size refills what is taken
            elif lots < available:
                side.set(tick, available - lots)
            else:
                side.remove(tick)
                if buy:
                    self.ask_cleared = tick
                else:
                    self.bid_cleared = tick
            self.trade_id += 1
            self.day.add(t_ms, tick, lots)
            recv = self._recv(t_ms, self.draw.exponential())
            trade = Trade(self.symbol, tick / ps, lots / qs, aggressor, self.trade_id, t_ms, recv)
            out.append((recv, self.index, trade, None))

    # -- book maintenance -----------------------------------------------------------

    def _touch_targets(self) -> tuple[int, int]:
        """Best bid and ask for the new mid, kept clear of levels emptied by trades."""
        s = self.spread
        bid0 = bid = math.floor(self.mid - s / 2 + 0.5)
        ask = bid + s
        ice = self.iceberg
        if ice is not None and ice.sign < 0 and bid < ice.tick:
            bid, ask = ice.tick, ice.tick + s  # the iceberg holds the price
        elif ice is not None and ice.sign > 0 and ask > ice.tick:
            bid, ask = ice.tick - s, ice.tick
        if self.ask_cleared is not None and ask <= self.ask_cleared:
            bid, ask = bid + self.ask_cleared + 1 - ask, self.ask_cleared + 1
        if self.bid_cleared is not None and bid >= self.bid_cleared:
            bid, ask = self.bid_cleared - 1, ask - (bid - self.bid_cleared + 1)
        if self.ask_cleared is not None:
            ask = max(ask, self.ask_cleared + 1)
        self.mid += bid - bid0  # trades and icebergs move the price too
        return max(1, bid), max(2, ask)

    def _recenter(self) -> None:
        """Put the touch at the targets; refill the stretch a move left empty."""
        bid, ask = self._touch_targets()
        for side, touch in ((self.asks, ask), (self.bids, bid)):
            side.remove_inside(touch)
            if touch not in side.lots:
                limit = side.keys[0] if side.keys else _FAR
                draw = self.book_draw
                ticks = [touch, *self._walk(side.sign, touch, touch, _FILL_CAP, limit, draw)]
                side.insert_run(ticks, self._sizes(side, touch, ticks, draw.size))

    def _walk(
        self, sign: int, touch: int, tick: int, count: int, limit: int, draw: _Aside
    ) -> list[int]:
        """Up to ``count`` new level prices outwards from ``tick``, short of key ``limit``.

        Gaps are exponential around a mean that grows as the cube root of the distance
        from the touch (1 tick at the top), which puts rank n at about
        ``depth * (n / levels) ** 1.5``, as in the opening book.
        """
        exponential, gap_scale = draw.exponential, self.gap_scale
        ticks = []
        for _ in range(count):
            mean = gap_scale * (abs(tick - touch) + 1) ** (1 / 3)
            tick += sign * (1 + int(exponential() * (mean - 1.0) + 0.5)) if mean > 1.0 else sign
            if tick <= 0 or sign * tick >= limit:
                break
            ticks.append(tick)
        return ticks

    def _sizes(
        self, side: _Side, touch: int, ticks: list[int], size: Callable[[], float]
    ) -> list[int]:
        """Resting sizes for new levels: log-normal, larger further out, leaning."""
        inv_depth = 1.0 / self.depth_ticks
        base = self.level_lots * side.lean
        return [int(base * (1.0 + abs(t - touch) * inv_depth) * size()) or 1 for t in ticks]

    def _movable(self, side: _Side, tick: int) -> bool:
        """Random changes leave alone what this step already changed, walls and icebergs."""
        ice = self.iceberg
        return (
            tick not in side.changes
            and (side.sign, tick) not in self.walls
            and not (ice is not None and ice.sign == side.sign and ice.tick == tick)
        )

    def _random_changes(self) -> None:
        """Add, resize and cancel resting orders, mostly near the top.

        Five numbers per change: the side; the rank (70 % exponential near the touch,
        else anywhere); the action; where in the gap a new level goes; the size factor.
        A new level gets a fresh log-normal size; a resized one moves part of the way
        from its size to a fresh one (log-AR(1)), so a level does not leap from small to
        huge in one update, which is what a large order placed there looks like.
        """
        change = self.draw.change
        for _ in range(self.draw.changes()):
            side_u, rank_u, action_u, place_u, factor = change()
            side = self.bids if side_u < 0.5 else self.asks
            count = len(side.keys)
            if rank_u < 0.7:
                rank = min(count - 1, int(-math.log(1.0 - rank_u / 0.7) * _NEAR_RANK))
            else:
                rank = int((rank_u - 0.7) / 0.3 * count)
            if action_u < 0.3:
                self._insert_after(side, rank, place_u, factor)
                continue
            tick = side.tick_at(rank)
            if not self._movable(side, tick):
                continue
            if action_u < 0.7 or rank == 0:
                typical = self._size(side, abs(tick - side.touch()), 1.0)
                lots = side.lots[tick] ** _RESIZE_KEEP * typical ** (1.0 - _RESIZE_KEEP)
                side.set(tick, int(lots * factor**_RESIZE_NEW) or 1)
            else:
                side.remove(tick)

    def _insert_after(self, side: _Side, rank: int, place_u: float, factor: float) -> None:
        """A new level in the first gap after ``rank`` (looking a few levels on, as where
        every tick is taken an order lands in the nearest hole)."""
        keys = side.keys
        for at in range(rank, min(rank + _INSERT_REACH, len(keys) - 1)):
            room = keys[at + 1] - keys[at] - 1
            if room >= 1:
                break
        else:
            return
        tick = side.sign * (keys[at] + 1 + int(place_u * room))
        if tick not in side.changes:
            side.set(tick, self._size(side, abs(tick - side.touch()), factor))

    def _keep_depth(self) -> None:
        """About ``levels`` per side: trim the far end, or extend it after a sweep.

        The far end is the edge of a window that slides with the touch, not where orders
        come and go: levels it reveals are ordinary (at most the nominal P95 size), so
        a slide never looks like a large order placed, and walls are not trimmed (the
        next level inwards is). Its draws are apart (as are the refills'), as the slides
        depend on the book.
        """
        levels, cap, walls = self.config.levels, self.reveal_cap, self.walls
        for side in (self.bids, self.asks):
            while len(side.keys) > levels + self.slack:
                if walls and (side.sign, side.tick_at(-1)) in walls:
                    self._trim_inside_walls(side)
                else:
                    side.remove_outermost()
            missing = levels - len(side.keys)
            if missing > self.slack:
                touch, count, draw = side.touch(), min(missing, _EXTEND_CAP), self.book_draw
                ticks = self._walk(side.sign, touch, side.tick_at(-1), count, _FAR, draw)
                sizes = self._sizes(side, touch, ticks, draw.size)
                for at, lots in enumerate(sizes):
                    if lots > cap:
                        sizes[at] = cap
                side.insert_run(ticks, sizes)

    def _trim_inside_walls(self, side: _Side) -> None:
        """Remove the outermost level that is not a wall."""
        for rank in range(len(side.keys) - 2, 0, -1):
            tick = side.tick_at(rank)
            if (side.sign, tick) not in self.walls:
                side.remove(tick)
                return
        side.remove_outermost()  # unreachable with _MAX_WALLS below ``levels``

    # -- walls, thin stretches, icebergs, faults -------------------------------------

    def _features(self, t_ms: int) -> None:
        """Walls, thin stretches and icebergs come and go on their own Poisson clocks."""
        config = self.config
        if self.walls:
            self._expire_walls(t_ms)
        if t_ms >= self.wall_due_ms:
            wait = self._aside(_WALLS).exponential()
            self.wall_due_ms = self._after(t_ms, config.wall_every_s, wait)
            self._place_wall(t_ms)
        if t_ms >= self.vacuum_due_ms:
            wait = self._aside(_THIN).exponential()
            self.vacuum_due_ms = self._after(t_ms, config.vacuum_every_s, wait)
            self._thin_stretch()
        if self.iceberg is not None and self.iceberg.until_ms <= t_ms:
            self.iceberg = None
        if t_ms >= self.iceberg_due_ms:
            wait = self._aside(_ICEBERGS).exponential()
            self.iceberg_due_ms = self._after(t_ms, config.iceberg_every_s, wait)
            if self.iceberg is None:
                self._start_iceberg(t_ms)
        if self.iceberg is not None and self.iceberg_hit:
            self._refill_iceberg()
        self.iceberg_hit = False

    def _expire_walls(self, t_ms: int) -> None:
        """Pull the walls whose time is up, if they still stand as placed: the level goes
        in one delta. One that trades took from, or the touch ran over, is left as it is."""
        for (sign, tick), wall in list(self.walls.items()):
            if wall.until_ms > t_ms:
                continue
            del self.walls[sign, tick]
            side = self.asks if sign > 0 else self.bids
            if side.lots.get(tick) == wall.lots and tick not in side.changes:
                side.remove(tick)

    def _place_wall(self, t_ms: int) -> None:
        """A large order 12–45 bps from the touch, well inside the book, in one delta:
        4–8 times the nominal P95 of level sizes at its distance (several times the book's
        P95, whatever the imbalance), at a new price or on top of what rests at one.
        Spoof-like ones are pulled within seconds, the others rest a minute or two.

        Five draws whatever happens, so the walls' stream never depends on the book.
        """
        uniform = self._aside(_WALLS).uniform
        side_u, distance_u, size_u, spoof_u, life_u = (uniform() for _ in range(5))
        side = self.bids if side_u < 0.5 else self.asks
        low, high = _WALL_BPS
        touch = side.touch()
        extent = abs(side.tick_at(-1) - touch) * 0.85  # well inside the book's far end
        distance = int(min((low + (high - low) * distance_u) * 1e-4 * self.mid, extent))
        tick = touch + side.sign * distance
        if (
            len(self.walls) >= _MAX_WALLS
            or distance < low * 1e-4 * self.mid
            or tick in side.changes
            or (side.sign, tick) in self.walls
        ):
            return
        low, high = _WALL_P95
        p95 = self.level_lots * (1.0 + distance / self.depth_ticks) * _P95
        lots = side.lots.get(tick, 0) + int(p95 * (low + (high - low) * size_u))
        spoof = spoof_u < self.config.spoof_ratio
        life_s = 2.0 + 18.0 * life_u if spoof else 30.0 + 90.0 * life_u
        side.set(tick, lots)
        self.walls[side.sign, tick] = _Wall(lots, t_ms + int(life_s * 1000))

    def _thin_stretch(self) -> None:
        """Cut a run of 4–12 consecutive levels to a few lots (a liquidity vacuum)."""
        uniform = self._aside(_THIN).uniform
        side = self.bids if uniform() < 0.5 else self.asks
        count = len(side.keys)
        first = count // 10 + int(uniform() * (count * 2 // 5))
        thin = max(1.0, self.level_lots * _P10 / 5)
        for rank in range(first, min(count, first + 4 + int(uniform() * 9))):
            tick = side.tick_at(rank)
            if self._movable(side, tick):
                side.set(tick, 1 + int(uniform() * thin))

    def _start_iceberg(self, t_ms: int) -> None:
        uniform = self._aside(_ICEBERGS).uniform
        side = self.bids if uniform() < 0.5 else self.asks
        tick = side.touch()
        life_ms = int((10.0 + 30.0 * uniform()) * 1000)
        self.iceberg = _Iceberg(side.sign, tick, side.lots[tick], t_ms + life_ms)

    def _refill_iceberg(self) -> None:
        """After it was hit, show the iceberg's visible size again, within a few percent."""
        ice = self.iceberg
        assert ice is not None
        side = self.asks if ice.sign > 0 else self.bids
        if ice.tick not in side.lots:
            self.iceberg = None  # the price ran away and the level went with it
            return
        wobble = 0.95 + 0.1 * self._aside(_ICEBERGS).uniform()
        side.set(ice.tick, max(1, int(ice.lots * wobble)))

    def _cross_if_due(self) -> None:
        """Fault knob: every N-th delta puts a bid one tick above the best ask."""
        every = self.config.crossed_every
        if every and (self.deltas_made + 1) % every == 0:
            self.bids.set(self.asks.touch() + 1, self._size(self.bids, 0, self.draw.size()))

    # -- output ---------------------------------------------------------------------

    def _emit_delta(self, t_ms: int, out: list[_Item]) -> None:
        """The step's changes as one BookDelta (lost on purpose every ``gap_every``).

        Its two draws are taken even for a step without changes, so that a delta more or
        less (a wall placed on a quiet step) does not shift the market's later draws.
        """
        exponential = self.draw.exponential
        skipped_ids, jitter = exponential(), exponential()
        changed = len(self.bids.changes) + len(self.asks.changes)
        if not changed:
            return
        ps, qs = self.price_scale, self.qty_scale
        bids, asks = self.bids.take_changes(ps, qs), self.asks.take_changes(ps, qs)
        first = self.update_id + 1
        self.update_id += changed + int(skipped_ids * changed * 0.3)
        self.deltas_made += 1
        gap_every = self.config.gap_every
        if gap_every and self.deltas_made % gap_every == 0:
            return
        recv = self._recv(t_ms, jitter)
        delta = BookDelta(self.symbol, bids, asks, first, self.update_id, t_ms, recv)
        out.append((recv, self.index, delta, None))

    def _emit_ticker(self, t_ms: int, out: list[_Item]) -> None:
        every = self.config.ticker_every_ms
        if not every or t_ms < self.ticker_due_ms:
            return
        while self.ticker_due_ms <= t_ms:
            self.ticker_due_ms += every
        day = self.day
        day.roll(t_ms // _BUCKET_MS)
        open_, high, low = day.open_high_low()
        volume, quote, count = day.totals()
        last, ps, qs = day.last_tick, self.price_scale, self.qty_scale
        bid, ask = self.bids.touch(), self.asks.touch()
        wire = _TickerWire(
            open=open_,
            high=high,
            low=low,
            last=last,
            last_lots=day.last_lots,
            volume_lots=volume,
            quote=quote,
            count=count,
            last_trade_id=self.trade_id,
            bid=bid,
            bid_lots=self.bids.lots[bid],
            ask=ask,
            ask_lots=self.asks.lots[ask],
        )
        recv = self._recv(t_ms, self.draw.exponential())
        ticker = Ticker(
            symbol=self.symbol,
            last=last / ps,
            change_pct=round((last - open_) / open_ * 100, 3) + 0.0,
            high=high / ps,
            low=low / ps,
            volume=volume / qs,
            quote_volume=quote / (ps * qs),
            open=open_ / ps,
            trade_count=count,
            event_ms=t_ms,
            recv_ns=recv,
        )
        out.append((recv, self.index, ticker, wire))


def _fixed(value: int, decimals: int) -> str:
    """An integer count of ``10**-decimals`` as an exact decimal string, no float detour."""
    if decimals == 0:
        return str(value)
    digits = str(abs(value)).rjust(decimals + 1, "0")
    return f"{'-' if value < 0 else ''}{digits[:-decimals]}.{digits[-decimals:]}"


class _BinanceWire:
    """Serializes one symbol's events as Binance spot frames, at its tick and lot precision.

    Floats format exactly: an event price is the correctly rounded float of a decimal
    with ``price_decimals`` places, and ``%.{d}f`` rounds it back to that decimal.
    """

    def __init__(self, inst: _Instrument, step_ms: float) -> None:
        self.inst = inst
        pd, qd = inst.price_decimals, inst.qty_decimals
        self.level = f'["%.{pd}f","%.{qd}f"]'
        self.price, self.qty = f"%.{pd}f", f"%.{qd}f"
        name, symbol = inst.symbol.lower(), inst.symbol
        depth = {100.0: "depth@100ms", 1000.0: "depth"}.get(step_ms, f"depth@{step_ms:g}ms")
        self.depth_head = f'{{"stream":"{name}@{depth}","data":{{"e":"depthUpdate","E":'
        self.depth_symbol = f',"s":"{symbol}","U":'
        self.trade_head = f'{{"stream":"{name}@trade","data":{{"e":"trade","E":'
        self.trade_symbol = f',"s":"{symbol}","t":'
        self.ticker_head = f'{{"stream":"{name}@ticker","data":{{"e":"24hrTicker","E":'
        self.ticker_symbol = f',"s":"{symbol}"'

    def frame(self, event: Event, wire: _TickerWire | None) -> bytes:
        if isinstance(event, BookDelta):
            return self.delta(event)
        if isinstance(event, Trade):
            return self.trade(event)
        if isinstance(event, Ticker):
            assert wire is not None
            return self.ticker(event, wire)
        assert isinstance(event, BookSnapshot)
        return self.snapshot(event)

    def _levels(self, levels: Sequence[Level]) -> str:
        fmt = self.level
        return ",".join([fmt % level for level in levels])

    def delta(self, d: BookDelta) -> bytes:
        return (
            f"{self.depth_head}{d.event_ms}{self.depth_symbol}{d.first_update_id}"
            f',"u":{d.last_update_id},"b":[{self._levels(d.bids)}],"a":[{self._levels(d.asks)}]}}}}'
        ).encode()

    def trade(self, t: Trade) -> bytes:
        maker = "true" if t.side is Side.SELL else "false"
        return (
            f"{self.trade_head}{t.event_ms}{self.trade_symbol}{t.trade_id}"
            f',"p":"{self.price % t.price}","q":"{self.qty % t.qty}","T":{t.event_ms}'
            f',"m":{maker},"M":true}}}}'
        ).encode()

    def snapshot(self, s: BookSnapshot) -> bytes:
        """The REST ``GET /api/v3/depth`` body."""
        return (
            f'{{"lastUpdateId":{s.last_update_id},"bids":[{self._levels(s.bids)}]'
            f',"asks":[{self._levels(s.asks)}]}}'
        ).encode()

    def ticker(self, t: Ticker, w: _TickerWire) -> bytes:
        pd, qd = self.inst.price_decimals, self.inst.qty_decimals
        average = (2 * w.quote + w.volume_lots) // (2 * w.volume_lots) if w.volume_lots else w.last
        fields = {
            "p": _fixed(w.last - w.open, pd),
            "P": f"{t.change_pct:.3f}",
            "w": _fixed(average, pd),
            "x": _fixed(w.open, pd),
            "c": _fixed(w.last, pd),
            "Q": _fixed(w.last_lots, qd),
            "b": _fixed(w.bid, pd),
            "B": _fixed(w.bid_lots, qd),
            "a": _fixed(w.ask, pd),
            "A": _fixed(w.ask_lots, qd),
            "o": _fixed(w.open, pd),
            "h": _fixed(w.high, pd),
            "l": _fixed(w.low, pd),
            "v": _fixed(w.volume_lots, qd),
            "q": _fixed(w.quote, pd + qd),
        }
        strings = "".join(f',"{key}":"{value}"' for key, value in fields.items())
        return (
            f"{self.ticker_head}{t.event_ms}{self.ticker_symbol}{strings}"
            f',"O":{t.event_ms - _DAY_MS},"C":{t.event_ms},"F":{w.last_trade_id - w.count + 1}'
            f',"L":{w.last_trade_id},"n":{w.count}}}}}'
        ).encode()


class _Run:
    """One pass over the market: fresh simulators, merged by receive time.

    The symbols advance together one depth step at a time; their events gather in a
    buffer that is sorted and released up to the earliest receive time any symbol can
    still produce. That bound exists because exchange time only grows and latency is
    at least ``_MIN_LATENCY_MS``, and it makes the merge a C sort, not a heap per event.
    """

    def __init__(self, instruments: Sequence[_Instrument], config: SyntheticConfig) -> None:
        self.config = config
        self.sims = [_SymbolSim(inst, config, index) for index, inst in enumerate(instruments)]
        self.by_symbol = {sim.symbol: sim for sim in self.sims}

    def items(self, until_ms: int | None) -> Iterator[_Item]:
        start_ns = self.config.start_ms * 1_000_000
        for sim in self.sims:
            yield start_ns, sim.index, sim.snapshot(start_ns), None
        window = max(_WINDOW_MS, math.ceil(1000.0 / self.config.deltas_per_sec))
        horizon = self.config.start_ms
        pending: list[_Item] = []
        while until_ms is None or horizon < until_ms:
            horizon += window
            if until_ms is not None:
                horizon = min(horizon, until_ms)
            for sim in self.sims:
                while sim.next_step_ms() <= horizon:
                    pending.extend(sim.step())
            pending.sort()
            released = bisect.bisect_left(pending, (self._floor_ns(),))
            yield from pending[:released]
            del pending[:released]
        yield from pending

    def _floor_ns(self) -> int:
        """The earliest receive time any symbol can still produce."""
        ahead = (1 + _MIN_LATENCY_MS) * 1_000_000
        return min(max(s.last_recv_ns + 1, s.t_ms * 1_000_000 + ahead) for s in self.sims)


class SyntheticStream(Generic[T]):
    """One run of a :class:`SyntheticMarket`: an iterator, plus the REST view of its books.

    :meth:`snapshot` answers like Binance's depth endpoint: the current book at the
    generator's frontier, which may be a step ahead of what was yielded, so a consumer
    applies the usual bridging rule (drop deltas with ``last_update_id <=
    snapshot.last_update_id``). That is how a venue recovers from ``gap_every``.
    """

    def __init__(self, run: _Run, items: Iterator[T], wires: dict[str, _BinanceWire]) -> None:
        self._run, self._items, self._wires = run, items, wires

    def __iter__(self) -> Iterator[T]:
        """The underlying iterator itself (same position), which a for loop runs faster."""
        return self._items

    def __next__(self) -> T:
        return next(self._items)

    def snapshot(self, symbol: str) -> BookSnapshot:
        """The current book of ``symbol`` as a :class:`BookSnapshot` (``event_ms=None``)."""
        sim = self._run.by_symbol.get(symbol)
        if sim is None:
            raise KeyError(f"{symbol!r} is not in this market")
        return sim.snapshot(sim.last_recv_ns)

    def snapshot_body(self, symbol: str) -> bytes:
        """:meth:`snapshot` as the body of Binance's ``GET /api/v3/depth``."""
        return self._wires[symbol].snapshot(self.snapshot(symbol))


class SyntheticMarket:
    """Generates a stream for many symbols, merged in time order.

    Every call of :meth:`events` or :meth:`binance_frames` starts a new, independent
    run from ``config.start_ms``; two runs with the same symbols and config are equal.
    """

    def __init__(self, symbols: Sequence[str], config: SyntheticConfig = _DEFAULT_CONFIG) -> None:
        if isinstance(symbols, str):
            raise TypeError("symbols must be a sequence of names, not one string")
        self.symbols: tuple[str, ...] = tuple(symbols)
        self.config = config
        _check_symbols(self.symbols)
        self._instruments = {s: _Instrument.derive(s, config.start_price) for s in self.symbols}
        step_ms = 1000.0 / config.deltas_per_sec
        self._wires = {s: _BinanceWire(inst, step_ms) for s, inst in self._instruments.items()}

    def _instrument(self, symbol: str) -> _Instrument:
        try:
            return self._instruments[symbol]
        except KeyError:
            raise KeyError(f"{symbol!r} is not in this market") from None

    def tick_size(self, symbol: str) -> float:
        """Price grid step of ``symbol``, a power of ten between 1e-8 and 0.01."""
        return 1 / 10 ** self._instrument(symbol).price_decimals

    def lot_size(self, symbol: str) -> float:
        """Quantity grid step of ``symbol``, a power of ten between 1e-8 and 1."""
        return 1 / 10 ** self._instrument(symbol).qty_decimals

    def events(self, until_ms: int | None = None) -> SyntheticStream[Event]:
        """Normalized events: a BookSnapshot per symbol, then deltas, trades and tickers.

        Ordered by ``recv_ns`` (ties by symbol order); runs forever unless ``until_ms``
        (simulated exchange time) is given, after which it stops.
        """
        run = _Run(list(self._instruments.values()), self.config)
        return SyntheticStream(run, (item[2] for item in run.items(until_ms)), self._wires)

    def binance_frames(self, until_ms: int | None = None) -> SyntheticStream[tuple[int, bytes]]:
        """The same stream as :meth:`events`, as ``(recv_ns, raw Binance bytes)`` pairs.

        The snapshots are REST depth bodies; the rest are combined-stream frames
        (``<symbol>@depth@100ms``, ``@trade``, ``@ticker``) — the recording format of
        ``marketcore record`` minus the text framing.
        """
        run = _Run(list(self._instruments.values()), self.config)
        wires = [self._wires[symbol] for symbol in self.symbols]
        frames = (
            (recv, wires[index].frame(event, wire))
            for recv, index, event, wire in run.items(until_ms)
        )
        return SyntheticStream(run, frames, self._wires)


def _check_symbols(symbols: tuple[str, ...]) -> None:
    """Upper-case venue names, unique: they go verbatim into JSON and stream names."""
    if not symbols:
        raise ValueError("a synthetic market needs at least one symbol")
    for symbol in symbols:
        if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
            raise ValueError(
                f"bad symbol {symbol!r}: expected upper-case letters and digits, like 'BTCUSDT'"
            )
    if len(set(symbols)) != len(symbols):
        duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
        raise ValueError(f"duplicate symbols: {', '.join(duplicates)}")
