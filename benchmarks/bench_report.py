"""Report encoding: the host's JSON encoder against msgspec, and where a report's bytes go.

    python benchmarks/bench_report.py [--seconds 60] [--reps 7]

Replays the repository's BTCUSDT recording (``examples/data``) through a profile with
every installed calculator (``marketcore.testing.replay_reports``), takes the reports
of the last ``--seconds / 4`` seconds and times encoding each of them with
:func:`marketcore.report.encode_report` (msgspec, with its non-finite check), with
the standard library's ``json.dumps`` (what it used before) and with
``msgspec.json.Encoder().encode`` (no checks), best of ``--reps``; and with the slow
sections pre-encoded (:func:`marketcore.report.preencode`, as a node does once per slow
cycle, so each fast report splices their JSON in). Also splits the last
report's bytes by top-level section: the fast sections change every 250 ms, the slow
ones (walls, vacuums, volume profile, inside ``liquidity``) every 2 s but travel in
every report. Writes ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from _common import REPO_ROOT, machine, machine_line, markdown_table, write_results

sys.path.insert(0, str(REPO_ROOT / "core" / "src"))
from marketcore.report import encode_report, preencode
from marketcore.testing import replay_reports

RECORDING = REPO_ROOT / "examples" / "data" / "binance-spot-btcusdt-20240808.gz"
PROFILE = """
[node]
symbols = ["BTCUSDT"]
[venue]
use = "binance"
[pipeline.fast]
period_ms = 250
[pipeline.slow]
period_ms = 2000
"""


SLOW_PARTS = {"liquidity": ("walls", "vacuums", "volume_profile"), "anomalies": None}
"""The sections the default slow cycle writes (``None``: the whole top-level key)."""


def slow_sections(report: dict[str, Any]) -> dict[str, Any]:
    """The slow cycle's sections of ``report``, laid out as a node caches them."""
    out: dict[str, Any] = {}
    for key, parts in SLOW_PARTS.items():
        if key not in report:
            continue
        if parts is None:
            out[key] = report[key]
        else:
            out[key] = {p: report[key][p] for p in parts if p in report[key]}
    return out


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def best_us(encode: Any, reports: list[dict[str, Any]], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        for report in reports:
            encode(report)
        best = min(best, time.perf_counter() - started)
    return best / len(reports) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="market time replayed")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    reports = replay_reports(PROFILE, recordings=[RECORDING], duration_s=args.seconds)
    sample = reports[-max(1, len(reports) // 4):]
    encoder = msgspec.json.Encoder()
    stdlib_us = best_us(lambda r: json.dumps(r, separators=(",", ":"), allow_nan=False)
                        .encode(), sample, args.reps)
    json_us = best_us(lambda r: encode_report(dict(r)), sample, args.reps)
    msgspec_us = best_us(encoder.encode, sample, args.reps)
    cached = {id(r): preencode(slow_sections(r)) for r in sample}
    spliced_us = best_us(lambda r: encode_report(dict(r), cached[id(r)]), sample, args.reps)
    assert all(encode_report(dict(r), cached[id(r)]) == encode_report(dict(r)) for r in sample)
    last = reports[-1]
    total = _size(last)
    sections = sorted(((key, _size(value)) for key, value in last.items()),
                      key=lambda kv: -kv[1])
    liquidity = {key: _size(value) for key, value in last.get("liquidity", {}).items()}
    load_after = os.getloadavg()[0]
    mean_bytes = sum(len(encoder.encode(r)) for r in sample) / len(sample)
    info = machine()
    payload = {"benchmark": "report", "machine": info, "reports": len(sample),
               "mean_bytes": mean_bytes,
               "encode_us": {"json.dumps": stdlib_us, "encode_report": json_us,
                             "encode_report_spliced": spliced_us, "msgspec": msgspec_us},
               "last_report_bytes": total, "sections": dict(sections),
               "liquidity_parts": liquidity,
               "load_average_1min": {"start": load_before, "end": load_after}}
    big = [[key, f"{size:,}", f"{100 * size / total:.0f}%"] for key, size in sections
           if size >= 100]
    markdown = "\n".join([
        "# Report encoding and size", "",
        f"{machine_line(info)} 1-minute load average {load_before:.2f} → {load_after:.2f}.",
        "", f"{len(sample)} reports of the bundled BTCUSDT recording, {mean_bytes:,.0f} bytes "
        f"on average; µs per report, best of {args.reps}:", "",
        markdown_table(["encoder", "µs per report", "speed"], [
            ["`json.dumps(allow_nan=False)` (standard library)", f"{stdlib_us:.1f}", "1.0×"],
            ["`encode_report` (msgspec + non-finite check + dict copy)", f"{json_us:.1f}",
             f"{stdlib_us / json_us:.1f}×"],
            ["`encode_report` with the slow sections pre-encoded (what a node does)",
             f"{spliced_us:.1f}", f"{stdlib_us / spliced_us:.1f}×"],
            ["`msgspec.json.Encoder.encode` (no checks)", f"{msgspec_us:.1f}",
             f"{stdlib_us / msgspec_us:.1f}×"]]),
        "", f"The last report, {total:,} bytes, by section (≥ 100 bytes); inside "
        f"`liquidity`: " + ", ".join(f"`{k}` {v:,}" for k, v in liquidity.items()) + ":", "",
        markdown_table(["section", "bytes", "share"], big)])
    write_results(args.out, "report", payload, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
