"""Traded volume by price bin, kept as one small histogram per time bucket.

The volume profile covers 30 minutes, but keeping 30 minutes of raw trades for every
symbol in the shared trade ring would cost about a megabyte per busy symbol. Instead
each slow cycle bins only the trades that arrived since its last run (found through
the ring's time index) into the histogram of their time bucket (default one minute),
and whole buckets leave when they fall out of the window. Memory per symbol is 16
bytes per distinct price bin traded in a bucket (numpy arrays, not dicts), times the
buckets in the window, and at most ``max_bins`` bins per bucket: on Binance BTCUSDT
(100 to 900 bins of 0.05 traded per minute) about 150 KB, where the raw trades would
take 1–2 MB.
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

    __slots__ = ("bin_size", "bucket_ms", "buckets", "dropped", "fed_at_ts", "fed_ts",
                 "max_bins")

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
        new_bins, inverse = np.unique(bins, return_inverse=True)
        new_volumes = np.bincount(inverse, weights=qty)
        counts = np.bincount(inverse)
        if len(bucket.bins) + len(new_bins) > self.max_bins:  # rare: keep the bucket bounded
            known = np.isin(new_bins, bucket.bins, assume_unique=True)
            unknown = np.flatnonzero(~known)
            refused = unknown[max(0, self.max_bins - len(bucket.bins)):]
            if len(refused):
                self.dropped += int(counts[refused].sum())
                keep = np.ones(len(new_bins), dtype=bool)
                keep[refused] = False
                new_bins, new_volumes, counts = new_bins[keep], new_volumes[keep], counts[keep]
        merged, where = np.unique(np.concatenate((bucket.bins, new_bins)), return_inverse=True)
        bucket.volumes = np.bincount(where, weights=np.concatenate((bucket.volumes, new_volumes)),
                                     minlength=len(merged))
        bucket.bins = merged
        bucket.trades += int(counts.sum())
        bucket.first_ms = min(bucket.first_ms, first_ms)

    def evict(self, since_ms: int) -> None:
        """Drop the buckets that end at or before ``since_ms``."""
        stale = [b for b in self.buckets if (b + 1) * self.bucket_ms <= since_ms]
        for b in stale:
            del self.buckets[b]

    def merged(self) -> tuple[np.ndarray, np.ndarray, int, int | None]:
        """``(bins, volumes, trades, first_ms)`` over every bucket; bins ascending."""
        buckets = list(self.buckets.values())
        if not buckets:
            return _NO_BINS, _NO_VOLUMES, 0, None
        bins, inverse = np.unique(np.concatenate([b.bins for b in buckets]), return_inverse=True)
        volumes = np.bincount(inverse, weights=np.concatenate([b.volumes for b in buckets]),
                              minlength=len(bins))
        trades = sum(b.trades for b in buckets)
        return bins, volumes, trades, min(b.first_ms for b in buckets)
