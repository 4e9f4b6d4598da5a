"""What the anomaly rules need to know, observed from a SymbolState cycle after cycle.

L2 data shows neither orders nor cancellations, only level quantities. An *observer*
looks at the book and the new trades at every observation (every fast cycle when the
``anomaly_tracker`` calculator runs, else every slow cycle) and infers:

* **placements** — a level at least ``min_distance_bps`` from mid whose quantity rose
  by at least the wall threshold (P95 of the level-size history × ``wall_multiplier``)
  since the previous scan. Each is then *followed* at every observation: a fall of the
  level is split into the part traded at that price meanwhile (trades at the price
  whose aggressor hit that side) and the rest, which was cancelled. A placement stops
  being followed when nothing of it is left, when the level is gone, or when it is
  older than the spoofing window;
* **fill runs** — per (side, price) with fills, the fills counted while the visible
  size stays within ``iceberg_tolerance`` of where the run started; a size outside
  that band starts a new run, without the fills that moved it;
* **baseline samples** — spread and depth within ``depth_band_bps`` of mid, one per
  observation, for the flash-crash signals.

Scanning the band for new large orders reads up to ``max_scan_levels`` levels a side
(``Book.top``, or the whole side's cached arrays when the slow cycle already built
them: :mod:`marketcore_calc_anomalies.band`), the one costly step, so it runs every
``scan_every_ms``; everything else is a few dictionary look-ups per observation, and
followed levels that neither moved nor traded are skipped. Every structure is capped (see
:class:`Observer`), so a flood of events cannot grow memory.

Book resets (a new snapshot) and feeds that are not ``connected`` make every level
quantity incomparable with the last one: the book-derived state is dropped, and the
placements being followed are voided (neither pulled nor kept), never guessed.
"""

from __future__ import annotations

import zlib
from collections import deque
from typing import Any

import attrs
import numpy as np
from marketcore.book import Book
from marketcore.events import VenueState
from marketcore.state import SymbolState

from marketcore_calc_anomalies.band import MIN_READ, Band, read_band
from marketcore_calc_anomalies.options import AnomaliesOptions
from marketcore_calc_anomalies.stats import quantile

__all__ = ["SCRATCH", "FillRun", "Observer", "Placement", "SampleRing"]

SCRATCH = "anomalies"
"""The ``state.scratch`` owner shared by both calculators: the observer lives there."""

SIDES = ("bid", "ask")
_EARLIEST = -(1 << 62)  # a time before every trade
_RESOLVED = 1e-9  # a placement with less than this share left is resolved (float residue)
_VECTOR_TRADES = 64  # from this many new trades on, they are grouped with numpy
_MIN_CYCLE_MS = 100  # the shortest fast cycle a profile allows


@attrs.define(slots=True, eq=False)
class Placement:
    """One inferred large order and what became of it (quantities in base units)."""

    side: str
    price: float
    placed_ms: int
    placed_qty: float
    """The rise of the level that made it a placement."""
    distance_bps: float
    """From mid, when it was seen placed."""
    threshold: float
    """The wall threshold it was measured against."""
    level_qty: float
    """The level's quantity at the last observation."""
    touch_qty: float
    """The best level's quantity on the same side when it was seen placed."""
    traded: float = 0.0
    cancelled: float = 0.0
    followed: bool = True
    void: bool = False
    """Lost track of by a book reset: counted neither way."""
    pulled_ms: int | None = None
    """When the cancelled part first reached ``pulled_fraction`` of it (None: not pulled)."""
    pulled_distance_bps: float | None = None
    """From mid at that moment: below ``distance_bps`` when the price came towards it."""

    @property
    def approach_bps(self) -> float | None:
        """How much nearer mid came between placement and pull (negative: it moved away)."""
        if self.pulled_distance_bps is None:
            return None
        return self.distance_bps - self.pulled_distance_bps

    @property
    def lifetime_ms(self) -> int | None:
        return None if self.pulled_ms is None else self.pulled_ms - self.placed_ms

    @property
    def touch_ratio(self) -> float:
        """Placed size over the touch's size then (inf on an empty touch)."""
        return self.placed_qty / self.touch_qty if self.touch_qty > 0 else float("inf")

    @property
    def remaining(self) -> float:
        return max(0.0, self.placed_qty - self.traded - self.cancelled)


