"""Connection modes against real servers: ACL user + password, TLS, Cluster, Sentinel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time

import attrs
import pytest
from coord_helpers import SYMBOLS, NodeSide, coordinator_options, running, wait_until
from marketcore.testing import free_port
from marketcore_coord_redis import RedisCoordinator, RedisSink, SinkOptions

PASSWORD = "pa55-w0rd-for-tests"


def fleet_publishes(url: str, node_count: int = 2, **options: object) -> tuple[
        list[NodeSide], list[RedisCoordinator], RedisSink]:
    """Run ``node_count`` coordinators and one sink until every symbol's report is written."""
    nodes = [NodeSide(f"node-{i}") for i in range(node_count)]
    shared = {field.name for field in attrs.fields(SinkOptions)}
    sink_options = {k: v for k, v in options.items() if k in shared and k != "password"}
    coordinators = [RedisCoordinator(coordinator_options(url, **options)) for _ in nodes]
    sink = RedisSink(SinkOptions(url=url, **sink_options))

    async def scenario():
        await sink.start()
        async with contextlib.AsyncExitStack() as stack:
            for coordinator, node in zip(coordinators, nodes, strict=True):
                await stack.enter_async_context(running(coordinator, node))
            await wait_until(lambda: sorted(s for n in nodes for s in n.tokens) == sorted(SYMBOLS),
                             timeout=20, message="all symbols owned")
            for _ in range(100):
                for node, coordinator in zip(nodes, coordinators, strict=True):
                    await node.publish(sink, coordinator)
                if sink.stats.written >= len(SYMBOLS):
                    break
                await asyncio.sleep(0.05)
        await sink.close()

    asyncio.run(scenario())
    return nodes, coordinators, sink


def test_an_acl_user_with_a_password_from_the_environment(start_redis, monkeypatch, caplog):
    server = start_redis(password="default-user-secret", users={"marketcore": PASSWORD})
    monkeypatch.setenv("MARKETCORE_COORDINATOR__PASSWORD", PASSWORD)
    caplog.set_level(logging.DEBUG)
    _, coordinators, sink = fleet_publishes(server.url, username="marketcore",
                                                password=PASSWORD)
    # the default user has another password: only the ACL user could have written this,
    # and the sink had no password of its own: it took the coordinator's variable
    assert sink.stats.written >= len(SYMBOLS)
    assert server.command("EXISTS", "marketcore:report:{S00USDT}") == 1
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in repr(c.stats) and PASSWORD not in repr(c.options)
               for c in coordinators)


def test_a_wrong_password_is_an_outage_not_a_crash(start_redis, monkeypatch):
    server = start_redis(users={"marketcore": PASSWORD})
    monkeypatch.setenv("MARKETCORE_COORDINATOR__PASSWORD", "wrong")
    node = NodeSide("node-0")
    coordinator = RedisCoordinator(coordinator_options(server.url, username="marketcore",
                                                       password="wrong"))

    async def scenario():
        async with running(coordinator, node) as task:
            await wait_until(lambda: coordinator.stats.redis_errors >= 3, message="errors")
            assert not task.done()
        assert node.tokens == {}

    asyncio.run(scenario())


def test_tls(redis_tls_server):
    ca = str(redis_tls_server.tls_files.ca_cert)
    assert redis_tls_server.url.startswith("rediss://")
    _, _, sink = fleet_publishes(redis_tls_server.url, tls_ca_file=ca)
    assert sink.stats.written >= len(SYMBOLS)
    assert redis_tls_server.command("EXISTS", "marketcore:report:{S00USDT}") == 1


def test_tls_refuses_an_unknown_certificate(redis_tls_server):
    node = NodeSide("node-0")
    coordinator = RedisCoordinator(coordinator_options(redis_tls_server.url))  # system CAs

    async def scenario():
        async with running(coordinator, node):
            await wait_until(lambda: coordinator.stats.redis_errors >= 2, message="errors")
        assert node.tokens == {}

    asyncio.run(scenario())


def test_cluster_mode_publishes_through_every_master(redis_cluster):
    prefix = f"mc{os.getpid()}x{time.monotonic_ns() % 10**6}"
    _, _, sink = fleet_publishes(redis_cluster.url, mode="cluster", key_prefix=prefix)
    assert sink.stats.written >= len(SYMBOLS)
    found = {}
    for server in redis_cluster.nodes:
        keys = server.command("KEYS", f"{prefix}:report:*")
        found[server.port] = len(keys)
    assert sum(found.values()) == len(SYMBOLS)
    assert sum(1 for count in found.values() if count) >= 2  # spread over the slots' owners


@pytest.fixture
def sentinel(redis_server, tmp_path):
    """A sentinel process watching ``redis_server`` as ``mymaster``."""
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                      f"sentinel monitor mymaster 127.0.0.1 {redis_server.port} 1\n")
    process = subprocess.Popen([str(redis_server.binary), str(config), "--sentinel"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.skip("redis-server could not run as a sentinel")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=10)


def test_sentinel_mode(redis_server, sentinel):
    _, _, sink = fleet_publishes("redis://127.0.0.1:1/0", mode="sentinel",
                                     sentinels=[sentinel], sentinel_service="mymaster")
    assert sink.stats.written >= len(SYMBOLS)
    assert redis_server.command("EXISTS", "marketcore:report:{S00USDT}") == 1
