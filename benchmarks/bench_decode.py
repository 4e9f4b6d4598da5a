"""Benchmark the Binance venue's frame decoding on the real recording.

One command writes ``decode.json`` and ``decode.md``::

    python benchmarks/bench_decode.py [--reps 5] [--out benchmarks/results]

Input: every frame of ``../shared/data/binance/hftbacktest_spot_btcusdt_20240808.gz``
(or the repository's copy in ``examples/data``), raw bytes held in memory: depth diffs,
trades and bookTicker frames exactly as Binance sent them.

Decoders, on the same frames in one run, each ending with the numbers a book needs
(``(price, qty)`` floats for every level, price/qty of trades and tickers):

* ``json.loads + float()`` — the standard library, then ``float()`` per string;
* ``msgspec (venue decoder)`` — the venue's :class:`FrameDecoder`: typed msgspec
  structs in lax mode, envelope first with the event left raw, bounds (positive
  finite prices, …) and the 15-significant-digit check included;
* ``msgspec, one pass, no checks`` (depth frames) — the floor: the whole frame into one
  struct with float levels, no bounds, no precision scan, to show what the checks cost;
* ``venue feed`` — the whole per-frame path of a replay: decoding plus the sequence
  checks, the venue's own verification book, trade de-duplication and building the
  marketcore events (with and without ``verify_books``).

Figures are the best of ``--reps`` runs: frames per second, microseconds per frame, and
for depth frames the level changes per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from _common import REPO_ROOT, SHARED_DATA, machine, machine_line, markdown_table, write_results

sys.path.insert(0, str(REPO_ROOT / "core" / "src"))
sys.path.insert(0, str(REPO_ROOT / "plugins" / "venue_binance" / "src"))
from marketcore_venue_binance import BinanceOptions
from marketcore_venue_binance.decode import FrameDecoder
from marketcore_venue_binance.recording import read_recording
from marketcore_venue_binance.replay import Replay
from marketcore_venue_binance.stats import VenueStats

RECORDINGS = (SHARED_DATA / "binance" / "hftbacktest_spot_btcusdt_20240808.gz",
              REPO_ROOT / "examples" / "data" / "binance-spot-btcusdt-20240808.gz")


class PlainDepth(msgspec.Struct):
    """A depth event with float levels and no checks: the floor for decoding."""

    U: int
    u: int
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]


class PlainFrame(msgspec.Struct):
    stream: str
    data: PlainDepth


def stdlib_decode(raw: bytes) -> Any:
    """json.loads, then float() for every number a book or trade needs."""
    message = json.loads(raw)
    data = message["data"]
    stream = message["stream"]
    if "@depth" in stream:
        return ([(float(p), float(q)) for p, q in data["b"]],
                [(float(p), float(q)) for p, q in data["a"]], data["U"], data["u"])
    if stream.endswith("@trade"):
        return float(data["p"]), float(data["q"]), data["t"], data["m"]
    if stream.endswith("@bookTicker"):
        return float(data["b"]), float(data["B"]), float(data["a"]), float(data["A"])
    return data


def best_of(reps: int, run: Callable[[], int]) -> tuple[float, int]:
    best = float("inf")
    result = 0
    for _ in range(reps):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    recording = next((p for p in RECORDINGS if p.is_file()), None)
    if recording is None:
        print("no recording found (../shared/data/binance or examples/data)", file=sys.stderr)
        return 2
    lines = list(read_recording(recording))
    frames = [raw for _, raw in lines if raw.startswith(b'{"stream"')]
    depth = [raw for raw in frames if b"@depth" in raw[:40]]
    levels = sum(len(b) + len(a) for b, a, *_ in map(stdlib_decode, depth))
    decoder = FrameDecoder()

    def run_stdlib(batch: list[bytes]) -> Callable[[], int]:
        return lambda: sum(1 for raw in batch if stdlib_decode(raw) is not None)

    def run_msgspec(batch: list[bytes]) -> Callable[[], int]:
        decode = decoder.frame
        return lambda: sum(1 for raw in batch if decode(raw) is not None)

    plain = msgspec.json.Decoder(PlainFrame, strict=False)

    def run_plain() -> int:
        return sum(1 for raw in depth if plain.decode(raw) is not None)

    def run_feed(verify: bool) -> Callable[[], int]:
        options = BinanceOptions(verify_books=verify)

        def go() -> int:
            return sum(1 for _ in Replay(options, [recording], ["BTCUSDT"], VenueStats()))
        return go

    rows = []
    results: dict[str, Any] = {}
    for label, batch in (("depth frames", depth), ("all frames", frames)):
        base_s, _ = best_of(args.reps, run_stdlib(batch))
        fast_s, _ = best_of(args.reps, run_msgspec(batch))
        entry = {
            "frames": len(batch),
            "stdlib_frames_per_s": len(batch) / base_s,
            "msgspec_frames_per_s": len(batch) / fast_s,
            "stdlib_us_per_frame": base_s / len(batch) * 1e6,
            "msgspec_us_per_frame": fast_s / len(batch) * 1e6,
            "speedup": base_s / fast_s,
        }
        if batch is depth:
            entry["level_changes"] = levels
            entry["stdlib_levels_per_s"] = levels / base_s
            entry["msgspec_levels_per_s"] = levels / fast_s
        results[label] = entry
        rows.append([f"json.loads + float(), {label}",
                     f"{entry['stdlib_frames_per_s']:,.0f}",
                     f"{entry['stdlib_us_per_frame']:.2f}",
                     f"{entry['stdlib_levels_per_s'] / 1e6:.2f} M" if batch is depth else "—",
                     "1.0×"])
        rows.append([f"msgspec (venue decoder), {label}",
                     f"{entry['msgspec_frames_per_s']:,.0f}",
                     f"{entry['msgspec_us_per_frame']:.2f}",
                     f"{entry['msgspec_levels_per_s'] / 1e6:.2f} M" if batch is depth else "—",
                     f"{entry['speedup']:.1f}×"])
    unchecked = FrameDecoder(check_precision=False)
    unchecked_s, _ = best_of(args.reps, lambda: sum(1 for raw in depth
                                                    if unchecked.frame(raw) is not None))
    unchecked_us = unchecked_s / len(depth) * 1e6
    results["depth frames"]["no_precision_frames_per_s"] = len(depth) / unchecked_s
    rows.insert(2, ["msgspec (venue decoder, check_precision=false), depth frames",
                    f"{len(depth) / unchecked_s:,.0f}", f"{unchecked_us:.2f}",
                    f"{levels / unchecked_s / 1e6:.2f} M",
                    f"{results['depth frames']['stdlib_us_per_frame'] / unchecked_us:.1f}×"])
    plain_s, _ = best_of(args.reps, run_plain)
    results["depth frames"]["plain_msgspec_frames_per_s"] = len(depth) / plain_s
    results["depth frames"]["plain_msgspec_levels_per_s"] = levels / plain_s
    plain_us = plain_s / len(depth) * 1e6
    rows.insert(3, ["msgspec, one pass, no checks, depth frames", f"{len(depth) / plain_s:,.0f}",
                    f"{plain_us:.2f}", f"{levels / plain_s / 1e6:.2f} M",
                    f"{results['depth frames']['stdlib_us_per_frame'] / plain_us:.1f}×"])
    for verify in (True, False):
        seconds, events = best_of(max(1, args.reps // 2), run_feed(verify))
        label = f"venue feed (replay, verify_books={str(verify).lower()})"
        results[label] = {"lines": len(lines), "events": events,
                          "lines_per_s": len(lines) / seconds,
                          "us_per_line": seconds / len(lines) * 1e6,
                          "level_changes_per_s": levels / seconds}
        rows.append([f"{label}, all lines incl. gzip", f"{len(lines) / seconds:,.0f}",
                     f"{seconds / len(lines) * 1e6:.2f}",
                     f"{levels / seconds / 1e6:.2f} M", "—"])
    info = machine()
    payload = {"recording": recording.name, "reps": args.reps, "machine": info,
               "results": results}
    table = markdown_table(["decoder", "frames/s", "µs/frame", "level changes/s", "speed"],
                           rows)
    markdown = (f"# Frame decoding (Binance venue)\n\nRecording: `{recording.name}` — "
                f"{len(frames):,} stream frames ({len(depth):,} depth diffs with "
                f"{levels:,} level changes). Best of {args.reps} runs.\n\n{table}\n\n"
                f"{machine_line(info)}\n")
    write_results(Path(args.out), "decode", payload, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