@attrs.define(slots=True, eq=False)
class FillRun:
    """Fills at one price while its visible size held within the tolerance band."""

    side: str
    price: float
    reference_qty: float
    """The visible size the run started from."""
    started_ms: int
    visible_qty: float
    last_fill_ms: int
    fills: deque[tuple[int, int, float]]
    """``(last fill ms, fills, qty)`` per observation that saw fills, capped."""


def _phase(symbol: str, every_ms: int) -> int:
    """A stable per-symbol shift of the second scan, less than ``every_ms``.

    A node acquires its symbols together, so without it every symbol would scan in the
    same fast cycle, one cycle in ``every_ms / period`` carrying all the scans (the
    scan is the observer's one costly step). Shifting each symbol's schedule by a hash
    of its name spreads the scans evenly over the cycles, and keeps a replay
    deterministic.
    """
    return zlib.crc32(symbol.encode()) % every_ms if every_ms > 0 else 0


class SampleRing:
    """Fixed-size columns of ``(time, spread_bps, depth)`` samples, oldest overwritten."""

    __slots__ = ("_depth", "_next", "_spread", "_time", "filled")

    def __init__(self, capacity: int) -> None:
        self._time = np.zeros(capacity, dtype=np.int64)
        self._spread = np.zeros(capacity, dtype=np.float64)
        self._depth = np.zeros(capacity, dtype=np.float64)
        self._next = 0
        self.filled = 0

    def __len__(self) -> int:
        return self.filled

    @property
    def capacity(self) -> int:
        return len(self._time)

    def append(self, t_ms: int, spread_bps: float, depth: float) -> None:
        i = self._next
        self._time[i], self._spread[i], self._depth[i] = t_ms, spread_bps, depth
        self._next = (i + 1) % len(self._time)
        self.filled = min(self.filled + 1, len(self._time))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(time, spread, depth)`` in time order (copies)."""
        if self.filled < len(self._time):
            cut = slice(0, self.filled)
            return self._time[cut].copy(), self._spread[cut].copy(), self._depth[cut].copy()
        i = self._next  # two slices joined: np.r_ and a gather cost ~10 µs more
        return tuple(np.concatenate((column[i:], column[:i]))  # type: ignore[return-value]
                     for column in (self._time, self._spread, self._depth))


class Observer:
    """Bounded per-symbol observation state (one in ``state.scratch("anomalies")``).

    Caps: ``tracked`` ≤ ``max_tracked_levels``; ``placements`` ≤ ``max_placements``;
    ``runs`` ≤ ``max_iceberg_prices``, each run's fills ≤ ``run_cap`` (one entry per
    observation that saw fills, over the iceberg window); ``previous_band`` ≤
    ``max_scan_levels`` per side; ``samples`` ≤ ``max_baseline_samples``.
    """

    def __init__(self, options: AnomaliesOptions) -> None:
        self.options = options
        self.spoof_window_ms = int(options.spoof_window_s * 1000)
        self.iceberg_window_ms = int(options.iceberg_window_s * 1000)
        self.run_cap = self.iceberg_window_ms // _MIN_CYCLE_MS + 2
        """Fill entries a run keeps: one per observation, and no cycle is under 100 ms."""
        self.started_ms: int | None = None
        self.last_ms: int | None = None
        self.observations = 0
        self.scans = 0
        self.threshold: float | None = None
        self.level_p95: float | None = None
        self._trades_seen: int | None = None
        self._snapshots_seen: int | None = None
        self._next_scan_ms = _EARLIEST
        self.scan_levels = dict.fromkeys(SIDES, MIN_READ)
        self.previous_band: dict[str, Band | None] = dict.fromkeys(SIDES)
        """The band each side showed at the last scan, best first (sizes before a rise)."""
        self.tracked: dict[tuple[str, float], Placement] = {}
        self.placements: deque[Placement] = deque(maxlen=options.max_placements)
        self.runs: dict[tuple[str, float], FillRun] = {}
        self.touch: dict[str, tuple[float, float] | None] = dict.fromkeys(SIDES)
        self._touch_now: dict[str, tuple[float, float] | None] = dict.fromkeys(SIDES)
        """The touch of the current look (``touch`` is the previous look's)."""
        self.samples = SampleRing(options.max_baseline_samples)

    # ------------------------------------------------------------------ observe

    def observe(self, state: SymbolState, now_ms: int, *, whole_side: bool = False) -> None:
        """Take in what changed since the last observation. Idempotent per instant.

        ``whole_side``: a scan reads its band from :meth:`Book.side_arrays` rather than
        :meth:`Book.top` (same levels; see :mod:`marketcore_calc_anomalies.band` for
        when that is cheaper). Nothing observed depends on it.
        """
        if self.last_ms is not None and now_ms <= self.last_ms:
            return
        if self.started_ms is None:
            self.started_ms = now_ms
        self.last_ms = now_ms
        self.observations += 1
        fills = self._new_fills(state)
        book = state.book
        if state.venue_state is not VenueState.CONNECTED or book.is_crossed():
            self._forget_book()
            return
        if state.counts["snapshots"] != self._snapshots_seen:
            self._forget_book()
            self._snapshots_seen = state.counts["snapshots"]
        mid = book.mid()
        if mid is None:
            self._forget_book()
            return
        self._touch_now = {"bid": book.best_bid(), "ask": book.best_ask()}
        self._follow_placements(book, fills, mid, now_ms)
        self._follow_runs(book, fills, now_ms)
        if now_ms >= self._next_scan_ms:
            first = self._next_scan_ms == _EARLIEST
            self._scan(state, mid, now_ms, whole_side=whole_side)
            self._next_scan_ms = now_ms + self.options.scan_every_ms
            if first:
                self._next_scan_ms -= _phase(state.symbol, self.options.scan_every_ms)
        self._sample(book, mid, now_ms)
        self._expire(now_ms)

    def _forget_book(self) -> None:
        """Level quantities are no longer comparable with the last observation."""
        for placement in self.tracked.values():
            placement.followed = False
            placement.void = True
        self.tracked.clear()
        self.previous_band = dict.fromkeys(SIDES)
        self.runs.clear()
        self.touch = dict.fromkeys(SIDES)

    # ------------------------------------------------------------------ trades

    def _new_fills(self, state: SymbolState) -> dict[tuple[str, float], list[Any]]:
        """The trades applied since the last observation, by the (side, price) they hit.

        The state's trade counter says how many are new, and they are the newest in
        the ring, so none is counted twice or missed (unless the ring dropped them).
        Returns ``{(side, price): [fills, qty, last ms]}``; a sell hits a bid.
        """
        total = state.counts["trades"]
        new = 0 if self._trades_seen is None else total - self._trades_seen
        self._trades_seen = total
        if new <= 0:
            return {}
        window = state.trades.window(_EARLIEST)
        n = min(new, len(window))
        if n == 0:
            return {}
        if n >= _VECTOR_TRADES:
            return _group_many(window.ts_ms[-n:], window.price[-n:], window.qty[-n:],
                               window.sign[-n:])
        out: dict[tuple[str, float], list[Any]] = {}
        for t, p, q, s in zip(window.ts_ms[-n:].tolist(), window.price[-n:].tolist(),
                              window.qty[-n:].tolist(), window.sign[-n:].tolist(), strict=True):
            key = ("ask" if s > 0 else "bid", p)
            found = out.get(key)
            if found is None:
                out[key] = [1, q, t]
            else:
                found[0] += 1
                found[1] += q
                if t > found[2]:
                    found[2] = t
        return out

    # ------------------------------------------------------------------ placements

    def _follow_placements(self, book: Book, fills: dict[tuple[str, float], list[Any]],
                           mid: float, now_ms: int) -> None:
        """Split each followed level's fall into traded and cancelled; spot re-placements."""
        threshold = self.threshold
        pulled_fraction = self.options.pulled_fraction
        # A level that neither moved nor traded changes nothing below (no fall, no rise;
        # "resolved" was already false with these very figures), unless a zero threshold
        # makes a zero rise a re-placement: most followed levels are skipped so.
        still_skips = threshold is None or threshold > 0.0
        for key, placement in list(self.tracked.items()):
            side, price = key
            qty = book.qty_at(side, price)
            hit = fills.get(key)
            if hit is None and qty == placement.level_qty and still_skips:
                continue
            traded = hit[1] if hit is not None else 0.0
            remaining = placement.remaining
            took = min(traded, remaining)
            placement.traded += took
            remaining -= took
            fall = placement.level_qty - qty
            if fall > traded:
                pulled = min(fall - traded, remaining)
                placement.cancelled += pulled
                remaining -= pulled
                if (placement.pulled_ms is None
                        and placement.cancelled >= pulled_fraction * placement.placed_qty):
                    placement.pulled_ms = now_ms
                    placement.pulled_distance_bps = abs(price - mid) / mid * 1e4
            rise = qty - placement.level_qty
            placement.level_qty = qty
            if remaining <= placement.placed_qty * _RESOLVED or qty <= 0.0:
                placement.followed = False
                del self.tracked[key]
            elif threshold is not None and rise >= threshold:
                placement.followed = False  # what is left of it rests; a new order came on top
                del self.tracked[key]
                distance = abs(price - mid) / mid * 1e4
                if distance >= self.options.min_distance_bps:
                    self._place(side, price, rise, qty, distance, threshold, now_ms)

    def _place(self, side: str, price: float, placed: float, level_qty: float,
               distance_bps: float, threshold: float, now_ms: int) -> None:
        tracked = self.tracked
        if len(tracked) >= self.options.max_tracked_levels:
            oldest = min(tracked, key=lambda k: tracked[k].placed_ms)
            tracked.pop(oldest).followed = False
        touch = self._touch_now[side]
        placement = Placement(side, price, now_ms, placed, distance_bps, threshold, level_qty,
                              touch[1] if touch is not None else 0.0)
        tracked[side, price] = placement
        self.placements.append(placement)

    # ------------------------------------------------------------------ scan

    def _scan(self, state: SymbolState, mid: float, now_ms: int, *, whole_side: bool) -> None:
        """Look for levels that rose by the wall threshold since the previous scan."""
        self.scans += 1
        options = self.options
        history = state.level_history
        threshold = None
        if history is not None and len(history) >= options.min_level_samples:
            p95 = quantile(history.samples(), 95)
            if p95 > 0:
                self.level_p95 = p95
                threshold = p95 * options.wall_multiplier
        self.threshold = threshold
        reach = options.max_distance_bps / 1e4
        for side in SIDES:
            band, self.scan_levels[side] = read_band(
                state.book, side, mid, reach, options.max_scan_levels, self.scan_levels[side],
                whole_side=whole_side)
            previous = self.previous_band[side]
            if threshold is not None and previous:
                self._spot_rises(side, band, previous, threshold, mid, now_ms)
            self.previous_band[side] = band

    def _spot_rises(self, side: str, band: Band, previous: Band, threshold: float, mid: float,
                    now_ms: int) -> None:
        """Place the levels of ``band`` that rose by ``threshold`` since ``previous``.

        Only levels at or above the threshold now can have risen by it (a dozen of the
        500 on BTCUSDT), so only those are looked up in the previous band.
        """
        edge = previous.edge
        if side == "bid":  # beyond what the previous scan saw: its size then is unknown
            levels = [level for level in band.at_least(threshold) if level[0] >= edge]
        else:
            levels = [level for level in band.at_least(threshold) if level[0] <= edge]
        before = previous.sizes_at([price for price, _ in levels])
        near = self.options.min_distance_bps
        tracked = self.tracked
        for (price, qty), was in zip(levels, before, strict=True):
            if (side, price) in tracked:  # checked here: a placement may evict another
                continue
            distance = abs(price - mid) / mid * 1e4
            if qty - was >= threshold and distance >= near:
                self._place(side, price, qty - was, qty, distance, threshold, now_ms)

    # ------------------------------------------------------------------ fill runs

    def _follow_runs(self, book: Book, fills: dict[tuple[str, float], list[Any]],
                     now_ms: int) -> None:
        """Count fills per price while its visible size holds; start runs at new prices."""
        tolerance = self.options.iceberg_tolerance
        runs = self.runs
        for key, run in list(runs.items()):
            qty = book.qty_at(*key)
            hit = fills.get(key)
            if hit is None and qty == run.visible_qty:
                continue  # > 0 and within the tolerance of its reference, as last time
            if qty <= 0.0:
                del runs[key]
                continue
            if abs(qty - run.reference_qty) > tolerance * run.reference_qty:
                run.reference_qty, run.started_ms = qty, now_ms  # a new run, without these fills
                run.fills.clear()
            elif hit is not None:
                run.fills.append((hit[2], hit[0], hit[1]))
            if hit is not None and hit[2] > run.last_fill_ms:
                run.last_fill_ms = hit[2]
            run.visible_qty = qty
        fresh = [(key, hit) for key, hit in fills.items() if key not in runs]
        if len(fresh) > self.options.max_iceberg_prices:
            fresh.sort(key=lambda item: item[1][1], reverse=True)  # the most traded first
            del fresh[self.options.max_iceberg_prices :]
        for key, hit in fresh:
            qty = book.qty_at(*key)
            if qty <= 0.0:
                continue
            run = FillRun(key[0], key[1], qty, now_ms, qty, hit[2], deque(maxlen=self.run_cap))
            touch = self.touch[key[0]]
            if touch is not None and touch[0] == key[1] and (
                    abs(qty - touch[1]) <= tolerance * touch[1]):
                # The price was the touch at the last observation: its size then is the
                # start of the run, and these first fills count if the size held.
                run.reference_qty = touch[1]
                run.fills.append((hit[2], hit[0], hit[1]))
            self._add_run(key, run)

    def _add_run(self, key: tuple[str, float], run: FillRun) -> None:
        runs = self.runs
        if len(runs) >= self.options.max_iceberg_prices:
            stalest = min(runs, key=lambda k: runs[k].last_fill_ms)
            del runs[stalest]
        runs[key] = run

    # ------------------------------------------------------------------ samples, expiry

    def _sample(self, book: Book, mid: float, now_ms: int) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        self.touch["bid"], self.touch["ask"] = bid, ask
        _, _, bid_notional, ask_notional = book.band_sums(self.options.depth_band_bps)
        self.samples.append(now_ms, (ask[0] - bid[0]) / mid * 1e4, bid_notional + ask_notional)

    def _expire(self, now_ms: int) -> None:
        horizon = now_ms - self.spoof_window_ms
        placements = self.placements
        while placements and placements[0].placed_ms < horizon:
            placements.popleft().followed = False
        for key in [k for k, p in self.tracked.items() if p.placed_ms < horizon]:
            del self.tracked[key]  # rests past the window: kept as placed, not pulled
        horizon = now_ms - self.iceberg_window_ms
        for key in [k for k, r in self.runs.items() if r.last_fill_ms < horizon]:
            del self.runs[key]
        for run in self.runs.values():
            fills = run.fills
            while fills and fills[0][0] < horizon:
                fills.popleft()

    # ------------------------------------------------------------------ introspection

    def sizes(self) -> dict[str, int]:
        """How full each bounded structure is (tests check them against the caps)."""
        return {
            "tracked": len(self.tracked),
            "placements": len(self.placements),
            "runs": len(self.runs),
            "run_fills": max((len(r.fills) for r in self.runs.values()), default=0),
            "previous_band": max((len(b) for b in self.previous_band.values() if b), default=0),
            "samples": len(self.samples),
        }


def _group_many(ts: np.ndarray, price: np.ndarray, qty: np.ndarray,
                sign: np.ndarray) -> dict[tuple[str, float], list[Any]]:
    """:meth:`Observer._new_fills` for a burst of trades, grouped in numpy."""
    signed = price * sign  # prices are > 0, so the sign keeps the sides apart
    keys, inverse, counts = np.unique(signed, return_inverse=True, return_counts=True)
    volume = np.bincount(inverse, weights=qty, minlength=len(keys))
    last = np.full(len(keys), _EARLIEST, dtype=np.int64)
    np.maximum.at(last, inverse, ts)
    return {
        ("ask" if k > 0 else "bid", abs(k)): [c, v, t]
        for k, c, v, t in zip(keys.tolist(), counts.tolist(), volume.tolist(), last.tolist(),
                              strict=True)
    }
