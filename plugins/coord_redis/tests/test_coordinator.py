"""Several coordinators in one process against a real redis-server: assignment, handoff,
failover, fencing of a partitioned node, Redis outage and restart."""

from __future__ import annotations

import asyncio
import contextlib
import math

from coord_helpers import SYMBOLS, NodeSide, TcpProxy, coordinator_options, running, wait_until
from marketcore.components import WriterToken
from marketcore_coord_redis import RedisCoordinator, RedisSink, SinkOptions
from marketcore_coord_redis.hrw import assign
from marketcore_coord_redis.scripts import lua_script
from marketcore_coord_redis.testing import FleetReader


def in_redis(server) -> FleetReader:
    """The leases and the audit streams of the suite's symbols, read from Redis."""
    return FleetReader(server, SYMBOLS)


def everything_owned_once(nodes: list[NodeSide]) -> bool:
    owned = [s for node in nodes for s in node.tokens]
    return sorted(owned) == sorted(SYMBOLS)


def test_three_nodes_share_the_universe_within_the_bound(redis_server):
    async def scenario():
        nodes = [NodeSide(f"node-{i}") for i in range(3)]
        coordinators = [RedisCoordinator(coordinator_options(redis_server.url)) for _ in nodes]
        async with contextlib.AsyncExitStack() as stack:
            for coordinator, node in zip(coordinators, nodes, strict=True):
                await stack.enter_async_context(running(coordinator, node))
            await wait_until(lambda: everything_owned_once(nodes), message="all symbols owned")
            await wait_until(lambda: all(c.stats.members == 3 for c in coordinators),
                             message="everybody sees three members")
            cap = math.ceil(1.25 * len(SYMBOLS) / 3)
            assert all(len(node.tokens) <= cap for node in nodes)
            holders = in_redis(redis_server).holders()
            for node in nodes:
                assert all(holders[s] == node.node_id for s in node.tokens)
            expected = assign(SYMBOLS, [n.node_id for n in nodes])
            await wait_until(lambda: all(set(n.tokens) == expected.symbols_of(n.node_id)
                                         for n in nodes), message="the HRW assignment")
            record = redis_server.command("GET", "marketcore:node:node-0")
            assert b'"node_id":"node-0"' in record and b'"pid":' in record
            assert 0 < int(redis_server.command("PTTL", "marketcore:node:node-0")) <= 2000
            assert sorted(redis_server.command("SMEMBERS", "marketcore:nodes")) == [
                b"node-0", b"node-1", b"node-2"]

    asyncio.run(scenario())


def test_a_graceful_leave_hands_over_without_waiting_for_a_ttl(redis_server):
    async def scenario():
        nodes = [NodeSide(f"node-{i}") for i in range(3)]
        coordinators = [RedisCoordinator(coordinator_options(redis_server.url)) for _ in nodes]
        tasks = [asyncio.create_task(c.run(n)) for c, n in zip(coordinators, nodes, strict=True)]
        try:
            await wait_until(lambda: everything_owned_once(nodes), timeout=60,
                             message="all symbols owned")
            leaver = nodes[0]
            theirs = set(leaver.tokens)
            assert theirs
            tasks[0].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tasks[0]
            # membership record and leases are deleted at once: nobody waits for a TTL
            assert redis_server.command("EXISTS", "marketcore:node:node-0") == 0
            assert b"node-0" not in redis_server.command("SMEMBERS", "marketcore:nodes")
            assert "node-0" not in in_redis(redis_server).holders().values()
            assert leaver.tokens == {}
            assert {(s, why) for kind, s, why in leaver.events if kind == "released"} == {
                (s, "shutdown") for s in theirs}
            await wait_until(lambda: everything_owned_once(nodes[1:]), timeout=15,
                             message="the leaver's symbols taken over")
            assert coordinators[0].stats.releases == len(theirs)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


