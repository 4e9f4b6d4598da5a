"""How many events the simulator sustains: N cloned symbols at the recording's real rate.

    python -m marketcore_venue_binance.simulator.bench RECORDING --clone 1000 --seconds 30

Runs the simulator in this process at ``--speed`` (default real time) and
readers in another process (raw sockets, counting frames in C, so the reader is
not the bottleneck). Every symbol's streams are subscribed with ``SUBSCRIBE``
requests, 1000 per connection. Prints one JSON line: frames sent and received
per second, the simulator's CPU use and how far its replay fell behind the
recording's clock (``lag_max_ms``: the replay kept up while this stays small).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import time
from typing import Any

from .config import SimulatorConfig
from .server import ExchangeSimulator

__all__ = ["main"]


def _read_frames(host: str, port: int, batches: list[list[str]], seconds: float,
                 queue: Any) -> None:
    asyncio.run(_reader_main(host, port, batches, seconds, queue))


async def _reader_main(host: str, port: int, batches: list[list[str]], seconds: float,
                       queue: Any) -> None:
    counts = [0] * len(batches)

    async def one(i: int, names: list[str]) -> None:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await reader.readuntil(b"\r\n\r\n")
        request = json.dumps({"method": "SUBSCRIBE", "params": names, "id": 1}).encode()
        writer.write(_masked(request))
        tail = b""
        while True:
            data = await reader.read(1 << 20)
            if not data:
                return
            # Every market-data frame of a combined stream starts with this key: counting
            # it in C keeps the reader far faster than the server it measures.
            chunk = tail + data
            counts[i] += chunk.count(b'{"stream":')
            tail = chunk[-9:]

    tasks = [asyncio.create_task(one(i, names)) for i, names in enumerate(batches)]
    await asyncio.sleep(seconds)
    queue.put(sum(counts))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _masked(payload: bytes, opcode: int = 0x1) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    config = SimulatorConfig(tuple(args.recordings), market=args.market, speed=args.speed,
                             clone=args.clone, loop=True, start="manual",
                             ping_interval_s=3600.0,  # the reader does not answer pings
                             max_send_buffer_bytes=args.buffer_mb * 1024 * 1024)
    async with ExchangeSimulator(config) as sim:
        names = [f"{s.lower()}@{k}" for s in sim.symbols for k in args.streams.split(",")]
        batches = [names[i:i + 1000] for i in range(0, len(names), 1000)]
        port = int(sim.ws_url.rsplit(":", 1)[1])
        queue: Any = mp.get_context("spawn").Queue()
        reader = mp.get_context("spawn").Process(
            target=_read_frames, args=("127.0.0.1", port, batches, args.seconds + 2, queue))
        reader.start()
        while sim.stats.connections_open < len(batches):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # SUBSCRIBE answered
        sim.resume()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(args.seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        stats = sim.stats
        received = await asyncio.to_thread(queue.get, True, 30)
        await asyncio.to_thread(reader.join, 30)
        return {
            "symbols": len(sim.symbols), "streams": len(names), "speed": args.speed,
            "seconds": round(wall, 1),
            "frames_sent_per_s": round(stats.frames_out / wall),
            "events_encoded_per_s": round(stats.events_encoded / wall),
            "frames_sent": stats.frames_out, "frames_received": received,
            "mbytes_per_s": round(stats.bytes_out / wall / 1e6, 1),
            "simulator_cpu_pct": round(cpu / wall * 100),
            "lag_max_ms": round(stats.replay_lag_max_ms, 1),
            "slow_client_drops": stats.disconnects.get("slow_client", 0),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recordings", nargs="+")
    parser.add_argument("--clone", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--market", default="auto")
    parser.add_argument("--streams", default="depth@100ms,trade,ticker",
                        help="comma-separated stream kinds per symbol")
    parser.add_argument("--buffer-mb", type=int, default=256,
                        help="send buffer per connection before a reader counts as slow "
                             "(large: measure the simulator, not the reader's scheduling)")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_bench(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
