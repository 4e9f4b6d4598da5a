"""Read API under load: many concurrent clients against a real node's ``http`` sink.

    python benchmarks/bench_http.py [--clients 200] [--seconds 30] [--think-ms 250]
                                    [--symbols 20] [--ws-clients 200] [--ws-seconds 10]
                                    [--out benchmarks/results]

A node runs in its own process (synthetic venue, every installed calculator, fast cycle
250 ms, an ``http`` sink on a free port). This process then runs:

* ``get_report``: ``--clients`` concurrent clients, each in a loop — open a connection,
  ``GET /get_report?symbol=S`` (a random symbol), read the whole answer, wait
  ``--think-ms`` — for ``--seconds``. Latency is from connect to the last byte; p50,
  p99, max and the request rate are reported, and every answer is checked (200 and the
  asked symbol). Then the same with no think time (saturation: latency is then mostly
  queueing behind the other clients, so it measures throughput).
* WebSocket fan-out: ``--ws-clients`` clients on ``/ws`` (every symbol) for
  ``--ws-seconds``: reports delivered per second in total, and the delivery delay
  (arrival − the report's ``updatedAt``, same machine clock) p50 / p99.

Nothing here asserts a time; figures go to ``http.json`` and ``http.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, machine_line, markdown_table, write_results
from marketcore.testing import free_port

MARKETCORE = [sys.executable, "-c", "import sys; from marketcore.cli import main; sys.exit(main())"]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        data = await reader.read()  # the server closes after each answer
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def load(port: int, symbols: list[str], clients: int, seconds: float,
               think_ms: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        await asyncio.sleep(rng.random() * think_ms / 1000)  # spread the starts
        while time.perf_counter() < deadline:
            symbol = rng.choice(symbols)
            started = time.perf_counter()
            try:
                status, body = await get(port, f"/get_report?symbol={symbol}")
                ok = status == 200 and json.loads(body)["symbol"] == symbol
            except (OSError, ValueError, KeyError, IndexError):
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            errors += not ok
            if think_ms:
                await asyncio.sleep(think_ms / 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return {"clients": clients, "think_ms": think_ms, "seconds": round(elapsed, 1),
            "requests": len(latencies), "errors": errors,
            "rate_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(quantile(latencies, 0.50), 2),
            "p99_ms": round(quantile(latencies, 0.99), 2),
            "max_ms": round(max(latencies, default=float("nan")), 2)}


async def fan_out(port: int, clients: int, seconds: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    delays: list[float] = []
    received = 0
    dropped = 0

    async def client() -> None:
        nonlocal received, dropped
        async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            await ws.recv()  # the current reports
            deadline = time.monotonic() + seconds
            try:
                while (left := deadline - time.monotonic()) > 0:
                    message = await asyncio.wait_for(ws.recv(), left)
                    now_ms = time.time() * 1000
                    # No JSON parsing here: 200 clients decoding every report would make
                    # this process, not the server, the bottleneck. A cycle's reports
                    # share one updatedAt; the first one is read with a byte search.
                    received += message.count('"schemaVersion"')
                    at = message.find('"updatedAt":') + 12
                    delays.append(now_ms - int(message[at:message.index(",", at)]))
            except TimeoutError:
                pass
            except Exception:
                dropped += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"clients": clients, "seconds": round(elapsed, 1), "messages": len(delays),
            "reports_delivered": received,
            "reports_per_s": round(received / elapsed, 1), "clients_dropped": dropped,
            "delay_p50_ms": round(quantile(delays, 0.50), 1),
            "delay_p99_ms": round(quantile(delays, 0.99), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--think-ms", type=float, default=250.0)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--ws-clients", type=int, default=200)
    parser.add_argument("--ws-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    port = free_port()
    bases = ["BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX", "DOT", "LINK", "LTC",
             "TRX", "ATOM", "NEAR", "APT", "ARB", "OP", "FIL", "ETC", "UNI"]
    symbols = [f"{bases[i % len(bases)]}{'' if i < len(bases) else i}USDT"
               for i in range(args.symbols)]
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "bench.toml"
        profile.write_text(
            f"[node]\nid = \"bench\"\nsymbols = {json.dumps(symbols)}\n"
            f"[venue]\nuse = \"synthetic\"\n[pipeline.fast]\nperiod_ms = 250\n"
            f"[[sink]]\nuse = \"http\"\nbind = \"127.0.0.1:{port}\"\nmax_clients = 1000\n")
        node = subprocess.Popen([*MARKETCORE, "run", str(profile)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if asyncio.run(get(port, "/healthz"))[0] == 200:
                        break
                except OSError:
                    pass
                if node.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the node did not start: {node.stderr.read().decode()}")
                time.sleep(0.2)
            load_before = os.getloadavg()[0]
            paced = asyncio.run(load(port, symbols, args.clients, args.seconds, args.think_ms))
            print("get_report, paced:", paced, flush=True)
            saturated = asyncio.run(load(port, symbols, args.clients, args.seconds / 2, 0))
            print("get_report, no think time:", saturated, flush=True)
            fan = asyncio.run(fan_out(port, args.ws_clients, args.ws_seconds))
            print("ws fan-out:", fan, flush=True)
            load_after = os.getloadavg()[0]
        finally:
            node.send_signal(signal.SIGINT)
            node.wait(timeout=30)

    info = machine()
    payload = {"machine": info, "symbols": len(symbols), "fast_period_ms": 250,
               "load_average": [load_before, load_after],
               "get_report": {"paced": paced, "saturated": saturated}, "ws_fan_out": fan}
    rows = [[f"{r['clients']} clients, think {r['think_ms']:g} ms", f"{r['requests']:,}",
             f"{r['rate_per_s']:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
             f"{r['max_ms']:.1f}", str(r["errors"])] for r in (paced, saturated)]
    markdown = "\n\n".join([
        "# Read API (`http` sink) under load",
        machine_line(info) + f" 1-minute load average {load_before:.2f} at the start and "
        f"{load_after:.2f} at the end; node and clients share the machine.",
        f"A node with {len(symbols)} synthetic symbols, fast cycle 250 ms. `GET "
        "/get_report?symbol=S` on a new connection per request (the API answers with "
        "`Connection: close`), latency from connect to the last byte:",
        markdown_table(["load", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors"],
                       rows),
        f"WebSocket fan-out: {fan['clients']} clients on `/ws` (every symbol) for "
        f"{fan['seconds']:g} s: {fan['reports_per_s']:,.0f} reports/s delivered in total, "
        f"delay from the report's `updatedAt` p50 {fan['delay_p50_ms']:.0f} ms, p99 "
        f"{fan['delay_p99_ms']:.0f} ms; {fan['clients_dropped']} clients dropped.",
    ])
    write_results(args.out, "http", payload, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
