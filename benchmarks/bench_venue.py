"""Benchmark the Binance venue end to end: recorded frames → applied books.

One command writes ``venue.json`` and ``venue.md``::

    python benchmarks/bench_venue.py [--reps 5] [--clones 1000] [--clone-diffs 100]
                                     [--out benchmarks/results]

Two paths over the same frames, in the same run:

* **venue** — the venue's own replay path, :meth:`BinanceVenue.replay`: msgspec
  decoding with its checks, Binance's sync procedure per symbol (buffer, bridge, every
  id checked), the venue's verification book (``verify_books``, the default; the
  ``false`` row leaves it out), and the host's :class:`marketcore.book.Book` per symbol
  loaded from each ``BookSnapshot`` and updated by each ``BookDelta``;
* **plain** — ``json.loads`` of every line, ``float()`` of every price and quantity,
  and two ``sortedcontainers.SortedDict`` per symbol, kept by the same sync rule
  (buffer until the snapshot, drop ``u <= lastUpdateId``, the bridging test, every
  later event continuing the chain, a break waiting for the next snapshot).

Both read the recording files through the same gzip reader, so the reading cost is in
both figures. Streams:

* **real recordings** — ``../shared/data/binance/hftbacktest_spot_btcusdt_2024080{8,9}.gz``
  (one day in two files, replayed together) and ``hftbacktest_usdm_btcusdt_20240808.gz``;
  skipped when absent, the repository's ``examples/data/binance-spot-btcusdt-20240808.gz``
  instead when none is there;
* **cloned** — ``--clones`` symbols made from the spot recording the way the project's
  simulator clones (``BTC0007USDT``: prices scaled by (1000+k−1)/1000 on the same tick,
  ids offset so every symbol has its own sequence), its first ``--clone-diffs`` depth
  diffs per symbol, each symbol's snapshot cut to its top 100 levels (the depth a
  1,000-symbol node can afford: weight 5 each), interleaved in receive order and
  written to a temporary recording (generation is not timed).

Figures are the best of ``--reps`` runs (the paths take turns in each): frames (lines)
per second and level changes (snapshot levels loaded plus diff levels applied) per
second, and how many times faster the venue path is than the plain one. The final books
of both paths are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, SHARED_DATA, machine, machine_line, markdown_table, write_results

sys.path.insert(0, str(REPO_ROOT / "core" / "src"))
sys.path.insert(0, str(REPO_ROOT / "plugins" / "venue_binance" / "src"))
from marketcore.book import Book
from marketcore.events import BookDelta, BookSnapshot
from marketcore_venue_binance import BinanceOptions, BinanceVenue
from marketcore_venue_binance.recording import RecordingWriter, read_recording
from sortedcontainers import SortedDict

BINANCE = SHARED_DATA / "binance"
SPOT_DAY = (BINANCE / "hftbacktest_spot_btcusdt_20240808.gz",
            BINANCE / "hftbacktest_spot_btcusdt_20240809.gz")
USDM = (BINANCE / "hftbacktest_usdm_btcusdt_20240808.gz",)
EXAMPLE = (REPO_ROOT / "examples" / "data" / "binance-spot-btcusdt-20240808.gz",)
CLONE_SNAPSHOT_LEVELS = 100


# ---------------------------------------------------------------------------
# The two paths
# ---------------------------------------------------------------------------


def run_venue(paths: Sequence[Path], symbols: Sequence[str], market: str,
              verify: bool) -> tuple[dict[str, Book], dict[str, int]]:
    """The venue's replay, each symbol's events applied to a marketcore Book."""
    venue = BinanceVenue(BinanceOptions(market=market, verify_books=verify))
    books: dict[str, Book] = {}
    for event in venue.replay(list(paths), symbols):
        kind = type(event)
        if kind is BookDelta:
            books[event.symbol].apply(event.bids, event.asks)
        elif kind is BookSnapshot:
            book = books.get(event.symbol)
            if book is None:
                book = books[event.symbol] = Book()
            book.load_snapshot(event.bids, event.asks)
    stats = venue.stats
    return books, {"frames": stats.frames, "gaps": stats.gaps,
                   "snapshots_applied": stats.snapshots_applied,
                   "malformed": stats.malformed_total}


class PlainBook:
    """Two SortedDicts and Binance's sync rule, on json.loads + float()."""

    __slots__ = ("asks", "bids", "bridging", "buffer", "futures", "last")

    def __init__(self, futures: bool) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.last: int | None = None  # None: waiting for a snapshot
        self.bridging = False  # a snapshot newer than the buffer waits for its bridge
        self.buffer: list[dict[str, Any]] = []
        self.futures = futures

    def snapshot(self, body: dict[str, Any]) -> int:
        if self.last is not None:
            return 0
        last = body["lastUpdateId"]
        live = [e for e in self.buffer if e["u"] > last or (self.futures and e["u"] >= last)]
        if live and not self._bridges(live[0], last):
            return 0  # older than the buffer: wait for the next one
        self.bids = SortedDict({float(p): float(q) for p, q in body["bids"] if float(q)})
        self.asks = SortedDict({float(p): float(q) for p, q in body["asks"] if float(q)})
        self.last = last
        self.bridging = not live
        self.buffer = []
        changes = len(body["bids"]) + len(body["asks"])
        for event in live:
            changes += self._apply(event)
            self.last = event["u"]
        return changes

    def _bridges(self, event: dict[str, Any], last: int) -> bool:
        if self.futures:
            return event["U"] <= last <= event["u"]
        return event["U"] <= last + 1 <= event["u"]

    def diff(self, event: dict[str, Any]) -> int:
        last = self.last
        if last is None:
            self.buffer.append(event)
            if len(self.buffer) > 300:
                del self.buffer[0]
            return 0
        if event["u"] <= last and not (self.futures and self.bridging and event["u"] == last):
            return 0  # a duplicate, or older than the snapshot
        if self.bridging:
            linked = self._bridges(event, last)
            self.bridging = False
        else:
            linked = event["pu"] == last if self.futures else event["U"] == last + 1
        if not linked:
            self.last = None  # a gap: buffer again, wait for a snapshot
            self.buffer = [event]
            return 0
        self.last = event["u"]
        return self._apply(event)

    def _apply(self, event: dict[str, Any]) -> int:
        for side, levels in ((self.bids, event["b"]), (self.asks, event["a"])):
            for p, q in levels:
                qty = float(q)
                if qty:
                    side[float(p)] = qty
                else:
                    side.pop(float(p), None)
        return len(event["b"]) + len(event["a"])


