"""The faster histogram and value area give the very same numbers as the code they replaced.

``reference_*`` below are the implementations before the speed work, copied verbatim
(``np.unique`` everywhere, both neighbours read every step). Every comparison is bit for
bit: same bins, same float volumes (``tobytes``), same counts, same value area and sum.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from marketcore import Side, Trade
from marketcore.testing import make_state
from marketcore_calc_liquidity.histogram import _NO_BINS, _NO_VOLUMES, Bucket, TradeHistogram
from marketcore_calc_liquidity.volume_profile import value_area


class ReferenceHistogram(TradeHistogram):
    """:class:`TradeHistogram` with ``_add`` and ``merged`` as they were (``feed`` and
    ``evict`` are unchanged, so they are inherited)."""

    __slots__ = ()

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

    def merged(self) -> tuple[np.ndarray, np.ndarray, int, int | None]:
        buckets = list(self.buckets.values())
        if not buckets:
            return _NO_BINS, _NO_VOLUMES, 0, None
        bins, inverse = np.unique(np.concatenate([b.bins for b in buckets]), return_inverse=True)
        volumes = np.bincount(inverse, weights=np.concatenate([b.volumes for b in buckets]),
                              minlength=len(bins))
        trades = sum(b.trades for b in buckets)
        return bins, volumes, trades, min(b.first_ms for b in buckets)


def reference_value_area(bins, volumes, poc, target):
    lo = hi = poc
    held = volumes[poc]
    last = len(volumes) - 1
    centre = bins[poc]
    while held < target and (lo > 0 or hi < last):
        below = volumes[lo - 1] if lo > 0 else -1.0
        above = volumes[hi + 1] if hi < last else -1.0
        if above > below or (above == below and bins[hi + 1] - centre < centre - bins[lo - 1]):
            hi += 1
            held += above
        else:
            lo -= 1
            held += below
    return lo, hi, held


def assert_same(fast, reference):
    bins, volumes, trades, first_ms = fast.merged()
    ref_bins, ref_volumes, ref_trades, ref_first_ms = reference.merged()
    assert bins.dtype == ref_bins.dtype and volumes.dtype == ref_volumes.dtype
    assert bins.tobytes() == ref_bins.tobytes()
    assert volumes.tobytes() == ref_volumes.tobytes()
    assert (trades, first_ms, fast.dropped) == (ref_trades, ref_first_ms, reference.dropped)
    assert fast.buckets.keys() == reference.buckets.keys()
    for key, bucket in fast.buckets.items():
        ref = reference.buckets[key]
        assert bucket.bins.tobytes() == ref.bins.tobytes()
        assert bucket.volumes.tobytes() == ref.volumes.tobytes()
        assert (bucket.trades, bucket.first_ms) == (ref.trades, ref.first_ms)


# Quantities with many digits, so that a different summation order would show: a few
# prices repeat a lot (narrow range, the dense path) and a stray one may be far away
# (a range far wider than the trades: the np.unique fallback).
prices = st.one_of(
    st.integers(min_value=5_600_000, max_value=5_600_400).map(lambda t: t / 100),
    st.sampled_from([56_000.0, 56_000.05, 56_000.1, 56_000.15]),
    st.sampled_from([0.01, 1e9, 5e15, 3.0, float("nan"), float("inf"), -1.0]),
)
quantities = st.one_of(
    st.floats(min_value=1e-8, max_value=50.0, allow_nan=False),
    st.sampled_from([0.001, 0.1, 1e-300, 1e308, 0.0, -0.5, float("nan")]),
)
runs = st.lists(  # each run: trades arriving before one slow cycle
    st.lists(st.tuples(st.integers(min_value=0, max_value=2_000), prices, quantities),
             max_size=60),
    min_size=1, max_size=8,
)


@given(runs=runs, bin_size=st.sampled_from([0.01, 0.05, 0.5]),
       bucket_ms=st.sampled_from([500, 1_000, 60_000]),
       max_bins=st.sampled_from([3, 40, 10_000]),
       window_ms=st.sampled_from([1_000, 4_000, 1_000_000]))
def test_histogram_matches_the_reference_bit_for_bit(runs, bin_size, bucket_ms, max_bins,
                                                     window_ms):
    state = make_state()
    fast = TradeHistogram(bin_size, bucket_ms, max_bins)
    reference = ReferenceHistogram(bin_size, bucket_ms, max_bins)
    now = 0
    trade_id = 0
    for run in runs:
        for gap, price, qty in run:
            now += gap
            trade_id += 1
            _apply(state, price, qty, trade_id, now)
        for histogram in (fast, reference):
            since = histogram.fed_ts if histogram.fed_ts is not None else 0
            histogram.feed(state.trades.window(since))
            histogram.evict(now - window_ms)
        assert_same(fast, reference)


def _apply(state, price, qty, trade_id, ts):
    state.apply(Trade("BTCUSDT", price, qty, Side.BUY, trade_id, ts))


def test_a_wild_price_far_away_uses_the_sorting_path_and_agrees():
    state = make_state()
    for index, (price, qty) in enumerate([(56_000.0, 0.1), (1e12, 0.2), (56_000.05, 0.3),
                                          (56_000.0, 0.7), (0.01, 0.4)]):
        _apply(state, price, qty, index + 1, 1_000 + index)
    fast, reference = TradeHistogram(0.05, 60_000, 100), ReferenceHistogram(0.05, 60_000, 100)
    for histogram in (fast, reference):
        histogram.feed(state.trades.window(0))
    assert_same(fast, reference)
    assert len(fast.merged()[0]) == 4


volume_lists = st.lists(
    st.one_of(st.sampled_from([1.0, 2.0, 0.5, 3.0]),
              st.floats(min_value=1e-6, max_value=1e3, allow_nan=False)),
    min_size=1, max_size=80,
)


@given(volumes=volume_lists, data=st.data())
def test_value_area_matches_the_reference_exactly(volumes, data):
    gaps = data.draw(st.lists(st.integers(min_value=1, max_value=3), min_size=len(volumes),
                              max_size=len(volumes)))
    bins = np.cumsum(gaps).tolist()
    poc = data.draw(st.integers(min_value=0, max_value=len(volumes) - 1))
    share = data.draw(st.sampled_from([0.0, 0.3, 0.7, 0.999, 1.0, 1.5]))
    target = sum(volumes) * share
    assert value_area(bins, volumes, poc, target) == reference_value_area(bins, volumes, poc,
                                                                          target)
