"""Balanced, sticky HRW: the band, the join and leave movement promises, determinism.

The movement promises are about settled assignments — what the fleet holds
once it stopped moving, i.e. an assignment that ``assign`` returns unchanged
when fed back as the owners. Every test below starts from one and checks the
promise over random universes and random sequences of joins and leaves.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from marketcore_coord_redis.hrw import _universe as universe_hashes
from marketcore_coord_redis.hrw import assign, band, capacity, pair_weights

symbol_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=12)
node_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=16)
universes = st.lists(symbol_names, min_size=0, max_size=400, unique=True)
fleets = st.lists(node_names, min_size=1, max_size=12, unique=True)
steps = st.lists(st.tuples(st.booleans(), st.integers(0, 1 << 30)), min_size=1, max_size=8)


def moved(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {s for s in before if before[s] != after[s]}


def loads(owners: dict[str, str], nodes) -> dict[str, int]:
    counts = dict.fromkeys(nodes, 0)
    for node in owners.values():
        counts[node] += 1
    return counts


def check_settled(symbols, nodes, owners: dict[str, str]) -> None:
    """Every symbol has exactly one live owner, loads are in the band, under the cap,
    and the assignment is a fixed point (fed back, nothing moves)."""
    assert set(owners) == set(symbols)
    assert set(owners.values()) <= set(nodes)
    low, high = band(len(symbols), len(nodes))
    counts = loads(owners, nodes)
    assert all(low <= c <= high for c in counts.values()), (low, high, counts)
    assert max(counts.values()) <= math.ceil(1.25 * len(symbols) / len(nodes))
    assert assign(symbols, nodes, owners).as_dict() == owners


@given(universes, fleets)
def test_every_symbol_gets_one_live_node_and_no_node_passes_the_bound(symbols, nodes):
    result = assign(symbols, nodes)
    owners = result.as_dict()
    bound = math.ceil(1.25 * len(symbols) / len(nodes))
    assert result.cap == capacity(len(symbols), len(nodes)) >= min(bound, 1)
    check_settled(symbols, nodes, owners)


@given(universes, fleets, st.floats(1.0, 3.0))
def test_the_bound_holds_for_any_load_factor(symbols, nodes, load_factor):
    result = assign(symbols, nodes, load_factor=load_factor)
    cap = max(1, math.ceil(load_factor * len(symbols) / len(nodes) - 1e-9))
    assert max(result.loads().values(), default=0) <= cap


@given(universes, fleets, st.randoms(use_true_random=False))
def test_any_owners_give_a_settled_assignment(symbols, nodes, rng):
    """Whatever the owners say (stale, lopsided, dead nodes), the result is settled."""
    ghosts = ["gone-1", "gone-2"]
    owners = {s: rng.choice([*nodes, *ghosts]) for s in symbols if rng.random() < 0.7}
    owners.update({"NOT-IN-UNIVERSE": nodes[0]})
    after = assign(symbols, nodes, owners).as_dict()
    check_settled(symbols, nodes, after)
    for symbol, node in owners.items():  # a live owner within the band keeps its symbol
        if symbol in after and node in nodes and loads(owners, [*nodes, *ghosts])[node] \
                <= band(len(symbols), len(nodes))[0]:
            assert after[symbol] == node


@given(universes, fleets, st.randoms(use_true_random=False))
def test_the_assignment_does_not_depend_on_input_order(symbols, nodes, rng):
    current = assign(symbols, nodes).as_dict()
    owners = {s: current[s] for s in symbols if rng.random() < 0.5}
    shuffled_symbols, shuffled_nodes = list(symbols), list(nodes)
    rng.shuffle(shuffled_symbols)
    rng.shuffle(shuffled_nodes)
    shuffled_owners = dict(rng.sample(sorted(owners.items()), len(owners)))
    first = assign(symbols, nodes, owners).as_dict()
    second = assign(shuffled_symbols, shuffled_nodes, shuffled_owners).as_dict()
    assert first == second


@given(st.lists(symbol_names, min_size=0, max_size=300, unique=True),
       st.lists(node_names, min_size=1, max_size=10, unique=True), steps)
def test_joins_and_leaves_move_only_what_they_must(symbols, nodes, sequence):
    """Acceptance, over random sequences: a join moves symbols only to the joiner, at
    most ceil(1.2·S/(N+1)) of them; a leave moves exactly the leaver's symbols."""
    fleet = sorted(nodes)
    owners = assign(symbols, fleet).as_dict()
    check_settled(symbols, fleet, owners)
    for number, (join, pick) in enumerate(sequence):
        if join or len(fleet) == 1:
            joiner = f"joiner-{number}"
            fleet = sorted([*fleet, joiner])
            after = assign(symbols, fleet, owners).as_dict()
            assert {after[s] for s in moved(owners, after)} <= {joiner}
            assert len(moved(owners, after)) <= math.ceil(1.2 * len(symbols) / len(fleet) - 1e-9)
        else:
            leaver = fleet[pick % len(fleet)]
            fleet = [n for n in fleet if n != leaver]
            after = assign(symbols, fleet, owners).as_dict()
            assert moved(owners, after) == {s for s, n in owners.items() if n == leaver}
        check_settled(symbols, fleet, after)
        owners = after


