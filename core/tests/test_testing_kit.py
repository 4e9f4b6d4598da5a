"""marketcore.testing and marketcore.strategies: the kit plugin authors test with.

Each helper is checked against what it promises, with the host's real parts: real
books, a real pipeline, real replays of the built-in synthetic venue.
"""

from __future__ import annotations

import gzip
import math
import socket

import pytest
from hypothesis import given
from marketcore import BookDelta, Cycle, Needs, Omitted, Side, Trade, hookimpl
from marketcore.strategies import (
    book_levels,
    book_streams,
    books,
    deltas,
    grids,
    snapshots,
    symbol_states,
    trades,
)
from marketcore.testing import (
    BUNDLED_RECORDING,
    assert_omitted,
    assert_section,
    assert_valid_report,
    book_from_levels,
    find_recording,
    free_port,
    make_state,
    replay_calculator,
    run_cycle,
    section_series,
    stop_processes,
    trade_tape,
)


class LastTradeAge:
    """A tiny real calculator: how old the last trade is, omitted without trades."""

    name = "last_trade_age"
    cycle = Cycle.FAST
    sections = ("last_trade_age",)
    needs = Needs(trade_window_ms=60_000)

    def __init__(self, options: object = None) -> None:
        self.options = options

    def compute(self, state, ctx):
        last = state.trades.last()
        if last is None:
            return {self.name: Omitted("no trade yet")}
        return {self.name: {"ms": ctx.now_ms - last[0], "price": last[1]}}


class LastTradeAgePlugin:
    @hookimpl
    def marketcore_register_calculators(self, register):
        register("last_trade_age", LastTradeAge)


# ---------------------------------------------------------------- literal inputs


def test_free_port_can_give_a_run_of_consecutive_ports_that_all_bind():
    first = free_port(run=3)
    sockets = []
    try:
        for port in range(first, first + 3):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", port))  # raises if one of the run was taken
        assert [sock.getsockname()[1] for sock in sockets] == [first, first + 1, first + 2]
    finally:
        for sock in sockets:
            sock.close()


def test_book_from_levels_holds_exactly_the_levels_in_any_order():
    book = book_from_levels(bids=[(99.8, 5.0), (99.9, 2.0)], asks=[(100.2, 1.0), (100.1, 3.0)])
    assert book.best_bid() == (99.9, 2.0) and book.best_ask() == (100.1, 3.0)
    assert book.mid() == pytest.approx(100.0)
    assert book.top("bid", 5) == [(99.9, 2.0), (99.8, 5.0)]
    assert book.band_sums(25) == pytest.approx((7.0, 4.0, 99.9 * 2 + 99.8 * 5, 100.1 * 3 + 100.2))


def test_trade_tape_turns_rows_into_trades_and_passes_trades_through():
    existing = Trade("ETHUSDT", 3000.0, 1.0, Side.SELL, 99, 5_000)
    tape = trade_tape([(1_000, 100, 0.5, "buy"), existing, (2_000, 99.5, 1, "sell")],
                      symbol="ETHUSDT", first_trade_id=10)
    assert tape[0] == Trade("ETHUSDT", 100.0, 0.5, Side.BUY, 10, 1_000)
    assert tape[1] is existing
    assert tape[2] == Trade("ETHUSDT", 99.5, 1.0, Side.SELL, 12, 2_000)
    with pytest.raises(ValueError):
        trade_tape([(1_000, 100.0, 1.0, "bid")])


def test_make_state_applies_deltas_after_the_snapshot_and_accepts_trade_events():
    delta = BookDelta("BTCUSDT", [(99.9, 0.0), (99.7, 4.0)], [(100.1, 2.5)], 2, 3, 1_500)
    state = make_state(bids=[(99.9, 1.0), (99.8, 2.0)], asks=[(100.1, 1.0)], deltas=[delta],
                       trades=trade_tape([(2_000, 100.1, 0.2, "buy")]))
    assert state.book.top("bid", 5) == [(99.8, 2.0), (99.7, 4.0)]
    assert state.book.best_ask() == (100.1, 2.5)
    assert state.last_update_id == 3 and state.last_event_ms == 2_000
    assert state.trades.last() == (2_000, 100.1, 0.2, 1)


# ---------------------------------------------------------------- assertions


