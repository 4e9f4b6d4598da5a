"""Who owns which symbol: balanced, sticky rendezvous (HRW) hashing, a pure function.

Every node computes the same assignment from the same inputs — the universe,
the live members and who holds what now — so nobody has to hand it out.

* **Weights.** Each (node, symbol) pair gets a 64-bit weight: the symbol's and
  the node's BLAKE2b-64 hashes (computed once per name and cached) are mixed by
  the SplitMix64 finalizer, vectorised over the whole symbols × nodes matrix
  with numpy. The weights order each symbol's candidate nodes.
* **Band.** With S symbols over N nodes every node ends with between
  ``floor(S/N)`` and ``ceil(S/N)`` symbols — well inside the bound
  ``ceil(load_factor · S / N)``. A looser band cannot keep the movement
  promises below for every fleet: a join would have to spill symbols from
  nodes above the new bound onto other old nodes.
* **Stickiness.** A symbol stays with its live owner unless the owner is above
  the band (it sheds the symbols it suits least relative to the nodes that
  take symbols) or a node below the band needs it.
* **Filling.** Symbols without a live owner, and shed ones, go first to the
  nodes below the band (up to the floor, then up to the ceiling), then to
  anyone with room — each to its highest-weight candidate with room (deferred
  acceptance, so processing order does not matter). A node still below the
  floor then takes symbols from nodes above the floor, those it outweighs
  their owner on by the widest margin first, until it reaches the floor.
  Nothing moves for weight alone: stickiness is complete, so the coordinator's
  ``sticky_pct`` bonus has nothing left to decide.

What this gives, from any settled assignment (one that ``assign`` returns
unchanged when fed back as ``owners``):

* **Join**: the old nodes are all at or above the new floor, so only the
  joiner fills: old nodes above the new ceiling shed to it, and it takes the
  rest of its floor from them. Every symbol that moves goes to the joiner, at
  most ``ceil(S/(N+1))`` of them (≤ ``ceil(1.2·S/(N+1))``): the shed symbols
  alone never exceed that, because settled loads are within one of ``S/N``.
* **Leave**: the others keep every symbol they hold (the ceiling only rises);
  the leaver's symbols go first to the nodes below the new floor — the
  leaver always held enough of them to lift those nodes — and the rest to
  their best candidate with room. Nothing else moves.

Both are property-tested with hypothesis over random universes, fleets and
sequences of joins and leaves (``tests/test_hrw.py``).

:func:`assign` recomputes 10,000 symbols over 10 nodes in a few milliseconds
(``benchmarks/bench_hrw.py``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import attrs
import numpy as np

__all__ = ["Assignment", "assign", "band", "capacity", "name_hash", "pair_weights"]


def name_hash(name: str, kind: bytes) -> int:
    """A stable 64-bit hash of a node id or symbol (``kind`` keeps the two apart)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8, person=kind).digest(),
                          "little")


@functools.lru_cache(maxsize=4096)
def _node_hash(node: str) -> int:
    return name_hash(node, b"mc-node")