@given(st.lists(symbol_names, min_size=50, max_size=500, unique=True), fleets, node_names)
def test_a_join_moves_about_one_in_n_plus_one(symbols, nodes, newcomer):
    nodes = [n for n in nodes if n != newcomer] or ["other"]
    before = assign(symbols, nodes).as_dict()
    after = assign(symbols, [*nodes, newcomer], before).as_dict()
    low, high = band(len(symbols), len(nodes) + 1)
    assert low <= len(moved(before, after)) <= high  # the joiner's share, and nothing else


@given(st.lists(symbol_names, min_size=1, max_size=300, unique=True), fleets, node_names)
def test_a_joiner_takes_the_symbols_it_outweighs_their_owner_on_most(symbols, nodes, newcomer):
    """When nobody sheds, the joiner takes the symbols it wins by the widest margin over
    their owner, skipping only owners already down at the floor."""
    nodes = [n for n in nodes if n != newcomer] or ["other"]
    before = assign(symbols, nodes).as_dict()
    members = sorted({*nodes, newcomer})
    low, high = band(len(symbols), len(members))
    assume(max(loads(before, nodes).values()) <= high)  # nothing shed: every move a take
    after = assign(symbols, members, before).as_dict()
    taken = moved(before, after)
    assert len(taken) == low
    if not taken:
        return
    hashes, position = universe_hashes(tuple(symbols))
    weights = pair_weights(hashes, members)
    column = {n: i for i, n in enumerate(members)}

    def margin(symbol: str) -> float:
        row = position[symbol]
        return weights[row, column[newcomer]] / weights[row, column[before[symbol]]]

    weakest_taken = min(margin(s) for s in taken)
    final = loads(after, members)
    for symbol, node in before.items():
        if symbol not in taken and final[node] > low:  # its owner could have given it
            assert margin(symbol) < weakest_taken, symbol


def test_a_join_moves_symbols_only_to_the_joiner():
    """Acceptance: when a 4th node joins 3 holding 15 symbols, every move goes to it."""
    symbols = tuple(f"F{i:02d}USDT" for i in range(15))
    first = ("node-a", "node-b", "node-c")
    before = assign(symbols, first).as_dict()
    before = assign(symbols, first, before).as_dict()  # settled: owners are sticky
    after = assign(symbols, (*first, "node-d"), before).as_dict()
    changes = {s: (before[s], after[s]) for s in symbols if after[s] != before[s]}
    assert changes and all(new == "node-d" for _, new in changes.values()), changes
    assert len(changes) <= math.ceil(1.2 * 15 / 4)


def test_a_full_node_passes_its_least_suited_symbols_on():
    """An owner above the ceiling sheds the symbols it weighs lowest relative to the
    node that takes symbols (here the one below the floor); nobody else moves."""
    rng = random.Random(3)
    symbols = [f"SYM{rng.getrandbits(30):08x}" for _ in range(40)]
    nodes = ["a", "b", "c"]
    owners = {s: nodes[i % 3] if i < 39 else "a" for i, s in enumerate(symbols)}
    result = assign(symbols, nodes, owners)  # a holds 14, b 13, c 13: the band is [13, 14]
    assert result.loads() == {"a": 14, "b": 13, "c": 13}
    assert result.as_dict() == owners
    owners[symbols[1]] = "a"  # a 15, b 12: a sheds exactly one, and b takes it
    after = assign(symbols, nodes, owners).as_dict()
    changes = moved(owners, after)
    assert len(changes) == 1 and after[next(iter(changes))] == "b"
    hashes, position = universe_hashes(tuple(symbols))
    weights = pair_weights(hashes, nodes)

    def suitability(symbol: str) -> float:
        row = weights[position[symbol]]
        return row[0] / row[1]

    shed = next(iter(changes))
    assert suitability(shed) == min(suitability(s) for s, n in owners.items() if n == "a")


