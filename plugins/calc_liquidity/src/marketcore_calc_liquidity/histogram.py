"""Traded volume by price bin, kept as one small histogram per time bucket.

The volume profile covers 30 minutes, but keeping 30 minutes of raw trades for every
symbol in the shared trade ring would cost about a megabyte per busy symbol. Instead
each slow cycle bins only the trades that arrived since its last run (found through
the ring's time index) into the histogram of their time bucket (default one minute),
and whole buckets leave when they fall out of the window. Memory per symbol is 16
bytes per distinct price bin traded in a bucket (numpy arrays, not dicts), times the
buckets in the window, and at most ``max_bins`` bins per bucket: on Binance BTCUSDT
(100 to 900 bins of 0.05 traded per minute) about 150 KB, where the raw trades would
take 1–2 MB. ``merged`` also keeps the sum of every bucket but the newest (at most as
large as the buckets themselves), so that a slow cycle re-adds only the bucket that grew.

Speed without changing a bit: a bin's volume is always the plain left-to-right sum of its
trades (``np.bincount`` order), then of its buckets in bucket order. Sums are made with a
dense ``np.bincount`` over the narrow range of bins a window trades (falling back to
``np.unique`` when a stray price makes that range much wider than the data), and two
sorted histograms are merged with ``np.searchsorted`` rather than sorted again.
"""

from __future__ import annotations

import numpy as np
from marketcore import TradeWindow

__all__ = ["Bucket", "TradeHistogram"]

_QUIET = np.errstate(over="ignore", invalid="ignore")
"""Non-finite numbers from a venue are caught and reported as omissions; numpy need not
warn on the way."""

_NUDGE = 1e-6
"""Added before flooring ``price / bin_size``, so that a price exactly on a bin edge
lands in the bin it starts, whatever the rounding of the division."""
_MAX_INDEX = float(2**62)

_DENSE_PER_ENTRY = 8
_DENSE_FLOOR = 4096
"""A dense bincount spans ``max - min + 1`` bins: used while that is at most
``_DENSE_PER_ENTRY`` per entry summed plus ``_DENSE_FLOOR`` (a few µs of zeros), so a
wild price far from the others costs a sort, never gigabytes."""


class Bucket:
    """The trades of one time bucket: traded bins (ascending) and their volume, how many
    trades, the earliest trade time. Arrays, not a dict: 16 bytes a bin."""

    __slots__ = ("bins", "first_ms", "trades", "volumes")

    def __init__(self, first_ms: int) -> None:
        self.bins = _NO_BINS
        self.volumes = _NO_VOLUMES
        self.trades = 0
        self.first_ms = first_ms


_NO_BINS = np.empty(0, dtype=np.int64)
_NO_VOLUMES = np.empty(0, dtype=np.float64)


