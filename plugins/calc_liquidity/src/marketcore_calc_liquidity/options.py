"""Options of the liquidity calculators, read from ``[calculators.<name>]``.

Defaults are the numbers of the specification (SPEC §6) where it gives one; the
others (scan bounds, list caps, history sizes) are this plugin's choices, explained
in the README. Every value is checked when the profile is validated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import attrs

__all__ = ["FlowOptions", "VacuumsOptions", "VolumeProfileOptions", "WallsOptions"]

Check = Callable[[Any, attrs.Attribute, Any], None]


def _refuse(attribute: attrs.Attribute, expected: str, value: Any) -> ValueError:
    """The error attrs' own validators raise, which the profile loader turns into
    ``calculators.<name>.<key>: expected …, found …``."""
    return ValueError(f"{attribute.name} must be {expected}, got {value!r}", attribute,
                      expected, value)


def _number(low: float, high: float, *, low_open: bool = False) -> Check:
    """A finite number in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    bracket = "(" if low_open else "["

    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        ok = (not isinstance(value, bool) and isinstance(value, int | float)
              and math.isfinite(value) and (value > low if low_open else value >= low)
              and value <= high)
        if not ok:
            raise _refuse(attribute, f"a number in {bracket}{low}, {high}]", value)

    return check


def _integer(low: int, high: int) -> Check:
    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _refuse(attribute, f"an integer from {low} to {high}", value)

    return check