def run_plain(paths: Sequence[Path], symbols: Sequence[str],
              market: str) -> tuple[dict[str, PlainBook], dict[str, int]]:
    """The same lines through json.loads + float() + SortedDict, same sync rule.

    A snapshot body names no symbol: it goes to the symbol of the file's last depth
    frame whose buffer it bridges (one symbol per file, or distinct id ranges).
    """
    futures = market == "usdm"
    books = {s: PlainBook(futures) for s in symbols}
    frames = changes = 0
    for path in _merged(paths):
        for _, raw in path:
            frames += 1
            message = json.loads(raw)
            data = message.get("data")
            if data is None:
                if "lastUpdateId" in message:
                    changes += _plain_snapshot(books, message)
                continue
            if data.get("e") == "depthUpdate":
                book = books.get(data["s"])
                if book is not None:
                    changes += book.diff(data)
    return books, {"frames": frames, "changes": changes}


def _plain_snapshot(books: dict[str, PlainBook], body: dict[str, Any]) -> int:
    """A snapshot body names no symbol: it belongs to the only symbol, or (several
    symbols with distinct id ranges) to the waiting one whose first buffered id is the
    closest below it."""
    last = body["lastUpdateId"]
    if len(books) == 1:
        return next(iter(books.values())).snapshot(body)
    best: PlainBook | None = None
    for book in books.values():
        if book.last is None and book.buffer and book.buffer[0]["U"] <= last + 1 and \
                (best is None or book.buffer[0]["U"] > best.buffer[0]["U"]):
            best = book
    return best.snapshot(body) if best is not None else 0


def _merged(paths: Sequence[Path]) -> Iterable[Iterable[tuple[int, bytes]]]:
    """The files in receive order (the benchmark's recordings do not overlap in time)."""
    return [read_recording(p) for p in sorted(paths, key=lambda p: next(read_recording(p))[0])]


