"""Who owns which symbol: bounded-load rendezvous (HRW) hashing, a pure function.

Every node computes the same assignment from the same inputs — the universe,
the live members and who currently holds what — so nobody has to hand it out.

* **Weights.** Each (node, symbol) pair gets a 64-bit weight: the symbol's and
  the node's BLAKE2b-64 hashes (computed once per name and cached) are mixed by
  the SplitMix64 finalizer, vectorised over the whole symbols × nodes matrix
  with numpy. The current owner's weight is raised by ``sticky_pct``.
* **Bounded load.** No node takes more than ``ceil(load_factor · S / N)``
  symbols. Symbols go to their highest-weight node; a node over capacity keeps
  the symbols it weighs highest and passes the others to their next-highest
  candidate, until nobody is over (deferred acceptance: the result does not
  depend on the order anything is processed in). With the default 1.25 the
  cap rarely binds, so the plain HRW property survives: when a node joins or
  leaves, only the symbols whose winner changed move, about 1/N of them.

:func:`assign` recomputes 10,000 symbols over 10 nodes in a few milliseconds
(``benchmarks/bench_hrw.py``).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs
import numpy as np

__all__ = ["Assignment", "assign", "capacity", "name_hash", "pair_weights"]

_MASK = (1 << 64) - 1


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
    """The most symbols one node may be assigned: ``ceil(load_factor · S / N)``."""
    if nodes <= 0:
        return 0
    return max(1, math.ceil(load_factor * symbols / nodes - 1e-9))


@attrs.frozen
class Assignment:
    """The result of :func:`assign`: an owner for every symbol."""

    symbols: tuple[str, ...]
    nodes: tuple[str, ...]
    owner_index: np.ndarray = attrs.field(eq=False, repr=False)
    """For each symbol (in ``symbols`` order) the index of its node in ``nodes``."""
    cap: int

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
           owners: Mapping[str, str] | None = None, *, sticky_pct: float = 0.02,
           load_factor: float = 1.25) -> Assignment:
    """Assign every symbol to one of ``nodes`` (bounded-load HRW with stickiness).

    ``owners`` maps a symbol to the node holding it now; a live owner's weight
    for it is multiplied by ``1 + sticky_pct``. Deterministic: the same
    symbols, node set and owners give the same assignment whatever their order.
    """
    universe = tuple(symbols)
    members = tuple(sorted(set(nodes)))
    if not members:
        raise ValueError("no nodes to assign symbols to")
    hashes, position = _universe(universe)
    count, width = len(universe), len(members)
    cap = capacity(count, width, load_factor)
    if count == 0:
        return Assignment(universe, members, np.zeros(0, dtype=np.intp), cap)
    weights = pair_weights(hashes, members)
    if owners and sticky_pct:
        column = {node: i for i, node in enumerate(members)}
        rows = np.array([position.get(s, -1) for s in owners], dtype=np.intp)
        cols = np.array([column.get(n, -1) for n in owners.values()], dtype=np.intp)
        known = (rows >= 0) & (cols >= 0)
        weights[rows[known], cols[known]] *= 1.0 + sticky_pct
    return Assignment(universe, members, _bounded(weights, hashes, cap), cap)


def _bounded(weights: np.ndarray, hashes: np.ndarray, cap: int) -> np.ndarray:
    """Deferred acceptance: symbols propose in weight order, full nodes keep their best."""
    count, width = weights.shape
    choice = np.argmax(weights, axis=1)
    loads = np.bincount(choice, minlength=width)
    if loads.max() <= cap or width * cap < count:  # the common case: plain HRW fits
        return choice
    preference = np.argsort(-weights, axis=1, kind="stable")
    rank = np.zeros(count, dtype=np.intp)
    rows = np.arange(count)
    while True:
        full = np.flatnonzero(loads > cap)
        if full.size == 0:
            return choice
        for node in full:
            members = np.flatnonzero(choice == node)
            # keep the ``cap`` symbols this node weighs highest (ties: by symbol hash)
            order = np.lexsort((hashes[members], -weights[members, node]))
            rank[members[order[cap:]]] += 1
        choice = preference[rows, rank]
        loads = np.bincount(choice, minlength=width)
