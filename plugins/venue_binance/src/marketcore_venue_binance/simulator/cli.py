"""``marketcore binance-sim``: run the local Binance from the command line.

    marketcore binance-sim examples/data/binance-spot-btcusdt-20240808.gz --speed 10
    marketcore binance-sim a.gz b.gz --clone 100 --port 9443 --loop

Prints the URLs, serves until Ctrl-C (or ``--duration``), then a summary.
Without a recording it looks for the bundled example recording.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from .config import START_MODES, SimulatorConfig
from .server import ExchangeSimulator

__all__ = ["DEFAULT_RECORDING", "configure", "run"]

DEFAULT_RECORDING = Path("examples") / "data" / "binance-spot-btcusdt-20240808.gz"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``binance-sim``'s arguments to its sub-parser."""
    parser.add_argument("recordings", nargs="*", metavar="RECORDING",
                        help="recording files (gzip '<recv_ns> <JSON>' lines), replayed in "
                             f"order; default: {DEFAULT_RECORDING} if present")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="1 = real time, 10 = ten times faster, 0 = as fast as clients "
                             "read (default: 1)")
    parser.add_argument("--clone", type=int, default=0, metavar="N",
                        help="serve every recorded symbol as N symbols (BTC0001USDT …); "
                             "0 = as recorded (default: 0)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0,
                        help="port for WebSocket and REST; 0 = a free one (default: 0)")
    parser.add_argument("--market", choices=("auto", "spot", "usdm"), default="auto",
                        help="spot (/api/v3) or usdm futures (/fapi/v1); auto = from the "
                             "recording (default: auto)")
    parser.add_argument("--loop", action="store_true",
                        help="start over at the end, ids and times kept contiguous")
    parser.add_argument("--start", choices=START_MODES[:2], default="now",
                        help="replay from now, or from the first subscription (default: now)")
    parser.add_argument("--no-rebase-time", dest="rebase_time", action="store_false",
                        help="send event times as recorded instead of mapped to the clock")
    parser.add_argument("--weight-per-minute", type=int, default=6000,
                        help="REST weight budget per IP (default: 6000)")
    parser.add_argument("--max-streams", type=int, default=1024,
                        help="streams per connection (default: 1024)")
    parser.add_argument("--snapshot-latency", type=float, default=0.0, metavar="S",
                        help="hold depth snapshot answers back by S seconds (default: 0)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: run until Ctrl-C)")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit status."""
    recordings = list(args.recordings) or _default_recordings()
    config = SimulatorConfig(
        recordings=tuple(recordings), market=args.market, speed=args.speed, loop=args.loop,
        clone=args.clone, host=args.host, port=args.port,
        max_streams_per_connection=args.max_streams, weight_per_minute=args.weight_per_minute,
        snapshot_latency_s=args.snapshot_latency, start=args.start,
        rebase_time=args.rebase_time)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, args.duration))
    return 0


def _default_recordings() -> list[str]:
    for folder in (Path.cwd(), *Path.cwd().parents):
        candidate = folder / DEFAULT_RECORDING
        if candidate.is_file():
            return [str(candidate)]
    raise FileNotFoundError(f"no recording given and no {DEFAULT_RECORDING} found here or "
                            f"above; pass recording files (see 'marketcore record')")


async def _serve(config: SimulatorConfig, duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with ExchangeSimulator(config) as sim:
        symbols = sim.symbols
        first = symbols[0]
        shown = ", ".join(symbols[:5]) + (f" … ({len(symbols)} symbols)" if len(symbols) > 5
                                          else "")
        depth_path = "/fapi/v1/depth" if sim.market == "usdm" else "/api/v3/depth"
        speed = "as fast as clients read" if config.speed == 0 else f"{config.speed:g}x"
        print(f"binance-sim: {sim.market} {shown}, {speed}"
              f"{', looping' if config.loop else ''}\n"
              f"  streams   {sim.ws_url}/stream?streams={first.lower()}@depth@100ms/"
              f"{first.lower()}@trade\n"
              f"  REST      {sim.rest_url}{depth_path}?symbol={first}&limit=1000\n"
              f"  faults    {sim.rest_url}/_sim/fault?kind=drop|gap|garbage|stall|shutdown…"
              f" (POST or GET)\n"
              f"  stats     {sim.rest_url}/_sim/stats\n"
              f"Ctrl-C to stop.", flush=True)
        waiters = [asyncio.ensure_future(stop.wait())]
        if duration is not None:
            waiters.append(asyncio.ensure_future(asyncio.sleep(duration)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        stats = sim.stats
        print(f"binance-sim: {stats.connections_opened} connections, {stats.frames_out} frames "
              f"({stats.bytes_out / 1e6:.1f} MB) sent, {stats.snapshots_served} snapshots, "
              f"{stats.http_429} x 429, {stats.http_418} x 418", file=sys.stderr)
