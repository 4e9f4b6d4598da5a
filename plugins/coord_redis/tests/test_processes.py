"""Three real ``marketcore run`` processes share the symbols; one is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap

import pytest
from marketcore.testing import stop_processes
from marketcore_coord_redis.testing import FleetReader, marketcore_command, wait_for

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT",
           "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT", "LTCUSDT", "TRXUSDT"]
NODES = ("node-a", "node-b", "node-c")


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
    if command is None:
        pytest.skip("no marketcore command in this environment")
    fleet = FleetReader(redis_server, SYMBOLS)
    processes: dict[str, subprocess.Popen] = {}
    try:
        for node_id in NODES:
            with (tmp_path / f"{node_id}.log").open("wb") as log:  # the child keeps its copy
                processes[node_id] = subprocess.Popen(
                    [command, "run", str(profile)], stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, "MARKETCORE_NODE__ID": node_id})
        wait_for(lambda: set(fleet.holders().values()) == set(NODES), 60,
                 "three nodes holding leases", every=0.1)
        wait_for(lambda: all(fleet.writers().values()), 30, "reports of all", every=0.1)
        victim = "node-a"
        theirs = [s for s, h in fleet.holders().items() if h == victim]
        assert theirs
        os.kill(processes[victim].pid, signal.SIGKILL)
        processes[victim].wait(timeout=10)
        survivors = set(NODES) - {victim}
        wait_for(lambda: all(fleet.writers()[s] in survivors for s in theirs), 60,
                 "the killed node's symbols reported by the survivors", every=0.1)
        assert set(fleet.holders().values()) <= survivors
        assert fleet.safety().audit_backwards == []  # accepted tokens never went backwards
        for node_id in sorted(survivors):
            processes[node_id].send_signal(signal.SIGTERM)
        for node_id in sorted(survivors):
            assert processes[node_id].wait(timeout=30) == 0, \
                (tmp_path / f"{node_id}.log").read_text()[-2000:]
        # a graceful leave deletes membership records and leases at once
        assert redis_server.command("SMEMBERS", "marketcore:nodes") in ([], [b"node-a"])
        assert not set(fleet.holders().values()) & survivors
    finally:
        stop_processes(*processes.values(), sig=signal.SIGKILL)