def test_a_joining_node_gets_its_share_and_no_symbol_has_two_accepted_writers(redis_server):
    async def scenario():
        sink = RedisSink(SinkOptions(url=redis_server.url, audit=True))
        await sink.start()
        nodes = [NodeSide(f"node-{i}") for i in range(3)]
        coordinators = [RedisCoordinator(coordinator_options(redis_server.url)) for _ in nodes]
        stop = asyncio.Event()

        async def publishing():
            cycle = 0
            while not stop.is_set():
                cycle += 1
                for node, coordinator in zip(nodes, coordinators, strict=True):
                    await node.publish(sink, coordinator, cycle)
                await asyncio.sleep(0.03)

        async with running(coordinators[0], nodes[0]), running(coordinators[1], nodes[1]):
            await wait_until(lambda: everything_owned_once(nodes[:2]), message="two nodes")
            publisher = asyncio.create_task(publishing())
            before = {s: n.node_id for n in nodes[:2] for s in n.tokens}
            async with running(coordinators[2], nodes[2]):
                expected = assign(SYMBOLS, [n.node_id for n in nodes], before)
                await wait_until(lambda: set(nodes[2].tokens) == expected.symbols_of("node-2")
                                 and everything_owned_once(nodes), message="the join settled")
                moved = {s for n in nodes for s in n.tokens if before[s] != n.node_id}
                assert moved == set(nodes[2].tokens)  # only what the newcomer won moved
                await asyncio.sleep(0.3)
            await wait_until(lambda: everything_owned_once(nodes[:2]), message="leave settled")
            stop.set()
            await publisher
        assert sink.stats.written > 0
        assert in_redis(redis_server).safety().audit_backwards == []
        for symbol in nodes[2].tokens:
            assert {a.node for a in in_redis(redis_server).audit(symbol)} >= {"node-2"}
        await sink.close()

    asyncio.run(scenario())


def test_a_partitioned_node_loses_its_symbols_and_its_late_writes_are_refused(redis_server):
    async def scenario():
        proxy = await TcpProxy(redis_server.port).start()
        cut_off, peer = NodeSide("node-cut"), NodeSide("node-peer")
        coordinator_cut = RedisCoordinator(coordinator_options(proxy.url))
        coordinator_peer = RedisCoordinator(coordinator_options(redis_server.url))
        sink_cut = RedisSink(SinkOptions(url=proxy.url, socket_timeout_ms=300))
        sink_peer = RedisSink(SinkOptions(url=redis_server.url, audit=True))
        await sink_cut.start()
        await sink_peer.start()
        async with running(coordinator_cut, cut_off), running(coordinator_peer, peer):
            await wait_until(lambda: everything_owned_once([cut_off, peer]), message="settled")
            stale_batch = cut_off.batch(cycle=1)
            theirs = {p.symbol for p in stale_batch}
            assert theirs and await sink_cut.publish(stale_batch) == []
            proxy.cut()  # partition: its leases run out, the peer takes everything over
            await wait_until(lambda: set(peer.tokens) == set(SYMBOLS), timeout=15,
                             message="the peer took over")
            assert set(cut_off.tokens) == theirs  # the cut-off node kept its warm books
            proxy.restore()
            # its first write after the partition carries the old tokens: refused at Redis
            refused = []
            for _ in range(100):
                try:
                    refused = await sink_cut.publish(stale_batch)
                    break
                except ConnectionError:
                    await asyncio.sleep(0.05)
            assert sorted(refused) == sorted(theirs)
            for symbol in refused:
                coordinator_cut.refused(symbol)
                cut_off.released(symbol, "refused by sink")
            assert coordinator_cut.stats.lease_conflicts == len(theirs)
            assert sink_cut.stats.refused == len(theirs)
            holders = in_redis(redis_server).holders()
            assert all(holders[s] == "node-peer" for s in theirs)
            await peer_publish(peer, sink_peer, coordinator_peer)
            # after the partition heals, the fleet settles again with both nodes
            await wait_until(lambda: everything_owned_once([cut_off, peer]) and cut_off.tokens,
                             timeout=15, message="resettled after the partition")
        assert in_redis(redis_server).safety().audit_backwards == []
        for sink in (sink_cut, sink_peer):
            await sink.close()
        await proxy.close()

    asyncio.run(scenario())


async def peer_publish(node: NodeSide, sink: RedisSink, coordinator: RedisCoordinator) -> None:
    assert await node.publish(sink, coordinator, cycle=9) == []