def test_assert_section_checks_a_subset_and_returns_the_section():
    state = make_state(trades=[(1_000, 100.0, 1.0, "buy")])
    report, _ = run_cycle([LastTradeAge()], state, now_ms=3_500)
    section = assert_section(report, "ext.last_trade_age", {"ms": 2_500, "price": 100.0})
    assert section == {"ms": 2500, "price": 100.0}
    assert_section(report, "ext.last_trade_age.price", float)
    assert_section(report, "ext.last_trade_age", {"ms": lambda ms: ms > 0})
    assert_section(report, "ext.last_trade_age", {"price": 100.0 + 1e-12})  # relative tolerance
    with pytest.raises(AssertionError, match=r"ext\.last_trade_age\.ms: expected 2000, found 2500"):
        assert_section(report, "ext.last_trade_age", {"ms": 2_000})
    with pytest.raises(AssertionError, match=r"ext\.last_trade_age\.size: missing"):
        assert_section(report, "ext.last_trade_age", {"size": 1.0})
    with pytest.raises(AssertionError, match=r"expected a str, found 100\.0"):
        assert_section(report, "ext.last_trade_age.price", str)
    with pytest.raises(AssertionError, match=r"has no ext\.nothing"):
        assert_section(report, "ext.nothing")


def test_assert_section_on_an_omitted_section_says_why():
    report, omitted = run_cycle([LastTradeAge()], make_state(), now_ms=1_000)
    assert omitted == {"last_trade_age": "no trade yet"}
    with pytest.raises(AssertionError, match="omitted because no trade yet"):
        assert_section(report, "ext.last_trade_age")
    assert assert_omitted(report, "last_trade_age", "no trade") == "no trade yet"
    with pytest.raises(AssertionError, match="expected 'stale' in it"):
        assert_omitted(report, "last_trade_age", "stale")
    traded, _ = run_cycle([LastTradeAge()], make_state(trades=[(1, 1.0, 1.0, "buy")]))
    with pytest.raises(AssertionError, match="is in the report"):
        assert_omitted(traded, "last_trade_age")
    with pytest.raises(AssertionError, match="no reason is listed"):
        assert_omitted(traded, "flow")


def test_assert_valid_report_names_the_offending_field():
    report, _ = run_cycle([LastTradeAge()], make_state(trades=[(1, 1.0, 1.0, "buy")]))
    assert_valid_report(report)
    with pytest.raises(AssertionError, match=r"report\.ext\.last_trade_age\.price is not finite"):
        assert_valid_report({**report, "ext": {"last_trade_age": {"price": math.nan}}})
    with pytest.raises(AssertionError, match=r"^data_age_ms: "):
        assert_valid_report({**report, "data_age_ms": "old"})
    broken = dict(report)
    del broken["symbol"]
    with pytest.raises(AssertionError, match="'symbol' is a required property"):
        assert_valid_report(broken)


# ---------------------------------------------------------------- replays


def test_replay_calculator_runs_one_in_test_calculator_over_the_synthetic_venue():
    reports = replay_calculator("last_trade_age", plugins=[("age", LastTradeAgePlugin())],
                                symbols=["BTCUSDT", "ETHUSDT"], duration_s=20)
    assert {r["symbol"] for r in reports} == {"BTCUSDT", "ETHUSDT"}
    for report in reports:
        assert_valid_report(report)
        assert report["health"]["score"] >= 0  # health runs by default
    ages = section_series(reports, "ext.last_trade_age.ms", symbol="ETHUSDT")
    assert len(ages) > 40  # 20 s of 250 ms cycles, less the first ones without trades
    assert [t for t, _ in ages] == sorted(t for t, _ in ages)
    assert all(age >= 0 for _, age in ages)
    assert len(section_series(reports, "ext.last_trade_age.ms")) > len(ages)


def test_replay_calculator_runs_it_in_the_cycle_asked_for_and_without_health():
    reports = replay_calculator("last_trade_age", plugins=[("age", LastTradeAgePlugin())],
                                cycle="slow", health=False, duration_s=10)
    assert reports and all("health" not in r for r in reports)
    assert section_series(reports, "ext.last_trade_age")  # the fast report carries slow sections


