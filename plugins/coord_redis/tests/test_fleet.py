"""A fleet of real ``marketcore run`` processes on one real redis-server.

Each node is its own process (synthetic venue, coordinator ``redis``, sink
``redis`` with the report and audit streams on, its own ``MARKETCORE_NODE__ID``),
and every process is stopped by its pid. What the fleet promises is read back
from Redis itself: the lease keys (who owns what), the audit streams (every
newly accepted token, in order) and the report streams (every accepted report,
stamped by the server's clock in its entry id). The harness is the package's
public one, :mod:`marketcore_coord_redis.testing`.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from marketcore_coord_redis import assign
from marketcore_coord_redis.testing import FAST_FLEET, SYMBOLS, Fleet, wait_for

LOAD_FACTOR = 1.25  # the coordinator's default


def bound(symbols: int, nodes: int, factor: float = LOAD_FACTOR) -> int:
    return math.ceil(factor * symbols / nodes)


def tokens_never_go_back(fleet: Fleet) -> None:
    assert fleet.safety().audit_backwards == []


def refusals(log: str) -> int:
    return log.count("refused: another node holds its lease")


# -------------------------------------------------------------------------------------
# Tests
# -------------------------------------------------------------------------------------

@pytest.fixture
def fleet(redis_server, tmp_path) -> Any:
    try:
        with Fleet(redis_server, tmp_path, debug=True) as running_fleet:
            yield running_fleet
    except FileNotFoundError as error:
        pytest.skip(str(error))


def test_three_nodes_share_fifteen_symbols_and_a_fourth_takes_only_what_moves(fleet):
    first = ("node-a", "node-b", "node-c")
    for node_id in first:
        fleet.start(node_id)
    before = fleet.settled(first)
    assert set(before) == set(fleet.symbols) and None not in before.values()
    loads = {n: sum(1 for h in before.values() if h == n) for n in first}
    assert max(loads.values()) <= bound(15, 3) == 7, loads
    marks = {s: (fleet.audit(s) or [None])[-1] for s in fleet.symbols}

    fleet.start("node-d")
    seen: dict[str, list[str]] = {s: [h] for s, h in before.items()}

    def record_then_check() -> dict[str, str] | None:
        for symbol, holder in fleet.holders().items():
            if holder is not None and holder != seen[symbol][-1]:
                seen[symbol].append(holder)
        return None

    deadline = time.monotonic() + 60
    after: dict[str, str] | None = None
    since = (None, 0.0)
    while after is None:  # sample holders all along, to catch a symbol moving twice
        record_then_check()
        held = fleet.holders()
        if "node-d" in held.values() and None not in held.values() \
                and fleet.writers() == held:
            if held != since[0]:
                since = (held, time.monotonic())
            elif time.monotonic() - since[1] >= 2.5:
                after = held
        else:
            since = (None, 0.0)
        assert time.monotonic() < deadline, f"no settled 4-node fleet: {held}"
        time.sleep(0.05)

    moved = {s for s in fleet.symbols if after[s] != before[s]}
    assert moved, "the fourth node took nothing"
    assert len(moved) <= math.ceil(1.2 * 15 / 4) == 5, moved
    # The fleet follows the assignment function exactly (every node computes the same).
    assert after == assign(fleet.symbols, (*first, "node-d"), before).as_dict()
    assert {after[s] for s in moved} == {"node-d"}, moved  # every move goes to the joiner
    for symbol, holders in seen.items():  # every symbol moved at most once
        assert holders == ([before[symbol], after[symbol]] if symbol in moved
                           else [before[symbol]]), (symbol, holders)
    loads = {n: sum(1 for h in after.values() if h == n) for n in (*first, "node-d")}
    assert max(loads.values()) <= bound(15, 4), loads
    for symbol in fleet.symbols:  # new tokens since the join: only on moved ones, by their owner
        new = [a for a in fleet.audit(symbol) if marks[symbol] is None
               or a.entry_id > marks[symbol].entry_id]
        assert [a.node for a in new] == ([after[symbol]] if symbol in moved else []), \
            (symbol, new)
    tokens_never_go_back(fleet)
    for node_id in ("node-a", "node-b", "node-c", "node-d"):
        assert fleet.terminate(node_id) == 0, fleet.log_text(node_id)[-2000:]


def test_a_join_moves_symbols_only_to_the_joiner():
    """Acceptance, on the fleet's universe: when a 4th node joins, every move goes to it."""
    first = ("node-a", "node-b", "node-c")
    before = assign(SYMBOLS, first).as_dict()
    before = assign(SYMBOLS, first, before).as_dict()  # settled: owners are sticky
    after = assign(SYMBOLS, (*first, "node-d"), before).as_dict()
    moved = {s: (before[s], after[s]) for s in SYMBOLS if after[s] != before[s]}
    assert moved and all(new == "node-d" for _, new in moved.values()), moved
    assert len(moved) <= math.ceil(1.2 * len(SYMBOLS) / 4)


