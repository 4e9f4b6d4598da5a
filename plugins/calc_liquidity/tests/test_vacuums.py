"""The ``vacuums`` calculator: runs on the tick grid by hand, buckets, bounds; properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore.testing import make_state, run_cycle, validate_report
from marketcore_calc_liquidity import VacuumsCalculator, VacuumsOptions
from marketcore_calc_liquidity.levels import decimals_of, levels_within
from marketcore_calc_liquidity.vacuums import SparseCells, run_quantities, thin_runs

# Tick 0.1, mid 100.05, history of 40 samples of 1.0: P10 = 1.0, thin means qty < 1.0.
# With max_distance_bps = 100 the bids are scanned from 100.0 down to 99.1 (99.0495 is the
# edge) and the asks from 100.1 up to 101.0 (edge 101.0505): ten cells a side.
BIDS = [(100.0, 5.0), (99.9, 0.5), (99.7, 0.2), (99.6, 2.0), (99.5, 3.0), (98.0, 0.1)]
ASKS = [(100.1, 2.0), (100.8, 4.0), (100.9, 0.9), (101.0, 0.99), (101.5, 7.0)]
MID = 100.05


def state_with_history(bids=BIDS, asks=ASKS, samples=(1.0,) * 40, tick_size=0.1, **kwargs):
    state = make_state(bids=bids, asks=asks, tick_size=tick_size, **kwargs)
    state.level_history.record(list(samples))
    return state


def vacuums_of(state, options=None):
    report, omitted = run_cycle([VacuumsCalculator(options or VacuumsOptions())], state,
                                now_ms=0, cycle="slow")
    validate_report(report)
    return report.get("liquidity", {}).get("vacuums"), omitted


def bps(price):
    return abs(price - MID) / MID * 1e4


def test_runs_on_the_tick_grid_by_hand():
    vacuums, _ = vacuums_of(state_with_history(), VacuumsOptions(max_distance_bps=100))
    # bid cells 100.0 … 99.1: [5, .5, 0, .2, 2, 3, 0, 0, 0, 0]  -> thin runs 99.9-99.7, 99.4-99.1
    # ask cells 100.1 … 101.0: [2, 0, 0, 0, 0, 0, 0, 4, .9, .99] -> 100.2-100.7; 100.9-101.0 is 2
    assert vacuums == [
        {"side": "ask", "from": 100.2, "to": 100.7, "levels": 6, "severity": "medium",
         "distance_bps": pytest.approx(bps(100.2)), "qty": 0.0, "at_scan_edge": False},
        {"side": "bid", "from": 99.7, "to": 99.9, "levels": 3, "severity": "low",
         "distance_bps": pytest.approx(bps(99.9)), "qty": pytest.approx(0.7),
         "at_scan_edge": False},
        {"side": "bid", "from": 99.1, "to": 99.4, "levels": 4, "severity": "low",
         "distance_bps": pytest.approx(bps(99.4)), "qty": 0.0, "at_scan_edge": True},
    ]
    assert vacuums[0]["distance_bps"] == pytest.approx(14.992503748125937)   # 0.15 / 100.05
    assert vacuums[2]["distance_bps"] == pytest.approx(64.96751624187906)    # 0.65 / 100.05


def test_default_scan_is_50_bps():
    # edges 99.54975 and 100.55025: bid cells 100.0 … 99.6, ask cells 100.1 … 100.5.
    # Both runs are low and 0.15 from the mid: equally near, bids (found first) lead.
    vacuums, _ = vacuums_of(state_with_history())
    assert [(v["side"], v["from"], v["to"], v["levels"], v["at_scan_edge"]) for v in vacuums] == [
        ("bid", 99.7, 99.9, 3, False),
        ("ask", 100.2, 100.5, 4, True),
    ]


def test_high_severity_and_buckets_of_several_ticks():
    # tick 1, mid 1000.5, 150 bps: bid cells 1000 … 986 (edge 985.4925)
    bids = [(1000.0, 5.0), (989.0, 5.0)]
    state = state_with_history(bids=bids, asks=[(1001.0, 5.0)], tick_size=1.0)
    vacuums, _ = vacuums_of(state, VacuumsOptions(max_distance_bps=150))
    bid_runs = [v for v in vacuums if v["side"] == "bid"]
    assert [(v["from"], v["to"], v["levels"], v["severity"]) for v in bid_runs] == [
        (990.0, 999.0, 10, "high"),     # cells 1 … 10
        (986.0, 988.0, 3, "low"),       # cells 12 … 14, up to the scan edge
    ]
    # two-tick cells: cell i holds 1000 - 2i and 999 - 2i; 8 cells reach 986
    # cells: [5, 0, 0, 0, 0, 5, 0, 0] -> one run of 4 cells, 991 … 998; the last run is 2 cells
    vacuums, _ = vacuums_of(state, VacuumsOptions(max_distance_bps=150, bucket_ticks=2))
    bid_runs = [v for v in vacuums if v["side"] == "bid"]
    assert [(v["from"], v["to"], v["levels"], v["severity"]) for v in bid_runs] == [
        (991.0, 998.0, 4, "low")]


def test_bounds_cut_the_scan():
    # max_cells = 4: bid cells 100.0 … 99.7 -> the 99.9 … 99.7 run ends at the scan edge
    vacuums, _ = vacuums_of(state_with_history(),
                            VacuumsOptions(max_distance_bps=100, max_cells=4))
    bid = [v for v in vacuums if v["side"] == "bid"]
    assert [(v["from"], v["to"], v["at_scan_edge"]) for v in bid] == [(99.7, 99.9, True)]
    # max_levels = 3: the bids read are 100.0, 99.9, 99.7 -> the scan stops at 99.7
    vacuums, _ = vacuums_of(state_with_history(),
                            VacuumsOptions(max_distance_bps=100, max_levels=3))
    bid = [v for v in vacuums if v["side"] == "bid"]
    assert [(v["from"], v["to"], v["levels"]) for v in bid] == [(99.7, 99.9, 3)]
    # the list cap keeps the most severe
    vacuums, _ = vacuums_of(state_with_history(),
                            VacuumsOptions(max_distance_bps=100, max_vacuums=1))
    assert [v["severity"] for v in vacuums] == ["medium"]


def test_the_tick_is_inferred_from_the_book_when_the_venue_gave_none():
    state = state_with_history(tick_size=None)
    assert state.tick_size is None
    vacuums, _ = vacuums_of(state, VacuumsOptions(max_distance_bps=100))
    assert [(v["from"], v["to"]) for v in vacuums] == [(100.2, 100.7), (99.7, 99.9),
                                                       (99.1, 99.4)]


def test_omitted_without_history_mid_or_tick():
    _, omitted = vacuums_of(state_with_history(samples=(1.0,) * 3))
    assert omitted["vacuums"] == "level-size history holds 3 samples, needs at least 20"
    _, omitted = vacuums_of(state_with_history(asks=[]))
    assert omitted["vacuums"] == "no mid price: a side of the book is empty"
    _, omitted = vacuums_of(state_with_history(bids=[(1.0, 1.0)], asks=[(2.0, 1.0)],
                                               tick_size=None))
    assert omitted["vacuums"].startswith("tick size unknown")


def test_thin_runs():
    cells = np.array([0.0, 0.0, 0.0, 5.0, 0.5, 0.5, 5.0, 0.1, 0.1, 0.1, 0.1])
    starts, ends = thin_runs(cells, 1.0, 3)
    assert starts.tolist() == [0, 7] and ends.tolist() == [3, 11]
    starts, ends = thin_runs(cells, 1.0, 2)
    assert starts.tolist() == [0, 4, 7]


def test_options_refuse_runs_shorter_than_three():
    with pytest.raises(ValueError, match="min_levels must be an integer from 3"):
        VacuumsOptions(min_levels=2)
    with pytest.raises(ValueError, match="min_levels <= medium_levels <= high_levels"):
        VacuumsOptions(medium_levels=12)


@given(
    bid_ticks=st.dictionaries(st.integers(min_value=0, max_value=80),
                              st.integers(min_value=1, max_value=300), min_size=1, max_size=60),
    ask_ticks=st.dictionaries(st.integers(min_value=0, max_value=80),
                              st.integers(min_value=1, max_value=300), min_size=1, max_size=60),
    samples=st.lists(st.integers(min_value=1, max_value=300), min_size=20, max_size=100),
    spread_ticks=st.integers(min_value=1, max_value=5),
)
def test_runs_really_are_below_p10(bid_ticks, ask_ticks, samples, spread_ticks):
    tick = 0.01
    bids = {round(100.0 - t * tick, 2): q / 10 for t, q in bid_ticks.items()}
    asks = {round(100.0 + (spread_ticks + t) * tick, 2): q / 10 for t, q in ask_ticks.items()}
    state = state_with_history(bids=list(bids.items()), asks=list(asks.items()),
                               samples=[s / 10 for s in samples], tick_size=tick)
    vacuums, _ = vacuums_of(state, VacuumsOptions(max_vacuums=1000))
    p10 = float(np.percentile([s / 10 for s in samples], 10))
    mid = (max(bids) + min(asks)) / 2
    for run in vacuums:
        book = bids if run["side"] == "bid" else asks
        count = round((run["to"] - run["from"]) / tick) + 1
        assert count == run["levels"] >= 3
        grid = [round(run["from"] + i * tick, 2) for i in range(count)]
        assert all(book.get(price, 0.0) < p10 for price in grid)        # every cell is thin
        assert run["qty"] == pytest.approx(sum(book.get(price, 0.0) for price in grid))
        assert run["severity"] == ("high" if count >= 10 else "medium" if count >= 6 else "low")
        near = run["to"] if run["side"] == "bid" else run["from"]
        assert abs(near - mid) / mid * 1e4 <= 50 + 1e-9
        # a run is maximal: the cells just outside it (inside the book side) are not thin
        outer = round(run["to"] + tick, 2) if run["side"] == "ask" else round(run["from"] - tick, 2)
        inner = round(run["from"] - tick, 2) if run["side"] == "ask" else round(run["to"] + tick, 2)
        if not run["at_scan_edge"]:
            assert book.get(outer, 0.0) >= p10
        touch = max(bids) if run["side"] == "bid" else min(asks)
        if inner != round(touch + (tick if run["side"] == "bid" else -tick), 2):
            assert book.get(inner, 0.0) >= p10


# ---------------------------------------------------------------- sparse scan == dense scan

def dense_vacuums(state, options):
    """The straightforward scan, as the calculator first did it: every cell of the grid
    laid out (``bincount``), runs by :func:`thin_runs`, quantities by
    :func:`run_quantities`, every run sorted. The sparse scan must give the same floats."""
    below = state.level_history.percentile(options.percentile)
    mid = state.book.mid()
    tick = state.tick_size
    columns = []
    for side in ("bid", "ask"):
        cell = tick * options.bucket_ticks
        levels = levels_within(state.book, side, mid,
                               options.max_distance_bps + 2 * cell / mid * 1e4,
                               options.max_levels)
        prices, qtys = levels.arrays()
        if not len(prices):
            columns.append(tuple(np.empty(0, dtype=t) for t in (int, float, float, float, int,
                                                                 float, bool)))
            continue
        edge = mid * (1 - options.max_distance_bps / 1e4) if side == "bid" else \
            mid * (1 + options.max_distance_bps / 1e4)
        touch = float(prices[0])
        index = np.floor(np.abs(touch - prices) / cell + 1e-6).astype(np.int64)
        span = math.floor(abs(touch - edge) / cell + 1e-6) + 1
        if not levels.complete:
            span = min(span, int(index[-1]) + (1 if options.bucket_ticks == 1 else 0))
        if side == "bid":
            span = min(span, max(1, math.ceil(touch / cell - 1e-6)))
        span = min(span, options.max_cells)
        inside = index < span
        cells = np.bincount(index[inside], weights=qtys[inside], minlength=span)
        starts, ends = thin_runs(cells, below, options.min_levels)
        outward = -1.0 if side == "bid" else 1.0
        near = touch + outward * starts * cell
        columns.append((np.searchsorted([options.medium_levels, options.high_levels],
                                        ends - starts, side="right"),
                        np.abs(near - mid) / mid * 1e4, near,
                        touch + outward * (ends * cell - tick), ends - starts,
                        run_quantities(cells, starts, ends), ends == span))
    rank, distance, near, far, length, qty, at_edge = (np.concatenate(c)
                                                       for c in zip(*columns, strict=True))
    order = np.lexsort((np.round(distance, 6), -rank))[: options.max_vacuums]
    sides = len(columns[0][0])
    digits = decimals_of(tick)
    out = []
    for i in order.tolist():
        a, b = round(float(near[i]), digits), round(float(far[i]), digits)
        out.append({"side": "bid" if i < sides else "ask", "from": min(a, b), "to": max(a, b),
                    "levels": int(length[i]), "severity": ("low", "medium", "high")[rank[i]],
                    "distance_bps": float(distance[i]), "qty": float(qty[i]),
                    "at_scan_edge": bool(at_edge[i])})
    return out


@given(
    # far from the touch on a fine tick: long runs with several thin levels, whose sums
    # numpy groups pairwise; quantities of every magnitude, so that grouping shows
    bid_ticks=st.dictionaries(st.integers(min_value=0, max_value=3000),
                              st.floats(min_value=1e-8, max_value=1e3), min_size=1,
                              max_size=300),
    ask_ticks=st.dictionaries(st.integers(min_value=0, max_value=3000),
                              st.floats(min_value=1e-8, max_value=1e3), min_size=1,
                              max_size=300),
    samples=st.lists(st.floats(min_value=1e-6, max_value=1e3), min_size=20, max_size=60),
    bucket_ticks=st.sampled_from([1, 1, 2, 7]),
    max_vacuums=st.sampled_from([0, 1, 3, 20, 1000]),
    percentile=st.sampled_from([10.0, 50.0, 90.0]),
)
def test_the_sparse_scan_equals_the_dense_grid(bid_ticks, ask_ticks, samples, bucket_ticks,
                                                max_vacuums, percentile):
    tick = 0.01
    bids = [(round(100.0 - t * tick, 2), q) for t, q in bid_ticks.items()]
    asks = [(round(100.01 + t * tick, 2), q) for t, q in ask_ticks.items()]
    state = state_with_history(bids=bids, asks=asks, samples=samples, tick_size=tick)
    options = VacuumsOptions(max_distance_bps=300, bucket_ticks=bucket_ticks,
                             max_vacuums=max_vacuums, percentile=percentile, max_levels=250)
    vacuums, _ = vacuums_of(state, options)
    assert vacuums == dense_vacuums(state, options)  # exact: same floats, same order


@given(
    cells=st.lists(st.tuples(st.integers(min_value=0, max_value=400),
                             st.floats(min_value=1e-9, max_value=1e6)), max_size=200),
    below=st.floats(min_value=1e-9, max_value=1e6),
    min_run=st.integers(min_value=3, max_value=12),
    span=st.integers(min_value=0, max_value=420),
)
def test_sparse_cells_find_the_dense_runs_and_sums(cells, below, min_run, span):
    cells.sort(key=lambda c: c[0])  # levels come best first: cell numbers ascending
    index = np.array([c for c, _ in cells], dtype=np.int64)
    qtys = np.array([q for _, q in cells], dtype=np.float64)
    inside = index < span
    dense = np.bincount(index[inside], weights=qtys[inside], minlength=span)
    starts, ends = thin_runs(dense, below, min_run)
    sparse = SparseCells.of(index, qtys, span)
    got_starts, got_ends = sparse.runs(below, min_run, span)
    assert got_starts.tolist() == starts.tolist() and got_ends.tolist() == ends.tolist()
    assert sparse.held(got_starts, got_ends) == run_quantities(dense, starts, ends).tolist()
