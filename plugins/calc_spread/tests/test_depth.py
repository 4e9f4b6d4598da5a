"""The ``depth`` calculator: bands, imbalance and top levels by hand, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore import BookDelta
from marketcore.testing import make_state, run_cycle, validate_report
from marketcore_calc_spread import DepthCalculator, DepthOptions

# mid = (100.0 + 100.1) / 2 = 100.05
BIDS = [(100.0, 1.0), (99.95, 2.0), (99.8, 4.0), (99.1, 8.0)]
ASKS = [(100.1, 1.5), (100.2, 2.5), (100.5, 3.0), (101.5, 5.0)]


def depth_of(state, options=None):
    report, omitted = run_cycle([DepthCalculator(options or DepthOptions())], state, now_ms=0)
    validate_report(report)
    return report.get("depth"), omitted


def test_default_bands_by_hand():
    depth, _ = depth_of(make_state(bids=BIDS, asks=ASKS))
    bands = {band["bps"]: band for band in depth["bands"]}
    assert list(bands) == [10.0, 25.0, 50.0, 100.0]
    # 10 bps: bids >= 100.05 * 0.999 = 99.94995 -> 100.0, 99.95; asks <= 100.15005 -> 100.1
    assert bands[10.0]["bid_qty"] == pytest.approx(3.0)
    assert bands[10.0]["ask_qty"] == pytest.approx(1.5)
    assert bands[10.0]["bid_notional"] == pytest.approx(100.0 * 1 + 99.95 * 2)    # 299.9
    assert bands[10.0]["ask_notional"] == pytest.approx(100.1 * 1.5)              # 150.15
    assert bands[10.0]["imbalance"] == pytest.approx((3 - 1.5) / 4.5)             # 1/3
    # 25 bps: bids >= 99.799875 add 99.8; asks <= 100.300125 add 100.2
    assert bands[25.0]["bid_qty"] == pytest.approx(7.0)
    assert bands[25.0]["ask_qty"] == pytest.approx(4.0)
    assert bands[25.0]["bid_notional"] == pytest.approx(299.9 + 99.8 * 4)          # 699.1
    assert bands[25.0]["ask_notional"] == pytest.approx(150.15 + 100.2 * 2.5)      # 400.65
    assert bands[25.0]["imbalance"] == pytest.approx(3 / 11)
    # 50 bps: bids >= 99.54975 (nothing new); asks <= 100.55025 add 100.5
    assert bands[50.0]["bid_qty"] == pytest.approx(7.0)
    assert bands[50.0]["ask_qty"] == pytest.approx(7.0)
    assert bands[50.0]["ask_notional"] == pytest.approx(400.65 + 100.5 * 3)        # 702.15
    assert bands[50.0]["imbalance"] == pytest.approx(0.0, abs=1e-15)
    # 100 bps: bids >= 99.0495 add 99.1; asks <= 101.0505 (nothing new)
    assert bands[100.0]["bid_qty"] == pytest.approx(15.0)
    assert bands[100.0]["ask_qty"] == pytest.approx(7.0)
    assert bands[100.0]["bid_notional"] == pytest.approx(699.1 + 99.1 * 8)         # 1491.9
    assert bands[100.0]["ask_notional"] == pytest.approx(702.15)
    assert bands[100.0]["imbalance"] == pytest.approx(8 / 22)
    assert depth["top_bids"] == [list(level) for level in BIDS]
    assert depth["top_asks"] == [list(level) for level in ASKS]


def test_configured_bands_and_top_n_by_hand():
    depth, _ = depth_of(make_state(bids=BIDS, asks=ASKS),
                        DepthOptions(bands_bps=[200, 5], top_n=2))
    assert [band["bps"] for band in depth["bands"]] == [5.0, 200.0]   # sorted
    five, two_hundred = depth["bands"]
    # 5 bps: bids >= 99.999975 -> 100.0; asks <= 100.100025 -> 100.1
    assert (five["bid_qty"], five["ask_qty"]) == (pytest.approx(1.0), pytest.approx(1.5))
    assert five["imbalance"] == pytest.approx(-0.5 / 2.5)             # -0.2
    # 200 bps: everything: bids 15, asks 12
    assert two_hundred["bid_qty"] == pytest.approx(15.0)
    assert two_hundred["ask_qty"] == pytest.approx(12.0)
    assert two_hundred["ask_notional"] == pytest.approx(702.15 + 101.5 * 5)    # 1209.65
    assert two_hundred["imbalance"] == pytest.approx(3 / 27)
    assert depth["top_bids"] == [[100.0, 1.0], [99.95, 2.0]]
    assert depth["top_asks"] == [[100.1, 1.5], [100.2, 2.5]]


def test_imbalance_is_null_when_a_band_holds_nothing():
    # spread of 200 bps around mid 100: the 10 bps band is empty on both sides
    depth, _ = depth_of(make_state(bids=[(99.0, 1.0)], asks=[(101.0, 1.0)]))
    ten = depth["bands"][0]
    assert ten == {"bps": 10.0, "bid_qty": 0.0, "ask_qty": 0.0, "bid_notional": 0.0,
                   "ask_notional": 0.0, "imbalance": None}
    assert depth["bands"][-1]["imbalance"] == 0.0           # 100 bps holds both levels


def test_one_sided_book_omits_depth_with_the_reason():
    depth, omitted = depth_of(make_state(bids=[(99.0, 1.0)]))
    assert depth is None
    assert omitted["depth"] == "no mid price to measure bands from: no asks"
    depth, omitted = depth_of(make_state())
    assert omitted["depth"] == "no mid price to measure bands from: no bids and asks"


def test_top_n_zero_lists_nothing():
    depth, _ = depth_of(make_state(bids=BIDS, asks=ASKS), DepthOptions(top_n=0))
    assert depth["top_bids"] == [] and depth["top_asks"] == []


@pytest.mark.parametrize(("options", "message"), [
    ({"bands_bps": []}, "at least one band"),
    ({"bands_bps": [0]}, "> 0 and < 10000"),
    ({"bands_bps": [float("nan")]}, "> 0 and < 10000"),
    ({"bands_bps": list(range(1, 18))}, "at most 16"),
    ({"bands_bps": "10"}, "list of numbers"),
    ({"top_n": -1}, "top_n must be an integer from 0 to 1000"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        DepthOptions(**options)


def naive_sums(bids, asks, bps):
    """The band sums by walking every level (the reference the running sums must match)."""
    mid = (max(p for p, _ in bids) + min(p for p, _ in asks)) / 2
    lo, hi = mid * (1 - bps / 1e4), mid * (1 + bps / 1e4)
    inside_bids = [(p, q) for p, q in bids if p >= lo]
    inside_asks = [(p, q) for p, q in asks if p <= hi]
    return (sum(q for _, q in inside_bids), sum(q for _, q in inside_asks),
            sum(p * q for p, q in inside_bids), sum(p * q for p, q in inside_asks))


ticks = st.integers(min_value=9_000, max_value=11_000)          # price = tick / 100
lots = st.integers(min_value=1, max_value=10_000)               # qty = lot / 1000
changes = st.lists(st.tuples(ticks, st.integers(min_value=0, max_value=10_000)), max_size=20)


@given(bids=st.dictionaries(ticks, lots, min_size=1, max_size=30),
       asks=st.dictionaries(ticks, lots, min_size=1, max_size=30),
       deltas=st.lists(st.tuples(changes, changes), max_size=6))
def test_bands_match_a_level_walk_and_imbalance_stays_in_range(bids, asks, deltas):
    """After random deltas (the incremental path), every band equals a walk of the levels."""
    book = {"bid": {t / 100: q / 1000 for t, q in bids.items()},
            "ask": {t / 100: q / 1000 for t, q in asks.items()}}
    state = make_state(bids=list(book["bid"].items()), asks=list(book["ask"].items()))
    calculator = DepthCalculator(DepthOptions(bands_bps=(10, 25, 50, 100, 300)))
    for update_id, (bid_changes, ask_changes) in enumerate(deltas, start=2):
        for side, side_changes in (("bid", bid_changes), ("ask", ask_changes)):
            for t, q in side_changes:
                if q:
                    book[side][t / 100] = q / 1000
                else:
                    book[side].pop(t / 100, None)
        state.apply(BookDelta("BTCUSDT", [(t / 100, q / 1000) for t, q in bid_changes],
                              [(t / 100, q / 1000) for t, q in ask_changes],
                              update_id, update_id, event_ms=update_id))
        report, omitted = run_cycle([calculator], state, now_ms=update_id)
        validate_report(report)
        if not book["bid"] or not book["ask"]:
            assert "depth" in omitted
            continue
        for band in report["depth"]["bands"]:
            expected = naive_sums(book["bid"].items(), book["ask"].items(), band["bps"])
            got = (band["bid_qty"], band["ask_qty"], band["bid_notional"], band["ask_notional"])
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
            assert band["imbalance"] is None or -1.0 <= band["imbalance"] <= 1.0
            if band["bid_qty"] + band["ask_qty"] == 0:
                assert band["imbalance"] is None
        top_bids = sorted(book["bid"].items(), reverse=True)[:20]
        assert report["depth"]["top_bids"] == [list(level) for level in top_bids]
        assert report["depth"]["top_asks"] == [list(lv) for lv in sorted(book["ask"].items())[:20]]