# ---------------------------------------------------------------------------
# The cloned stream
# ---------------------------------------------------------------------------


def _clone_name(k: int, width: int) -> str:
    return f"BTC{k:0{width}d}USDT"


def _price_map(num: int, den: int = 1000) -> Callable[[str], str]:
    """A recorded price string → the clone's, on the same 0.01 tick, round half up."""
    def scaled(text: str) -> str:
        whole, _, frac = text.partition(".")
        ticks = int(whole + frac[:2].ljust(2, "0"))
        mapped = (ticks * 2 * num + den) // (2 * den)
        whole_ticks, cents = divmod(mapped, 100)
        return f"{whole_ticks}.{cents:02d}000000"
    return scaled


def make_cloned(source: Path, target: Path, clones: int, diffs: int) -> list[str]:
    """Write the cloned recording; returns its symbols."""
    lines: list[tuple[int, dict[str, Any]]] = []
    seen_snapshot = False
    after = 0
    for recv_ns, raw in read_recording(source):
        message = json.loads(raw)
        if "lastUpdateId" in message:
            if seen_snapshot:
                continue
            seen_snapshot = True
            message["bids"] = message["bids"][:CLONE_SNAPSHOT_LEVELS]
            message["asks"] = message["asks"][:CLONE_SNAPSHOT_LEVELS]
            lines.append((recv_ns, message))
        elif "@depth" in message.get("stream", ""):
            lines.append((recv_ns, message))
            after += seen_snapshot
            if after >= diffs:
                break
    top_id = max(m.get("lastUpdateId", 0) or m["data"]["u"] for _, m in lines)
    stride = 10 ** (len(str(top_id)) + 1)
    width = max(4, len(str(clones)))
    names = [_clone_name(k, width) for k in range(1, clones + 1)]
    with RecordingWriter(target) as writer:
        for recv_ns, message in lines:
            for k, name in enumerate(names, start=1):
                scaled = _price_map(1000 + k - 1)
                shift = (k - 1) * stride
                if "lastUpdateId" in message:
                    body = {"lastUpdateId": message["lastUpdateId"] + shift,
                            "bids": [[scaled(p), q] for p, q in message["bids"]],
                            "asks": [[scaled(p), q] for p, q in message["asks"]]}
                else:
                    data = message["data"]
                    body = {"stream": f"{name.lower()}@depth@100ms", "data": {
                        "e": "depthUpdate", "E": data["E"], "s": name,
                        "U": data["U"] + shift, "u": data["u"] + shift,
                        "b": [[scaled(p), q] for p, q in data["b"]],
                        "a": [[scaled(p), q] for p, q in data["a"]]}}
                writer.write(recv_ns, json.dumps(body, separators=(",", ":")).encode())
    return names


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------


def same_books(venue: dict[str, Book], plain: dict[str, PlainBook]) -> bool:
    """Every symbol's final book is the same in both paths."""
    for symbol, book in venue.items():
        other = plain[symbol]
        if other.last is None:
            return False
        bids = dict(book.top("bid", book.bid_count))
        asks = dict(book.top("ask", book.ask_count))
        if bids != dict(other.bids) or asks != dict(other.asks):
            return False
    return len(venue) == sum(1 for b in plain.values() if b.last is not None)


