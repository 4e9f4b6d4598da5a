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

``--pyspy S`` then profiles the book from frame bytes with the fast query after every
frame for S seconds under py-spy (on PATH or next to the interpreter) at 1,000 Hz, and
tabulates the busiest functions and source lines: the profile behind the rows above.

Writes ``book_breakdown.json`` and ``book_breakdown.md``.
"""

from __future__ import annotations

import argparse
import gc
import linecache
import os
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    REPO_ROOT,
    find_pyspy,
    machine,
    machine_line,
    markdown_table,
    read_pyspy,
    summarize_pyspy,
    write_results,
)
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


PROFILED = "_profiled_apply"
"""The function whose samples the profile tabulates: decoding and applying one frame,
which is what ``bench_book.py``'s apply rate times (the query between frames is not)."""


def _profiled_apply(apply: Callable[[Any, Any], None], frame: bytes) -> None:
    data = FRAME_DECODER.decode(frame).data
    apply(data.b, data.a)


def _profiled_query(book: Book) -> None:
    book.best_bid()
    book.best_ask()
    book.band_sums(BAND_BPS)
    book.top("bid", TOP_N)
    book.top("ask", TOP_N)


def _profiled_pass(book: Book, frames: list[bytes]) -> None:
    """Every frame decoded and applied, the fast query after each (as ``bench_book.py``)."""
    apply = book.apply
    for frame in frames:
        _profiled_apply(apply, frame)
        _profiled_query(book)


def profile_loop(args: argparse.Namespace) -> None:
    """The child py-spy watches: passes over the synthetic stream, each on a fresh book,
    until ``args.profile_loop`` seconds have gone."""
    stream = synthetic_stream(args.levels, args.changes, args.seed)
    snapshot = (_floats(stream.snapshot_bids), _floats(stream.snapshot_asks))
    deadline = time.monotonic() + args.profile_loop
    while time.monotonic() < deadline:
        book = Book()
        book.load_snapshot(*snapshot)
        book.band_sums(BAND_BPS)
        _profiled_pass(book, stream.frames)


def profile(args: argparse.Namespace) -> dict[str, Any] | None:
    """Run :func:`profile_loop` under py-spy; the busiest functions and lines."""
    binary = find_pyspy()
    if binary is None:
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory(prefix="book-pyspy-") as tmp:
        raw = Path(tmp) / "pyspy.txt"
        result = subprocess.run(
            [binary, "record", "--rate", "1000", "--format", "raw", "--output", str(raw), "--",
             sys.executable, __file__, "--profile-loop", str(args.pyspy),
             "--levels", str(args.levels), "--changes", str(args.changes),
             "--seed", str(args.seed)],
            capture_output=True, check=False)
        if result.returncode != 0 or not raw.exists():
            print(f"py-spy failed: {result.stderr.decode()[-400:]}", file=sys.stderr)
            return None
        functions = summarize_pyspy(raw, 10, within=PROFILED)
        lines = summarize_pyspy(raw, 16, within=PROFILED, lines=True)
        passes = sum(n for _, n in read_pyspy(raw, within="_profiled_pass"))
        applies = sum(n for _, n in read_pyspy(raw, within=PROFILED))
    sources = {Path(f).name: f for f in (sys.modules[Book.__module__].__file__, __file__)}
    return {"seconds": args.pyspy, "rate_hz": 1000, "functions": functions,
            "apply_share_pct": 100 * applies / passes if passes else None,
            "lines": [(name, own, _source(name, sources)) for name, own, _ in lines]}


def _source(name: str, sources: dict[str, str | None]) -> str:
    """The source text of ``fn (module.py:12)`` when the module is one of ``sources``."""
    where = name.rpartition(" (")[2].rstrip(")")
    module, _, line = where.partition(":")
    path = sources.get(module)
    return linecache.getline(path, int(line)).strip() if path and line.isdigit() else ""


def profile_markdown(found: dict[str, Any]) -> list[str]:
    functions = [[f"`{name}`", f"{own:.1f}", f"{total:.1f}"]
                 for name, own, total in found["functions"]]
    lines = [[f"`{name}`", f"{own:.1f}", f"`{text}`" if text else ""]
             for name, own, text in found["lines"]]
    return [
        "", "## Profile: applying frame bytes",
        "", f"py-spy at {found['rate_hz']:,} Hz for {found['seconds']:g} s over passes of the "
        "stream, each frame decoded and applied, then the fast query (as in `bench_book.py`); "
        f"decoding and applying took {found['apply_share_pct']:.0f} % of the samples, the "
        "query the rest. The tables count only the samples of decoding and applying "
        f"(`{PROFILED}`): self = in the function itself, total = with what it calls; time "
        "inside C functions (msgspec's decoder, dict methods) counts for the Python line "
        "that called them.", "",
        markdown_table(["function", "self %", "total %"], functions), "",
        markdown_table(["line", "self %", "source"], lines)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--pyspy", type=float, default=0.0,
                        help="then profile the book from bytes for this many s (0: no)")
    parser.add_argument("--profile-loop", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile_loop:
        profile_loop(args)
        return 0
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
    found = profile(args) if args.pyspy > 0 else None
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
        markdown_table(["loop", "input", "ns per change", "changes/s", "added ns"], rows),
        *(profile_markdown(found) if found else [])])
    write_results(args.out, "book_breakdown",
                  {"benchmark": "book_breakdown", "machine": info, "changes": changes,
                   "reps": args.reps, "rows": payload_rows, "profile": found,
                   "load_average_1min": {"start": load_before, "end": load_after}}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
