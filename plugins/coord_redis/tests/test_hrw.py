"""Bounded-load HRW: balance, minimal movement, stickiness and determinism (hypothesis)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketcore_coord_redis.hrw import _universe as universe_hashes
from marketcore_coord_redis.hrw import assign, capacity, pair_weights

symbol_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=12)
node_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=16)
universes = st.lists(symbol_names, min_size=0, max_size=400, unique=True)
fleets = st.lists(node_names, min_size=1, max_size=12, unique=True)


def moved(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {s for s in before if before[s] != after[s]}


@given(universes, fleets)
def test_every_symbol_gets_one_live_node_and_no_node_passes_the_bound(symbols, nodes):
    result = assign(symbols, nodes)
    owners = result.as_dict()
    assert set(owners) == set(symbols)
    assert set(owners.values()) <= set(nodes)
    bound = math.ceil(1.25 * len(symbols) / len(nodes))
    assert result.cap == capacity(len(symbols), len(nodes)) >= min(bound, 1)
    assert all(load <= bound or len(symbols) == 0 for load in result.loads().values())


@given(universes, fleets, st.floats(1.0, 3.0))
def test_the_bound_holds_for_any_load_factor(symbols, nodes, load_factor):
    result = assign(symbols, nodes, load_factor=load_factor)
    cap = max(1, math.ceil(load_factor * len(symbols) / len(nodes) - 1e-9))
    assert max(result.loads().values(), default=0) <= cap


@given(universes, fleets, st.randoms(use_true_random=False), st.floats(0.0, 0.2))
def test_the_assignment_does_not_depend_on_input_order(symbols, nodes, rng, sticky):
    current = assign(symbols, nodes).as_dict()
    owners = {s: current[s] for s in symbols if rng.random() < 0.5}
    shuffled_symbols, shuffled_nodes = list(symbols), list(nodes)
    rng.shuffle(shuffled_symbols)
    rng.shuffle(shuffled_nodes)
    shuffled_owners = dict(rng.sample(sorted(owners.items()), len(owners)))
    first = assign(symbols, nodes, owners, sticky_pct=sticky).as_dict()
    second = assign(shuffled_symbols, shuffled_nodes, shuffled_owners, sticky_pct=sticky).as_dict()
    assert first == second


@given(st.lists(symbol_names, min_size=50, max_size=500, unique=True), fleets, node_names)
def test_a_join_moves_about_one_in_n_plus_one(symbols, nodes, newcomer):
    if newcomer in nodes:
        nodes = [n for n in nodes if n != newcomer]
    if not nodes:
        return
    before = assign(symbols, nodes).as_dict()
    after = assign(symbols, [*nodes, newcomer], before).as_dict()
    expected = len(symbols) / (len(nodes) + 1)
    assert len(moved(before, after)) <= expected + 5 * math.sqrt(expected) + 2


@given(st.lists(symbol_names, min_size=50, max_size=500, unique=True),
       st.lists(node_names, min_size=2, max_size=12, unique=True), st.data())
def test_a_leave_moves_the_leavers_symbols_and_few_others(symbols, nodes, data):
    leaver = data.draw(st.sampled_from(nodes))
    before = assign(symbols, nodes).as_dict()
    after = assign(symbols, [n for n in nodes if n != leaver], before).as_dict()
    theirs = {s for s, n in before.items() if n == leaver}
    assert theirs <= moved(before, after)
    assert len(moved(before, after) - theirs) <= 0.1 * len(symbols) + 3


@given(st.lists(symbol_names, min_size=1, max_size=300, unique=True), fleets, node_names)
def test_without_a_binding_cap_only_the_newcomers_winners_move(symbols, nodes, newcomer):
    """Plain HRW (the cap cannot bind): a join moves exactly the symbols the newcomer wins."""
    nodes = [n for n in nodes if n != newcomer] or ["other"]
    loose = 1000.0
    before = assign(symbols, nodes, load_factor=loose).as_dict()
    after = assign(symbols, [*nodes, newcomer], load_factor=loose, sticky_pct=0).as_dict()
    assert {after[s] for s in moved(before, after)} <= {newcomer}
    back = assign(symbols, nodes, load_factor=loose, sticky_pct=0).as_dict()
    assert back == before  # and its leave moves exactly those back


@given(st.lists(symbol_names, min_size=1, max_size=300, unique=True), fleets, node_names,
       st.floats(0.0, 0.5))
def test_stickiness_keeps_a_symbol_unless_the_challenger_wins_by_the_bonus(
        symbols, nodes, newcomer, sticky):
    nodes = [n for n in nodes if n != newcomer] or ["other"]
    loose = 1000.0
    before = assign(symbols, nodes, load_factor=loose).as_dict()
    members = sorted({*nodes, newcomer})
    after = assign(symbols, members, before, sticky_pct=sticky, load_factor=loose).as_dict()
    hashes, position = universe_hashes(tuple(symbols))
    weights = pair_weights(hashes, members)
    for symbol in moved(before, after):
        row = position[symbol]
        challenger = weights[row, members.index(newcomer)]
        owner = weights[row, members.index(before[symbol])]
        assert after[symbol] == newcomer
        assert challenger > owner * (1 + sticky)


def test_stickiness_reduces_movement_on_a_join():
    rng = random.Random(7)
    symbols = [f"S{rng.getrandbits(40):010x}" for _ in range(3000)]
    nodes = [f"node-{i}" for i in range(6)]
    before = assign(symbols, nodes).as_dict()
    plain = assign(symbols, [*nodes, "new"], before, sticky_pct=0).as_dict()
    sticky = assign(symbols, [*nodes, "new"], before, sticky_pct=0.05).as_dict()
    assert len(moved(before, sticky)) < len(moved(before, plain))


def test_small_universes_spread_over_the_fleet():
    """12 symbols over 3 nodes: nobody takes more than ceil(1.25 * 12 / 3) = 5."""
    result = assign([f"SYM{i}" for i in range(12)], ["a", "b", "c"])
    assert result.cap == 5
    assert max(result.loads().values()) <= 5
    assert sum(result.loads().values()) == 12


def test_a_full_node_passes_a_symbol_to_its_next_candidate():
    """With a tight cap the overflow goes to the symbol's second-highest-weight node."""
    symbols = [f"SYM{i}" for i in range(40)]
    nodes = ["a", "b", "c", "d"]
    loose = assign(symbols, nodes, load_factor=100.0)
    tight = assign(symbols, nodes, load_factor=1.0)
    assert max(tight.loads().values()) == 10
    hashes, position = universe_hashes(tuple(symbols))
    weights = pair_weights(hashes, tight.nodes)
    for symbol in moved(loose.as_dict(), tight.as_dict()):
        ranked = sorted(range(4), key=lambda i: -weights[position[symbol], i])
        assert tight.owner(symbol) != loose.owner(symbol)
        assert tight.nodes.index(tight.owner(symbol)) in ranked[1:]


def test_symbols_of_and_owner_agree():
    result = assign(["A", "B", "C", "D", "E"], ["x", "y"])
    for node in ("x", "y"):
        for symbol in result.symbols_of(node):
            assert result.owner(symbol) == node
    assert result.symbols_of("absent") == frozenset()


def test_no_nodes_is_an_error():
    with pytest.raises(ValueError, match="no nodes"):
        assign(["A"], [])
