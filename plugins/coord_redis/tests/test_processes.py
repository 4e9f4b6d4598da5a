"""Three real ``marketcore run`` processes share the symbols; one is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT",
           "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT", "LTCUSDT", "TRXUSDT"]
NODES = ("node-a", "node-b", "node-c")


def marketcore_command() -> str:
    beside = Path(sys.executable).with_name("marketcore")
    found = str(beside) if beside.is_file() else shutil.which("marketcore")
    if not found:
        pytest.skip("no marketcore command in this environment")
    return found


def wait_for(condition, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.1)


def holders(server) -> dict[str, str | None]:
    return {s: (v.decode() if (v := server.command("GET", f"marketcore:lease:{{{s}}}")) else None)
            for s in SYMBOLS}


def writer(server, symbol: str) -> str | None:
    data = server.command("GET", f"marketcore:report:{{{symbol}}}")
    return json.loads(data)["writer"]["nodeId"] if data else None


def test_a_killed_node_is_taken_over_and_the_others_leave_cleanly(redis_server, tmp_path):
    profile = tmp_path / "fleet.toml"
    profile.write_text(textwrap.dedent(f"""
        [node]
        symbols = {json.dumps(SYMBOLS)}
        [venue]
        use = "synthetic"
        seed = 3
        [coordinator]
        use = "redis"
        url = "{redis_server.url}"
        lease_ttl_ms = 1200
        socket_timeout_ms = 400
        heartbeat_ms = 300
        node_ttl_ms = 3000
        watch_ms = 100
        min_hold_ms = 500
        acquire_retry_ms = 100
        [pipeline.fast]
        period_ms = 250
        [[sink]]
        use = "redis"
        url = "{redis_server.url}"
        socket_timeout_ms = 400
        audit = true
    """))
    command = marketcore_command()
    processes: dict[str, subprocess.Popen] = {}
    try:
        for node_id in NODES:
            log = (tmp_path / f"{node_id}.log").open("wb")
            processes[node_id] = subprocess.Popen(
                [command, "run", str(profile)], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "MARKETCORE_NODE__ID": node_id})
        wait_for(lambda: set(holders(redis_server).values()) == set(NODES), 60,
                 "three nodes holding leases")
        wait_for(lambda: all(writer(redis_server, s) for s in SYMBOLS), 30, "reports of all")
        victim = "node-a"
        theirs = [s for s, h in holders(redis_server).items() if h == victim]
        assert theirs
        os.kill(processes[victim].pid, signal.SIGKILL)
        processes[victim].wait(timeout=10)
        survivors = set(NODES) - {victim}
        wait_for(lambda: all(writer(redis_server, s) in survivors for s in theirs), 60,
                 "the killed node's symbols reported by the survivors")
        assert set(holders(redis_server).values()) <= survivors
        for symbol in SYMBOLS:  # accepted tokens never went backwards
            entries = redis_server.command("XRANGE", f"marketcore:audit:{{{symbol}}}", "-", "+")
            tokens = []
            for _, fields in entries:
                data = dict(zip(fields[::2], fields[1::2], strict=True))
                tokens.append((int(data[b"epoch"]), int(data[b"token"])))
            assert tokens == sorted(set(tokens)), symbol
        for node_id in sorted(survivors):
            processes[node_id].send_signal(signal.SIGTERM)
        for node_id in sorted(survivors):
            assert processes[node_id].wait(timeout=30) == 0, \
                (tmp_path / f"{node_id}.log").read_text()[-2000:]
        # a graceful leave deletes membership records and leases at once
        assert redis_server.command("SMEMBERS", "marketcore:nodes") in ([], [b"node-a"])
        assert not set(holders(redis_server).values()) & survivors
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