def test_small_universes_spread_over_the_fleet():
    """12 symbols over 3 nodes: exactly 4 each (bound: ceil(1.25 * 12 / 3) = 5)."""
    result = assign([f"SYM{i}" for i in range(12)], ["a", "b", "c"])
    assert result.cap == 5
    assert result.loads() == {"a": 4, "b": 4, "c": 4}


def test_without_owners_each_symbol_goes_to_its_best_node_with_room():
    """From scratch (S divisible by N, so floor = ceiling) the assignment is a stable
    matching: a symbol is away from a node it weighs higher only when that node is full
    of symbols it weighs higher still."""
    symbols = [f"SYM{i}" for i in range(200)]
    nodes = ["a", "b", "c", "d", "e"]
    result = assign(symbols, nodes)
    hashes, position = universe_hashes(tuple(symbols))
    weights = pair_weights(hashes, result.nodes)
    owners = result.as_dict()
    counts = result.loads()
    assert sorted(counts.values()) == [40] * 5
    for symbol in symbols:
        row = position[symbol]
        mine = weights[row, result.nodes.index(owners[symbol])]
        for i, node in enumerate(result.nodes):
            if weights[row, i] > mine:
                held = [weights[position[s], i] for s, n in owners.items() if n == node]
                assert min(held) > weights[row, i], (symbol, node)


def test_symbols_of_and_owner_agree():
    result = assign(["A", "B", "C", "D", "E"], ["x", "y"])
    for node in ("x", "y"):
        for symbol in result.symbols_of(node):
            assert result.owner(symbol) == node
    assert result.symbols_of("absent") == frozenset()


def test_no_nodes_is_an_error():
    with pytest.raises(ValueError, match="no nodes"):
        assign(["A"], [])
    with pytest.raises(ValueError, match="load_factor"):
        assign(["A"], ["x"], load_factor=0.9)


def reference_place(weights, hashes, pool, room) -> list[int]:
    """Deferred acceptance written plainly: symbols propose best column first (ties: lower
    column), a column keeps its highest weights (ties: lower symbol hash)."""
    columns = [c for c in range(len(room)) if room[c] > 0]
    prefs = {r: sorted(columns, key=lambda c, r=r: (-weights[pool[r], c], c))
             for r in range(len(pool))}
    nxt = dict.fromkeys(prefs, 0)
    held: dict[int, list[int]] = {c: [] for c in columns}
    free = list(prefs)
    while free:
        r = free.pop()
        if nxt[r] >= len(columns):
            continue
        c = prefs[r][nxt[r]]
        nxt[r] += 1
        held[c].append(r)
        if len(held[c]) > room[c]:
            held[c].sort(key=lambda x, c=c: (-weights[pool[x], c], int(hashes[pool[x]])))
            free.append(held[c].pop())
    placed = [-1] * len(pool)
    for c, rows in held.items():
        for r in rows:
            placed[r] = c
    return placed


@given(st.integers(1, 40), st.integers(1, 6), st.data())
def test_placement_is_the_plain_deferred_acceptance_even_with_tied_weights(rows, cols, data):
    import numpy as np
    from marketcore_coord_redis.hrw import _place

    levels = data.draw(st.lists(st.sampled_from([0.25, 0.5, 0.75, 1.0]), min_size=rows * cols,
                                max_size=rows * cols))
    weights = np.array(levels).reshape(rows, cols)
    hashes = np.array(data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=rows,
                                         max_size=rows, unique=True)), dtype=np.uint64)
    room = np.array(data.draw(st.lists(st.integers(0, rows), min_size=cols, max_size=cols)))
    assume(room.any())  # assign only places when some node has room
    pool = np.arange(rows)
    assert _place(weights, hashes, pool, room).tolist() == reference_place(weights, hashes,
                                                                            pool, room)
