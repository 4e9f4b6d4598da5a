"""Calculator ``volume_profile``: where the last 30 minutes traded.

Trades are binned by price at ``bin_size = tick_size × bin_ticks`` (default 5): bin
``k`` holds prices ``k·bin_size <= p < (k+1)·bin_size`` and its centre is
``(k + ½)·bin_size``.

* ``poc`` — the centre of the bin with the most volume. Ties: the bin nearest the
  volume-weighted mean price, then the lower one.
* value area — start from the POC bin; while it holds less than ``value_area_pct``
  (70 %) of the volume, add the larger of the two neighbouring bins (the nearest
  traded bin below and above). Ties: the neighbour nearer the POC, then the lower
  one. ``val`` / ``vah`` are the centres of its lowest and highest bins, so
  ``val <= poc <= vah`` always.
* also ``bin_size``, ``window_sec``, ``trade_count``, ``total_volume``,
  ``value_area_volume_pct`` (what the value area really holds, ≥ 70) and
  ``since_ms`` (the earliest trade in the profile).

Fewer than 10 trades: omitted. Binning is incremental (see
:mod:`marketcore_calc_liquidity.histogram`): the ring keeps only ``catch_up_s`` of
trades for this calculator, never the whole window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from marketcore import Cycle, CycleContext, Needs, Omitted, SymbolState

from marketcore_calc_liquidity.histogram import TradeHistogram
from marketcore_calc_liquidity.levels import decimals_of, grid_tick
from marketcore_calc_liquidity.options import VolumeProfileOptions

__all__ = ["VolumeProfileCalculator", "point_of_control", "value_area"]

_QUIET = np.errstate(over="ignore", invalid="ignore")
"""Non-finite numbers from a venue are caught and reported as omissions; numpy need not
warn on the way."""


def point_of_control(centres: np.ndarray, volumes: np.ndarray) -> int:
    """Index of the bin with the most volume (ties: nearest the VWAP, then lowest)."""
    top = np.flatnonzero(volumes == volumes.max())
    if len(top) == 1:
        return int(top[0])
    vwap = float(np.dot(centres, volumes) / volumes.sum())
    return int(top[np.argmin(np.abs(centres[top] - vwap))])  # argmin: first (lowest) of ties


def value_area(bins: Sequence[int], volumes: Sequence[float], poc: int,
               target: float) -> tuple[int, int, float]:
    """Grow ``[lo, hi]`` (indices into ``bins``) from ``poc`` until it holds ``target``.

    ``bins`` are the traded bins' numbers, ascending, and ``volumes`` their volume, so
    a neighbour is the nearest *traded* bin on that side. Each step adds the larger
    neighbour; on equal volume the one nearer the POC in price, then the lower one.
    Returns ``(lo, hi, held)``.
    """
    lo = hi = poc
    held = volumes[poc]
    last = len(volumes) - 1
    centre = bins[poc]
    # The two neighbours are carried over and only the side that moved is read again:
    # this loop runs once per bin of the value area (hundreds), so one index less a step
    # is about a third of its time. Same comparisons on the same values as reading both.
    below = volumes[lo - 1] if lo > 0 else -1.0
    above = volumes[hi + 1] if hi < last else -1.0
    while held < target and (lo > 0 or hi < last):
        if above > below or (above == below and bins[hi + 1] - centre < centre - bins[lo - 1]):
            hi += 1
            held += above
            above = volumes[hi + 1] if hi < last else -1.0
        else:
            lo -= 1
            held += below
            below = volumes[lo - 1] if lo > 0 else -1.0
    return lo, hi, held


class VolumeProfileCalculator:
    """POC and value area of the recent trades, binned incrementally per time bucket."""

    name = "volume_profile"
    cycle = Cycle.SLOW
    sections = ("volume_profile",)

    def __init__(self, options: VolumeProfileOptions | None = None) -> None:
        self.options = options = options or VolumeProfileOptions()
        self.window_ms = round(options.window_s * 1000)
        self.bucket_ms = round(options.bucket_s * 1000)
        self.needs = Needs(trade_window_ms=round(options.catch_up_s * 1000))

    @_QUIET
    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        options = self.options
        scratch = state.scratch(self.name)
        tick = grid_tick(state, scratch)
        if tick is None:
            return {"volume_profile": Omitted("tick size unknown: no instrument and too few "
                                              "levels to infer it")}
        digits = decimals_of(tick)
        bin_size = round(tick * options.bin_ticks, digits)
        histogram: TradeHistogram | None = scratch.get("histogram")
        if histogram is None or histogram.bin_size != bin_size:
            # First run, or the grid changed: start over from what the ring still holds.
            histogram = scratch["histogram"] = TradeHistogram(bin_size, self.bucket_ms,
                                                              options.max_bins)
        since = histogram.fed_ts if histogram.fed_ts is not None else ctx.now_ms - self.window_ms
        histogram.feed(state.trades.window(since))
        histogram.evict(ctx.now_ms - self.window_ms)
        bins, volumes, trades, first_ms = histogram.merged()
        if trades < options.min_trades:
            return {"volume_profile": Omitted(
                f"fewer than {options.min_trades} trades in the window ({trades})")}
        total = float(volumes.sum())
        if not (math.isfinite(total) and total > 0):
            return {"volume_profile": Omitted(f"traded volume is not a positive number ({total})")}
        centres = (bins + 0.5) * bin_size
        poc = point_of_control(centres, volumes)
        lo, hi, held = value_area(bins.tolist(), volumes.tolist(), poc,
                                  total * options.value_area_pct / 100)
        places = digits + 1  # a bin centre has one decimal more than the tick
        section = {
            "poc": round(float(centres[poc]), places),
            "val": round(float(centres[lo]), places),
            "vah": round(float(centres[hi]), places),
            "bin_size": bin_size,
            "window_sec": options.window_s,
            "trade_count": trades,
            "total_volume": total,
            "value_area_volume_pct": min(100.0, held / total * 100),
            "since_ms": first_ms,
        }
        if histogram.dropped:
            section["dropped_trades"] = histogram.dropped
        return {"volume_profile": section}
