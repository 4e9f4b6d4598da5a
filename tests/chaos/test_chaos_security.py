"""Secrets and least privilege with real processes: a node that reaches Redis as an
ACL user restricted to the key prefix, its password only in the environment.

The password must appear in no log line of a ``--debug`` run, in no report and
in no membership record; the ACL user must really be unable to touch a key
outside the prefix (so the fleet working proves the prefix suffices).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from chaosfleet import SYMBOLS, ChaosFleet
from chaosrun import wait_for

PASSWORD = "chaos-Secret-7f3a9c"
DEFAULT_PASSWORD = "default-user-other-secret"


def as_fleet_user(server, *command: str) -> bytes:
    """The first reply line of ``command`` run as the ACL user (after its AUTH)."""
    def encode(*args: str) -> bytes:
        return b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)

    with socket.create_connection((server.host, server.port), timeout=5) as sock, \
            sock.makefile("rb") as replies:
        sock.sendall(encode("AUTH", "fleet", PASSWORD) + encode(*command))
        assert replies.readline() == b"+OK\r\n"
        return replies.readline().rstrip(b"\r\n")


@pytest.fixture
def acl_redis(tmp_path: Path):
    from marketcore.testing import RedisServer, RedisUnavailable

    try:
        server = RedisServer(directory=tmp_path / "redis-acl", password=DEFAULT_PASSWORD).start()
    except RedisUnavailable as error:
        pytest.skip(str(error))
    try:
        # Keys and pub/sub channels under the prefix only; no admin or dangerous
        # commands, except INFO (the acquire script reads the server's run id to detect
        # a restart).
        server.command("ACL", "SETUSER", "fleet", "on", f">{PASSWORD}", "resetkeys",
                       "~marketcore:*", "resetchannels", "&marketcore:*", "+@all", "-@dangerous", "+info")
        yield server
    finally:
        server.close()


def test_an_acl_user_on_the_prefix_and_no_secret_in_any_log(acl_redis, tmp_path,
                                                            monkeypatch, chaos_results):
    assert as_fleet_user(acl_redis, "SET", "marketcore:probe", "1") == b"+OK"
    assert as_fleet_user(acl_redis, "SET", "elsewhere:key", "1").startswith(b"-NOPERM")
    monkeypatch.setenv("MARKETCORE_CHAOS_DEBUG", "1")  # every debug log line, too
    monkeypatch.setenv("MARKETCORE_COORDINATOR__USERNAME", "fleet")
    monkeypatch.setenv("MARKETCORE_SINK__0__USERNAME", "fleet")
    monkeypatch.setenv("MARKETCORE_COORDINATOR__PASSWORD", PASSWORD)
    try:
        fleet = ChaosFleet(acl_redis, tmp_path, symbols=SYMBOLS[:4])
    except FileNotFoundError as error:
        pytest.skip(str(error))
    with fleet:
        fleet.start("node-s")
        wait_for(lambda: all(w == "node-s" for w in fleet.writers().values()), 90,
                 lambda: "the ACL user's node publishing every symbol\n"
                 + fleet.log_text("node-s")[-2000:])
        time.sleep(1.0)
        assert fleet.terminate("node-s") == 0
    logs = fleet.log_text("node-s")
    assert "joining the fleet" in logs and "DEBUG" in logs  # it logged, its connection too
    assert "NoPermission" not in logs and "no permissions" not in logs, logs[-2000:]
    assert PASSWORD not in logs
    stored = [acl_redis.command("GET", f"marketcore:report:{{{s}}}") for s in fleet.symbols]
    assert all(PASSWORD.encode() not in value for value in stored if value)
    streamed = acl_redis.command("XRANGE", f"marketcore:stream:{{{SYMBOLS[0]}}}", "-", "+")
    assert streamed and PASSWORD.encode() not in repr(streamed).encode()
    assert os.environ["MARKETCORE_COORDINATOR__PASSWORD"] == PASSWORD
    chaos_results.record("secrets_and_acl", criterion="password in no log line or report; "
                         "an ACL user on the prefix works", met=True, log_lines=logs.count("\n"),
                         password_in_logs=0, password_in_reports=0,
                         acl_keys="~marketcore:* &marketcore:*", acl_commands="+@all -@dangerous +info")
