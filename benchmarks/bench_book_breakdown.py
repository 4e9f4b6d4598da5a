"""Where a level change's time goes in the book: the apply loop taken apart, one run.

    python benchmarks/bench_book_breakdown.py [--changes 500000] [--reps 5]

``bench_book.py`` compares the book with its alternatives; this explains its apply rate.
On ``bench_book.py``'s synthetic stream it times, interleaved and best per block of 50
frames (as there), loops that each do a little more than the previous one:

* msgspec decoding of the frame bytes only;
* ``for p, q in levels`` with one dict set or pop per level — what any pure-Python book
  pays at least;
* plus the book's bucketing (bucket id, bucket lookup, sorted bucket ids);
* :class:`marketcore.book.Book` itself (plus level counts, quantity differences and the
  running band sums), without and with the benchmark's fast query after every frame;
* the book from frame bytes (decode, and allocating and freeing the decoded levels),
  with the garbage collector on and off;
* ``np.array`` of each frame's levels, the entry price of any numpy classification.

Writes ``book_breakdown.json`` and ``book_breakdown.md``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO_ROOT, machine, machine_line, markdown_table, write_results
from bench_book import BAND_BPS, FRAME_DECODER, TOP_N, decode_floats, synthetic_stream

sys.path.insert(0, str(REPO_ROOT / "core" / "src"))
from marketcore.book import Book

BLOCK_FRAMES = 50
_ROUND = 1.5 * 2.0**52

Maker = Callable[[], tuple[Callable[[Any], None], Callable[[], Any] | None]]


def _floats(levels: list[list[str]]) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in levels]


def variants(snapshot: tuple[list, list]) -> list[tuple[str, str, Maker]]:
    """``(name, input, make)``; ``make()`` returns ``(apply, after)``, ``after`` untimed."""
    bids, asks = snapshot
    decode = FRAME_DECODER.decode

    def book() -> Book:
        gc.enable()
        b = Book()
        b.load_snapshot(bids, asks)
        b.band_sums(BAND_BPS)
        return b

    def query(b: Book) -> Callable[[], Any]:
        return lambda: (b.best_bid(), b.best_ask(), b.band_sums(BAND_BPS),
                        b.top("bid", TOP_N), b.top("ask", TOP_N))

    def decode_only() -> tuple:
        gc.enable()

        def apply(frame: bytes) -> None:
            data = decode(frame).data
            del data

        return apply, None

    def flat_dict() -> tuple:
        gc.enable()
        sides = (dict(bids), dict(asks))

        def apply(frame: tuple) -> None:
            for side, levels in zip(sides, frame, strict=True):
                for p, q in levels:
                    if q > 0.0:
                        side[p] = q
                    else:
                        side.pop(p, None)

        return apply, None

    def buckets_only() -> tuple:
        b = book()
        # the book's own bucket width and sides, so the loop is like for like
        inv = b._inv
        sides = (b._bids, b._asks)

        def apply(frame: tuple) -> None:
            for side, levels in zip(sides, frame, strict=True):
                buckets, ids = side.buckets, side.ids
                get_bucket = buckets.get
                for p, q in levels:
                    k = p * inv + _ROUND - _ROUND
                    bucket = get_bucket(k)
                    if q > 0.0:
                        if bucket is None:
                            buckets[k] = {p: q}
                            ids.insert(bisect_left(ids, k), k)
                        else:
                            bucket[p] = q
                    elif bucket is not None and bucket.pop(p, None) is not None and not bucket:
                        del buckets[k]
                        ids.pop(bisect_left(ids, k))

        return apply, None

    def book_floats(with_query: bool) -> Maker:
        def make() -> tuple:
            b = book()
            apply_levels = b.apply

            def apply(frame: tuple) -> None:
                apply_levels(frame[0], frame[1])

            return apply, query(b) if with_query else None

        return make

    def book_bytes(collect: bool) -> Maker:
        def make() -> tuple:
            b = book()
            if not collect:
                gc.disable()
            apply_levels = b.apply

            def apply(frame: bytes) -> None:
                data = decode(frame).data
                apply_levels(data.b, data.a)

            return apply, query(b)

        return make

    def numpy_arrays() -> tuple:
        gc.enable()

        def apply(frame: tuple) -> None:
            for levels in frame:
                if levels:
                    np.array(levels)

        return apply, None

    return [
        ("msgspec decode of the frame only", "bytes", decode_only),
        ("`for p, q in levels` + one dict set or pop", "floats", flat_dict),
        ("+ bucketing (bucket id, lookup, sorted ids)", "floats", buckets_only),
        ("`Book.apply` (+ counts and running band sums)", "floats", book_floats(False)),
        ("`Book.apply`, fast query after every frame", "floats", book_floats(True)),
        ("`Book` from frame bytes, fast query after every frame", "bytes", book_bytes(True)),
        ("the same with the garbage collector off", "bytes", book_bytes(False)),
        ("`np.array(levels)` per side, nothing else", "floats", numpy_arrays),
    ]


def run(apply: Callable[[Any], None], after: Callable[[], Any] | None,
        frames: list) -> list[int]:
    clock = time.perf_counter_ns
    blocks = []
    for start in range(0, len(frames), BLOCK_FRAMES):
        spent = 0
        for frame in frames[start:start + BLOCK_FRAMES]:
            t0 = clock()
            apply(frame)
            spent += clock() - t0
            if after is not None:
                after()
        blocks.append(spent)
    return blocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    stream = synthetic_stream(args.levels, args.changes, args.seed)
    inputs = {"bytes": stream.frames, "floats": decode_floats(stream.frames)}
    changes = sum(len(b) + len(a) for b, a in inputs["floats"])
    snapshot = (_floats(stream.snapshot_bids), _floats(stream.snapshot_asks))
    table = variants(snapshot)
    best: dict[int, list[int]] = {}
    for _ in range(args.reps):
        for i, (_, source, make) in enumerate(table):
            apply, after = make()
            blocks = run(apply, after, inputs[source])
            best[i] = blocks if i not in best else list(map(min, best[i], blocks))
    gc.enable()
    load_after = os.getloadavg()[0]
    rows, payload_rows = [], []
    previous = None
    for i, (name, source, _) in enumerate(table):
        ns = sum(best[i]) / changes
        rows.append([name, source, f"{ns:.0f}", f"{1e3 / ns:.2f} M",
                     "" if previous is None or i in (0, 1, 7) else f"{ns - previous:+.0f}"])
        payload_rows.append({"variant": name, "input": source, "ns_per_change": ns})
        previous = ns
    info = machine()
    markdown = "\n".join([
        "# Book apply, taken apart", "",
        f"{machine_line(info)} 1-minute load average {load_before:.2f} → {load_after:.2f}.",
        "", f"Synthetic stream of `bench_book.py` ({changes:,} level changes, "
        f"{args.levels:,} levels a side); per-block best of {args.reps} interleaved runs. "
        f"Each row does what the row above does plus a little (the last row stands alone); "
        f"the fast query runs untimed between frames where a row says so.", "",
        markdown_table(["loop", "input", "ns per change", "changes/s", "added ns"], rows)])
    write_results(args.out, "book_breakdown",
                  {"benchmark": "book_breakdown", "machine": info, "changes": changes,
                   "reps": args.reps, "rows": payload_rows,
                   "load_average_1min": {"start": load_before, "end": load_after}}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