class TradeHistogram:
    """Per-bucket histograms of one symbol's traded volume, fed incrementally.

    Bin ``k`` holds prices ``k·bin_size <= p < (k+1)·bin_size``. ``feed`` must see the
    ring's trades from :attr:`fed_ts` on (``ring.window(histogram.fed_ts)``); it skips
    the ones it already binned, including those that share the last binned millisecond.
    """

    __slots__ = ("_older", "bin_size", "bucket_ms", "buckets", "dropped", "fed_at_ts",
                 "fed_ts", "max_bins")

    def __init__(self, bin_size: float, bucket_ms: int, max_bins: int) -> None:
        self.bin_size = bin_size
        self.bucket_ms = bucket_ms
        self.max_bins = max_bins
        self.buckets: dict[int, Bucket] = {}
        self.fed_ts: int | None = None
        """Exchange time of the last trade binned."""
        self.fed_at_ts = 0
        """How many trades of time ``fed_ts`` were binned."""
        self.dropped = 0
        """Trades not binned: invalid numbers, or a bucket already holding ``max_bins``."""
        self._older: tuple[tuple[int, ...], np.ndarray, np.ndarray] | None = None
        """``(bucket ids, bins, volumes)``: every bucket but the newest, summed by ``merged``
        and reused until one of those buckets changes or leaves."""

    @_QUIET
    def feed(self, trades: TradeWindow) -> None:
        """Bin the trades of ``trades`` not binned before (``trades`` starts at ``fed_ts``)."""
        ts = trades.ts_ms
        if not len(ts):
            return
        skip = 0
        if self.fed_ts is not None:
            skip = min(self.fed_at_ts, int(np.searchsorted(ts, self.fed_ts, side="right")))
        last = int(ts[-1])
        at_last = len(ts) - int(np.searchsorted(ts, last, side="left"))
        self.fed_at_ts = at_last if last != self.fed_ts else max(at_last, self.fed_at_ts)
        self.fed_ts = last
        new_ts, price, qty = ts[skip:], trades.price[skip:], trades.qty[skip:]
        index = price / self.bin_size + _NUDGE
        valid = (np.isfinite(qty) & (qty > 0) & np.isfinite(index) & (index >= 0)
                 & (index < _MAX_INDEX))
        if not valid.all():
            self.dropped += int(len(valid) - valid.sum())
            new_ts, qty, index = new_ts[valid], qty[valid], index[valid]
        if not len(new_ts):
            return
        bins = np.floor(index).astype(np.int64)
        bucket_ids = new_ts // self.bucket_ms
        cuts = np.flatnonzero(np.diff(bucket_ids)) + 1
        for lo, hi in zip(np.concatenate(([0], cuts)).tolist(),
                          np.concatenate((cuts, [len(new_ts)])).tolist(), strict=True):
            self._add(int(bucket_ids[lo]), int(new_ts[lo]), bins[lo:hi], qty[lo:hi])

    def _add(self, bucket_id: int, first_ms: int, bins: np.ndarray, qty: np.ndarray) -> None:
        bucket = self.buckets.get(bucket_id)
        if bucket is None:
            bucket = self.buckets[bucket_id] = Bucket(first_ms)
        elif self._older is not None and bucket_id in self._older[0]:
            self._older = None  # a late trade into an older bucket: its cached sum is stale
        new_bins, new_volumes, counts = _sum_by_bin(bins, qty)
        if len(bucket.bins) + len(new_bins) > self.max_bins:  # rare: keep the bucket bounded
            known = np.isin(new_bins, bucket.bins, assume_unique=True)
            unknown = np.flatnonzero(~known)
            refused = unknown[max(0, self.max_bins - len(bucket.bins)):]
            if len(refused):
                self.dropped += int(counts[refused].sum())
                keep = np.ones(len(new_bins), dtype=bool)
                keep[refused] = False
                new_bins, new_volumes, counts = new_bins[keep], new_volumes[keep], counts[keep]
        bucket.bins, bucket.volumes = _merge_sorted(bucket.bins, bucket.volumes,
                                                    new_bins, new_volumes)
        bucket.trades += int(counts.sum())
        bucket.first_ms = min(bucket.first_ms, first_ms)

    def evict(self, since_ms: int) -> None:
        """Drop the buckets that end at or before ``since_ms``."""
        stale = [b for b in self.buckets if (b + 1) * self.bucket_ms <= since_ms]
        for b in stale:
            del self.buckets[b]

    @_QUIET  # a bin's volume may overflow to inf, as np.bincount's did silently
    def merged(self) -> tuple[np.ndarray, np.ndarray, int, int | None]:
        """``(bins, volumes, trades, first_ms)`` over every bucket; bins ascending.

        The buckets before the newest rarely change (one leaves, one is closed, once a
        bucket length), so their sum is cached and only the newest is added to it: the
        same left-to-right sum per bin as adding every bucket in order.
        """
        buckets = list(self.buckets.values())
        if not buckets:
            return _NO_BINS, _NO_VOLUMES, 0, None
        older_ids = tuple(self.buckets)[:-1]
        if self._older is None or self._older[0] != older_ids:
            self._older = (older_ids, *_sum_buckets(buckets[:-1]))
        _, older_bins, older_volumes = self._older
        newest = buckets[-1]
        bins, volumes = _merge_sorted(older_bins, older_volumes, newest.bins, newest.volumes)
        if volumes is older_volumes or volumes is newest.volumes:
            volumes = volumes.copy()  # the caller's to keep: never a view of the state
        trades = sum(b.trades for b in buckets)
        return bins, volumes, trades, min(b.first_ms for b in buckets)