def test_a_redis_outage_keeps_books_warm_and_publishing_resumes(redis_server):
    """Kill redis-server: the node keeps running and its symbols, publishes nothing; restart
    (empty, without persistence): leases come back with newer tokens for the same symbols."""
    async def scenario():
        nodes = [NodeSide("node-a"), NodeSide("node-b")]
        coordinators = [RedisCoordinator(coordinator_options(redis_server.url)) for _ in nodes]
        sink = RedisSink(SinkOptions(url=redis_server.url))
        await sink.start()
        async with running(coordinators[0], nodes[0]) as task_a, \
                running(coordinators[1], nodes[1]) as task_b:
            await wait_until(lambda: everything_owned_once(nodes), message="settled")
            before = {s: (n.node_id, t) for n in nodes for s, t in n.tokens.items()}
            written = sink.stats.written
            for node, coordinator in zip(nodes, coordinators, strict=True):
                await node.publish(sink, coordinator)
            assert sink.stats.written == written + len(SYMBOLS)
            redis_server.stop(kill=True)
            await wait_until(lambda: all(c.stats.outages > 0 for c in coordinators),
                             message="both coordinators saw the outage")
            for _ in range(5):
                for node, coordinator in zip(nodes, coordinators, strict=True):
                    with contextlib.suppress(ConnectionError):
                        await node.publish(sink, coordinator)
                await asyncio.sleep(0.2)
            assert not task_a.done() and not task_b.done()
            assert {s: n.node_id for n in nodes for s in n.tokens} == {
                s: owner for s, (owner, _) in before.items()}  # nothing released
            assert sink.stats.written == written + len(SYMBOLS)  # nothing published
            redis_server.start()
            await wait_until(lambda: all(n.tokens.get(s) != before[s][1] for n in nodes
                                         for s in n.tokens) and everything_owned_once(nodes),
                             timeout=20, message="leases re-acquired after the restart")
            for node in nodes:
                for symbol, token in node.tokens.items():
                    assert token > before[symbol][1]  # the new epoch makes every token newer
            assert not any(kind == "released" for n in nodes for kind, _, _ in n.events)
            for _ in range(100):
                with contextlib.suppress(ConnectionError):
                    for node, coordinator in zip(nodes, coordinators, strict=True):
                        await node.publish(sink, coordinator)
                    if sink.stats.written >= written + 2 * len(SYMBOLS):
                        break
                await asyncio.sleep(0.05)
            assert sink.stats.written >= written + 2 * len(SYMBOLS)
        await sink.close()

    asyncio.run(scenario())


def test_a_stopped_coordinator_releases_and_a_new_run_acquires_newer_tokens(redis_server):
    async def scenario():
        node = NodeSide("solo")
        coordinator = RedisCoordinator(coordinator_options(redis_server.url))
        async with running(coordinator, node):
            await wait_until(lambda: len(node.tokens) == len(SYMBOLS), message="all owned")
            tokens = dict(node.tokens)
        assert node.tokens == {}
        assert all(kind == "released" for kind, _, _ in node.events[-len(tokens):])
        async with running(coordinator, node):
            await wait_until(lambda: len(node.tokens) == len(SYMBOLS), message="all owned")
            assert all(node.tokens[s] > tokens[s] for s in SYMBOLS)

    asyncio.run(scenario())


class FlakyNode(NodeSide):
    """A node whose ``symbol_acquired`` hooks fail once, crashing the coordinator's run."""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.failed = False

    def acquired(self, symbol, token) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a plugin hook failed")
        super().acquired(symbol, token)


def test_a_crashed_run_is_restarted_and_keeps_its_leases(redis_server):
    """The node's supervisor restarts a run that raised: leases survive, every symbol
    reaches the node, and what was already granted keeps its token."""
    async def scenario():
        node = FlakyNode("flaky")
        coordinator = RedisCoordinator(coordinator_options(redis_server.url))
        with contextlib.suppress(BaseExceptionGroup, RuntimeError):
            await asyncio.wait_for(coordinator.run(node), timeout=15)
        assert node.failed and coordinator.held()  # leases kept through the crash
        held_before = coordinator.held()
        async with running(coordinator, node):
            await wait_until(lambda: len(node.tokens) == len(SYMBOLS), message="all owned")
            for symbol, token in held_before.items():
                assert node.tokens[symbol] == token  # renewed, not acquired again

    asyncio.run(scenario())


def test_a_lost_acquire_reply_is_read_back_not_resent(redis_server):
    """The acquire runs in Redis but its reply is lost: the coordinator reads the lease back
    and keeps token 1. A blind resend would have been answered with a second token."""
    async def scenario():
        run_id = redis_server.run_id()
        for symbol in SYMBOLS:  # an established epoch: no quiet time before the acquire
            redis_server.command("HSET", f"marketcore:token:{{{symbol}}}", "epoch", 7,
                                 "counter", 0, "run", run_id, "quiet", 0)
        proxy = await TcpProxy(redis_server.port).start()
        proxy.lose_reply_to(lua_script("acquire").sha.encode())
        node = NodeSide("solo")
        coordinator = RedisCoordinator(coordinator_options(proxy.url))
        async with running(coordinator, node):
            await wait_until(lambda: len(node.tokens) == len(SYMBOLS), message="all owned")
            assert coordinator.stats.read_backs == len(SYMBOLS)
            assert set(node.tokens.values()) == {WriterToken(7, 1)}
        await proxy.close()

    asyncio.run(scenario())
