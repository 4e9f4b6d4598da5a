"""Per-call cost of ``anomaly_tracker`` and ``anomalies`` on a 2,000-level synthetic book.

Drives one symbol of :class:`marketcore.synthetic.SyntheticMarket` (2,000 levels a side)
through its events, running the tracker on the 250 ms grid and ``anomalies`` on the
2 s grid as a node does, and times each ``compute`` call. Two books: *sparse* (the
default price grid: 2,000 levels reach ~3,500 bps, about 100 fall in the 100 bps band)
and *dense* (a 0.01 tick at ~104,000: 2,000 levels within ~80 bps, like Binance
BTCUSDT, so a scan reads up to ``max_scan_levels``).

    python plugins/calc_anomalies/benchmarks/bench_anomalies.py [--seconds 120]

:func:`measure` is what a shared benchmark calls; it returns plain figures.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from marketcore.components import Cycle, CycleContext
from marketcore.state import SymbolState
from marketcore.synthetic import SyntheticConfig, SyntheticMarket
from marketcore_calc_anomalies import AnomaliesCalculator, AnomaliesOptions, AnomalyTracker

BOOKS = {"sparse": 0.104, "dense": 104_000.0}
"""``start_price`` of the synthetic market for each book shape (symbol BTCUSDT)."""


def _stats(samples: list[int]) -> dict[str, float]:
    values = np.asarray(samples, dtype=np.float64) / 1e3
    return {"calls": len(values), "mean_us": round(float(values.mean()), 1),
            "p50_us": round(float(np.percentile(values, 50)), 1),
            "p99_us": round(float(np.percentile(values, 99)), 1),
            "max_us": round(float(values.max()), 1)}


def measure(*, book: str = "dense", seconds: float = 120.0, levels: int = 2000, seed: int = 1,
            options: AnomaliesOptions | None = None, depth_first: bool = True) -> dict[str, Any]:
    """Mean / p50 / p99 µs per call of each calculator over ``seconds`` of market time.

    ``depth_first``: query the book's depth bands before each fast call, as the
    ``depth`` calculator does earlier in a real fast cycle, so the tracker's own band
    query finds them anchored at the current mid (``False``: the tracker pays that).
    """
    config = SyntheticConfig(seed=seed, levels=levels, start_price=BOOKS[book])
    market = SyntheticMarket(["BTCUSDT"], config)
    evaluator = AnomaliesCalculator(options or AnomaliesOptions())
    tracker = AnomalyTracker()
    state = SymbolState("BTCUSDT", "synthetic", evaluator.needs)
    clock = time.perf_counter_ns
    timings: dict[str, list[int]] = {"anomaly_tracker": [], "anomalies": [],
                                     "anomaly_tracker (scanning)": [],
                                     "anomaly_tracker (not scanning)": []}
    warm_up = 8  # the first calls pay numpy's lazy imports and the first band reads
    next_fast = next_slow = None
    for event in market.events(until_ms=config.start_ms + int(seconds * 1000)):
        t_ms = event.recv_ns // 1_000_000
        if next_fast is None:
            next_fast, next_slow = (t_ms // 250 + 1) * 250, (t_ms // 2000 + 1) * 2000
        while min(next_fast, next_slow) <= t_ms:
            if next_slow <= next_fast:
                calculator, now, cycle = evaluator, next_slow, Cycle.SLOW
                next_slow += 2000
            else:
                calculator, now, cycle = tracker, next_fast, Cycle.FAST
                next_fast += 250
                state.sample_levels(20)
                if depth_first:
                    for bps in state.book.tracked_bands_bps:
                        state.book.band_sums(bps)
            ctx = CycleContext(now_ms=now, cycle=cycle, report={})
            observer = state.scratch("anomalies").get("observer")
            scans = observer.scans if observer is not None else 0
            started = clock()
            calculator.compute(state, ctx)
            elapsed = clock() - started
            if warm_up:
                warm_up -= 1
                continue
            timings[calculator.name].append(elapsed)
            if calculator is tracker:
                scanned = observer is not None and observer.scans > scans
                timings[f"anomaly_tracker ({'' if scanned else 'not '}scanning)"].append(elapsed)
        state.apply(event)
    return {"book": book, "levels_per_side": levels, "market_seconds": seconds,
            "depth_first": depth_first,
            "bid_levels": state.book.bid_count, "ask_levels": state.book.ask_count,
            **{name: _stats(samples) for name, samples in timings.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    for book in BOOKS:
        for depth_first in (True, False):
            print(json.dumps(measure(book=book, seconds=args.seconds, depth_first=depth_first)))


if __name__ == "__main__":
    main()