def measure(label: str, paths: Sequence[Path], symbols: Sequence[str], market: str,
            reps: int) -> dict[str, Any]:
    """Best of ``reps`` for each path; the paths take turns within each repetition, so
    a busy moment of a shared machine does not land on one path only."""
    runs: dict[str, Callable[[], Any]] = {
        "plain": lambda: run_plain(paths, symbols, market),
        "venue_verify_true": lambda: run_venue(paths, symbols, market, True),
        "venue_verify_false": lambda: run_venue(paths, symbols, market, False),
    }
    best = dict.fromkeys(runs, float("inf"))
    outcome: dict[str, Any] = {}
    for _ in range(reps):
        for name, run in runs.items():
            started = time.perf_counter()
            outcome[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)
    plain_s = best["plain"]
    plain_books, plain_info = outcome["plain"]
    frames, changes = plain_info["frames"], plain_info["changes"]
    entry: dict[str, Any] = {"recordings": [p.name for p in paths], "symbols": len(symbols),
                             "market": market, "frames": frames, "level_changes": changes,
                             "plain": {"seconds": plain_s, "frames_per_s": frames / plain_s,
                                       "level_changes_per_s": changes / plain_s}}
    for name in ("venue_verify_true", "venue_verify_false"):
        seconds = best[name]
        books, info = outcome[name]
        if info["frames"] != frames:
            raise SystemExit(f"{label}: the venue read {info['frames']} frames, "
                             f"the plain path {frames}")
        entry[name] = {"seconds": seconds, "frames_per_s": frames / seconds,
                       "level_changes_per_s": changes / seconds, "speedup": plain_s / seconds,
                       "same_books": same_books(books, plain_books), **info}
    return entry


def rows_of(label: str, entry: dict[str, Any]) -> list[list[str]]:
    def row(name: str, figures: dict[str, Any], speed: str) -> list[str]:
        return [f"{label}: {name}", f"{figures['frames_per_s']:,.0f}",
                f"{figures['level_changes_per_s'] / 1e6:.2f} M", speed]

    out = [row("json.loads + float + SortedDict", entry["plain"], "1.0×")]
    for verify in ("true", "false"):
        figures = entry[f"venue_verify_{verify}"]
        out.append(row(f"venue replay + Book (verify_books={verify})", figures,
                       f"{figures['speedup']:.2f}×"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--clones", type=int, default=1000)
    parser.add_argument("--clone-diffs", type=int, default=100)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    cases: list[tuple[str, tuple[Path, ...], str]] = []
    if all(p.is_file() for p in SPOT_DAY):
        cases.append(("spot BTCUSDT 2024-08-08/09", SPOT_DAY, "spot"))
    if all(p.is_file() for p in USDM):
        cases.append(("usdm BTCUSDT 2024-08-08", USDM, "usdm"))
    if not cases:
        if not EXAMPLE[0].is_file():
            print("no recording found (../shared/data/binance or examples/data)",
                  file=sys.stderr)
            return 2
        cases.append(("spot BTCUSDT 2024-08-08 (examples/data)", EXAMPLE, "spot"))
    results: dict[str, Any] = {}
    rows: list[list[str]] = []
    for label, paths, market in cases:
        results[label] = entry = measure(label, paths, ["BTCUSDT"], market, args.reps)
        rows += rows_of(label, entry)
    source = next(p for p in (*SPOT_DAY[:1], *EXAMPLE) if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        cloned = Path(tmp) / "cloned.gz"
        symbols = make_cloned(source, cloned, args.clones, args.clone_diffs)
        label = f"{args.clones:,} cloned symbols"
        results[label] = entry = measure(label, [cloned], symbols, "spot", args.reps)
        entry["source"] = source.name
        rows += rows_of(label, entry)
    info = machine()
    load = (load_start, os.getloadavg()[0])
    payload = {"reps": args.reps, "clones": args.clones, "clone_diffs": args.clone_diffs,
               "machine": info, "load_average_1m": list(load), "results": results}
    table = markdown_table(["stream: path", "frames/s", "level changes/s", "speed"], rows)
    notes = "\n".join(
        f"* {label}: {entry['frames']:,} frames, {entry['level_changes']:,} level changes, "
        f"{entry['symbols']:,} symbol(s); final books equal in both paths: "
        f"{entry['venue_verify_true']['same_books'] and entry['venue_verify_false']['same_books']}"
        for label, entry in results.items())
    markdown = (f"# Binance venue: frames → applied books\n\nBest of {args.reps} runs, "
                "the paths taking turns. "
                "Both paths read the gzip recordings; level changes are snapshot levels "
                "loaded plus diff levels applied.\n\n"
                f"{table}\n\n{notes}\n\n{machine_line(info)} 1-minute load average "
                f"{load[0]:.2f} at the start and {load[1]:.2f} at the end (above the number "
                "of cores, other processes competed for them and every figure is slower; "
                "compare the rows of one run).\n")
    write_results(Path(args.out), "venue", payload, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