def _dense(bins: np.ndarray) -> int | None:
    """The smallest bin, if a dense bincount from it is cheap enough; else ``None``."""
    low, high = int(bins.min()), int(bins.max())
    if high - low >= _DENSE_PER_ENTRY * len(bins) + _DENSE_FLOOR:
        return None
    return low


def _sum_by_bin(bins: np.ndarray, weights: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(distinct bins ascending, summed weights, entries)`` of unsorted ``bins``.

    ``np.bincount`` adds each bin's weights in input order from 0.0 whether it is fed
    ``bins - low`` or ``np.unique``'s inverse, so the two paths agree bit for bit; the
    dense one skips the sort, which is most of ``np.unique``'s cost.
    """
    if not len(bins):
        return _NO_BINS, _NO_VOLUMES, np.zeros(0, dtype=np.int64)
    low = _dense(bins)
    if low is None:
        distinct, inverse = np.unique(bins, return_inverse=True)
        return distinct, np.bincount(inverse, weights=weights), np.bincount(inverse)
    offset = bins - low
    counts = np.bincount(offset)
    present = np.flatnonzero(counts)
    sums = np.bincount(offset, weights=weights)
    return present + low, sums[present], counts[present]


def _sum_buckets(buckets: list[Bucket]) -> tuple[np.ndarray, np.ndarray]:
    """``(bins, volumes)`` of ``buckets`` added in order (bins ascending)."""
    if not buckets:
        return _NO_BINS, _NO_VOLUMES
    if len(buckets) == 1:
        return buckets[0].bins, buckets[0].volumes
    bins, volumes, _ = _sum_by_bin(np.concatenate([b.bins for b in buckets]),
                                   np.concatenate([b.volumes for b in buckets]))
    return bins, volumes


def _merge_sorted(bins: np.ndarray, volumes: np.ndarray, new_bins: np.ndarray,
                  new_volumes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add histogram ``new`` to histogram ``(bins, volumes)``, both ascending and distinct.

    Fresh arrays (the inputs are never written), except that a side left unchanged may be
    returned as is. A shared bin gets ``old + new``; a bin on one side keeps its value.
    That is what ``np.bincount`` over both gives (``0.0 + old + new``): ``0.0 + x == x``
    for every ``x`` but ``-0.0``, which a sum started at 0.0 never is. ``searchsorted``
    finds where each new bin goes in linear time instead of sorting the union again.
    """
    if not len(new_bins):
        return bins, volumes
    if not len(bins):
        return new_bins, new_volumes
    at = np.searchsorted(bins, new_bins)
    known = bins[np.minimum(at, len(bins) - 1)] == new_bins
    # Integer indices, not boolean masks: numpy indexes with them several times faster.
    hit, miss = np.flatnonzero(known), np.flatnonzero(~known)
    summed = volumes.copy()
    summed[at[hit]] += new_volumes[hit]  # distinct targets: one addition each
    if not len(miss):
        return bins, summed
    # A new bin lands before ``bins[at]``, shifted by the new bins inserted before it.
    slots = at[miss] + np.arange(len(miss))
    size = len(bins) + len(slots)
    old_slots = np.ones(size, dtype=bool)
    old_slots[slots] = False
    out_bins = np.empty(size, dtype=np.int64)
    out_bins[slots] = new_bins[miss]
    out_bins[old_slots] = bins
    out_volumes = np.empty(size, dtype=np.float64)
    out_volumes[slots] = new_volumes[miss]
    out_volumes[old_slots] = summed
    return out_bins, out_volumes
