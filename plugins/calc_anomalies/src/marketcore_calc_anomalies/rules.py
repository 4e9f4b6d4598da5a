"""The anomaly rules: what an observer's state means, as report items.

Each rule returns ``{type, severity, note, …figures}`` dicts; the figures in the note
are also fields, so a dashboard reads the numbers and a person reads the sentence.
Severity depends on the driving figures of each type, through thresholds in the options,
so it is monotone in it (property-tested):

* ``spoofing`` — two: the lower of the grades by placements pulled on approach on the
  side in the window and by their rate;
* ``iceberg`` — executed qty / visible qty (how many times the shown size traded);
* ``flash_crash_risk`` — the number of signals (2: medium, 3: high).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from marketcore.state import SymbolState

from marketcore_calc_anomalies.options import AnomaliesOptions
from marketcore_calc_anomalies.stats import quantile
from marketcore_calc_anomalies.tracker import FillRun, Observer, Placement

__all__ = [
    "flash_crash_risk",
    "flash_crash_severity",
    "iceberg_severity",
    "icebergs",
    "spoofing",
    "spoofing_severity",
]

_MAX_LISTED_PRICES = 10
_SIGNALS = ("spread", "thin_book", "selling_acceleration")


_GRADES = ("low", "medium", "high")


def spoofing_severity(pulled: int, cancel_rate: float, options: AnomaliesOptions) -> str:
    """The lower of the grade by pulled count and the grade by cancel rate (both of the
    placements pulled on approach)."""
    by_count = 2 if pulled >= options.spoof_high_count else (
        1 if pulled >= options.spoof_medium_count else 0)
    by_rate = 2 if cancel_rate >= options.spoof_high_rate else (
        1 if cancel_rate >= options.spoof_medium_rate else 0)
    return _GRADES[min(by_count, by_rate)]


def iceberg_severity(executed_to_visible: float, options: AnomaliesOptions) -> str:
    if executed_to_visible >= options.iceberg_high_ratio:
        return "high"
    if executed_to_visible >= options.iceberg_medium_ratio:
        return "medium"
    return "low"


def flash_crash_severity(signals: int) -> str:
    return "high" if signals >= 3 else "medium"


def _g(value: float) -> str:
    """Four significant digits for notes: enough to recognise a figure, short to read."""
    return f"{value:.4g}"


# ---------------------------------------------------------------------- spoofing


def spoofing(observer: Observer, now_ms: int) -> list[dict[str, Any]]:
    """Per side: large placements in the window, and the share of them pulled on approach.

    SPEC's rule is the base: placements (>= the wall threshold, >= ``min_distance_bps``
    from mid) pulled rather than traded at a rate >= ``min_cancel_rate``. A pull counts
    towards that rate only when it looks like spoofing rather than re-quoting: mid came
    at least ``min_approach_bps`` nearer the order before it went, within
    ``max_pull_lifetime_s`` of its placement, and the order was at least
    ``min_touch_ratio`` × the touch. Each condition only removes pulls from the
    numerator (the denominator is every placement, as in SPEC), so each can only make
    the rule quieter; with all three disabled it is SPEC's rule word for word. The
    rates count every placement of the window, those still resting included, so a
    fresh wall lowers them until it is pulled: the rule waits for evidence.
    """
    options = observer.options
    since = now_ms - observer.spoof_window_ms
    by_side: dict[str, list[Placement]] = {"bid": [], "ask": []}
    for placement in observer.placements:
        if placement.placed_ms >= since and not placement.void:
            by_side[placement.side].append(placement)
    found = []
    for side, placements in by_side.items():
        if len(placements) < options.min_placements:
            continue
        pulled = [p for p in placements if p.pulled_ms is not None]
        spoofed = [p for p in pulled if _looks_spoofed(p, options)]
        rate = len(spoofed) / len(placements)
        if rate < options.min_cancel_rate:
            continue
        found.append(_spoofing_item(side, placements, pulled, spoofed, observer))
    return found


def _looks_spoofed(placement: Placement, options: AnomaliesOptions) -> bool:
    """Pulled as the price came towards it, soon, and large against the touch: not a
    quote left behind by the price and moved after it."""
    approach, lifetime = placement.approach_bps, placement.lifetime_ms
    assert approach is not None and lifetime is not None
    return (approach >= options.min_approach_bps
            and lifetime <= options.max_pull_lifetime_s * 1e3
            and placement.touch_ratio >= options.min_touch_ratio)


def _spoofing_item(side: str, placements: list[Placement], pulled: list[Placement],
                   spoofed: list[Placement], observer: Observer) -> dict[str, Any]:
    options = observer.options
    largest = max(spoofed, key=lambda p: p.cancelled)
    distances = [p.distance_bps for p in spoofed]
    approaches = [p.approach_bps or 0.0 for p in spoofed]
    lifetimes = [(p.lifetime_ms or 0) / 1e3 for p in spoofed]
    threshold = placements[-1].threshold
    pulled_qty = sum(p.cancelled for p in spoofed)
    resting = sum(1 for p in placements if p.followed and p.pulled_ms is None)
    rate = len(spoofed) / len(placements)
    window_s = options.spoof_window_s
    note = (
        f"{side} side: {len(spoofed)} of {len(placements)} large orders "
        f"(>= {_g(threshold)}) placed {_g(min(distances))}-{_g(max(distances))} bps from mid "
        f"were cancelled without trading as the price came {_g(min(approaches))}-"
        f"{_g(max(approaches))} bps nearer, {_g(min(lifetimes))}-{_g(max(lifetimes))} s "
        f"after placement, in {window_s:g} s ({rate:.0%} spoof rate, {_g(pulled_qty)} pulled; "
        f"largest {_g(largest.cancelled)} at {largest.price:g})"
    )
    return {
        "type": "spoofing",
        "severity": spoofing_severity(len(spoofed), rate, options),
        "note": note,
        "side": side,
        "placements": len(placements),
        "pulled": len(pulled),
        "pulled_on_approach": len(spoofed),
        "resting": resting,
        "cancel_rate": round(len(pulled) / len(placements), 4),
        "spoof_rate": round(rate, 4),
        "placed_qty": sum(p.placed_qty for p in placements),
        "pulled_qty": pulled_qty,
        "traded_qty": sum(p.traded for p in placements),
        "threshold_qty": threshold,
        "min_distance_bps": round(min(distances), 2),
        "max_distance_bps": round(max(distances), 2),
        "min_approach_bps": round(min(approaches), 2),
        "max_lifetime_s": round(max(lifetimes), 3),
        "largest": {
            "price": largest.price,
            "qty": largest.cancelled,
            "distance_bps": round(largest.distance_bps, 2),
            "pulled_distance_bps": round(largest.pulled_distance_bps or 0.0, 2),
            "touch_ratio": round(min(largest.touch_ratio, 1e9), 2),
            "placed_ms": largest.placed_ms,
        },
        "prices": [p.price for p in spoofed[-_MAX_LISTED_PRICES:]],
        "window_s": window_s,
    }


# ---------------------------------------------------------------------- iceberg


def icebergs(observer: Observer, now_ms: int) -> list[dict[str, Any]]:
    """Prices with at least ``iceberg_min_fills`` fills in the window while the visible
    size held within the tolerance, and more traded there than that band could absorb.

    The last condition is what "it refills" means: fills smaller in total than the
    tolerance could all have come out of the visible size without any refill. The
    executed qty must also reach ``iceberg_min_executed_p95`` × the P95 level size.
    """
    options = observer.options
    since = now_ms - observer.iceberg_window_ms
    floor = options.iceberg_min_executed_p95 * (observer.level_p95 or 0.0)
    found = []
    for run in observer.runs.values():
        fills = executed = 0
        for last_ms, count, qty in run.fills:
            if last_ms >= since:
                fills += count
                executed += qty
        reference = run.reference_qty
        if fills < options.iceberg_min_fills or executed <= options.iceberg_tolerance * reference:
            continue
        if executed < floor:
            continue  # a dust level refilled: nothing hidden worth the name
        found.append(_iceberg_item(run, fills, executed, options))
    found.sort(key=lambda item: item["executed_to_visible"], reverse=True)
    return found[: options.max_reported_icebergs]


def _iceberg_item(run: FillRun, fills: int, executed: float,
                  options: AnomaliesOptions) -> dict[str, Any]:
    reference = run.reference_qty
    ratio = executed / reference
    refilled = max(0.0, executed - max(0.0, reference - run.visible_qty))
    note = (
        f"{run.side} at {run.price:g}: {fills} fills, {_g(executed)} executed "
        f"({_g(ratio)}x the visible {_g(reference)}) while the visible size held within "
        f"±{options.iceberg_tolerance:.0%} (now {_g(run.visible_qty)}); "
        f"at least {_g(refilled)} refilled"
    )
    return {
        "type": "iceberg",
        "severity": iceberg_severity(ratio, options),
        "note": note,
        "side": run.side,
        "price": run.price,
        "fills": fills,
        "executed_qty": executed,
        "visible_qty": run.visible_qty,
        "reference_qty": reference,
        "refilled_qty": refilled,
        "executed_to_visible": round(ratio, 4),
        "since_ms": run.started_ms,
        "window_s": options.iceberg_window_s,
    }


# ---------------------------------------------------------------------- flash crash


def flash_crash_risk(observer: Observer, state: SymbolState,
                     now_ms: int) -> list[dict[str, Any]]:
    """Two of three stress signals at once, each against this symbol's own recent past.

    * ``spread`` — the spread now > ``spread_k`` × the median spread of the baseline,
      and >= ``min_spread_bps``;
    * ``thin_book`` — quote notional within ``depth_band_bps`` of mid (bids + asks)
      below the ``depth_percentile`` of the baseline;
    * ``selling_acceleration`` — net flow (buy − sell base volume) of the last
      ``flow_window_s`` minus that of the window before, divided by the baseline's
      traded volume per window, <= −``flow_acceleration_ratio``: the flow turned to
      selling by at least that many typical windows' whole volume.

    The baseline is the last ``baseline_s`` before the current observation; a signal
    whose inputs are short (fewer samples or trades than the minimum) does not fire.
    """
    figures = _flash_figures(observer, state, now_ms)
    if figures is None:
        return []
    fired = [name for name in _SIGNALS if figures[name]]
    if len(fired) < 2:
        return []
    options, seen = observer.options, figures
    parts = []
    if seen["spread"]:
        parts.append(f"spread {_g(seen['spread_bps'])} bps = {_g(seen['spread_ratio'])}x "
                     f"its median {_g(seen['median_spread_bps'])}")
    if seen["thin_book"]:
        parts.append(f"depth ±{options.depth_band_bps:g} bps {_g(seen['depth_notional'])} "
                     f"below its P{options.depth_percentile:g} "
                     f"{_g(seen['depth_floor_notional'])}")
    if seen["selling_acceleration"]:
        parts.append(f"net flow accelerated by {_g(seen['flow_acceleration'])} "
                     f"({_g(seen['flow_acceleration_ratio'])} windows' volume)")
    note = f"{len(fired)} of 3 signals: " + "; ".join(parts)
    return [{
        "type": "flash_crash_risk",
        "severity": flash_crash_severity(len(fired)),
        "note": note,
        "signals": fired,
        "evaluated": [name for name in _SIGNALS if name in figures["evaluated"]],
        **{k: v for k, v in figures.items() if k not in _SIGNALS and k != "evaluated"},
    }]


def _flash_figures(observer: Observer, state: SymbolState,
                   now_ms: int) -> dict[str, Any] | None:
    options = observer.options
    times, spreads, depths = observer.samples.columns()
    if len(times) == 0 or times[-1] != observer.last_ms:
        return None  # no sample of the current book
    base = (times >= now_ms - int(options.baseline_s * 1000))
    base[-1] = False
    figures: dict[str, Any] = {
        "spread_bps": float(spreads[-1]),
        "depth_notional": float(depths[-1]),
        "baseline_samples": int(np.count_nonzero(base)),  # a bool sum costs 3× as much
        "spread": False, "thin_book": False, "selling_acceleration": False,
        "evaluated": set(),
    }
    if figures["baseline_samples"] >= options.min_baseline_samples:
        median = quantile(spreads[base], 50)
        floor = quantile(depths[base], options.depth_percentile)
        figures["median_spread_bps"] = median
        figures["depth_floor_notional"] = floor
        if median > 0:
            figures["spread_ratio"] = round(figures["spread_bps"] / median, 4)
            figures["spread"] = (figures["spread_bps"] > options.spread_k * median
                                 and figures["spread_bps"] >= options.min_spread_bps)
            figures["evaluated"].add("spread")
        figures["thin_book"] = figures["depth_notional"] < floor
        figures["evaluated"].add("thin_book")
    flow = _flow(observer, state, now_ms)
    if flow:
        figures["evaluated"].add("selling_acceleration")
        figures.update(flow)
    return figures


def _flow(observer: Observer, state: SymbolState, now_ms: int) -> dict[str, Any]:
    options = observer.options
    window_ms = int(options.flow_window_s * 1000)
    assert observer.started_ms is not None
    span_ms = min(int(options.baseline_s * 1000), now_ms - observer.started_ms)
    if span_ms < 2 * window_ms:
        return {}
    trades = state.trades.window(now_ms - span_ms)
    ts, qty, sign = trades.ts_ms, trades.qty, trades.sign
    current = ts >= now_ms - window_ms
    previous = ~current & (ts >= now_ms - 2 * window_ms)
    count = int(np.count_nonzero(current) + np.count_nonzero(previous))
    volume_per_window = float(qty.sum()) * window_ms / span_ms
    if count < options.min_flow_trades or not volume_per_window > 0:
        return {}
    signed = qty * sign
    net_now = float(signed[current].sum())
    net_before = float(signed[previous].sum())
    acceleration = net_now - net_before
    ratio = acceleration / volume_per_window
    if not math.isfinite(ratio):
        return {}
    return {
        "net_flow": net_now,
        "net_flow_before": net_before,
        "flow_acceleration": acceleration,
        "volume_per_window": volume_per_window,
        "flow_acceleration_ratio": round(ratio, 4),
        "flow_window_s": options.flow_window_s,
        "selling_acceleration": ratio <= -options.flow_acceleration_ratio,
    }
