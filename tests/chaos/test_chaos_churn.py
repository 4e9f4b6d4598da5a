"""Nodes join and leave (SIGTERM) over and over while the fleet serves its symbols.

During the churn safety is strict (every leave exits cleanly, no accepted token goes
backwards or serves two nodes); at the end every symbol is owned and reported by a
live node. Separately, each join into a settled fleet of N moves at most
ceil(1.2 · S / (N + 1)) symbols (the ideal is S / (N + 1)).
"""

from __future__ import annotations

import itertools
import math
import random
import time

from chaosrun import counts
from marketcore_coord_redis.testing import assert_safe

CHURN_SYMBOLS = tuple(f"J{i:02d}USDT" for i in range(24))


def test_join_leave_churn(redis, fleet_on, chaos_results):
    duration = counts(10.0, 60.0)
    fleet = fleet_on(redis, symbols=CHURN_SYMBOLS)
    names = (f"node-{i:03d}" for i in itertools.count())
    chooser = random.Random(8)
    live = [next(names) for _ in range(3)]
    for node_id in live:
        fleet.start(node_id)
    fleet.settled(live, timeout=90)
    joins = leaves = 0
    started = time.monotonic()
    while time.monotonic() - started < duration:
        # Only a node that has joined (its membership record exists) is asked to leave: a
        # process signalled while still importing dies of the signal before it has a
        # handler — and before it owned anything.
        members = [n for n in live if fleet.member(n)]
        if len(members) <= 2 or (len(live) < 5 and chooser.random() < 0.5):
            node_id = next(names)
            fleet.start(node_id)
            live.append(node_id)
            joins += 1
        else:
            node_id = members[chooser.randrange(len(members))]
            live.remove(node_id)
            code = fleet.terminate(node_id)
            assert code == 0, (node_id, code, fleet.log_text(node_id)[-2000:])
            leaves += 1
        time.sleep(chooser.uniform(1.0, 3.0))
    churn_end = time.monotonic()
    held = fleet.settled(live, timeout=90)
    settle_s = round(time.monotonic() - churn_end, 1)
    assert set(held) == set(CHURN_SYMBOLS) and set(held.values()) == set(live)
    checked = assert_safe(fleet)
    chaos_results.record("churn", criterion="every symbol owned at the end; leaves exit 0",
                         met=True, duration_s=duration, joins=joins, leaves=leaves,
                         final_nodes=len(live), settle_after_churn_s=settle_s,
                         every_symbol_owned=True, reports_checked=checked)


def test_a_join_moves_at_most_its_share(redis, fleet_on, chaos_results):
    """Join a node into a settled fleet of 3, count the moves; then a leave restores 3."""
    trials = counts(1, 6)
    fleet = fleet_on(redis, symbols=CHURN_SYMBOLS)
    names = (f"node-{i:03d}" for i in itertools.count())
    chooser = random.Random(3)
    live = [next(names) for _ in range(3)]
    for node_id in live:
        fleet.start(node_id)
    before = fleet.settled(live, timeout=90)
    moves, limits = [], []
    for _ in range(trials):
        size = len(live)
        joiner = next(names)
        fleet.start(joiner)
        live.append(joiner)
        after = fleet.settled(live, timeout=90)
        moves.append(sum(1 for s in CHURN_SYMBOLS if after[s] != before[s]))
        limits.append(math.ceil(1.2 * len(CHURN_SYMBOLS) / (size + 1)))
        leaver = live.pop(chooser.randrange(len(live) - 1))
        assert fleet.terminate(leaver) == 0, fleet.log_text(leaver)[-2000:]
        before = fleet.settled(live, timeout=90)
    assert_safe(fleet)
    chaos_results.record("join_moves", criterion="moves ≤ ceil(1.2·S/(N+1)) per join",
                         met=all(m <= limit for m, limit in zip(moves, limits, strict=True)),
                         symbols=len(CHURN_SYMBOLS), joins=trials,
                         moves_per_join=moves, limit_per_join=limits,
                         ideal_per_join=round(len(CHURN_SYMBOLS) / 4, 1))
    assert all(m <= limit for m, limit in zip(moves, limits, strict=True)), (moves, limits)