def _windows(value: Iterable[Any]) -> tuple[float, ...]:
    """Window lengths as sorted unique floats (TOML gives ints or floats)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"windows_s must be a list of numbers, got {value!r}")
    windows = []
    for seconds in value:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"windows_s must hold numbers, got {seconds!r}")
        windows.append(float(seconds))
    return tuple(sorted(set(windows)))


def _check_windows(_instance: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if not 1 <= len(value) <= 8:
        raise _refuse(attribute, "1 to 8 windows", list(value))
    for seconds in value:
        if not (math.isfinite(seconds) and 0.1 <= seconds <= 3600):
            raise _refuse(attribute, "windows of 0.1 to 3600 s", list(value))


def _ordered(*names: str) -> Check:
    """A class validator: the named attributes never decrease (severity steps)."""

    def check(instance: Any, attribute: attrs.Attribute, _value: Any) -> None:
        values = [getattr(instance, name) for name in names]
        if values != sorted(values):
            raise _refuse(attribute, f"{' <= '.join(names)}",
                          dict(zip(names, values, strict=True)))

    return check


@attrs.frozen
class FlowOptions:
    """Options of ``flow`` (fast cycle)."""

    windows_s: tuple[float, ...] = attrs.field(
        default=(10.0, 30.0), converter=_windows, validator=_check_windows)
    """Rolling windows, seconds. Trades are kept for twice the longest one, because
    ``acceleration`` compares a window with the one before it."""


@attrs.frozen
class WallsOptions:
    """Options of ``walls`` (slow cycle)."""

    multiplier: float = attrs.field(default=1.5, validator=_number(0, 1e6, low_open=True))
    """A level is a wall when ``qty >= P<percentile>(level sizes) * multiplier``."""
    percentile: float = attrs.field(default=95.0, validator=_number(0, 100, low_open=True))
    min_samples: int = attrs.field(default=20, validator=_integer(1, 10_000_000))
    """Fewer level-size samples than this: walls are omitted, with the reason."""
    history_samples: int = attrs.field(
        default=4096,
        validator=[_integer(1, 10_000_000), _ordered("min_samples", "history_samples")])
    """Level-size samples the host keeps per symbol (the newest; about 25 s of fast
    cycles at 40 samples each)."""
    medium_at: float = attrs.field(default=2.0, validator=_number(1, 1e6))
    high_at: float = attrs.field(
        default=3.0, validator=[_number(1, 1e6), _ordered("medium_at", "high_at")])
    """Severity steps, as multiples of the wall threshold: a wall (``qty >= threshold``)
    is ``low`` below ``medium_at``, ``medium`` from it, ``high`` from ``high_at``."""
    max_distance_bps: float = attrs.field(
        default=100.0, validator=_number(0, 10_000, low_open=True))
    """Only levels within this distance of the mid are scanned."""
    max_levels: int = attrs.field(default=1000, validator=_integer(1, 100_000))
    """At most this many levels per side (the best ones) are scanned."""
    max_walls: int = attrs.field(default=20, validator=_integer(0, 1000))
    """The list is cut after this many walls (most severe, then largest, first)."""


@attrs.frozen
class VacuumsOptions:
    """Options of ``vacuums`` (slow cycle)."""

    percentile: float = attrs.field(default=10.0, validator=_number(0, 100, low_open=True))
    """A grid cell is thin when its qty is below ``P<percentile>`` of level sizes."""
    min_samples: int = attrs.field(default=20, validator=_integer(1, 10_000_000))
    history_samples: int = attrs.field(
        default=4096,
        validator=[_integer(1, 10_000_000), _ordered("min_samples", "history_samples")])
    bucket_ticks: int = attrs.field(default=1, validator=_integer(1, 1_000_000))
    """Grid cell width in ticks (1: every price level on the tick grid)."""
    min_levels: int = attrs.field(default=3, validator=_integer(3, 1_000_000))
    """Shortest run of thin cells that counts (severity low); at least 3 (SPEC)."""
    medium_levels: int = attrs.field(default=6, validator=_integer(1, 1_000_000))
    high_levels: int = attrs.field(
        default=10,
        validator=[_integer(1, 1_000_000), _ordered("min_levels", "medium_levels", "high_levels")])
    max_distance_bps: float = attrs.field(
        default=50.0, validator=_number(0, 10_000, low_open=True))
    """Cells from the touch out to this distance from the mid are scanned."""
    max_levels: int = attrs.field(default=2000, validator=_integer(1, 100_000))
    """At most this many book levels per side are read; the scan stops at the last one
    read when the book holds more within ``max_distance_bps``."""
    max_cells: int = attrs.field(default=50_000, validator=_integer(1, 10_000_000))
    """At most this many grid cells per side are scanned (bounds the work on a fine tick)."""
    max_vacuums: int = attrs.field(default=20, validator=_integer(0, 1000))
    """The list is cut after this many runs (most severe, then nearest the mid, first)."""


@attrs.frozen
class VolumeProfileOptions:
    """Options of ``volume_profile`` (slow cycle)."""

    window_s: float = attrs.field(default=1800.0, validator=_number(1, 86_400))
    """Trades of this many seconds (rounded out to whole buckets) make the profile."""
    bin_ticks: int = attrs.field(default=5, validator=_integer(1, 1_000_000))
    """Bin width as a multiple of the tick size."""
    value_area_pct: float = attrs.field(default=70.0, validator=_number(0, 100, low_open=True))
    min_trades: int = attrs.field(default=10, validator=_integer(10, 10_000_000))
    """Fewer trades in the window: the profile is omitted; at least 10 (SPEC)."""
    bucket_s: float = attrs.field(default=60.0, validator=_number(1, 3600))
    """Trades are binned into one histogram per bucket of this many seconds; whole
    buckets leave the window, so the profile covers ``window_s`` to
    ``window_s + bucket_s`` of trades."""
    catch_up_s: float = attrs.field(default=60.0, validator=_number(1, 3600))
    """Trades are kept in the symbol's trade ring at least this long, so a slow cycle
    that runs late still bins every trade since its last run."""
    max_bins: int = attrs.field(default=20_000, validator=_integer(1, 10_000_000))
    """At most this many bins per bucket (bounded memory under a flood of odd prices);
    trades that would open more are counted in ``dropped_trades``."""
