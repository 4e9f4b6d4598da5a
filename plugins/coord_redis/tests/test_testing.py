"""The public fleet harness, ``marketcore_coord_redis.testing``, on streams and keys
written by hand: what it reads back, and that its safety audit catches each violation."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from marketcore.cli import main
from marketcore_coord_redis.testing import (
    FAST_FLEET,
    Accepted,
    Fleet,
    FleetReader,
    Takeover,
    assert_safe,
    wait_for,
)

SEQUENCE = itertools.count(1)
"""Entry id sequence numbers: ids ``<ms>-<n>`` stay increasing whatever the ms."""


def write_report(server, symbol: str, node: str, token: tuple[int, int], ms: int) -> bytes:
    """One accepted report as the fencing script stores it: the key and a stream entry."""
    body = json.dumps({"symbol": symbol, "writer": {"nodeId": node, "epoch": token[0],
                                                    "writerToken": token[1]}})
    server.command("SET", f"marketcore:report:{{{symbol}}}", body)
    return server.command("XADD", f"marketcore:stream:{{{symbol}}}", f"{ms}-{next(SEQUENCE)}",
                          "report", body)


def write_audit(server, symbol: str, node: str, token: tuple[int, int], ms: int) -> bytes:
    return server.command("XADD", f"marketcore:audit:{{{symbol}}}", f"{ms}-{next(SEQUENCE)}",
                          "symbol", symbol, "node", node, "epoch", token[0], "token", token[1])


def test_the_module_imports_without_pytest():
    """pytest is not a runtime dependency of the package: a benchmark imports the harness."""
    probe = ("import sys; sys.modules['pytest'] = None; "
             "import marketcore_coord_redis.testing as t; print(len(t.__all__))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 10


def test_it_reads_leases_reports_and_streams_back(redis_server):
    fleet = FleetReader(redis_server, ["AUSDT", "BUSDT"])
    assert fleet.holders() == {"AUSDT": None, "BUSDT": None}
    assert fleet.writers() == {"AUSDT": None, "BUSDT": None}
    assert fleet.last_report_ids() == {"AUSDT": None, "BUSDT": None}
    assert fleet.covered(["node-a"]) is None

    redis_server.command("SET", "marketcore:lease:{AUSDT}", "node-a")
    redis_server.command("SET", "marketcore:lease:{BUSDT}", "node-b")
    first = write_report(redis_server, "AUSDT", "node-a", (1, 1), 1_000)
    second = write_report(redis_server, "AUSDT", "node-b", (1, 2), 2_000)
    write_report(redis_server, "BUSDT", "node-b", (1, 1), 1_500)
    write_audit(redis_server, "AUSDT", "node-a", (1, 1), 1_000)

    assert fleet.holders() == {"AUSDT": "node-a", "BUSDT": "node-b"}
    assert fleet.latest() == {"AUSDT": ("node-b", (1, 2)), "BUSDT": ("node-b", (1, 1))}
    assert fleet.writers() == {"AUSDT": "node-b", "BUSDT": "node-b"}
    assert fleet.covered(["node-a", "node-b"]) is None  # AUSDT: leased by a, last written by b
    assert fleet.taken_over(["AUSDT", "BUSDT"], "node-a")
    assert not fleet.taken_over(["AUSDT"], "node-b")
    assert fleet.audit("AUSDT") == [Accepted(fleet.audit("AUSDT")[0].entry_id, 1_000, "node-a",
                                             1, 1)]
    assert [(a.ms, a.node, a.token) for a in fleet.reports("AUSDT")] == [
        (1_000, "node-a", (1, 1)), (2_000, "node-b", (1, 2))]
    assert [a.entry_id for a in fleet.reports("AUSDT", after=first)] == [second]
    assert [a.entry_id for a in fleet.reports("AUSDT", since_ms=1_001)] == [second]
    assert fleet.last_report_ids() == {"AUSDT": second, "BUSDT": fleet.reports("BUSDT")[0].entry_id}
    assert fleet.takeover("AUSDT", "node-a", since_ms=0) == Takeover("AUSDT", "node-a", 1_000,
                                                                     2_000, "node-b")
    assert fleet.takeover("AUSDT", "node-a", since_ms=0).gap_ms == 1_000
    with pytest.raises(AssertionError, match="no report of BUSDT by node-a"):
        fleet.takeover("BUSDT", "node-a", since_ms=0)
    with pytest.raises(AssertionError, match="by another node after node-b's last"):
        fleet.takeover("AUSDT", "node-b", since_ms=0)

    redis_server.command("SET", "marketcore:lease:{AUSDT}", "node-b")
    assert fleet.covered(["node-b"]) == {"AUSDT": "node-b", "BUSDT": "node-b"}
    assert fleet.settled(["node-b"], quiet_s=0.2) == {"AUSDT": "node-b", "BUSDT": "node-b"}
    with pytest.raises(AssertionError, match=r"the fleet \['node-a', 'node-b'\] to settle"):
        fleet.settled(["node-a", "node-b"], timeout=0.3)  # node-a holds nothing
    assert abs(fleet.server_ms() - int(redis_server.command("TIME")[0]) * 1000) < 5_000
    assert not fleet.member("node-a")
    redis_server.command("SET", "marketcore:node:node-a", "{}")
    assert fleet.member("node-a")


def test_the_safety_audit_finds_each_kind_of_violation(redis_server):
    # CLEAN: a handover to a newer token, reports and audit in order.
    write_report(redis_server, "CLEAN", "node-a", (1, 1), 1_000)
    write_report(redis_server, "CLEAN", "node-a", (1, 1), 1_100)
    write_report(redis_server, "CLEAN", "node-b", (2, 1), 1_200)
    write_audit(redis_server, "CLEAN", "node-a", (1, 1), 1_000)
    write_audit(redis_server, "CLEAN", "node-b", (2, 1), 1_200)
    clean = FleetReader(redis_server, ["CLEAN"]).safety()
    assert (clean.violations, clean.reports) == (0, 3)

    # LATE: a report under an older token accepted after a newer one.
    write_report(redis_server, "LATE", "node-a", (1, 1), 1_000)
    write_report(redis_server, "LATE", "node-b", (1, 2), 1_100)
    late = write_report(redis_server, "LATE", "node-a", (1, 1), 1_200)
    # TWICE: one token accepted for two nodes, in the reports and in the audit stream.
    write_report(redis_server, "TWICE", "node-a", (1, 1), 1_000)
    write_report(redis_server, "TWICE", "node-b", (1, 1), 1_100)
    write_audit(redis_server, "TWICE", "node-c", (1, 1), 1_000)
    # BACK: the audit stream goes backwards.
    write_audit(redis_server, "BACK", "node-a", (1, 2), 1_000)
    write_audit(redis_server, "BACK", "node-b", (1, 1), 1_100)

    report = FleetReader(redis_server, ["CLEAN", "LATE", "TWICE", "BACK"]).safety()
    assert [(s, newest.token, entry.entry_id) for s, newest, entry in report.backwards] == [
        ("LATE", (1, 2), late)]
    assert report.reused == [("TWICE", (1, 1), "node-a", "node-b"),
                             ("TWICE", (1, 1), "node-a", "node-c")]
    assert report.audit_backwards == [("BACK", [(1, 2), (1, 1)])]
    assert (report.violations, report.reports) == (4, 8)


def test_a_fleet_writes_a_valid_profile_and_assert_safe_reads_its_logs(redis_server, tmp_path):
    try:
        fleet = Fleet(redis_server, tmp_path, symbols=["AUSDT"],
                      coordinator={**FAST_FLEET, "host": "test-host"}, seed=5)
    except FileNotFoundError as error:
        pytest.skip(str(error))
    with fleet:
        assert main(["validate", str(fleet.profile)]) == 0
        assert fleet.ttl_s == FAST_FLEET["lease_ttl_ms"] / 1000
        assert fleet.running() == [] and not fleet.alive("node-a")
        write_report(redis_server, "AUSDT", "node-a", (1, 1), 1_000)
        write_audit(redis_server, "AUSDT", "node-a", (1, 1), 1_000)
        assert assert_safe(fleet) == 1
        fleet.log_path("node-a").write_text("Traceback (most recent call last):\n  boom\n")
        assert set(fleet.tracebacks()) == {"node-a"}
        with pytest.raises(AssertionError, match="tracebacks in node logs"):
            assert_safe(fleet)
        fleet.log_path("node-a").write_text("fine\n")
        write_report(redis_server, "AUSDT", "node-b", (1, 1), 1_100)
        with pytest.raises(AssertionError, match="tokens accepted for two nodes"):
            assert_safe(fleet)


def test_wait_for_returns_the_value_and_says_what_it_waited_for():
    values = iter([None, 0, "ready"])
    assert wait_for(lambda: next(values), 5, "never shown", every=0.01) == "ready"
    asked = []

    def state() -> str:
        asked.append(1)
        return "the state at the timeout"

    with pytest.raises(AssertionError, match="waiting for the state at the timeout"):
        wait_for(lambda: None, 0.1, state, every=0.01)
    assert asked == [1]  # the message is built once, at the timeout
