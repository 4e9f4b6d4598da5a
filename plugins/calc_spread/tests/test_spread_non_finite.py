"""No NaN or infinity ever reaches a report, whatever quantities the book holds."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from marketcore.testing import make_state, run_cycle, validate_report
from marketcore_calc_spread import DepthCalculator, SpreadCalculator

SECTIONS = ("best_bid", "best_ask", "book_state", "mid_price", "spread_bps", "micro_price",
            "depth")
qtys = st.one_of(st.floats(min_value=1e-8, max_value=1e9),
                 st.sampled_from([math.inf, math.nan, 1e308, 5e-324, 0.0, -1.0]))


def finite(value):
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return True


@given(bids=st.dictionaries(st.integers(min_value=1, max_value=10_000), qtys, max_size=30),
       asks=st.dictionaries(st.integers(min_value=1, max_value=10_000), qtys, max_size=30))
def test_spread_and_depth_keep_non_finite_numbers_out(bids, asks):
    state = make_state(bids=[(t / 100, q) for t, q in bids.items()],
                       asks=[(t / 100, q) for t, q in asks.items()])
    report, omitted = run_cycle([SpreadCalculator(), DepthCalculator()], state, now_ms=0)
    validate_report(report)
    assert finite(report)
    for section in SECTIONS:       # published, or omitted by its own calculator with a reason
        assert (section in report) != (section in omitted), section
        assert omitted.get(section) != "non-finite value"