def test_a_paused_owner_is_fenced_when_it_wakes(fleet):
    nodes = ("node-a", "node-b", "node-c")
    for node_id in nodes:
        fleet.start(node_id)
    before = fleet.settled(nodes)
    victim = "node-a"
    theirs = sorted(s for s, h in before.items() if h == victim)
    assert theirs
    old_tokens = {s: fleet.audit(s)[-1].token for s in theirs}
    assert all(fleet.audit(s)[-1].node == victim for s in theirs)
    refused_before = refusals(fleet.log_text(victim))

    fleet.signal(victim, signal.SIGSTOP)
    paused_at = time.monotonic()
    wait_for(lambda: fleet.taken_over(theirs, victim), 60, "the paused node's symbols taken over")
    time.sleep(max(0.0, 2 * fleet.ttl_s + 0.5 - (time.monotonic() - paused_at)))
    marks = fleet.last_report_ids()
    fleet.signal(victim, signal.SIGCONT)

    # Awake, the node still believes it owns its symbols and writes them with its old
    # tokens: the fencing script refuses each one, and the node drops them.
    wait_for(lambda: refusals(fleet.log_text(victim)) > refused_before, 20,
             "the woken node's writes refused by the fencing script")
    time.sleep(3 * fleet.ttl_s)  # let it run on: rejoin, maybe win symbols back
    refused = refusals(fleet.log_text(victim)) - refused_before
    for symbol in theirs:
        late = [a for a in fleet.reports(symbol, after=marks[symbol]) if a.node == victim
                and a.token <= old_tokens[symbol]]
        assert late == [], (symbol, late)
    tokens_never_go_back(fleet)
    assert 1 <= refused <= len(theirs), refused  # at most one per symbol it believed in
    for node_id in nodes:
        assert fleet.terminate(node_id) == 0, fleet.log_text(node_id)[-2000:]


def test_the_fleet_recovers_by_itself_after_redis_restarts_empty(fleet):
    nodes = ("node-a", "node-b", "node-c")
    for node_id in nodes:
        fleet.start(node_id)
    fleet.settled(nodes)
    before = {s: fleet.audit(s) for s in fleet.symbols}
    newest_epoch = max(a.epoch for entries in before.values() for a in entries)
    old_run = fleet.server.run_id()

    fleet.server.restart()  # SIGKILL, no persistence: every key is gone
    assert fleet.server.run_id() != old_run
    assert fleet.holders() == dict.fromkeys(fleet.symbols)
    after = fleet.settled(nodes, timeout=60)  # no human: every symbol leased and published again
    assert None not in after.values()
    for symbol in fleet.symbols:
        audit = fleet.audit(symbol)
        assert audit, symbol
        assert all(a.epoch > newest_epoch for a in audit), (symbol, newest_epoch, audit)
        reports = fleet.reports(symbol)
        assert reports and all(a.epoch > newest_epoch for a in reports), symbol
    tokens_never_go_back(fleet)
    for node_id in nodes:
        assert fleet.terminate(node_id) == 0, fleet.log_text(node_id)[-2000:]


def test_killed_owners_are_taken_over_trial_after_trial(redis_server, tmp_path):
    """The benchmark's trial loop, reduced: every symbol of a killed owner gets a new one."""
    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench_dir))
    try:
        import bench_failover
    finally:
        sys.path.remove(str(bench_dir))
    try:
        fleet = Fleet(redis_server, tmp_path, coordinator=FAST_FLEET)
    except FileNotFoundError as error:
        pytest.skip(str(error))
    with fleet:
        trials = bench_failover.run_trials(fleet, kills=3, terms=1)
    assert [t.kind for t in trials] == ["kill", "kill", "kill", "term"]
    for trial in trials:
        assert trial.gaps_ms, trial
        assert set(trial.gaps_ms) == set(trial.symbols)
        assert all(owner != trial.victim for owner in trial.new_owners.values()), trial
