"""``marketcore run --processes N`` with the ``redis`` coordinator: each child is a fleet
member, the coordinator shares the symbols between them, and a stop releases them all."""

from __future__ import annotations

import os
import signal
import subprocess

from marketcore.testing import stop_processes
from marketcore_coord_redis.testing import SYMBOLS, Fleet, assert_safe, wait_for


def test_the_processes_of_one_node_join_the_fleet_and_share_its_symbols(redis_server, tmp_path):
    with Fleet(redis_server, tmp_path) as fleet:
        env = {**os.environ, "MARKETCORE_NODE__ID": "multi"}
        log = (tmp_path / "multi.log").open("wb")
        process = subprocess.Popen(
            [fleet.command, "run", str(fleet.profile), "--processes", "2"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            held = fleet.settled({"multi-p0", "multi-p1"})
            counts = sorted(list(held.values()).count(n) for n in ("multi-p0", "multi-p1"))
            # bounded-load HRW: each member holds floor or ceil of 15 / 2
            assert counts == [len(SYMBOLS) // 2, len(SYMBOLS) - len(SYMBOLS) // 2]
            assert fleet.member("multi-p0") and fleet.member("multi-p1")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
            # a graceful stop releases every lease and leaves the fleet
            wait_for(lambda: set(fleet.holders().values()) == {None}, 10,
                     lambda: f"the leases to be released (holders: {fleet.holders()})")
            assert not fleet.member("multi-p0") and not fleet.member("multi-p1")
        finally:
            stop_processes(process)
            log.close()
        text = (tmp_path / "multi.log").read_text()
        assert "symbols shared by the redis coordinator" in text
        assert "Traceback" not in text
        assert_safe(fleet)