def test_replay_calculator_names_what_is_missing():
    with pytest.raises(LookupError, match="no calculator 'nope' is registered"):
        replay_calculator("nope")
    with pytest.raises(LookupError, match="no venue 'nowhere' is registered"):
        replay_calculator("health", venue="nowhere", cycle="fast", health=False)


def test_section_series_skips_reports_without_the_path():
    reports = [{"generated_at": 1, "symbol": "A", "ext": {"x": {"v": 1}}},
               {"generated_at": 2, "symbol": "A"},
               {"generated_at": 3, "symbol": "B", "ext": {"x": {"v": 3}}}]
    assert section_series(reports, "ext.x.v") == [(1, 1), (3, 3)]
    assert section_series(reports, "ext.x.v", symbol="B") == [(3, 3)]


def test_find_recording_and_the_fixture_find_the_bundled_recording(binance_recording):
    assert binance_recording.name == BUNDLED_RECORDING
    assert find_recording(start=__file__) == binance_recording
    with gzip.open(binance_recording, "rt") as lines:
        recv_ns, frame = next(lines).split(" ", 1)
    assert int(recv_ns) > 0 and frame.startswith("{")
    assert find_recording("no-such-file.gz", start=__file__) is None


# ---------------------------------------------------------------- strategies


@given(book_levels(min_levels=0))
def test_drawn_books_are_sorted_best_first_and_never_crossed(levels):
    bids, asks = levels
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    assert all(q > 0 for _, q in bids + asks)
    if bids and asks:
        assert bids[0][0] < asks[0][0]


@given(books())
def test_drawn_book_objects_hold_their_levels(book):
    assert book.bid_count >= 1 and book.ask_count >= 1 and not book.is_crossed()


@given(book_streams())
def test_drawn_delta_streams_are_sequenced_and_match_a_dict_model(stream):
    snapshot, batches = stream
    model = {"bid": dict(snapshot.bids), "ask": dict(snapshot.asks)}
    previous = snapshot.last_update_id
    for delta in batches:
        assert delta.first_update_id == previous + 1 and delta.last_update_id >= previous + 1
        previous = delta.last_update_id
        for side, levels in (("bid", delta.bids), ("ask", delta.asks)):
            for price, qty in levels:
                if qty > 0:
                    model[side][price] = qty
                else:
                    model[side].pop(price, None)
    state = make_state(bids=snapshot.bids, asks=snapshot.asks, deltas=batches)
    assert dict(state.book.top("bid", 10_000)) == model["bid"]
    assert dict(state.book.top("ask", 10_000)) == model["ask"]
    assert not state.book.is_crossed()
    assert [d.event_ms for d in batches] == sorted(d.event_ms for d in batches)


@given(grids().flatmap(lambda grid: deltas(grid=grid, max_batches=5)))
def test_deltas_alone_are_drawn_on_their_grid(batches):
    for delta in batches:
        assert delta.bids or delta.asks


@given(snapshots(symbol="ETHUSDT", last_update_id=7))
def test_drawn_snapshots_carry_their_symbol_and_id(snapshot):
    assert snapshot.symbol == "ETHUSDT" and snapshot.last_update_id == 7 and snapshot.bids


@given(trades(min_size=1))
def test_drawn_trade_tapes_are_in_time_order_with_rising_ids(tape):
    assert [t.event_ms for t in tape] == sorted(t.event_ms for t in tape)
    assert [t.trade_id for t in tape] == list(range(1, len(tape) + 1))
    assert all(t.price > 0 and t.qty > 0 for t in tape)


@given(symbol_states())
def test_drawn_symbol_states_run_through_a_cycle_into_a_valid_report(state):
    assert state.tick_size is not None
    report, _ = run_cycle([LastTradeAge()], state)
    assert_valid_report(report)
    if len(state.trades):
        assert_section(report, "ext.last_trade_age", {"ms": 0})
    else:
        assert_omitted(report, "last_trade_age", "no trade yet")


def test_stop_processes_signals_all_then_kills_what_will_not_stop():
    import signal
    import subprocess
    import sys

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "ready"  # its handler is in place
    stop_processes(sleeper, None, stubborn, timeout_s=1)
    assert sleeper.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL  # outlived the timeout, then killed
    stop_processes(sleeper)  # already stopped: nothing to do
