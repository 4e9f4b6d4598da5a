"""``marketcore record``: capture live Binance data in the replay format.

The recorder is the live client itself with a tap: every frame it applies and every REST
snapshot body it fetches (snapshots are fetched exactly as for a live book, so the
recording carries them inline, after the events that bridge them) is written, with its
local receive time, to one file per symbol::

    marketcore record BTCUSDT,ETHUSDT --out recordings --duration 600
    marketcore replay profile.toml --recording recordings/*.gz --out reports.jsonl

Endpoints, market, streams and every other option come from the arguments, or from the
``[venue]`` table of ``--profile`` (which must use ``binance``). Stops on Ctrl-C (or
SIGTERM) or after ``--duration``; files are flushed every second, so even a killed
recorder leaves readable files.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import attrs
from marketcore.components import Emit
from marketcore.profile import load_profile, structure_options

from marketcore_venue_binance.options import MARKETS, BinanceOptions
from marketcore_venue_binance.recording import RecordingWriter
from marketcore_venue_binance.tasks import stop_tasks
from marketcore_venue_binance.venue import BinanceVenue

__all__ = ["Recorder", "configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("symbols", help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    parser.add_argument("--out", default="recordings",
                        help="directory for the files, one per symbol (default: recordings)")
    parser.add_argument("--profile", help="take the [venue] options from this profile")
    parser.add_argument("--market", choices=MARKETS, help="spot (default) or usdm")
    parser.add_argument("--streams", help="comma-separated stream kinds, e.g. "
                        "depth@100ms,trade,ticker,bookTicker")
    parser.add_argument("--ws-endpoint", action="append", default=[], metavar="URL",
                        help="WebSocket base URL (repeat for several)")
    parser.add_argument("--rest-endpoint", action="append", default=[], metavar="URL",
                        help="REST base URL (repeat for several)")
    parser.add_argument("--snapshot-limit", type=int, help="levels per REST snapshot")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")


def options_from(args: argparse.Namespace) -> BinanceOptions:
    """The venue options the arguments (and ``--profile``) describe."""
    base: dict[str, Any] = {}
    if args.profile:
        profile = load_profile(args.profile)
        if profile.venue.use != "binance":
            raise ValueError(f"{args.profile}: [venue] uses {profile.venue.use!r}, "
                             "not 'binance'")
        base = dict(profile.venue.options)
    options = structure_options(base, BinanceOptions, source=args.profile or "<arguments>",
                                path="venue")
    changes: dict[str, Any] = {}
    if args.market:
        changes["market"] = args.market
    if args.streams:
        changes["streams"] = tuple(s.strip() for s in args.streams.split(",") if s.strip())
    if args.ws_endpoint:
        changes["ws_endpoints"] = tuple(args.ws_endpoint)
    if args.rest_endpoint:
        changes["rest_endpoints"] = tuple(args.rest_endpoint)
    if args.snapshot_limit:
        changes["snapshot_limit"] = args.snapshot_limit
    return attrs.evolve(options, **changes) if changes else options


class Recorder:
    """Writes what a venue's live client receives, one file per symbol."""

    def __init__(self, venue: BinanceVenue, out_dir: Path) -> None:
        self.venue = venue
        self.out_dir = out_dir
        self.writers: dict[str, RecordingWriter] = {}
        self._stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())

    def path_for(self, symbol: str) -> Path:
        market = self.venue.options.market
        return self.out_dir / f"binance_{market}_{symbol.lower()}_{self._stamp}.gz"

    def tap(self, symbol: str, recv_ns: int, raw: bytes) -> None:
        writer = self.writers.get(symbol)
        if writer is None:
            writer = self.writers[symbol] = RecordingWriter(self.path_for(symbol))
        writer.write(recv_ns, raw)

    async def run(self, duration_s: float | None = None, stop: asyncio.Event | None = None,
                  emit: Emit | None = None) -> None:
        """Record until ``stop`` is set, ``duration_s`` passed, or cancelled; ``emit``
        receives the venue's events meanwhile (ignored by default)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stop = stop or asyncio.Event()
        task = asyncio.create_task(self.venue.run(emit or (lambda _event: None), tap=self.tap),
                                   name="binance-record venue")
        waiter = asyncio.create_task(stop.wait(), name="binance-record stop")
        try:
            done, _ = await asyncio.wait({task, waiter}, timeout=duration_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()  # a failure of the client: raise it
        finally:
            try:
                await stop_tasks(waiter, task)
            finally:
                self.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


async def _record(options: BinanceOptions, symbols: list[str], out_dir: Path,
                  duration_s: float | None) -> Recorder:
    venue = BinanceVenue(options)
    venue.subscribe(symbols)
    recorder = Recorder(venue, out_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await recorder.run(duration_s, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return recorder


def run(args: argparse.Namespace) -> int:
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        raise ValueError("no symbols given (e.g. BTCUSDT,ETHUSDT)")
    options = options_from(args)
    recorder = asyncio.run(_record(options, symbols, Path(args.out), args.duration))
    stats = recorder.venue.stats
    for symbol, writer in sorted(recorder.writers.items()):
        print(f"{symbol}: {writer.frames:,} frames → {writer.path}", file=sys.stderr)
    print(f"recorded {stats.frames:,} frames ({stats.snapshots_applied} snapshots applied, "
          f"{stats.reconnects} reconnects, {stats.gaps} gaps)", file=sys.stderr)
    return 0