@functools.lru_cache(maxsize=16)
def _universe(symbols: tuple[str, ...]) -> tuple[np.ndarray, dict[str, int]]:
    """The symbols' hashes (uint64) and their positions, computed once per universe."""
    hashes = np.fromiter((name_hash(s, b"mc-symbol") for s in symbols), dtype=np.uint64,
                         count=len(symbols))
    return hashes, {s: i for i, s in enumerate(symbols)}


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: every input bit flips about half the output bits."""
    z = values.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def pair_weights(symbol_hashes: np.ndarray, nodes: Sequence[str]) -> np.ndarray:
    """The (symbols × nodes) weight matrix in (0, 1]."""
    node_hashes = np.array([_node_hash(n) for n in nodes], dtype=np.uint64)
    mixed = _mix(symbol_hashes[:, None] ^ _mix(node_hashes)[None, :])
    return ((mixed >> np.uint64(11)).astype(np.float64) + 1.0) * (1.0 / (1 << 53))


def capacity(symbols: int, nodes: int, load_factor: float = 1.25) -> int:
    """The bound no node ever passes: ``ceil(load_factor · S / N)``."""
    if nodes <= 0:
        return 0
    return max(1, math.ceil(load_factor * symbols / nodes - 1e-9))


def band(symbols: int, nodes: int) -> tuple[int, int]:
    """``(floor(S/N), ceil(S/N))``: every node of a settled assignment holds this many."""
    if nodes <= 0:
        return (0, 0)
    return (symbols // nodes, -(-symbols // nodes))


@attrs.frozen
class Assignment:
    """The result of :func:`assign`: an owner for every symbol."""

    symbols: tuple[str, ...]
    nodes: tuple[str, ...]
    owner_index: np.ndarray = attrs.field(eq=False, repr=False)
    """For each symbol (in ``symbols`` order) the index of its node in ``nodes``."""
    cap: int
    """``ceil(load_factor · S / N)``; every load is within :func:`band`, below it."""

    def owner(self, symbol: str) -> str:
        return self.nodes[int(self.owner_index[_universe(self.symbols)[1][symbol]])]

    def symbols_of(self, node: str) -> frozenset[str]:
        if node not in self.nodes:
            return frozenset()
        index = self.nodes.index(node)
        picked = np.flatnonzero(self.owner_index == index)
        return frozenset(self.symbols[i] for i in picked)

    def loads(self) -> dict[str, int]:
        counts = np.bincount(self.owner_index, minlength=len(self.nodes))
        return {node: int(count) for node, count in zip(self.nodes, counts, strict=True)}

    def as_dict(self) -> dict[str, str]:
        return {symbol: self.nodes[int(i)]
                for symbol, i in zip(self.symbols, self.owner_index, strict=True)}


def assign(symbols: Iterable[str], nodes: Collection[str],
           owners: Mapping[str, str] | None = None, *,
           load_factor: float = 1.25) -> Assignment:
    """Assign every symbol to one of ``nodes``: balanced, sticky rendezvous hashing.

    ``owners`` maps a symbol to the node holding it now (entries for unknown
    symbols or dead nodes are ignored). Deterministic: the same symbols, node
    set and owners give the same assignment whatever their order, and a
    settled assignment fed back as ``owners`` comes back unchanged.
    """
    if load_factor < 1:
        raise ValueError(f"load_factor must be at least 1, not {load_factor}")
    universe = tuple(symbols)
    members = tuple(sorted(set(nodes)))
    if not members:
        raise ValueError("no nodes to assign symbols to")
    hashes, position = _universe(universe)
    count, width = len(universe), len(members)
    cap = capacity(count, width, load_factor)
    if count == 0:
        return Assignment(universe, members, np.zeros(0, dtype=np.intp), cap)
    low, high = band(count, width)
    owner = np.full(count, -1, dtype=np.intp)
    if owners:
        column = {node: i for i, node in enumerate(members)}
        # map() keeps the per-symbol look-ups in C: this is most of a settled call
        rows = np.fromiter(map(position.get, owners, itertools.repeat(-1)), dtype=np.intp,
                           count=len(owners))
        cols = np.fromiter(map(column.get, owners.values(), itertools.repeat(-1)),
                           dtype=np.intp, count=len(owners))
        known = (rows >= 0) & (cols >= 0)
        owner[rows[known]] = cols[known]
    loads = np.bincount(owner[owner >= 0], minlength=width)
    if (owner >= 0).all() and loads.min() >= low and loads.max() <= high:
        return Assignment(universe, members, owner, cap)  # settled: nothing moves
    _Balancer(pair_weights(hashes, members), hashes, owner, low, high).run()
    return Assignment(universe, members, owner, cap)


class _Balancer:
    """One run of the band-keeping steps over ``owner`` (updated in place; -1: nobody)."""

    def __init__(self, weights: np.ndarray, hashes: np.ndarray, owner: np.ndarray,
                 low: int, high: int) -> None:
        self.weights = weights
        self.hashes = hashes
        self.owner = owner
        self.low = low
        self.high = high
        self.width = weights.shape[1]

    def loads(self) -> np.ndarray:
        held = self.owner[self.owner >= 0]
        return np.bincount(held, minlength=self.width)

    def run(self) -> None:
        loads = self.loads()
        if (self.owner >= 0).all() and loads.min() >= self.low and loads.max() <= self.high:
            return  # settled: nothing moves
        hungry = loads < self.low  # fixed from here on: only these nodes fill
        self._shed(loads, hungry)
        loads = self.loads()
        for limit, who in ((self.low, hungry), (self.high, hungry),
                           (self.high, np.ones(self.width, dtype=bool))):
            pool = np.flatnonzero(self.owner < 0)
            if pool.size == 0:
                break
            room = np.where(who, np.maximum(limit - loads, 0), 0)
            if room.any():
                placed = _place(self.weights, self.hashes, pool, room)
                self.owner[pool] = placed
                loads = self.loads()
        for index in np.flatnonzero(hungry):
            self._take(int(index))

    def _shed(self, loads: np.ndarray, hungry: np.ndarray) -> None:
        """Nodes above the ceiling keep the symbols they suit best.

        Suitability is the node's weight relative to the best node that takes
        symbols — the hungry ones when there are any (a joiner), else any other
        — so what is shed is what those nodes win most clearly.
        """
        takers = hungry.copy()
        if not takers.any():
            takers[:] = True
        for node in np.flatnonzero(loads > self.high):
            held = np.flatnonzero(self.owner == node)
            mine = self.weights[held, node]
            others = takers.copy()
            others[node] = False
            if others.any():
                mine = mine / self.weights[np.ix_(held, np.flatnonzero(others))].max(axis=1)
            order = np.lexsort((self.hashes[held], -mine))
            self.owner[held[order[self.high:]]] = -1

    def _take(self, node: int) -> None:
        """``node`` takes symbols from nodes above the floor until it reaches the floor.

        Best margin first: the symbols it outweighs their owner on the most.
        """
        loads = self.loads()
        if loads[node] >= self.low:
            return
        donors = np.flatnonzero(loads > self.low)
        rows = np.flatnonzero(np.isin(self.owner, donors))
        margin = self.weights[rows, node] / self.weights[rows, self.owner[rows]]
        held = int(loads[node])
        for i in np.lexsort((self.hashes[rows], -margin)):
            if held >= self.low:
                return
            row = rows[i]
            donor = self.owner[row]
            if loads[donor] > self.low:
                self.owner[row] = node
                loads[donor] -= 1
                held += 1


def _place(weights: np.ndarray, hashes: np.ndarray, pool: np.ndarray,
           room: np.ndarray) -> np.ndarray:
    """Deferred acceptance of ``pool`` rows into columns with ``room`` (-1: no room left).

    Each symbol proposes to its highest-weight column with room; a column over
    its room keeps the symbols it weighs highest (ties: by symbol hash) and the
    others propose to their next candidate. The result does not depend on
    processing order (it is the symbol-optimal stable matching).

    After the first round only the rejected symbols propose again, and a column
    compares them with the symbols it holds: from scratch, 10,000 symbols over 10
    nodes leave a few hundred rejected after the first round, so the later rounds
    cost little, and only rejected symbols have their candidates sorted.
    """
    columns = np.flatnonzero(room > 0)
    sub = weights[np.ix_(pool, columns)]
    limit = room[columns]
    count, width = sub.shape
    choice = np.argmax(sub, axis=1)
    if (np.bincount(choice, minlength=width) <= limit).all():
        return columns[choice]  # the common case: every symbol fits its best candidate
    held = [np.zeros(0, dtype=np.intp)] * width  # rows each column holds
    held_weight = [np.zeros(0)] * width  # and their weights, in the same order
    floor = np.full(width, -np.inf)  # a full column's lowest weight held (-inf: not full)
    rank = np.zeros(count, dtype=np.intp)  # how many candidates a row has been refused by
    preference: dict[int, np.ndarray] = {}  # a refused row's columns, best first
    proposing = np.arange(count)
    while proposing.size:
        refused = []
        by_column = choice[proposing]
        for column in np.unique(by_column):
            new = proposing[by_column == column]
            weight = sub[new, column]
            # a full column refuses outright whoever weighs less than all it holds: most
            # of a later round, as a refused symbol's next choice weighs it less
            below = weight < floor[column]
            if below.any():
                refused.append(new[below])
                new, weight = new[~below], weight[~below]
                if not new.size:
                    continue
            rows = np.concatenate((held[column], new))
            mine = np.concatenate((held_weight[column], weight))
            cut = rows.size - int(limit[column])
            if cut < 0:
                held[column], held_weight[column] = rows, mine
                continue
            if cut > 0:
                kept, out = _keep_best(mine, cut, lambda rows=rows: hashes[pool[rows]])
                refused.append(rows[out])
                rows, mine = rows[kept], mine[kept]
            held[column], held_weight[column] = rows, mine
            floor[column] = mine.min()  # full now: it holds exactly its limit
        if not refused:
            break
        out = np.concatenate(refused)
        rank[out] += 1
        proposing = out[rank[out] < width]
        for row in proposing.tolist():
            ranked = preference.get(row)
            if ranked is None:
                # ties need 53 equal random bits: never in practice
                ranked = preference[row] = np.argsort(-sub[row], kind="stable")
            choice[row] = ranked[rank[row]]
    placed = np.full(count, -1, dtype=np.intp)
    for column, rows in enumerate(held):
        placed[rows] = columns[column]
    return placed


def _keep_best(weights: np.ndarray, cut: int,
               hashes: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of all but the ``cut`` lowest ``weights``, and of those ``cut``.

    A partition finds them in linear time; only when the boundary falls inside a run of
    equal weights (53 random bits: practically never) does a full sort by weight, then
    symbol hash (lowest kept), decide — so the hashes are only gathered then.
    """
    order = np.argpartition(weights, cut)  # order[cut] is the lowest weight kept
    if weights[order[:cut]].max() < weights[order[cut]]:
        return order[cut:], order[:cut]
    order = np.lexsort((np.invert(hashes()), weights))  # ascending weight, then descending hash
    return order[cut:], order[:cut]
