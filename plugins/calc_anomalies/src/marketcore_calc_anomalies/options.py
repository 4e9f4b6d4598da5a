"""Options of the ``anomalies`` calculator, read from ``[calculators.anomalies]``.

One table holds everything, the observation knobs included: the ``anomaly_tracker``
calculator only makes the observation more frequent and has no options of its own,
so the two can never disagree about what a "large order" or an "iceberg" is.

Defaults are the numbers of SPEC §6 where it gives one (wall threshold P95 × 1.5 over
at least 20 samples, 10 bps from mid, 70 % cancel rate, 5 fills, ±10 %, spread 3×
its median, depth within 50 bps below its P10); the others are documented choices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["AnomaliesOptions", "TrackerOptions"]


_Validator = Callable[[Any, attrs.Attribute, Any], None]


def _check(test: Callable[[Any], bool], expected: str) -> _Validator:
    """A validator whose error the profile loader turns into ``expected …, found …``.

    The four-argument ``ValueError`` is the shape attrs' own validators use, which
    the host reports as ``calculators.anomalies.<key>: expected <expected>, found <value>``.
    """

    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not test(value):
            raise ValueError(f"{attribute.name} must be {expected}", attribute, expected, value)

    return check


def _at_least(minimum: float) -> _Validator:
    return _check(lambda v: v >= minimum, f"a number >= {minimum:g}")


def _above(minimum: float) -> _Validator:
    return _check(lambda v: v > minimum, f"a number > {minimum:g}")


def _fraction(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
    _check(lambda v: 0.0 < v <= 1.0, "a number in (0, 1]")(_instance, attribute, value)


def _number(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
    _check(lambda v: v == v, "a number")(_instance, attribute, value)  # NaN is not one


def _count(minimum: int) -> _Validator:
    return _check(lambda v: v >= minimum, f"an integer >= {minimum}")


@attrs.frozen
class AnomaliesOptions:
    """``[calculators.anomalies]``. Times in seconds or milliseconds as named."""

    # -- what counts as a large order (the wall threshold of SPEC §6) ------------------
    wall_multiplier: float = attrs.field(default=1.5, validator=_above(0))
    """A level is large when its qty >= P95(level sizes) × this."""
    min_level_samples: int = attrs.field(default=20, validator=_count(1))
    """Level-size samples needed before the P95 is trusted."""
    level_history: int = attrs.field(default=2048, validator=_count(20))
    """Level-size samples the SymbolState keeps (a need; the largest need wins)."""

    # -- how the book is observed -------------------------------------------------------
    min_distance_bps: float = attrs.field(default=10.0, validator=_at_least(0))
    """Placements nearer to mid than this are not spoofing candidates."""
    max_distance_bps: float = attrs.field(default=100.0, validator=_above(0))
    """Levels further from mid than this are not scanned."""
    scan_every_ms: int = attrs.field(default=1000, validator=_count(0))
    """How often the band is scanned for new large orders (0: every observation).
    Tracked large orders are followed at every observation regardless."""
    max_scan_levels: int = attrs.field(default=500, validator=_count(16))
    """At most this many levels per side are read by one scan: the scan's cost is
    proportional to it (on a book as dense as Binance BTCUSDT, 500 levels reach about
    17 bps from mid)."""
    max_tracked_levels: int = attrs.field(default=64, validator=_count(1))
    """Large orders followed at once, per symbol (the oldest is let go beyond)."""
    max_placements: int = attrs.field(default=512, validator=_count(1))
    """Placements remembered for the spoofing window, per symbol."""

    # -- spoofing -----------------------------------------------------------------------
    spoof_window_s: float = attrs.field(default=60.0, validator=_above(0))
    min_cancel_rate: float = attrs.field(default=0.7, validator=_fraction)
    """Pulled placements / placements on a side, at or above which it is spoofing."""
    min_placements: int = attrs.field(default=3, validator=_count(1))
    """Placements on a side needed before a rate means anything (a pattern, not one order)."""
    pulled_fraction: float = attrs.field(default=0.5, validator=_fraction)
    """A placement is *pulled* when at least this share of it was cancelled, not traded."""
    min_approach_bps: float = attrs.field(default=1.0, validator=_number)
    """A pull counts as spoofing only when mid came at least this much nearer the order
    between its placement and its pull: spoofers pull what the price approaches, market
    makers re-centring pull what it moved away from. ``-inf`` disables the condition.
    On real BTCUSDT the approach of pulls is centred on 0 (P25 −1.7, P75 +1.6 bps):
    1 bps keeps a standing mid and tick noise from counting (docs/metrics.md)."""
    max_pull_lifetime_s: float = attrs.field(default=30.0, validator=_above(0))
    """…and only when it was pulled within this long of its placement (spoof orders are
    short-lived). ``inf`` disables the condition. 30 s is the P95 of the lifetimes of
    real BTCUSDT pulls (median 3.6 s) and half the default window."""
    min_touch_ratio: float = attrs.field(default=1.0, validator=_at_least(0))
    """…and only when the order was at least this many times the size at the touch on
    its side when it was placed (meant to be seen: large for this book, not only for
    the level-size history). ``0`` disables the condition."""
    spoof_medium_count: int = attrs.field(default=4, validator=_count(1))
    spoof_high_count: int = attrs.field(default=8, validator=_count(1))
    spoof_medium_rate: float = attrs.field(default=0.85, validator=_fraction)
    spoof_high_rate: float = attrs.field(default=0.95, validator=_fraction)
    """Severity is the lower of two grades: by placements pulled on approach in the
    window (high >= 8, medium >= 4, else low) and by their rate (high >= 95 %, medium
    >= 85 %, else low). Many pulls at a modest rate is market making re-quoting; a
    high rate over few orders is thin evidence; both high is spoofing at its clearest."""

    # -- iceberg ------------------------------------------------------------------------
    iceberg_window_s: float = attrs.field(default=30.0, validator=_above(0))
    iceberg_min_fills: int = attrs.field(default=5, validator=_count(1))
    iceberg_tolerance: float = attrs.field(default=0.10, validator=_fraction)
    """The visible size must stay within ± this share of where it started."""
    iceberg_min_executed_p95: float = attrs.field(default=0.1, validator=_at_least(0))
    """The executed qty must reach this share of the P95 level size: refills of a dust
    level (a few dollars shown again) are not a hidden order worth reporting. ``0``
    disables the condition."""
    iceberg_medium_ratio: float = attrs.field(default=1.0, validator=_above(0))
    iceberg_high_ratio: float = attrs.field(default=3.0, validator=_above(0))
    """Severity by executed qty / visible qty: high >= 3, medium >= 1, else low."""
    max_iceberg_prices: int = attrs.field(default=16, validator=_count(1))
    """Prices with fills watched at once, per symbol (the stalest is let go beyond)."""
    max_reported_icebergs: int = attrs.field(default=5, validator=_count(1))

    # -- flash-crash risk ---------------------------------------------------------------
    spread_k: float = attrs.field(default=3.0, validator=_above(1))
    """Signal 1: spread > k × its median over the baseline…"""
    min_spread_bps: float = attrs.field(default=0.0, validator=_at_least(0))
    """…and at least this wide (0: no floor, SPEC's rule). On a book whose median spread
    is one tick (0.0016 bps on BTCUSDT) k × the median is a few ticks; a floor ignores
    such widenings. Off by default: the synthetic venue's jumps widen it to 0.008-0.23
    bps only, and on real BTCUSDT the one spread-driven alarm (45 ticks, 0.073 bps,
    with a thin book) came with a real spread blow-out in that minute."""
    depth_band_bps: float = attrs.field(default=50.0, validator=_check(
        lambda v: 0 < v < 10_000, "a number in (0, 10000)"))
    depth_percentile: float = attrs.field(default=10.0, validator=_check(
        lambda v: 0 < v < 100, "a number in (0, 100)"))
    """Signal 2: quote notional within ``depth_band_bps`` of mid (both sides) below
    this percentile of its baseline."""
    flow_window_s: float = attrs.field(default=10.0, validator=_above(0))
    flow_acceleration_ratio: float = attrs.field(default=1.0, validator=_above(0))
    """Signal 3: net flow of the last window minus the one before, divided by the
    baseline's traded volume per window, at or below minus this."""
    min_flow_trades: int = attrs.field(default=10, validator=_count(1))
    """Trades needed in the two flow windows for signal 3 to be read at all."""
    baseline_s: float = attrs.field(default=60.0, validator=_above(0))
    """How far back "recent" reaches for the median spread, P10 depth and flow volume."""
    min_baseline_samples: int = attrs.field(default=20, validator=_count(1))
    max_baseline_samples: int = attrs.field(default=512, validator=_count(8))
    """Spread/depth samples kept per symbol (one per observation)."""

    def problems(self) -> list[str]:
        """Cross-field contradictions; the calculator's factory refuses them."""
        found = []
        if self.max_distance_bps <= self.min_distance_bps:
            found.append(f"max_distance_bps ({self.max_distance_bps:g}) must be above "
                         f"min_distance_bps ({self.min_distance_bps:g})")
        if self.spoof_high_count < self.spoof_medium_count:
            found.append(f"spoof_high_count ({self.spoof_high_count}) must be >= "
                         f"spoof_medium_count ({self.spoof_medium_count})")
        if not self.min_cancel_rate <= self.spoof_medium_rate <= self.spoof_high_rate:
            found.append(f"the rates must rise: min_cancel_rate ({self.min_cancel_rate:g}) <= "
                         f"spoof_medium_rate ({self.spoof_medium_rate:g}) <= "
                         f"spoof_high_rate ({self.spoof_high_rate:g})")
        if self.iceberg_high_ratio < self.iceberg_medium_ratio:
            found.append(f"iceberg_high_ratio ({self.iceberg_high_ratio:g}) must be >= "
                         f"iceberg_medium_ratio ({self.iceberg_medium_ratio:g})")
        if self.min_level_samples > self.level_history:
            found.append(f"min_level_samples ({self.min_level_samples}) must be <= "
                         f"level_history ({self.level_history})")
        if self.min_baseline_samples > self.max_baseline_samples:
            found.append(f"min_baseline_samples ({self.min_baseline_samples}) must be <= "
                         f"max_baseline_samples ({self.max_baseline_samples})")
        if self.baseline_s < 2 * self.flow_window_s:
            found.append(f"baseline_s ({self.baseline_s:g}) must cover two flow windows "
                         f"(2 × flow_window_s = {2 * self.flow_window_s:g})")
        return found


@attrs.frozen
class TrackerOptions:
    """``[calculators.anomaly_tracker]``: none. Everything lives in ``[calculators.anomalies]``."""
