"""No NaN or infinity ever reaches a report, whatever the book and the trades hold."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from marketcore import BookDelta, Side, Trade
from marketcore.testing import make_state, run_cycle, validate_report
from marketcore_calc_liquidity import (
    FlowCalculator,
    VacuumsCalculator,
    VolumeProfileCalculator,
    WallsCalculator,
)

SECTIONS = ("flow", "walls", "vacuums", "volume_profile")
odd = st.sampled_from([math.inf, math.nan, 1e308, 5e-324])
qtys = st.one_of(st.floats(min_value=1e-6, max_value=1e6), odd)
prices = st.one_of(st.integers(min_value=9_900, max_value=10_100).map(lambda t: t / 100), odd)


def finite(value):
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


@given(
    bids=st.dictionaries(st.integers(min_value=9_900, max_value=9_999), qtys, max_size=30),
    asks=st.dictionaries(st.integers(min_value=10_001, max_value=10_100), qtys, max_size=30),
    trades=st.lists(st.tuples(prices, qtys, st.sampled_from(list(Side))), max_size=40),
    samples=st.lists(st.one_of(st.floats(min_value=0.01, max_value=100.0), odd),
                     min_size=0, max_size=60),
)
def test_every_calculator_keeps_non_finite_numbers_out(bids, asks, trades, samples):
    state = make_state(tick_size=0.01)
    state.apply(BookDelta("BTCUSDT", [(t / 100, q) for t, q in bids.items()],
                          [(t / 100, q) for t, q in asks.items()], 2, 2, event_ms=1))
    for index, (price, qty, side) in enumerate(trades):
        state.apply(Trade("BTCUSDT", price, qty, side, index + 1, 1_000 + index * 100))
    state.level_history.record(samples)
    calculators = [FlowCalculator(), WallsCalculator(), VacuumsCalculator(),
                   VolumeProfileCalculator()]
    report, omitted = run_cycle(calculators, state, now_ms=10_000)
    validate_report(report)
    assert finite(report)
    # every section is either published or omitted for a reason of its own calculator,
    # never dropped by the host's last-resort non-finite filter
    placed = {**report.get("liquidity", {}), **({"flow": report["flow"]} if "flow" in report
                                                 else {})}
    for section in SECTIONS:
        assert (section in placed) != (section in omitted), section
        assert omitted.get(section) != "non-finite value"
    assert "non-finite value" not in str(report.get("omitted", {}))
